//! Rebuilding the auction book after a restart, without trusting the host.
//!
//! Every `log.epoch` records `replay_from`: every auction still open, and every sale whose
//! winner may still ask for its lead, began at or after that leaf. At the next boot the host
//! replays the leaves from (at most) the last epoch's `replay_from` to the tip, each
//! `bid.sealed` with its sealed bid. The enclave hashes every replayed leaf onto the frontier
//! at the start (authenticated by its own receipt of the leaf before), and `Start` succeeds
//! only if the result is exactly the tip it booted from and the last `log.epoch` among the
//! leaves asked for no earlier start. So the replay is complete: the host cannot drop a bid or
//! a close, reorder anything or change a close time without the root telling.

use ed25519_dalek::VerifyingKey;
use leadgate_verifier::bid::open_logged_bid;
use leadgate_verifier::envelope::HpkeSecret;
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::{leaf_hash, Frontier, Hash};

use crate::auctions::{AuctionBook, PlacedBid};
use crate::error::EnclaveError;
use leadgate_protocol::{RestoreBase, RestoreEntry};

fn invalid(message: impl Into<String>) -> EnclaveError {
    EnclaveError::RestoreInvalid(message.into())
}

fn hex32(s: &str) -> Result<[u8; 32], EnclaveError> {
    leadgate_verifier::bid::hex32(s).ok_or_else(|| invalid("a replayed event has a bad hash"))
}

/// A replay in progress.
pub struct Restore {
    from: u64,
    frontier: Frontier,
    last_epoch_replay_from: Option<u64>,
}

impl Restore {
    /// Starts a replay at leaf `from`; `base` must authenticate the tree of `from` leaves
    /// (none when `from` is 0).
    ///
    /// # Errors
    /// `boot.replay_invalid`.
    pub fn begin(
        from: u64,
        base: Option<RestoreBase>,
        log_key: &VerifyingKey,
        origin: &str,
    ) -> Result<Self, EnclaveError> {
        let frontier = match (from, base) {
            (0, None) => Frontier::new(),
            (0, Some(_)) => return Err(invalid("a replay from leaf 0 has no base")),
            (_, None) => return Err(invalid("a replay from leaf > 0 needs a base")),
            (_, Some(base)) => {
                let r = base
                    .receipt
                    .verify(log_key, origin)
                    .map_err(|e| invalid(format!("base receipt: {e}")))?;
                if r.index + 1 != from {
                    return Err(invalid("base receipt is not of the leaf before `from`"));
                }
                let peaks: Option<Vec<Hash>> = base
                    .peaks
                    .iter()
                    .map(|p| p.as_slice().try_into().ok())
                    .collect();
                match peaks.map(|p| Frontier::from_parts(from, p)) {
                    Some(Ok(f)) if f.root() == r.root => f,
                    _ => return Err(invalid("base frontier does not match its receipt")),
                }
            }
        };
        Ok(Self {
            from,
            frontier,
            last_epoch_replay_from: None,
        })
    }

    /// Index of the next leaf expected.
    pub fn next_index(&self) -> u64 {
        self.frontier.size()
    }

    /// Applies replayed leaves to `book`.
    ///
    /// # Errors
    /// `boot.replay_invalid` for a leaf that is not an event, or a `bid.sealed` without its
    /// sealed bid or with another one.
    pub fn apply(
        &mut self,
        entries: &[RestoreEntry],
        book: &mut AuctionBook,
        intake: &HpkeSecret,
        origin: &str,
    ) -> Result<(), EnclaveError> {
        for entry in entries {
            let index = self.frontier.size();
            self.frontier.append(leaf_hash(&entry.leaf));
            let event =
                Event::from_leaf(&entry.leaf).map_err(|e| invalid(format!("leaf {index}: {e}")))?;
            match event {
                Event::LogEpoch(e) => self.last_epoch_replay_from = Some(e.replay_from),
                Event::LeadAccepted(e) => {
                    book.open(e.lead_id, index, hex32(&e.ciphertext_sha256)?, e.auction);
                }
                Event::BidSealed(e) => {
                    let sealed = entry.bid.as_ref().ok_or_else(|| {
                        invalid(format!("leaf {index}: the sealed bid is missing"))
                    })?;
                    let buyer = hex32(&e.buyer)?;
                    let commitment = hex32(&e.commitment)?;
                    let content = sealed
                        .decode()
                        .and_then(|d| {
                            open_logged_bid(intake, origin, &d, &commitment, &e.auction_id, &buyer)
                        })
                        .map_err(|err| invalid(format!("leaf {index}: sealed bid: {err}")))?;
                    book.record_bid(
                        &e.auction_id,
                        buyer,
                        content.nonce,
                        PlacedBid {
                            commitment,
                            amount: content.amount,
                            buyer_hpke: content.buyer_hpke,
                        },
                    );
                }
                Event::AuctionClosed(e) => {
                    let winner = (hex32(&e.winner)?, hex32(&e.winner_hpke)?);
                    book.close(&e.auction_id, e.time, Some(winner));
                }
                Event::AuctionUnsold(e) => {
                    book.close(&e.auction_id, e.time, None);
                }
                Event::LeadRejected(_) | Event::LeadReleased(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the replay reached exactly `tip` and started early enough.
    ///
    /// # Errors
    /// `boot.replay_invalid`.
    pub fn finish(self, tip: &Frontier) -> Result<(), EnclaveError> {
        if self.frontier.size() != tip.size() || self.frontier.root() != tip.root() {
            return Err(invalid(format!(
                "replayed leaves end at size {} with another root than the tip ({})",
                self.frontier.size(),
                tip.size()
            )));
        }
        match self.last_epoch_replay_from {
            Some(f) if f >= self.from => Ok(()),
            Some(f) => Err(invalid(format!(
                "replay started at {} but the last epoch asked for {f}",
                self.from
            ))),
            None => Err(invalid(
                "the replay holds no log.epoch: it started too late",
            )),
        }
    }
}
