//! The auction flows of the enclave: sealed bids, closing on the enclave's clock from the
//! entries the host stored, and the winner-only release from a sale proven from the log. The
//! book they work on is [`crate::auctions`]; `docs/AUCTION-BOOK.md` gives the reasoning.

use ed25519_dalek::Signer as _;
use leadgate_verifier::auction::{
    commitments_root, considered, decide, seed_message, OpenedBid, Outcome,
};
use leadgate_verifier::bid::{hex32, open_bid, open_logged_bid, SealedBid, VerifiedBid};
use leadgate_verifier::event::{
    AuctionClosed, AuctionUnsold, BidSealed, Event, LeadAccepted, LeadReleased,
};
use leadgate_verifier::intake::{open_lead, SealedLead, MAX_LEAD_BYTES};
use leadgate_verifier::merkle::{leaf_hash, verify_inclusion, Hash};
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use leadgate_verifier::settlement::{EthAddress, Settlement, SignedSettlement};
use serde_bytes::ByteBuf;

use super::{err, hashes, Enclave, Running, SettlementConfig};
use crate::auctions::{auction_key, chain_next, AuctionKey, BidRefusal};
use crate::error::EnclaveError;
use crate::log::UnsignedAppend;
use crate::parallel::par_map;
use leadgate_protocol::{
    BidOutcome, CloseInput, CloseOutcome, ProvenLeaf, Response, SaleProof, WireError, MAX_BIDS,
    MAX_CLOSES_PER_TICK,
};

/// Stage 2's result for one bid.
enum LoggedBid {
    Refused(WireError),
    Appended {
        auction_id: String,
        commitment: [u8; 32],
        unsigned: Box<UnsignedAppend>,
    },
}

/// A bid of an auction being closed, opened.
#[derive(Clone)]
pub(super) struct ClosingBid {
    /// The buyer's key.
    pub buyer: [u8; 32],
    /// The sealed bid's commitment.
    pub commitment: Hash,
    /// The amount.
    pub amount: leadgate_verifier::auction::TokenAmount,
    /// Where a won lead is sealed.
    pub buyer_hpke: [u8; 32],
    /// The deposit account that pays if it wins.
    pub account: Option<EthAddress>,
}

fn close_invalid(m: impl Into<String>) -> EnclaveError {
    EnclaveError::CloseInvalid(m.into())
}

fn proof_invalid(m: impl Into<String>) -> EnclaveError {
    EnclaveError::ReleaseProofInvalid(m.into())
}

