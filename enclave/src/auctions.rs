//! The auction book: one fixed-size record per open auction, and nothing for closed ones.
//!
//! The log already holds everything about an auction: its `lead.accepted` (terms, ciphertext
//! hash), its `bid.sealed` entries (commitments; the sealed bids are on the host) and its
//! close. What the enclave must remember is only what lets it catch a host that hands back
//! something else at close: for each open auction a running hash over the leaf hashes of its
//! `lead.accepted` and of every `bid.sealed` appended for it, in log order, with their count
//! and its close time ([`OpenAuction`]: 48 bytes, 64 with its key). At close the host supplies those entries
//! and the sealed bids; the enclave recomputes the hash and refuses the close unless it is
//! exactly the one it kept (see `docs/AUCTION-BOOK.md` for the argument). A sold auction
//! leaves no trace here: a release carries its entries with inclusion proofs
//! (`core/market.rs`).
//!
//! Memory: 64 bytes of key and record plus the hash table's control byte per open auction, at
//! a load factor between 7/16 and 7/8 (the table doubles when full): between 75 and 149 bytes
//! per open auction, whatever its bids.

use std::collections::HashMap;

use leadgate_verifier::merkle::Hash;
use leadgate_verifier::ErrorCode;
use sha2::{Digest, Sha256};

/// An auction id as the book keys it: the 16 bytes of the lead id's 32 hex chars.
pub type AuctionKey = [u8; 16];

/// The book's key for `id`, or `None` if `id` is not 32 lowercase hex chars.
pub fn auction_key(id: &str) -> Option<AuctionKey> {
    let mut key = [0u8; 16];
    (id.len() == 32 && !id.bytes().any(|b| b.is_ascii_uppercase()))
        .then(|| hex::decode_to_slice(id, &mut key).ok())
        .flatten()
        .map(|()| key)
}

/// The running hash after one more `bid.sealed` leaf, given its RFC 6962 leaf hash (the one
/// the log computed appending it): `SHA-256(chain ‖ bid_leaf_hash)`. The first value is the
/// `lead.accepted` leaf's leaf hash.
pub fn chain_next(chain: &Hash, bid_leaf_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(chain);
    h.update(bid_leaf_hash);
    h.finalize().into()
}

/// An open auction as the book keeps it: 48 bytes (64 with its [`AuctionKey`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAuction {
    /// The running hash over its `lead.accepted` and `bid.sealed` leaves, in log order.
    pub chain: Hash,
    /// When bidding closes, Unix ms (from its terms).
    pub closes_at: u64,
    /// `bid.sealed` entries appended for it.
    pub bids: u32,
}

/// Why a bid cannot be placed. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BidRefusal {
    /// No open auction with this id (never opened, its lead was rejected, or closed).
    Unknown,
    /// The auction's close time has passed (by the enclave clock).
    Closed,
    /// The auction holds [`leadgate_protocol::MAX_BIDS_PER_AUCTION`] bids.
    Full,
    /// The same sealed bid was taken recently ([`crate::replay::SealedBidFilter`]).
    Replayed,
}

impl BidRefusal {
    /// What it means, for the error message.
    pub fn message(self) -> &'static str {
        match self {
            BidRefusal::Unknown => "no open auction with this id",
            BidRefusal::Closed => "the auction's close time has passed",
            BidRefusal::Full => "the auction holds the most bids one auction takes",
            BidRefusal::Replayed => "this sealed bid was already taken",
        }
    }

    /// Stable code.
    pub fn code(self) -> ErrorCode {
        match self {
            BidRefusal::Unknown => ErrorCode::AuctionUnknown,
            BidRefusal::Closed => ErrorCode::AuctionClosed,
            BidRefusal::Full => ErrorCode::AuctionBidLimit,
            BidRefusal::Replayed => ErrorCode::BidReplayed,
        }
    }
}

/// The open auctions.
#[derive(Debug, Default)]
pub struct AuctionBook {
    open: HashMap<AuctionKey, OpenAuction>,
}

impl AuctionBook {
    /// Opens an auction for the `lead.accepted` whose leaf hash is `accepted_leaf_hash`,
    /// closing at `closes_at`.
    pub fn open(&mut self, key: AuctionKey, accepted_leaf_hash: Hash, closes_at: u64) {
        self.open.insert(
            key,
            OpenAuction {
                chain: accepted_leaf_hash,
                closes_at,
                bids: 0,
            },
        );
    }

    /// Checks a bid could be placed at enclave time `now_ms`, without placing it.
    ///
    /// # Errors
    /// The [`BidRefusal`].
    pub fn check_bid(&self, key: &AuctionKey, now_ms: u64) -> Result<(), BidRefusal> {
        let a = self.open.get(key).ok_or(BidRefusal::Unknown)?;
        if now_ms >= a.closes_at {
            return Err(BidRefusal::Closed);
        }
        if a.bids >= leadgate_protocol::MAX_BIDS_PER_AUCTION {
            return Err(BidRefusal::Full);
        }
        Ok(())
    }

