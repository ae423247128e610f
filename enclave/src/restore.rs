//! Rebuilding the enclave's state after a restart, without trusting the host.
//!
//! The state at log size `n` (the open auctions' records and the duplicate-email filter) is a
//! function of the first `n` leaves. A restore starts from a sealed state the enclave wrote
//! earlier ([`crate::state`]), or from the empty state at leaf 0, and the host then replays
//! every leaf from there to the tip. The enclave hashes each replayed leaf onto the frontier
//! it started from, and `Start` succeeds only if the result is exactly the tip it booted from.
//! So the replay is complete: the host cannot drop, add or reorder a leaf, or hand back a
//! state of another branch, without the root telling.
//!
//! Cost: one JSON parse and one leaf hash per replayed leaf, no decryption; the number of
//! leaves is what was appended since the last sealed state (see
//! `EnclaveConfig::state_interval_entries`).

use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::{leaf_hash, Frontier};

use crate::auctions::{auction_key, AuctionBook};
use crate::autobid::RuleBook;
use crate::dedup::EmailTags;
use crate::deposits::Deposits;
use crate::error::EnclaveError;
use crate::log::SignedTree;

fn invalid(message: impl Into<String>) -> EnclaveError {
    EnclaveError::RestoreInvalid(message.into())
}

/// A replay in progress.
pub struct Restore {
    from: u64,
    frontier: Frontier,
    floor: Option<SignedTree>,
}

fn fork(floor: &SignedTree) -> EnclaveError {
    EnclaveError::Fork(format!(
        "the host's log at size {} has another root than the tree {} signed at that size",
        floor.size, floor.source
    ))
}

impl Restore {
    /// Starts a replay onto the state whose frontier is `frontier` (empty for leaf 0).
    pub fn new(frontier: Frontier) -> Self {
        Self {
            from: frontier.size(),
            frontier,
            floor: None,
        }
    }

    /// Requires the replayed tree to pass through `floor` (a tree this enclave, or the log,
    /// signed): its root at `floor.size` must be `floor.root`. A state sealed past the floor
    /// is not checked here: an enclave sealed it from a tree that extended its own floor.
    ///
    /// # Errors
    /// `log.fork` when the starting state has the floor's size and another root.
    pub fn expecting(mut self, floor: Option<SignedTree>) -> Result<Self, EnclaveError> {
        if let Some(f) = &floor {
            if f.size == self.from && f.root != self.frontier.root() {
                return Err(fork(f));
            }
        }
        self.floor = floor;
        Ok(self)
    }

    /// Where the replay started: the size of the state restored (0 without one).
    pub fn from(&self) -> u64 {
        self.from
    }

    /// Index of the next leaf expected.
    pub fn next_index(&self) -> u64 {
        self.frontier.size()
    }

    /// Applies replayed leaves to `book`, `tags`, `rules` (the rule sets' commitments and
    /// budgets; their rules come with `LoadRules`) and, on a settling gateway, `deposits`
    /// (each sale with a settlement is an unpaid win until a chain read shows it paid; the
    /// open bids come with `LoadBids`).
    ///
    /// # Errors
    /// `boot.replay_invalid` for a leaf that is not an event, or whose ids or hashes are
    /// malformed, or a rule change the book cannot take; `log.fork` when the tree at the
    /// floor's size has another root.
    pub fn apply(
        &mut self,
        leaves: &[impl AsRef<[u8]>],
        book: &mut AuctionBook,
        tags: &mut EmailTags,
        rules: &mut RuleBook,
        mut deposits: Option<&mut Deposits>,
    ) -> Result<(), EnclaveError> {
        for leaf in leaves {
            let leaf = leaf.as_ref();
            let index = self.frontier.size();
            let hash = leaf_hash(leaf);
            self.frontier.append(hash);
            if let Some(f) = &self.floor {
                if f.size == self.frontier.size() && f.root != self.frontier.root() {
                    return Err(fork(f));
                }
            }
            let event =
                Event::from_leaf(leaf).map_err(|e| invalid(format!("leaf {index}: {e}")))?;
            let key = |id: &str| {
                auction_key(id).ok_or_else(|| invalid(format!("leaf {index}: bad auction id")))
            };
            match event {
                Event::LeadAccepted(e) => {
                    let tag = leadgate_verifier::bid::hex32(&e.email_tag)
                        .ok_or_else(|| invalid(format!("leaf {index}: bad email tag")))?;
                    tags.record(&tag);
                    book.open(key(&e.lead_id)?, hash, e.auction.closes_at);
                }
                Event::BidSealed(e) => {
                    book.record_bid(&key(&e.auction_id)?, &hash);
                    if let Some(c) = &e.rules {
                        let (buyer, commitment) = hex_pair(index, &e.buyer, c)?;
                        rules.record_bid(&buyer, &commitment, e.time);
                    }
                }
                Event::RulesSet(e) => {
                    let (buyer, commitment) = hex_pair(index, &e.buyer, &e.commitment)?;
                    rules.set(buyer, commitment, e.issued_at, None);
                }
                Event::RulesCancelled(e) => {
                    let (buyer, commitment) = hex_pair(index, &e.buyer, &e.commitment)?;
                    rules
                        .cancel(&buyer, &commitment, e.issued_at)
                        .map_err(|_| {
                            invalid(format!(
                                "leaf {index}: cancels a rule set that is not active"
                            ))
                        })?;
                }
                Event::AuctionClosed(e) => {
                    let id = key(&e.auction_id)?;
                    book.close(&id);
                    if let (Some(d), Some(s)) = (deposits.as_deref_mut(), &e.settlement) {
                        d.won(s.buyer.0, id, e.price.units(), e.time);
                    }
                }
                Event::AuctionUnsold(e) => {
                    book.close(&key(&e.auction_id)?);
                }
                Event::LogEpoch(_) | Event::LeadRejected(_) | Event::LeadReleased(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the replay reached exactly `tip`.
    ///
    /// # Errors
    /// `boot.replay_invalid`.
    pub fn finish(&self, tip: &Frontier) -> Result<(), EnclaveError> {
        if self.frontier.size() != tip.size() || self.frontier.root() != tip.root() {
            return Err(invalid(format!(
                "replayed leaves end at size {} with another root than the tip ({})",
                self.frontier.size(),
                tip.size()
            )));
        }
        Ok(())
    }
}

/// A buyer id and a commitment from a replayed leaf.
fn hex_pair(
    index: u64,
    buyer: &str,
    commitment: &str,
) -> Result<([u8; 32], [u8; 32]), EnclaveError> {
    use leadgate_verifier::bid::hex32;
    match (hex32(buyer), hex32(commitment)) {
        (Some(b), Some(c)) => Ok((b, c)),
        _ => Err(invalid(format!("leaf {index}: bad buyer or commitment"))),
    }
}