impl Enclave {
    /// Takes sealed bids: signature and HPKE open in parallel, then in order the auction
    /// checks (open by the enclave clock, room for a bid, not a recent replay) and
    /// `bid.sealed`, then the receipts.
    pub(super) fn bid(&mut self, bids: &[SealedBid], now_ms: u64) -> Response {
        if bids.len() > MAX_BIDS {
            return err(EnclaveError::BatchTooLarge {
                max: MAX_BIDS,
                what: "bids",
            });
        }
        let origin = self.config.origin.as_str();
        let workers = self.config.workers;
        let settles = self.config.settlement.is_some();
        let escrow = self.config.escrow_chain.clone();
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let intake = r.secrets.intake_key();
        // Each bid with its deposit account and amount (token units) when settling.
        type Opened = (VerifiedBid, Option<([u8; 20], u64)>);
        let opened: Vec<Result<Opened, WireError>> =
            par_map(bids.iter().collect(), workers, |b: &SealedBid| {
                let v = b.verify(origin)?;
                let content = open_bid(intake, origin, &v)?;
                if settles && content.account.is_none() {
                    return Err(EnclaveError::AccountRequired);
                }
                let funds = content.account.map(|a| (a.0, content.amount.units()));
                Ok((v, funds))
            })
            .into_iter()
            .map(|r| r.map_err(WireError::from))
            .collect();
        // The deposits of the bidders whose last read is stale, in one batch at one block.
        let unreadable = match (settles, &escrow) {
            (true, Some(chain)) => refresh_deposits(
                r,
                chain,
                opened
                    .iter()
                    .flatten()
                    .filter_map(|(_, funds)| funds.map(|(a, _)| a)),
                now_ms,
            ),
            _ => std::collections::HashMap::new(),
        };
        let mut logged = Vec::with_capacity(opened.len());
        for o in opened {
            let entry = o.and_then(|(bid, funds)| {
                let refuse = |why: BidRefusal| WireError::from(EnclaveError::from(why));
                let key = auction_key(&bid.auction_id).ok_or(refuse(BidRefusal::Unknown))?;
                r.book.check_bid(&key, now_ms).map_err(refuse)?;
                if r.bids.seen(&bid.commitment) {
                    return Err(refuse(BidRefusal::Replayed));
                }
                let funds = funds.filter(|_| settles);
                if let Some((account, amount)) = funds {
                    if let Some(e) = unreadable.get(&account) {
                        return Err(e.clone());
                    }
                    r.deposits
                        .commit(&account, amount)
                        .map_err(|e| WireError::from(EnclaveError::from(e)))?;
                }
                let event = Event::BidSealed(BidSealed {
                    time: now_ms,
                    auction_id: bid.auction_id.clone(),
                    buyer: hex::encode(bid.buyer),
                    commitment: hex::encode(bid.commitment),
                    rules: None,
                });
                let unsigned = match r.log.append_unsigned(&event) {
                    Ok(u) => u,
                    Err(e) => {
                        if let Some((account, amount)) = funds {
                            r.deposits.uncommit(&account, amount);
                        }
                        return Err(EnclaveError::from(e).into());
                    }
                };
                r.book.record_bid(&key, &unsigned.leaf_hash());
                r.bids.record(&bid.commitment);
                Ok(LoggedBid::Appended {
                    auction_id: bid.auction_id.clone(),
                    commitment: bid.commitment,
                    unsigned: Box::new(unsigned),
                })
            });
            logged.push(entry.unwrap_or_else(LoggedBid::Refused));
        }
        let key = r.secrets.log_key();
        let results = par_map(logged, workers, |l| match l {
            LoggedBid::Refused(e) => BidOutcome::Refused(e),
            LoggedBid::Appended {
                auction_id,
                commitment,
                unsigned,
            } => BidOutcome::Logged {
                auction_id,
                commitment: ByteBuf::from(commitment.to_vec()),
                appended: unsigned.sign(key).into(),
            },
        });
        Response::Bids { results }
    }

    /// The open auctions whose close time has passed by the enclave clock, oldest first (at
    /// most [`MAX_CLOSES_PER_TICK`]).
    pub(super) fn tick(&mut self, now_ms: u64) -> Response {
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        Response::Due {
            auctions: r
                .book
                .due(now_ms, MAX_CLOSES_PER_TICK)
                .iter()
                .map(hex::encode)
                .collect(),
        }
    }

    /// Closes due auctions from the entries the host stored: each input must be exactly the
    /// auction's logged entries (checked against the running hash the book kept), and its
    /// sealed bids the ones committed to. Appends `auction.closed` or `auction.unsold` per
    /// auction; a refused input leaves its auction open.
    pub(super) fn close(&mut self, inputs: Vec<CloseInput>, now_ms: u64) -> Response {
        if inputs.len() > MAX_CLOSES_PER_TICK {
            return err(EnclaveError::BatchTooLarge {
                max: MAX_CLOSES_PER_TICK,
                what: "auctions",
            });
        }
        let origin = self.config.origin.clone();
        let workers = self.config.workers;
        let settlement = self.config.settlement;
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let mut results = Vec::with_capacity(inputs.len());
        for input in inputs {
            let closed = Self::close_one(r, &origin, workers, settlement.as_ref(), &input, now_ms);
            results.push(match closed {
                Ok(a) => CloseOutcome::Logged(a.into()),
                Err(e) => {
                    tracing::warn!(code = %e.code(), error = %e, "close refused");
                    CloseOutcome::Refused(e.into())
                }
            });
        }
        Response::Closed { results }
    }

    fn close_one(
        r: &mut Running,
        origin: &str,
        workers: usize,
        settlement: Option<&SettlementConfig>,
        input: &CloseInput,
        now_ms: u64,
    ) -> Result<crate::log::Appended, EnclaveError> {
        let (accepted, key, record) = logged_auction(r, input)?;
        if now_ms < record.closes_at {
            return Err(close_invalid("the auction is not due"));
        }
        let bids = open_logged_bids(r, origin, workers, &accepted.lead_id, input)?;
        Self::decide_and_log(r, origin, settlement, &accepted, key, bids, now_ms)
    }

