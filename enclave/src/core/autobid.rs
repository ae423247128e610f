//! Buyers' auto-bid rule sets: setting and cancelling them (`rules.set`, `rules.cancelled`).
//! The bids made under them are intake's (`intake.rs`); the book is [`crate::autobid`].

use std::sync::Arc;

use leadgate_protocol::Response;
use leadgate_verifier::autobid::{open_rules, RulesCancel, SealedRuleSet};
use leadgate_verifier::event::{Event, RulesCancelled, RulesSet};

use super::{err, Enclave};
use crate::error::EnclaveError;

impl Enclave {
    /// Takes a buyer's sealed rule set: signature, HPKE open and the gates' ranges, then the
    /// freshness window and the buyer's last change, then `rules.set`. The rule set replaces
    /// the buyer's active one, with a fresh daily budget, for every lead accepted after it.
    pub(super) fn set_rules(&mut self, sealed: &SealedRuleSet, now_ms: u64) -> Response {
        let origin = self.config.origin.as_str();
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let opened = sealed
            .verify(origin)
            .and_then(|v| open_rules(r.secrets.intake_key(), origin, &v).map(|rules| (v, rules)));
        let (v, rules) = match opened {
            Ok(o) => o,
            Err(e) => return err(e),
        };
        if let Err(why) = r.rules.check_change(&v.buyer, v.issued_at_ms, now_ms) {
            return err(EnclaveError::RuleRefused(why));
        }
        if rules.account.is_none() && self.config.settlement.is_some() {
            return err(leadgate_verifier::autobid::RulesError::Invalid(
                "this gateway settles sales on chain: the rule set must name its deposit account"
                    .into(),
            ));
        }
        let event = Event::RulesSet(RulesSet {
            time: now_ms,
            buyer: hex::encode(v.buyer),
            commitment: hex::encode(v.commitment),
            issued_at: v.issued_at_ms,
        });
        match r.log.append(r.secrets.log_key(), &event) {
            Ok(a) => {
                r.rules
                    .set(v.buyer, v.commitment, v.issued_at_ms, Some(Arc::new(rules)));
                Response::RulesLogged { appended: a.into() }
            }
            Err(e) => err(e),
        }
    }

    /// Takes a buyer's signed cancellation of its active rule set: `rules.cancelled`.
    pub(super) fn cancel_rules(&mut self, cancel: &RulesCancel, now_ms: u64) -> Response {
        let origin = self.config.origin.as_str();
        let Some(r) = self.phase.serving() else {
            return err(EnclaveError::NotReady);
        };
        let c = match cancel.verify(origin) {
            Ok(c) => c,
            Err(e) => return err(e),
        };
        if r.rules.active(&c.buyer).map(|a| a.commitment) != Some(c.commitment) {
            return err(EnclaveError::RuleRefused(
                crate::autobid::RuleRefusal::NotActive,
            ));
        }
        if let Err(why) = r.rules.check_change(&c.buyer, c.issued_at_ms, now_ms) {
            return err(EnclaveError::RuleRefused(why));
        }
        let event = Event::RulesCancelled(RulesCancelled {
            time: now_ms,
            buyer: hex::encode(c.buyer),
            commitment: hex::encode(c.commitment),
            issued_at: c.issued_at_ms,
        });
        match r.log.append(r.secrets.log_key(), &event) {
            Ok(a) => {
                let _ = r.rules.cancel(&c.buyer, &c.commitment, c.issued_at_ms);
                Response::RulesLogged { appended: a.into() }
            }
            Err(e) => err(e),
        }
    }
}
