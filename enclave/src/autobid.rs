//! The rule book: every buyer's active auto-bid rule set ([`leadgate_verifier::autobid`]) and
//! its budget for the day, from which the enclave bids for buyers on each accepted lead.
//!
//! What it holds, per buyer with an active rule set: the commitment and `issued_at` of its
//! `rules.set`, the opened rules, and the day and count of the bids made under it that day
//! (budgets count bids, so the count and the rule set's `max_bid` are the day's spend). Per
//! buyer who cancelled within the freshness window, the cancellation's `issued_at`, so that a
//! rule set the buyer cancelled cannot be posted again. Nothing grows with traffic: a day's
//! bids are one counter.
//!
//! Everything but the opened rules is a function of the public log (`rules.set`,
//! `rules.cancelled`, and the `rules` field of `bid.sealed`), so a restart rebuilds it from the
//! sealed state and the replayed leaves ([`crate::restore`]); the rules themselves are opened
//! again from the sealed rule sets the host stored, each checked against its logged
//! commitment, and the enclave does not start while an active rule set is missing.
//!
//! Memory: the opened rules (at most [`leadgate_verifier::autobid::MAX_RULES_PLAINTEXT`]
//! bytes of JSON each, less once parsed) plus about 100 bytes per buyer, for at most
//! `EnclaveConfig::rule_book_capacity` buyers (default [`DEFAULT_CAPACITY`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use leadgate_verifier::autobid::{budget_day, LeadFacts, Rules};
use leadgate_verifier::event::LeadAccepted;
use leadgate_verifier::merkle::Hash;

/// Default most buyers with an active rule set (or a recent cancellation).
pub const DEFAULT_CAPACITY: usize = 8_192;

/// Why a rule change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRefusal {
    /// `issued_at` is outside the freshness window.
    Stale,
    /// `issued_at` is not later than the buyer's last change.
    Replayed,
    /// The cancellation does not name the buyer's active rule set.
    NotActive,
    /// The book holds as many buyers as it may (`EnclaveConfig::rule_book_capacity`).
    Full,
}

/// A buyer's active rule set.
#[derive(Clone)]
pub struct ActiveRules {
    /// Its commitment (the `rules.set` entry's).
    pub commitment: Hash,
    /// Its `issued_at_ms`.
    pub issued_at: u64,
    /// The opened rules; `None` while a restore has not been given the sealed rule set yet.
    pub rules: Option<Arc<Rules>>,
    /// The UTC day of `bids_today` ([`budget_day`]).
    pub day: u64,
    /// Bids made under it on `day`.
    pub bids_today: u32,
}

/// A buyer's record: its active rule set, or the time of its last cancellation.
#[derive(Clone)]
enum Entry {
    Active(ActiveRules),
    Cancelled { issued_at: u64 },
}

impl Entry {
    fn issued_at(&self) -> u64 {
        match self {
            Entry::Active(a) => a.issued_at,
            Entry::Cancelled { issued_at } => *issued_at,
        }
    }
}

/// A bid the book decided to make: for `buyer`, of `rules.max_bid`, under rule set
/// `commitment`.
pub struct RuleBid {
    /// The buyer.
    pub buyer: [u8; 32],
    /// The rule set's commitment.
    pub commitment: Hash,
    /// The rules.
    pub rules: Arc<Rules>,
}

/// The rule book (see the module docs). Buyers in key order, so the bids for one lead are
/// made in the same order by every enclave.
pub struct RuleBook {
    buyers: BTreeMap<[u8; 32], Entry>,
    capacity: usize,
    window_ms: u64,
}

/// One buyer's record as the sealed state keeps it ([`crate::state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRecord {
    /// The buyer.
    pub buyer: [u8; 32],
    /// The active rule set's commitment; `None` for a cancellation.
    pub commitment: Option<Hash>,
    /// The last change's `issued_at`.
    pub issued_at: u64,
    /// Budget day.
    pub day: u64,
    /// Bids that day.
    pub bids_today: u32,
}

impl RuleBook {
    /// An empty book for at most `capacity` buyers; a change is fresh within `window_ms` of
    /// the enclave clock.
    pub fn new(capacity: usize, window_ms: u64) -> Self {
        Self {
            buyers: BTreeMap::new(),
            capacity,
            window_ms,
        }
    }

    /// Buyer `buyer`'s active rule set.
    pub fn active(&self, buyer: &[u8; 32]) -> Option<&ActiveRules> {
        match self.buyers.get(buyer) {
            Some(Entry::Active(a)) => Some(a),
            _ => None,
        }
    }