    /// Takes back, at start-up on a settling gateway, the stored bids of open auctions
    /// (`LoadBids`): each input must be exactly the auction's logged entries, as for a close;
    /// its bids are opened and counted against their bidders' deposits. An input that is not
    /// an open auction's logged entries, or an auction given twice, is refused
    /// (`boot.bids_missing`) and the others of the request are kept.
    pub(super) fn load_bids(&mut self, inputs: &[CloseInput]) -> Response {
        if inputs.len() > MAX_CLOSES_PER_TICK {
            return err(EnclaveError::BatchTooLarge {
                max: MAX_CLOSES_PER_TICK,
                what: "auctions",
            });
        }
        if self.config.settlement.is_none() {
            return err(EnclaveError::BadState(
                "bids are given back only to a settling enclave",
            ));
        }
        let origin = self.config.origin.clone();
        let workers = self.config.workers;
        let Some(super::Restoring {
            running: r,
            bids_loaded,
            ..
        }) = self.phase.restoring()
        else {
            return err(EnclaveError::BadState(
                "bids are given back between Boot and Start",
            ));
        };
        let mut refused = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let loaded = logged_auction(r, input).and_then(|(accepted, key, record)| {
                if bids_loaded.contains_key(&key) {
                    return Err(close_invalid("given twice"));
                }
                let bids = open_logged_bids(r, &origin, workers, &accepted.lead_id, input)?;
                for b in &bids {
                    if let Some(account) = b.account {
                        r.deposits
                            .count_logged(&account.0, b.amount.units())
                            .map_err(|e| close_invalid(e.to_string()))?;
                    }
                }
                bids_loaded.insert(key, record.bids);
                Ok(())
            });
            if let Err(e) = loaded {
                refused.push(format!("auction {i}: {e}"));
            }
        }
        if refused.is_empty() {
            Response::Ok
        } else {
            err(EnclaveError::BidsMissing(refused.join("; ")))
        }
    }

    /// Decides an auction from its opened bids, in log order, and appends `auction.closed`
    /// (with the settlement, on a settling gateway) or `auction.unsold`; the auction leaves
    /// the book, its bids stop counting against deposits and the winner's price starts to.
    pub(super) fn decide_and_log(
        r: &mut Running,
        origin: &str,
        settlement: Option<&SettlementConfig>,
        accepted: &LeadAccepted,
        key: AuctionKey,
        bids: Vec<ClosingBid>,
        now_ms: u64,
    ) -> Result<crate::log::Appended, EnclaveError> {
        let id = accepted.lead_id.as_str();
        let keys: Vec<([u8; 32], Hash)> = bids.iter().map(|b| (b.buyer, b.commitment)).collect();
        let considered: Vec<&ClosingBid> =
            considered(&keys).into_iter().map(|i| &bids[i]).collect();
        let opened: Vec<OpenedBid> = considered
            .iter()
            .map(|b| OpenedBid {
                commitment: b.commitment,
                amount: b.amount,
            })
            .collect();
        let commitments: Vec<Hash> = opened.iter().map(|b| b.commitment).collect();
        let terms = accepted.auction;
        let seed = r
            .secrets
            .log_key()
            .sign(seed_message(origin, id).as_bytes())
            .to_bytes();
        let outcome = decide(&opened, terms.reserve, terms.pricing, &seed);
        let winner = match outcome {
            Outcome::Sold { winner, .. } => considered.iter().find(|b| b.commitment == winner),
            Outcome::Unsold => None,
        };
        let event = match (outcome, winner) {
            (Outcome::Sold { winner, price }, Some(b)) => Event::AuctionClosed(AuctionClosed {
                settlement: match (settlement, b.account, terms.payout) {
                    (Some(cfg), Some(buyer), Some(seller)) => {
                        Some(sign_settlement(r, cfg, key, buyer, seller, price.units())?)
                    }
                    _ => None,
                },
                time: now_ms,
                auction_id: id.to_owned(),
                winner: hex::encode(b.buyer),
                winning_commitment: hex::encode(winner),
                winner_hpke: hex::encode(b.buyer_hpke),
                price,
                reserve: terms.reserve,
                pricing: terms.pricing,
                bids: opened.len() as u64,
                commitments_root: hex::encode(commitments_root(&commitments)),
                seed: hex::encode(seed),
            }),
            _ => Event::AuctionUnsold(AuctionUnsold {
                time: now_ms,
                auction_id: id.to_owned(),
                reserve: terms.reserve,
                bids: opened.len() as u64,
                commitments_root: hex::encode(commitments_root(&commitments)),
                seed: hex::encode(seed),
            }),
        };
        let won = match (&event, winner) {
            (Event::AuctionClosed(c), Some(b)) if c.settlement.is_some() => {
                b.account.map(|a| (a.0, c.price.units()))
            }
            _ => None,
        };
        let appended = r.log.append(r.secrets.log_key(), &event)?;
        r.book.close(&key);
        // The bids counted against deposits (as logged, or given back at start-up) are free
        // now; the win is counted until a read shows it paid.
        if settlement.is_some() {
            for b in &bids {
                if let Some(a) = b.account {
                    r.deposits.uncommit(&a.0, b.amount.units());
                }
            }
            if let Some((account, price)) = won {
                r.deposits.won(account, key, price, now_ms);
            }
        }
        Ok(appended)
    }

    /// Re-seals a sold lead to its winner, from a sale proven from this epoch's log. Anyone
    /// else, anyone too early or too late, and any proof that does not verify is refused and
    /// nothing is appended.
    pub(super) fn release(
        &mut self,
        request: ReleaseRequest,
        lead: SealedLead,
        proof: SaleProof,
        now_ms: u64,
    ) -> Response {
        let origin = self.config.origin.as_str();
        let window = self.config.replay_window_ms;
        let release_window = self.config.release_window_ms;
        let escrow = self.config.escrow_chain.clone();
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let buyer = match request.verify(origin) {
            Ok(b) => b,
            Err(e) => return err(e),
        };
        if request.issued_at_ms.abs_diff(now_ms) > window {
            return err(EnclaveError::ReleaseStale);
        }
        let sale = match Self::proven_sale(r, origin, &request.lead_id, &proof) {
            Ok(s) => s,
            Err(e) => return err(e),
        };
        let (accepted, closed) = sale;
        if closed.winner != hex::encode(buyer) {
            return err(EnclaveError::ReleaseNotWinner);
        }
        if closed.time.saturating_add(release_window) <= now_ms {
            return err(EnclaveError::ReleaseExpired);
        }
        // A sale with a settlement is released only once it is paid: then its payment can no
        // longer fail (read at the confirmed block).
        if closed.settlement.is_some() {
            let Some(id) = auction_key(&request.lead_id) else {
                return err(proof_invalid("the lead id is malformed"));
            };
            let paid = match &escrow {
                Some(chain) => chain.0.settled(&id),
                None => Err("this enclave does not read the escrow".into()),
            };
            match paid {
                Ok(true) => {}
                Ok(false) => return err(EnclaveError::ReleaseUnpaid(request.lead_id.clone())),
                Err(e) => return err(EnclaveError::ChainUnavailable(e)),
            }
        }
        let (Some(ct_sha), Some(winner_hpke)) = (
            hex32(&accepted.ciphertext_sha256),
            hex32(&closed.winner_hpke),
        ) else {
            return err(proof_invalid("the sale's entries are malformed"));
        };
        // The host supplies the sealed lead; it must be the one that was accepted.
        let sub = match lead.decode() {
            Ok(d) if d.ciphertext_sha256 == ct_sha => d.verify(origin),
            _ => {
                return err(EnclaveError::ReleaseLeadMismatch(
                    "the stored submission is not the accepted lead",
                ))
            }
        };
        let plaintext = match sub.and_then(|s| open_lead(r.secrets.intake_key(), origin, &s)) {
            Ok(p) if p.len() <= MAX_LEAD_BYTES => zeroize::Zeroizing::new(p),
            _ => {
                return err(EnclaveError::ReleaseLeadMismatch(
                    "the stored submission does not open",
                ))
            }
        };
        let released =
            match ReleasedLead::seal(origin, &request.lead_id, &buyer, &winner_hpke, &plaintext) {
                Ok(s) => s,
                Err(e) => return err(e),
            };
        let sealed_sha256 = match released.sealed_sha256() {
            Ok(h) => h,
            Err(e) => return err(e),
        };
        let event = Event::LeadReleased(LeadReleased {
            time: now_ms,
            lead_id: request.lead_id.clone(),
            buyer: hex::encode(buyer),
            sealed_sha256: hex::encode(sealed_sha256),
        });
        match r.log.append(r.secrets.log_key(), &event) {
            Ok(a) => Response::Released {
                released,
                appended: a.into(),
            },
            Err(e) => err(e),
        }
    }

    /// The `lead.accepted` and `auction.closed` of lead `lead_id`, checked: the receipt is
    /// ours and of the current epoch (an earlier epoch's tree may hold entries a restart
    /// voided), and both leaves are included in its tree.
    fn proven_sale(
        r: &Running,
        origin: &str,
        lead_id: &str,
        proof: &SaleProof,
    ) -> Result<(LeadAccepted, AuctionClosed), EnclaveError> {
        let receipt = proof
            .receipt
            .verify(&r.secrets.log_key().verifying_key(), origin)
            .map_err(|e| proof_invalid(format!("receipt: {e}")))?;
        if receipt.epoch != r.log.epoch() {
            return Err(proof_invalid(format!(
                "receipt of epoch {}, not the current epoch {}",
                receipt.epoch,
                r.log.epoch()
            )));
        }
        let size = receipt.index + 1;
        let included = |p: &ProvenLeaf| -> Result<Event, EnclaveError> {
            let path =
                hashes(&p.path).ok_or_else(|| proof_invalid("a path hash is not 32 bytes"))?;
            verify_inclusion(&leaf_hash(&p.leaf), p.index, size, &path, &receipt.root)
                .map_err(|e| proof_invalid(format!("entry {}: {e}", p.index)))?;
            Event::from_leaf(&p.leaf).map_err(|e| proof_invalid(format!("entry {}: {e}", p.index)))
        };
        let accepted = match included(&proof.accepted)? {
            Event::LeadAccepted(a) if a.lead_id == lead_id => a,
            _ => {
                return Err(proof_invalid(
                    "the first entry is not this lead's lead.accepted",
                ))
            }
        };
        match included(&proof.closed)? {
            Event::AuctionClosed(c) if c.auction_id == lead_id => Ok((accepted, c)),
            Event::AuctionUnsold(u) if u.auction_id == lead_id => Err(EnclaveError::ReleaseNotSold),
            _ => Err(proof_invalid(
                "the second entry is not this auction's close",
            )),
        }
    }
}

