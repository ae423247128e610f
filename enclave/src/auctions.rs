//! The auction book: every open auction with its opened bids, and every recent sale whose
//! winner may still ask for the lead. Pure state, no keys: `core/market.rs` runs the flows
//! and appends the events; [`crate::restore`] rebuilds the book from replayed events.
//!
//! Bid amounts live only here, in enclave memory (and sealed in the host's store).

use leadgate_verifier::ErrorCode;
use std::collections::{HashMap, HashSet};

use leadgate_verifier::auction::{commitments_root, decide, OpenedBid, Outcome, TokenAmount};
use leadgate_verifier::event::AuctionTerms;
use leadgate_verifier::merkle::Hash;

/// A bid the enclave opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedBid {
    /// SHA-256 of the sealed bid.
    pub commitment: Hash,
    /// The amount.
    pub amount: TokenAmount,
    /// The buyer's HPKE public key.
    pub buyer_hpke: [u8; 32],
}

/// An open auction.
#[derive(Debug, Clone)]
pub struct OpenAuction {
    /// Leaf index of its `lead.accepted`.
    pub opened_index: u64,
    /// The lead's `ciphertext_sha256`.
    pub ciphertext_sha256: [u8; 32],
    /// Reserve, close time, pricing.
    pub terms: AuctionTerms,
    /// The last bid of each buyer.
    bids: HashMap<[u8; 32], PlacedBid>,
    /// Every nonce used in this auction.
    nonces: HashSet<[u8; 16]>,
}

/// A sold auction whose winner may still ask for the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sale {
    /// Leaf index of its `lead.accepted`.
    pub opened_index: u64,
    /// The lead's `ciphertext_sha256`.
    pub ciphertext_sha256: [u8; 32],
    /// When it closed, Unix ms.
    pub closed_at: u64,
    /// Winning buyer.
    pub winner: [u8; 32],
    /// The winner's HPKE key from its bid.
    pub winner_hpke: [u8; 32],
}

/// Why a bid cannot be placed. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidRefusal {
    /// No such auction (never opened, or its lead was rejected).
    Unknown,
    /// The auction's close time has passed (by the enclave clock).
    Closed,
    /// This nonce was used before in this auction.
    Replayed,
}

impl BidRefusal {
    /// Stable code.
    pub fn code(self) -> ErrorCode {
        match self {
            BidRefusal::Unknown => ErrorCode::AuctionUnknown,
            BidRefusal::Closed => ErrorCode::AuctionClosed,
            BidRefusal::Replayed => ErrorCode::BidReplayed,
        }
    }
}

/// An auction's decision at close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The auction's terms.
    pub terms: AuctionTerms,
    /// Winner and price, or unsold.
    pub outcome: Outcome,
    /// Winning buyer and its HPKE key (sold only).
    pub winner: Option<([u8; 32], [u8; 32])>,
    /// Number of bids considered.
    pub considered: u64,
    /// [`commitments_root`] of the considered bids.
    pub commitments_root: Hash,
}

/// Where a lead stands for release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStanding {
    /// Sold; here is the sale.
    Sold(Sale),
    /// Still open.
    Open,
    /// Not open and no sale on record (unknown, unsold, or past the release window).
    NotForRelease,
}

/// The book.
#[derive(Debug, Default)]
pub struct AuctionBook {
    open: HashMap<String, OpenAuction>,
    sold: HashMap<String, Sale>,
}

impl AuctionBook {
    /// Opens an auction for an accepted lead.
    pub fn open(&mut self, id: String, opened_index: u64, ct_sha: [u8; 32], terms: AuctionTerms) {
        self.open.insert(
            id,
            OpenAuction {
                opened_index,
                ciphertext_sha256: ct_sha,
                terms,
                bids: HashMap::new(),
                nonces: HashSet::new(),
            },
        );
    }

    /// Checks a bid could be placed at enclave time `now_ms`, without placing it.
    ///
    /// # Errors
    /// The [`BidRefusal`].
    pub fn check_bid(&self, id: &str, nonce: &[u8; 16], now_ms: u64) -> Result<(), BidRefusal> {
        let a = self.open.get(id).ok_or(if self.sold.contains_key(id) {
            BidRefusal::Closed
        } else {
            BidRefusal::Unknown
        })?;
        if now_ms >= a.terms.closes_at {
            return Err(BidRefusal::Closed);
        }
        if a.nonces.contains(nonce) {
            return Err(BidRefusal::Replayed);
        }
        Ok(())
    }

    /// Records a bid (replacing the buyer's earlier one). Call after [`Self::check_bid`]
    /// passed and the `bid.sealed` event was appended; replayed events call it directly.
    pub fn record_bid(&mut self, id: &str, buyer: [u8; 32], nonce: [u8; 16], bid: PlacedBid) {
        if let Some(a) = self.open.get_mut(id) {
            a.nonces.insert(nonce);
            a.bids.insert(buyer, bid);
        }
    }

    /// Ids of open auctions whose close time is at or before `now_ms`, oldest close first.
    pub fn due(&self, now_ms: u64) -> Vec<String> {
        let mut due: Vec<(u64, &String)> = self
            .open
            .iter()
            .filter(|(_, a)| a.terms.closes_at <= now_ms)
            .map(|(id, a)| (a.terms.closes_at, id))
            .collect();
        due.sort_unstable();
        due.into_iter().map(|(_, id)| id.clone()).collect()
    }