    /// Checks a change by `buyer` issued at `issued_at` against the window and the buyer's
    /// last change.
    ///
    /// # Errors
    /// [`RuleRefusal::Stale`], [`RuleRefusal::Replayed`], or [`RuleRefusal::Full`] for a new
    /// buyer when the book is full.
    pub fn check_change(
        &mut self,
        buyer: &[u8; 32],
        issued_at: u64,
        now_ms: u64,
    ) -> Result<(), RuleRefusal> {
        if issued_at.abs_diff(now_ms) > self.window_ms {
            return Err(RuleRefusal::Stale);
        }
        match self.buyers.get(buyer) {
            Some(e) if issued_at <= e.issued_at() => Err(RuleRefusal::Replayed),
            Some(_) => Ok(()),
            None => {
                self.prune(now_ms);
                if self.buyers.len() >= self.capacity {
                    Err(RuleRefusal::Full)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Drops cancellations older than the window: a change issued before then is stale.
    fn prune(&mut self, now_ms: u64) {
        let window = self.window_ms;
        self.buyers.retain(|_, e| match e {
            Entry::Active(_) => true,
            Entry::Cancelled { issued_at } => issued_at.saturating_add(window) >= now_ms,
        });
    }

    /// Makes `commitment` the buyer's active rule set (a logged `rules.set`), with a fresh
    /// budget. `rules` is `None` when replaying the log.
    pub fn set(
        &mut self,
        buyer: [u8; 32],
        commitment: Hash,
        issued_at: u64,
        rules: Option<Arc<Rules>>,
    ) {
        self.buyers.insert(
            buyer,
            Entry::Active(ActiveRules {
                commitment,
                issued_at,
                rules,
                day: 0,
                bids_today: 0,
            }),
        );
    }

    /// Cancels the buyer's active rule set `commitment` (a logged `rules.cancelled`).
    ///
    /// # Errors
    /// [`RuleRefusal::NotActive`] if it is not the buyer's active rule set.
    pub fn cancel(
        &mut self,
        buyer: &[u8; 32],
        commitment: &Hash,
        issued_at: u64,
    ) -> Result<(), RuleRefusal> {
        match self.buyers.get(buyer) {
            Some(Entry::Active(a)) if &a.commitment == commitment => {
                self.buyers.insert(*buyer, Entry::Cancelled { issued_at });
                Ok(())
            }
            _ => Err(RuleRefusal::NotActive),
        }
    }

    /// Counts a bid made under rule set `commitment` at `time_ms` (a logged `bid.sealed` with
    /// `rules`). A bid of a rule set no longer active counts for nothing.
    pub fn record_bid(&mut self, buyer: &[u8; 32], commitment: &Hash, time_ms: u64) {
        if let Some(Entry::Active(a)) = self.buyers.get_mut(buyer) {
            if &a.commitment == commitment {
                let day = budget_day(time_ms);
                if a.day != day {
                    a.day = day;
                    a.bids_today = 0;
                }
                a.bids_today = a.bids_today.saturating_add(1);
            }
        }
    }

    /// Takes back a bid counted by [`RuleBook::record_bid`] that was not logged after all.
    pub fn unrecord_bid(&mut self, buyer: &[u8; 32], commitment: &Hash) {
        if let Some(Entry::Active(a)) = self.buyers.get_mut(buyer) {
            if &a.commitment == commitment {
                a.bids_today = a.bids_today.saturating_sub(1);
            }
        }
    }

    /// The bids to make on `lead`: every active rule set that matches it and whose budget for
    /// the lead's day has room for one more `max_bid`, in buyer order. Counts nothing: call
    /// [`RuleBook::record_bid`] for each bid made.
    pub fn bids_for(&self, lead: &LeadAccepted) -> Vec<RuleBid> {
        let day = budget_day(lead.time);
        // Derived at the first rule set with budget left, so a book with none costs nothing.
        let facts = std::cell::OnceCell::new();
        self.buyers
            .iter()
            .filter_map(|(buyer, e)| match e {
                Entry::Active(a) => {
                    let rules = a.rules.as_ref()?;
                    let today = if a.day == day { a.bids_today } else { 0 };
                    (rules.budget_allows(today)
                        && rules.matches_with(lead, facts.get_or_init(|| LeadFacts::of(lead))))
                    .then(|| RuleBid {
                        buyer: *buyer,
                        commitment: a.commitment,
                        rules: rules.clone(),
                    })
                }
                Entry::Cancelled { .. } => None,
            })
            .collect()
    }

    /// Active rule sets whose rules a restore has not been given yet.
    pub fn missing(&self) -> Vec<Hash> {
        self.buyers
            .values()
            .filter_map(|e| match e {
                Entry::Active(a) if a.rules.is_none() => Some(a.commitment),
                _ => None,
            })
            .collect()
    }

    /// Gives a restore the opened rules of the buyer's active rule set `commitment`; `false`
    /// if that is not the buyer's active rule set.
    pub fn supply(&mut self, buyer: &[u8; 32], commitment: &Hash, rules: Rules) -> bool {
        match self.buyers.get_mut(buyer) {
            Some(Entry::Active(a)) if &a.commitment == commitment => {
                a.rules = Some(Arc::new(rules));
                true
            }
            _ => false,
        }
    }

    /// Every buyer's record, in buyer order, for the sealed state.
    pub fn records(&self) -> impl Iterator<Item = RuleRecord> + '_ {
        self.buyers.iter().map(|(buyer, e)| match e {
            Entry::Active(a) => RuleRecord {
                buyer: *buyer,
                commitment: Some(a.commitment),
                issued_at: a.issued_at,
                day: a.day,
                bids_today: a.bids_today,
            },
            Entry::Cancelled { issued_at } => RuleRecord {
                buyer: *buyer,
                commitment: None,
                issued_at: *issued_at,
                day: 0,
                bids_today: 0,
            },
        })
    }

    /// Buyers recorded (active or recently cancelled).
    pub fn len(&self) -> usize {
        self.buyers.len()
    }

    /// Whether no buyer is recorded.
    pub fn is_empty(&self) -> bool {
        self.buyers.is_empty()
    }

    /// Restores a record from the sealed state (its rules still to be supplied).
    pub fn insert_record(&mut self, r: RuleRecord) {
        let entry = match r.commitment {
            Some(commitment) => Entry::Active(ActiveRules {
                commitment,
                issued_at: r.issued_at,
                rules: None,
                day: r.day,
                bids_today: r.bids_today,
            }),
            None => Entry::Cancelled {
                issued_at: r.issued_at,
            },
        };
        self.buyers.insert(r.buyer, entry);
    }
}