/// The open auction `input` closes (or gives back at start-up): its `lead.accepted` must be
/// an open auction's and its `bid.sealed` entries exactly the ones the book folded in, in log
/// order.
///
/// # Errors
/// `close.invalid` (as [`EnclaveError::CloseInvalid`]) otherwise.
fn logged_auction(
    r: &Running,
    input: &CloseInput,
) -> Result<(LeadAccepted, AuctionKey, crate::auctions::OpenAuction), EnclaveError> {
    let Ok(Event::LeadAccepted(accepted)) = Event::from_leaf(&input.accepted) else {
        return Err(close_invalid("the first entry is not a lead.accepted"));
    };
    let key: AuctionKey = auction_key(&accepted.lead_id)
        .ok_or_else(|| close_invalid("the lead.accepted has a bad lead id"))?;
    let record = *r
        .book
        .get(&key)
        .ok_or_else(|| close_invalid("no open auction with this id"))?;
    let chain = input.bids.iter().fold(leaf_hash(&input.accepted), |c, b| {
        chain_next(&c, &leaf_hash(&b.leaf))
    });
    if chain != record.chain || input.bids.len() as u64 != u64::from(record.bids) {
        return Err(close_invalid(format!(
            "{} bid entries given, {} logged, or not the logged ones in log order",
            input.bids.len(),
            record.bids
        )));
    }
    Ok((accepted, key, record))
}

