//! Lead intake: a `Submit` batch in three stages: verify, open and check each lead, and seal
//! the bids its buyers' rule sets would make on it, in parallel; replay memory, duplicate
//! emails and the tree in order, then the budgets, deposits and tree for the bids made under
//! rule sets (all after the batch's leads, in lead order); receipts in parallel.

use leadgate_verifier::autobid::budget_day;
use leadgate_verifier::bid::{seal_ruled_bid, SealedBid};
use leadgate_verifier::event::{AuctionTerms, BidSealed, Event, LeadAccepted, LeadRejected};
use leadgate_verifier::intake::{open_lead, SealedLead, VerifiedSubmission, MAX_LEAD_BYTES};
use leadgate_verifier::merkle::Hash;
use serde_bytes::ByteBuf;

use crate::autobid::{RuleBid, RuleBook};
use crate::error::EnclaveError;
use crate::log::UnsignedAppend;
use crate::parallel::par_map;
use crate::replay::ReplayVerdict;
use crate::rules::{check_lead, CheckedLead, RejectReason};
use crate::secrets::Secrets;
use crate::sellers::SellerKeys;
use leadgate_protocol::{
    Response, RuledBid, SubmitOutcome, WireError, MAX_BATCH, MAX_RULED_BIDS_PER_SUBMIT,
};

use super::market::ClosingBid;
use super::{err, Enclave, EnclaveConfig, Running};

/// Rule verdict of an opened lead: checked lead and its email tag, or the rule that failed.
type RuleVerdict = Result<(CheckedLead, [u8; 32]), RejectReason>;

/// A bid a rule set would make on a lead, sealed in stage 1; stage 2 makes it if the budget,
/// the auction and the deposit still allow.
struct PreparedBid {
    bid: RuleBid,
    sealed: SealedBid,
    commitment: Hash,
}

/// A bid made under a rule set, waiting for its receipt signature.
struct PendingBid {
    auction_id: String,
    sealed: SealedBid,
    unsigned: UnsignedAppend,
    /// What an instant close of its auction needs of it.
    closing: ClosingBid,
}

/// Stage 1's result for one lead.
enum Opened {
    /// Not decodable, not signed by its seller, or asking for terms out of bounds: refused
    /// before anything else.
    BadSubmission(WireError),
    /// Signed by its seller. `verdict` is the rules' verdict, or the refusal if the ciphertext
    /// did not open to JSON (given only after the replay check, as for one lead at a time).
    Signed(Box<SignedLead>),
}

/// Stage 2's result for one lead.
enum Logged {
    /// Refused; nothing appended.
    Refused(WireError),
    /// Appended; the receipt is signed in stage 3.
    Appended(Box<PendingOutcome>),
}

/// An appended lead waiting for its receipt signature.
struct PendingOutcome {
    lead_id: String,
    accepted: bool,
    reason: Option<String>,
    score: Option<u8>,
    email_tag: Option<[u8; 32]>,
    unsigned: UnsignedAppend,
    /// An accepted instant auction: its `lead.accepted`, to close it in this request.
    instant: Option<Box<LeadAccepted>>,
    /// Its close, once appended.
    sale: Option<crate::log::Appended>,
}

impl PendingOutcome {
    /// Signs the receipt.
    fn finish(self, log_key: &ed25519_dalek::SigningKey) -> SubmitOutcome {
        SubmitOutcome::Logged {
            lead_id: self.lead_id,
            accepted: self.accepted,
            reason: self.reason,
            score: self.score,
            email_tag: self.email_tag.map(|t| ByteBuf::from(t.to_vec())),
            appended: self.unsigned.sign(log_key).into(),
            sale: self.sale.map(Into::into),
        }
    }
}

/// A lead with a valid seller signature, opened and checked.
struct SignedLead {
    sub: VerifiedSubmission,
    /// The auction it opens if accepted.
    terms: AuctionTerms,
    /// The rules' verdict, or the refusal if the ciphertext did not open to JSON.
    verdict: Result<RuleVerdict, WireError>,
    /// The bids buyers' rule sets would make if it is accepted.
    prepared: Vec<PreparedBid>,
}

/// What stage 1 needs to seal the bids of rule sets: the book and the keys.
struct RuleContext<'a> {
    book: &'a RuleBook,
    log_key: &'a ed25519_dalek::SigningKey,
    intake_public: [u8; 32],
}

