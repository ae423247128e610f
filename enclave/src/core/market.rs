//! The auction flows of the enclave: sealed bids, closing on the enclave's clock, and the
//! winner-only release. The book they work on is [`crate::auctions`].

use ed25519_dalek::Signer as _;
use leadgate_verifier::auction::{seed_message, Outcome};
use leadgate_verifier::bid::{open_bid, OpenedBidContent, SealedBid, VerifiedBid};
use leadgate_verifier::event::{AuctionClosed, AuctionUnsold, BidSealed, Event, LeadReleased};
use leadgate_verifier::intake::{open_lead, SealedLead, MAX_LEAD_BYTES};
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use serde_bytes::ByteBuf;

use super::{err, Enclave};
use crate::auctions::{PlacedBid, ReleaseStanding};
use crate::error::EnclaveError;
use crate::log::UnsignedAppend;
use crate::parallel::par_map;
use leadgate_protocol::{BidOutcome, Response, WireError, MAX_BIDS};

/// Stage 2's result for one bid.
enum LoggedBid {
    Refused(WireError),
    Appended {
        auction_id: String,
        commitment: [u8; 32],
        unsigned: Box<UnsignedAppend>,
    },
}

impl Enclave {
    /// Takes sealed bids: signature and HPKE open in parallel, then in order the auction
    /// checks (open by the enclave clock, nonce unused) and `bid.sealed`, then the receipts.
    pub(super) fn bid(&mut self, bids: &[SealedBid], now_ms: u64) -> Response {
        if bids.len() > MAX_BIDS {
            return err(EnclaveError::BatchTooLarge {
                max: MAX_BIDS,
                what: "bids",
            });
        }
        let origin = self.config.origin.as_str();
        let workers = self.config.workers;
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let intake = r.secrets.intake_key();
        let opened: Vec<Result<(VerifiedBid, OpenedBidContent), WireError>> =
            par_map(bids.iter().collect(), workers, |b: &SealedBid| {
                let v = b.verify(origin)?;
                let c = open_bid(intake, origin, &v)?;
                Ok((v, c))
            })
            .into_iter()
            .map(|r| r.map_err(|e: leadgate_verifier::bid::BidError| EnclaveError::from(e).into()))
            .collect();
        let mut logged = Vec::with_capacity(opened.len());
        for o in opened {
            let entry = o.and_then(|(bid, content)| {
                r.book
                    .check_bid(&bid.auction_id, &content.nonce, now_ms)
                    .map_err(|why| WireError::from(EnclaveError::from(why)))?;
                let event = Event::BidSealed(BidSealed {
                    time: now_ms,
                    auction_id: bid.auction_id.clone(),
                    buyer: hex::encode(bid.buyer),
                    commitment: hex::encode(bid.commitment),
                });
                let unsigned = r
                    .log
                    .append_unsigned(&event)
                    .map_err(|e| WireError::from(EnclaveError::from(e)))?;
                r.book.record_bid(
                    &bid.auction_id,
                    bid.buyer,
                    content.nonce,
                    PlacedBid {
                        commitment: bid.commitment,
                        amount: content.amount,
                        buyer_hpke: content.buyer_hpke,
                    },
                );
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

    /// Closes every auction whose close time has passed by the enclave clock (at most
    /// [`leadgate_protocol::MAX_CLOSES_PER_TICK`]), appending `auction.closed` or `auction.unsold`.
    pub(super) fn tick(&mut self, now_ms: u64) -> Response {
        let origin = self.config.origin.clone();
        let window = self.config.release_window_ms;
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        r.book.expire_sales(now_ms, window);
        let mut closed = Vec::new();
        for id in r
            .book
            .due(now_ms)
            .into_iter()
            .take(leadgate_protocol::MAX_CLOSES_PER_TICK)
        {
            let seed = r
                .secrets
                .log_key()
                .sign(seed_message(&origin, &id).as_bytes())
                .to_bytes();
            let Some(d) = r.book.decide(&id, &seed) else {
                continue;
            };
            let terms = d.terms;
            let event = match (d.outcome, d.winner) {
                (Outcome::Sold { winner, price }, Some((buyer, hpke))) => {
                    Event::AuctionClosed(AuctionClosed {
                        time: now_ms,
                        auction_id: id.clone(),
                        winner: hex::encode(buyer),
                        winning_commitment: hex::encode(winner),
                        winner_hpke: hex::encode(hpke),
                        price,
                        reserve: terms.reserve,
                        pricing: terms.pricing,
                        bids: d.considered,
                        commitments_root: hex::encode(d.commitments_root),
                        seed: hex::encode(seed),
                    })
                }
                _ => Event::AuctionUnsold(AuctionUnsold {
                    time: now_ms,
                    auction_id: id.clone(),
                    reserve: terms.reserve,
                    bids: d.considered,
                    commitments_root: hex::encode(d.commitments_root),
                    seed: hex::encode(seed),
                }),
            };
            match r.log.append(r.secrets.log_key(), &event) {
                Ok(a) => {
                    r.book.close(&id, now_ms, d.winner);
                    closed.push(a.into());
                }
                Err(e) => return err(e),
            }
        }
        Response::Ticked { closed }
    }

    /// Re-seals a sold lead to its winner. Anyone else, or anyone too early, is refused and
    /// nothing is appended.
    pub(super) fn release(
        &mut self,
        request: ReleaseRequest,
        lead: SealedLead,
        now_ms: u64,
    ) -> Response {
        let origin = self.config.origin.as_str();
        let window = self.config.replay_window_ms;
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
        let sale = match r.book.release_standing(&request.lead_id) {
            ReleaseStanding::Open => return err(EnclaveError::ReleaseNotClosed),
            ReleaseStanding::NotForRelease => return err(EnclaveError::ReleaseNotSold),
            ReleaseStanding::Sold(s) if s.winner != buyer => {
                return err(EnclaveError::ReleaseNotWinner)
            }
            ReleaseStanding::Sold(s) => s,
        };
        // The host supplies the sealed lead; it must be the one that was accepted.
        let sub = match lead.decode() {
            Ok(d) if d.ciphertext_sha256 == sale.ciphertext_sha256 => d.verify(origin),
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
        let released = match ReleasedLead::seal(
            origin,
            &request.lead_id,
            &buyer,
            &sale.winner_hpke,
            &plaintext,
        ) {
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
}