/// Opens the sealed bids of auction `id`'s logged entries, in log order, on `workers`
/// threads; each must open with the intake key to the commitment its `bid.sealed` names.
///
/// # Errors
/// `close.invalid` for an entry that is not a `bid.sealed` or a sealed bid that does not open.
fn open_logged_bids(
    r: &Running,
    origin: &str,
    workers: usize,
    id: &str,
    input: &CloseInput,
) -> Result<Vec<ClosingBid>, EnclaveError> {
    let intake = r.secrets.intake_key();
    let opened: Vec<Result<ClosingBid, EnclaveError>> = par_map(
        input.bids.iter().enumerate().collect(),
        workers,
        |(i, b): (usize, &leadgate_protocol::LoggedBid)| {
            let Ok(Event::BidSealed(e)) = Event::from_leaf(&b.leaf) else {
                return Err(close_invalid(format!("bid entry {i} is not a bid.sealed")));
            };
            let (Some(buyer), Some(commitment)) = (hex32(&e.buyer), hex32(&e.commitment)) else {
                return Err(close_invalid(format!("bid entry {i} is malformed")));
            };
            let content = b
                .sealed
                .decode()
                .and_then(|d| open_logged_bid(intake, origin, &d, &commitment, id, &buyer))
                .map_err(|e| close_invalid(format!("sealed bid {i}: {e}")))?;
            Ok(ClosingBid {
                buyer,
                commitment,
                amount: content.amount,
                buyer_hpke: content.buyer_hpke,
                account: content.account,
            })
        },
    );
    opened.into_iter().collect()
}