/// Verifies, opens and checks one lead. Touches no mutable state.
fn open_one(
    config: &EnclaveConfig,
    secrets: &Secrets,
    sellers: &SellerKeys,
    rules: &RuleContext<'_>,
    lead: &SealedLead,
    now_ms: u64,
) -> Opened {
    let origin = config.origin.as_str();
    let year = year_of(now_ms);
    let verified = lead.decode().and_then(|d| match sellers.get(&d.seller) {
        Some(key) => d.verify_with_key(origin, key),
        None => d.verify(origin),
    });
    let sub = match verified {
        Ok(s) => s,
        Err(e) => return Opened::BadSubmission(EnclaveError::from(e).into()),
    };
    if config.settlement.is_some() && sub.auction.and_then(|a| a.payout).is_none() {
        return Opened::BadSubmission(EnclaveError::PayoutRequired.into());
    }
    let terms = match config.auction_terms(sub.auction.as_ref(), now_ms) {
        Ok(t) => t,
        Err(e) => return Opened::BadSubmission(e.into()),
    };
    let verdict = match open_lead(secrets.intake_key(), origin, &sub) {
        Err(e) => Err(EnclaveError::from(e).into()),
        Ok(p) if p.len() > MAX_LEAD_BYTES => {
            drop(zeroize::Zeroizing::new(p));
            Err(EnclaveError::LeadTooLarge.into())
        }
        Ok(p) => {
            let plaintext = zeroize::Zeroizing::new(p);
            match serde_json::from_slice::<serde_json::Value>(&plaintext) {
                Err(_) => Err(EnclaveError::LeadMalformedJson.into()),
                Ok(value) => Ok(check_lead(&value, year).map(|c| {
                    let tag = secrets.email_tag(&c.normalised_email);
                    (c, tag)
                })),
            }
        }
    };
    let prepared = match &verdict {
        Ok(Ok((c, tag))) if !rules.book.is_empty() => {
            let lead = accepted_event(&sub, &terms, c, tag, now_ms);
            prepare_bids(config, rules, &lead)
        }
        _ => Vec::new(),
    };
    Opened::Signed(Box::new(SignedLead {
        sub,
        terms,
        verdict,
        prepared,
    }))
}

/// The `lead.accepted` of a checked lead.
fn accepted_event(
    sub: &VerifiedSubmission,
    terms: &AuctionTerms,
    c: &CheckedLead,
    tag: &[u8; 32],
    now_ms: u64,
) -> LeadAccepted {
    LeadAccepted {
        time: now_ms,
        lead_id: sub.lead_id(),
        seller: hex::encode(sub.seller),
        ciphertext_sha256: hex::encode(sub.ciphertext_sha256),
        score: c.score,
        reasons: c.reasons.clone(),
        listing: c.listing.clone(),
        email_tag: hex::encode(tag),
        auction: *terms,
    }
}

/// Seals the bid of every rule set that matches `lead` and has budget left (as of the batch's
/// start), each sealed to the enclave's own intake key.
fn prepare_bids(
    config: &EnclaveConfig,
    rules: &RuleContext<'_>,
    lead: &LeadAccepted,
) -> Vec<PreparedBid> {
    rules
        .book
        .bids_for(lead)
        .into_iter()
        .filter_map(|bid| {
            let sealed = seal_ruled_bid(
                rules.log_key,
                &bid.buyer,
                &bid.rules.buyer_hpke,
                &rules.intake_public,
                &config.origin,
                &lead.lead_id,
                bid.rules.max_bid,
                bid.rules.account,
            );
            match sealed {
                Ok((sealed, commitment)) => Some(PreparedBid {
                    bid,
                    sealed,
                    commitment,
                }),
                Err(e) => {
                    tracing::error!(error = %e, "sealing a rule set's bid failed");
                    None
                }
            }
        })
        .collect()
}

/// Civil year of a Unix ms timestamp (for the `founded_year` plausibility check).
fn year_of(now_ms: u64) -> u64 {
    // Days since 1970-01-01 to civil year (Howard Hinnant's algorithm).
    let z = (now_ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2)) as u64
}