    /// Decides an open auction with `seed`, without changing the book.
    pub fn decide(&self, id: &str, seed: &[u8; 64]) -> Option<Decision> {
        let a = self.open.get(id)?;
        let opened: Vec<OpenedBid> = a
            .bids
            .values()
            .map(|b| OpenedBid {
                commitment: b.commitment,
                amount: b.amount,
            })
            .collect();
        let commitments: Vec<Hash> = opened.iter().map(|b| b.commitment).collect();
        let outcome = decide(&opened, a.terms.reserve, a.terms.pricing, seed);
        let winner = match outcome {
            Outcome::Sold { winner, .. } => a
                .bids
                .iter()
                .find(|(_, b)| b.commitment == winner)
                .map(|(buyer, b)| (*buyer, b.buyer_hpke)),
            Outcome::Unsold => None,
        };
        Some(Decision {
            terms: a.terms,
            outcome,
            winner,
            considered: opened.len() as u64,
            commitments_root: commitments_root(&commitments),
        })
    }

    /// Removes a closed auction from the open set; keeps the sale if `winner` is given.
    /// Returns whether the auction was open.
    pub fn close(
        &mut self,
        id: &str,
        closed_at: u64,
        winner: Option<([u8; 32], [u8; 32])>,
    ) -> bool {
        let Some(a) = self.open.remove(id) else {
            return false;
        };
        if let Some((winner, winner_hpke)) = winner {
            self.sold.insert(
                id.to_owned(),
                Sale {
                    opened_index: a.opened_index,
                    ciphertext_sha256: a.ciphertext_sha256,
                    closed_at,
                    winner,
                    winner_hpke,
                },
            );
        }
        true
    }

    /// Where lead `id` stands for release.
    pub fn release_standing(&self, id: &str) -> ReleaseStanding {
        if let Some(s) = self.sold.get(id) {
            ReleaseStanding::Sold(*s)
        } else if self.open.contains_key(id) {
            ReleaseStanding::Open
        } else {
            ReleaseStanding::NotForRelease
        }
    }

    /// Forgets sales that closed more than `window_ms` before `now_ms`.
    pub fn expire_sales(&mut self, now_ms: u64, window_ms: u64) {
        self.sold
            .retain(|_, s| s.closed_at.saturating_add(window_ms) > now_ms);
    }

    /// The first leaf a restart must replay: the smallest `opened_index` of an open auction or
    /// kept sale, or `size` if there is none.
    pub fn replay_from(&self, size: u64) -> u64 {
        self.open
            .values()
            .map(|a| a.opened_index)
            .chain(self.sold.values().map(|s| s.opened_index))
            .min()
            .unwrap_or(size)
            .min(size)
    }

    /// Open auctions.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Bids held in open auctions.
    pub fn bid_count(&self) -> usize {
        self.open.values().map(|a| a.bids.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_verifier::auction::Pricing;

    fn terms(reserve: u64, closes_at: u64) -> AuctionTerms {
        AuctionTerms {
            reserve: TokenAmount::new(reserve).unwrap(),
            closes_at,
            pricing: Pricing::FirstPrice,
        }
    }

    fn bid(c: u8, amount: u64) -> PlacedBid {
        PlacedBid {
            commitment: [c; 32],
            amount: TokenAmount::new(amount).unwrap(),
            buyer_hpke: [c; 32],
        }
    }

    #[test]
    fn bids_close_release_and_replay_point() {
        let mut book = AuctionBook::default();
        book.open("a".into(), 5, [1; 32], terms(10, 100));
        book.open("b".into(), 7, [2; 32], terms(10, 200));
        assert_eq!(book.check_bid("x", &[0; 16], 0), Err(BidRefusal::Unknown));
        assert_eq!(book.check_bid("a", &[0; 16], 100), Err(BidRefusal::Closed));
        book.record_bid("a", [1; 32], [1; 16], bid(1, 50));
        assert_eq!(book.check_bid("a", &[1; 16], 99), Err(BidRefusal::Replayed));
        // A buyer's later bid replaces its earlier one.
        book.record_bid("a", [1; 32], [2; 16], bid(2, 5));
        book.record_bid("a", [3; 32], [3; 16], bid(3, 20));
        assert_eq!(book.bid_count(), 2);
        assert_eq!(book.due(99), Vec::<String>::new());
        assert_eq!(book.due(150), vec!["a".to_owned()]);
        let d = book.decide("a", &[0; 64]).unwrap();
        assert_eq!(
            d.outcome,
            Outcome::Sold {
                winner: [3; 32],
                price: TokenAmount::new(20).unwrap()
            }
        );
        assert_eq!(d.winner, Some(([3; 32], [3; 32])));
        assert_eq!(d.considered, 2);
        assert_eq!(book.replay_from(50), 5);
        assert!(book.close("a", 150, d.winner));
        assert!(!book.close("a", 150, d.winner));
        assert_eq!(book.check_bid("a", &[9; 16], 99), Err(BidRefusal::Closed));
        assert!(
            matches!(book.release_standing("a"), ReleaseStanding::Sold(s) if s.winner == [3; 32])
        );
        assert_eq!(book.release_standing("b"), ReleaseStanding::Open);
        assert_eq!(book.replay_from(50), 5);
        book.expire_sales(150 + 1000, 1000);
        assert_eq!(book.release_standing("a"), ReleaseStanding::NotForRelease);
        assert_eq!(book.replay_from(50), 7);
        assert!(book.close("b", 300, None));
        assert_eq!(book.replay_from(50), 50);
    }
}