/// Reads, in one batch at one block, the deposits of those of `accounts` whose last read is
/// older than the book's read age, and applies them to the deposit book. Returns the accounts
/// whose read failed, with the error their bids are refused with.
pub(super) fn refresh_deposits(
    r: &mut Running,
    chain: &super::EscrowReader,
    accounts: impl IntoIterator<Item = [u8; 20]>,
    now_ms: u64,
) -> std::collections::HashMap<[u8; 20], WireError> {
    let mut unreadable = std::collections::HashMap::new();
    let mut wanted: Vec<([u8; 20], Vec<[u8; 16]>)> = Vec::new();
    for account in accounts {
        if wanted.iter().any(|(a, _)| *a == account) {
            continue;
        }
        if let Some(ids) = r.deposits.stale(&account, now_ms) {
            wanted.push((account, ids));
        }
    }
    if wanted.is_empty() {
        return unreadable;
    }
    match chain.0.deposits(&wanted) {
        Ok(reads) if reads.len() == wanted.len() => {
            for ((account, ids), read) in wanted.iter().zip(&reads) {
                if let Err(e) = r.deposits.apply(*account, ids, read, now_ms) {
                    unreadable.insert(*account, EnclaveError::from(e).into());
                }
            }
        }
        answer => {
            let why = match answer {
                Err(e) => e,
                Ok(_) => "a deposit read answered for other buyers".into(),
            };
            tracing::warn!(error = %why, "deposit read failed");
            for (account, _) in wanted {
                unreadable.insert(account, EnclaveError::ChainUnavailable(why.clone()).into());
            }
        }
    }
    unreadable
}

/// The settlement of auction `auction_id` sold to `buyer` for `price` token units, signed with
/// the anchor key under the configured escrow's EIP-712 domain.
fn sign_settlement(
    r: &Running,
    cfg: &SettlementConfig,
    auction_id: AuctionKey,
    buyer: EthAddress,
    seller: EthAddress,
    price: u64,
) -> Result<SignedSettlement, EnclaveError> {
    let statement = Settlement {
        auction_id,
        buyer: buyer.0,
        seller: seller.0,
        price,
        fee: cfg.fee,
    };
    let key = k256::ecdsa::SigningKey::from(r.secrets.anchor_key());
    let signature = cfg.domain.sign(&key, &statement)?;
    Ok(SignedSettlement {
        chain_id: cfg.domain.chain_id,
        escrow: EthAddress(cfg.domain.escrow),
        buyer,
        seller,
        fee_bps: cfg.fee.fee_bps,
        fee_recipient: EthAddress(cfg.fee.fee_recipient),
        signature: hex::encode(signature),
    })
}