impl Enclave {
    pub(super) fn submit(&mut self, leads: &[SealedLead], now_ms: u64) -> Response {
        if leads.len() > MAX_BATCH {
            return err(EnclaveError::BatchTooLarge {
                max: MAX_BATCH,
                what: "leads",
            });
        }
        let workers = self.config.workers;
        let config = &self.config;
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        // Stage 1, in parallel: signature, HPKE open, rules, the rule sets' sealed bids. Stage
        // 2, in order: replay memory, duplicate emails and the log for every lead, then the
        // accepted leads' rule bids, then the instant closes. Refusal codes are the same as
        // checking one lead at a time.
        r.sellers.warm(leads.iter().map(|l| l.seller.as_str()));
        let context = RuleContext {
            book: &r.rules,
            log_key: r.secrets.log_key(),
            intake_public: r.secrets.intake_public(),
        };
        let opened = par_map(leads.iter().collect(), workers, |l| {
            open_one(config, &r.secrets, &r.sellers, &context, l, now_ms)
        });
        // The deposits behind the rule sets' bids, read in one batch when stale.
        let settles = config.settlement.is_some();
        let unreadable = match (&config.escrow_chain, settles) {
            (Some(chain), true) => super::market::refresh_deposits(
                r,
                chain,
                opened
                    .iter()
                    .filter_map(|o| match o {
                        Opened::Signed(s) => Some(s.prepared.iter()),
                        Opened::BadSubmission(_) => None,
                    })
                    .flatten()
                    .filter_map(|p| p.bid.rules.account.map(|a| a.0)),
                now_ms,
            ),
            _ => std::collections::HashMap::new(),
        };
        // The leads first, then the bids made for them under rule sets, so that the answer's
        // two lists are each in log order and follow on.
        let mut reserved = 0;
        let mut to_make: Vec<PreparedBid> = Vec::new();
        let mut logged: Vec<Logged> = Vec::with_capacity(opened.len());
        for o in opened {
            let prepared = match &o {
                Opened::Signed(s) => s.prepared.len(),
                Opened::BadSubmission(_) => 0,
            };
            // The answer holds at most so many rule bids: a lead that might pass it waits.
            if reserved + prepared > MAX_RULED_BIDS_PER_SUBMIT {
                logged.push(Logged::Refused(EnclaveError::BatchFull.into()));
                continue;
            }
            let (l, prepared) = Self::log_one(r, o, now_ms);
            if matches!(l, Logged::Appended(ref p) if p.accepted) {
                reserved += prepared.len();
                to_make.extend(prepared);
            }
            logged.push(l);
        }
        let bids: Vec<PendingBid> = to_make
            .into_iter()
            .filter_map(|p| Self::make_rule_bid(r, p, settles, &unreadable, now_ms))
            .collect();
        // Instant auctions close now, on the bids of rule sets just made.
        for l in &mut logged {
            let Logged::Appended(p) = l else { continue };
            let Some(lead) = p.instant.take() else {
                continue;
            };
            let Some(key) = crate::auctions::auction_key(&lead.lead_id) else {
                continue;
            };
            let closing: Vec<ClosingBid> = bids
                .iter()
                .filter(|b| b.auction_id == lead.lead_id)
                .map(|b| b.closing.clone())
                .collect();
            match Self::decide_and_log(
                r,
                &config.origin,
                config.settlement.as_ref(),
                &lead,
                key,
                closing,
                now_ms,
            ) {
                Ok(a) => p.sale = Some(a),
                // It stays in the book, due: the host's next tick closes it from the log.
                Err(e) => tracing::warn!(code = %e.code(), error = %e, "an instant close failed"),
            }
        }
        // Stage 3, in parallel: the receipts' signatures (the tree is already final).
        let key = r.secrets.log_key();
        let results = par_map(logged, workers, |l| match l {
            Logged::Appended(p) => p.finish(key),
            Logged::Refused(e) => SubmitOutcome::Refused(e),
        });
        let bids = par_map(bids, workers, |b| RuledBid {
            auction_id: b.auction_id,
            sealed: b.sealed,
            appended: b.unsigned.sign(key).into(),
        });
        Response::Submitted { results, bids }
    }

    /// Stage 2 for one bid under a rule set, right after its lead's `lead.accepted`: the
    /// budget as of now, room in the auction and the buyer's deposit, then `bid.sealed` with
    /// `rules`. `None`: not made (nothing appended or counted).
    fn make_rule_bid(
        r: &mut Running,
        p: PreparedBid,
        settles: bool,
        unreadable: &std::collections::HashMap<[u8; 20], WireError>,
        now_ms: u64,
    ) -> Option<PendingBid> {
        let buyer = p.bid.buyer;
        let active = r.rules.active(&buyer)?;
        let today = if active.day == budget_day(now_ms) {
            active.bids_today
        } else {
            0
        };
        if active.commitment != p.bid.commitment || !p.bid.rules.budget_allows(today) {
            return None;
        }
        let key = crate::auctions::auction_key(&p.sealed.auction_id)?;
        r.book.check_room(&key).ok()?;
        let amount = p.bid.rules.max_bid.units();
        let account = p.bid.rules.account.map(|a| a.0).filter(|_| settles);
        if let Some(a) = &account {
            if unreadable.contains_key(a) || r.deposits.commit(a, amount).is_err() {
                return None;
            }
        }
        let event = Event::BidSealed(BidSealed {
            time: now_ms,
            auction_id: p.sealed.auction_id.clone(),
            buyer: hex::encode(buyer),
            commitment: hex::encode(p.commitment),
            rules: Some(hex::encode(p.bid.commitment)),
        });
        let unsigned = match r.log.append_unsigned(&event) {
            Ok(u) => u,
            Err(e) => {
                if let Some(a) = &account {
                    r.deposits.uncommit(a, amount);
                }
                tracing::warn!(error = %e, "a rule set's bid was not appended");
                return None;
            }
        };
        r.book.record_bid(&key, &unsigned.leaf_hash());
        r.rules.record_bid(&buyer, &p.bid.commitment, now_ms);
        Some(PendingBid {
            auction_id: p.sealed.auction_id.clone(),
            sealed: p.sealed,
            unsigned,
            closing: ClosingBid {
                buyer,
                commitment: p.commitment,
                amount: p.bid.rules.max_bid,
                buyer_hpke: p.bid.rules.buyer_hpke,
                account: p.bid.rules.account,
            },
        })
    }