    /// Checks the auction is open and has room for a bid, whatever the time: for the bids
    /// made under rule sets in the request that opened it (an instant auction closes at
    /// that very time).
    ///
    /// # Errors
    /// [`BidRefusal::Unknown`], [`BidRefusal::Full`].
    pub fn check_room(&self, key: &AuctionKey) -> Result<(), BidRefusal> {
        let a = self.open.get(key).ok_or(BidRefusal::Unknown)?;
        if a.bids >= leadgate_protocol::MAX_BIDS_PER_AUCTION {
            return Err(BidRefusal::Full);
        }
        Ok(())
    }

    /// Folds an appended `bid.sealed` (its leaf hash) into its auction's record. Call after
    /// [`Self::check_bid`] passed and the leaf was appended; a restore calls it directly.
    pub fn record_bid(&mut self, key: &AuctionKey, bid_leaf_hash: &Hash) {
        if let Some(a) = self.open.get_mut(key) {
            a.chain = chain_next(&a.chain, bid_leaf_hash);
            a.bids += 1;
        }
    }

    /// The record of an open auction.
    pub fn get(&self, key: &AuctionKey) -> Option<&OpenAuction> {
        self.open.get(key)
    }

    /// Keys of open auctions whose close time is at or before `now_ms`, oldest close first,
    /// at most `max`.
    pub fn due(&self, now_ms: u64, max: usize) -> Vec<AuctionKey> {
        let mut due: Vec<(u64, AuctionKey)> = self
            .open
            .iter()
            .filter(|(_, a)| a.closes_at <= now_ms)
            .map(|(k, a)| (a.closes_at, *k))
            .collect();
        due.sort_unstable();
        due.truncate(max);
        due.into_iter().map(|(_, k)| k).collect()
    }

    /// Removes a closed auction. Returns whether it was open.
    pub fn close(&mut self, key: &AuctionKey) -> bool {
        self.open.remove(key).is_some()
    }

    /// Open auctions.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Every open record, in no particular order (for sealing the state).
    pub fn iter(&self) -> impl Iterator<Item = (&AuctionKey, &OpenAuction)> {
        self.open.iter()
    }

    /// Reserves room for `n` more records (restoring a sealed state).
    pub fn reserve(&mut self, n: usize) {
        self.open.reserve(n);
    }

    /// Inserts a record as sealed (restoring a sealed state).
    pub fn insert(&mut self, key: AuctionKey, record: OpenAuction) {
        self.open.insert(key, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_verifier::merkle::leaf_hash;

    #[test]
    fn keys_are_lowercase_hex_lead_ids() {
        assert_eq!(auction_key(&"ab".repeat(16)), Some([0xab; 16]));
        assert_eq!(auction_key(&"AB".repeat(16)), None);
        assert_eq!(auction_key(&"ab".repeat(15)), None);
        assert_eq!(auction_key(&"zz".repeat(16)), None);
    }

    #[test]
    fn record_is_64_bytes() {
        assert_eq!(std::mem::size_of::<OpenAuction>(), 48);
        assert_eq!(std::mem::size_of::<(AuctionKey, OpenAuction)>(), 64);
    }

    #[test]
    fn bids_fold_into_the_chain_in_order_and_close_removes() {
        let mut book = AuctionBook::default();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let h = |leaf: &[u8]| leaf_hash(leaf);
        book.open(a, h(b"accepted a"), 100);
        book.open(b, h(b"accepted b"), 200);
        assert_eq!(book.check_bid(&[9; 16], 0), Err(BidRefusal::Unknown));
        assert_eq!(book.check_bid(&a, 100), Err(BidRefusal::Closed));
        assert_eq!(book.check_bid(&a, 99), Ok(()));
        book.record_bid(&a, &h(b"bid 1"));
        book.record_bid(&a, &h(b"bid 2"));
        let want = chain_next(&chain_next(&h(b"accepted a"), &h(b"bid 1")), &h(b"bid 2"));
        assert_eq!(book.get(&a).unwrap().chain, want);
        assert_eq!(book.get(&a).unwrap().bids, 2);
        // Order matters.
        let swapped = chain_next(&chain_next(&h(b"accepted a"), &h(b"bid 2")), &h(b"bid 1"));
        assert_ne!(want, swapped);
        assert_eq!(book.due(99, 10), Vec::<AuctionKey>::new());
        assert_eq!(book.due(250, 10), vec![a, b]);
        assert_eq!(book.due(250, 1), vec![a]);
        assert!(book.close(&a));
        assert!(!book.close(&a));
        assert_eq!(book.check_bid(&a, 0), Err(BidRefusal::Unknown));
        assert_eq!(book.open_count(), 1);
    }
}