    /// Stage 2 for one lead; with the bids prepared for it.
    fn log_one(r: &mut Running, opened: Opened, now_ms: u64) -> (Logged, Vec<PreparedBid>) {
        let (signed, prepared) = match opened {
            Opened::BadSubmission(e) => return (Logged::Refused(e), Vec::new()),
            Opened::Signed(mut s) => {
                let prepared = std::mem::take(&mut s.prepared);
                (s, prepared)
            }
        };
        let logged = Self::log_one_inner(r, *signed, now_ms).unwrap_or_else(Logged::Refused);
        (logged, prepared)
    }

    /// Stage 2 for one lead: replay memory, duplicate emails, the tree. `Err` is a refusal.
    fn log_one_inner(
        r: &mut Running,
        signed: SignedLead,
        now_ms: u64,
    ) -> Result<Logged, WireError> {
        let (sub, terms, verdict) = (signed.sub, signed.terms, signed.verdict);
        match r
            .replay
            .check(&sub.ciphertext_sha256, sub.issued_at_ms, now_ms)
        {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Stale => return Err(EnclaveError::SubmissionStale.into()),
            ReplayVerdict::Replayed => return Err(EnclaveError::SubmissionReplayed.into()),
        }
        let verdict = verdict?;
        r.replay.record(&sub.ciphertext_sha256);
        let lead_id = sub.lead_id();
        let seller = hex::encode(sub.seller);
        let ciphertext_sha256 = hex::encode(sub.ciphertext_sha256);
        let verdict = verdict.and_then(|(c, tag)| {
            if r.tags.seen(&tag) {
                Err(RejectReason::DuplicateEmail)
            } else {
                Ok((c, tag))
            }
        });
        let (event, accepted, reason, score, email_tag) = match verdict {
            Ok((c, tag)) => (
                Event::LeadAccepted(LeadAccepted {
                    time: now_ms,
                    lead_id: lead_id.clone(),
                    seller,
                    ciphertext_sha256,
                    score: c.score,
                    reasons: c.reasons,
                    listing: c.listing,
                    email_tag: hex::encode(tag),
                    auction: terms,
                }),
                true,
                None,
                Some(c.score),
                Some(tag),
            ),
            Err(reason) => (
                Event::LeadRejected(LeadRejected {
                    time: now_ms,
                    lead_id: lead_id.clone(),
                    seller,
                    ciphertext_sha256,
                    reason: reason.code().to_owned(),
                }),
                false,
                Some(reason.code().to_owned()),
                None,
                None,
            ),
        };
        let unsigned = r.log.append_unsigned(&event).map_err(EnclaveError::from)?;
        if let Some(tag) = &email_tag {
            r.tags.record(tag);
            let key: [u8; 16] = sub.ciphertext_sha256[..16]
                .try_into()
                .expect("the lead id is the hash's first 16 bytes");
            r.book.open(key, unsigned.leaf_hash(), terms.closes_at);
        }
        let instant = match event {
            Event::LeadAccepted(a) if a.auction.instant => Some(Box::new(a)),
            _ => None,
        };
        Ok(Logged::Appended(Box::new(PendingOutcome {
            lead_id,
            accepted,
            reason,
            score,
            email_tag,
            unsigned,
            instant,
            sale: None,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_year() {
        assert_eq!(year_of(0), 1970);
        assert_eq!(year_of(1_700_000_000_000), 2023);
        assert_eq!(year_of(1_798_761_599_000), 2026); // 2026-12-31T23:59:59Z
        assert_eq!(year_of(1_798_761_600_000), 2027);
    }
}
