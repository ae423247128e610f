//! Sealed-bid auction rules, shared by the enclave (which runs them on opened bids) and by
//! bidders and auditors (who recheck an outcome against what they know).
//!
//! * **Amounts** are integers in the smallest unit of the settlement token ([`TokenAmount`];
//!   USDC has 6 decimals, so `1_000_000` is 1 USDC), at most 2^53 − 1 so that they stay exact
//!   in I-JSON (RFC 7493) events.
//! * **Bid commitment**: SHA-256 of the sealed bid's bytes, published in `bid.sealed`; the
//!   amount is never published.
//! * **Tie-break seed**: the log key's Ed25519 signature over [`seed_message`]. Ed25519
//!   signatures are deterministic (RFC 8032 §5.1.6), so the enclave cannot pick a seed, and
//!   anyone holding the log key can check it ([`verify_seed`]).
//! * **Winner**: among bids at or above the reserve, the highest amount; ties go to the lowest
//!   [`tie_rank`] = SHA-256(seed ‖ commitment). **Price**: the winner's amount (first price) or
//!   the highest other eligible amount, at least the reserve (second price).
//! * **Considered set**: the commitments the enclave opened at close, committed to by
//!   [`commitments_root`], an RFC 6962 tree over the commitments in ascending byte order.

use crate::ErrorCode;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash};

/// Largest amount: 2^53 − 1 (exact in I-JSON numbers).
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;

/// An amount in the settlement token's smallest unit (USDC: 10^-6 USDC). Serialized as a JSON
/// integer.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct TokenAmount(u64);

impl TokenAmount {
    /// `units` of the smallest denomination.
    ///
    /// # Errors
    /// [`AuctionError::AmountTooLarge`] above [`MAX_AMOUNT`].
    pub fn new(units: u64) -> Result<Self, AuctionError> {
        if units > MAX_AMOUNT {
            return Err(AuctionError::AmountTooLarge);
        }
        Ok(Self(units))
    }

    /// The amount in smallest units.
    pub fn units(self) -> u64 {
        self.0
    }
}

/// A JSON integer from 0 to [`MAX_AMOUNT`].
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TokenAmount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(MAX_AMOUNT))
            .description(Some(
                "Amount in the settlement token's smallest unit (USDC: 6 decimals), 0 to 2^53 - 1",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TokenAmount {}

impl TryFrom<u64> for TokenAmount {
    type Error = AuctionError;
    fn try_from(units: u64) -> Result<Self, AuctionError> {
        Self::new(units)
    }
}

impl From<TokenAmount> for u64 {
    fn from(a: TokenAmount) -> u64 {
        a.0
    }
}

/// How the winner's price is set.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pricing {
    /// The winner pays its own amount (the default).
    FirstPrice,
    /// The winner pays the highest other eligible amount, at least the reserve.
    SecondPrice,
}

impl Pricing {
    /// `first_price` or `second_price` (as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Pricing::FirstPrice => "first_price",
            Pricing::SecondPrice => "second_price",
        }
    }
}

/// Errors. Codes: `auction.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuctionError {
    /// An amount above [`MAX_AMOUNT`].
    #[error("amount is above 2^53 - 1")]
    AmountTooLarge,
    /// The tie-break seed is not the log key's signature for this auction.
    #[error("tie-break seed does not verify under the log key")]
    BadSeed,
    /// The outcome contradicts a bid the checker knows.
    #[error("auction outcome is inconsistent: {0}")]
    OutcomeInconsistent(&'static str),
}

impl AuctionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuctionError::AmountTooLarge => ErrorCode::AuctionAmountTooLarge,
            AuctionError::BadSeed => ErrorCode::AuctionBadSeed,
            AuctionError::OutcomeInconsistent(_) => ErrorCode::AuctionOutcomeInconsistent,
        }
    }
}

/// The text the log key signs to make an auction's tie-break seed:
/// `leadgate.auction.seed.v1\n{origin}\n{auction_id}\n`.
pub fn seed_message(origin: &str, auction_id: &str) -> String {
    format!("leadgate.auction.seed.v1\n{origin}\n{auction_id}\n")
}

/// Checks a tie-break seed (64-byte Ed25519 signature) with `verify_strict`.
///
/// # Errors
/// [`AuctionError::BadSeed`].
pub fn verify_seed(
    log_key: &VerifyingKey,
    origin: &str,
    auction_id: &str,
    seed: &[u8; 64],
) -> Result<(), AuctionError> {
    log_key
        .verify_strict(
            seed_message(origin, auction_id).as_bytes(),
            &Signature::from_bytes(seed),
        )
        .map_err(|_| AuctionError::BadSeed)
}

/// Tie-break rank of a bid: SHA-256(seed ‖ commitment). Lower wins.
pub fn tie_rank(seed: &[u8; 64], commitment: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(commitment);
    h.finalize().into()
}

/// RFC 6962 root over the considered commitments in ascending byte order (each commitment is
/// one leaf). The empty set has the empty-tree root.
pub fn commitments_root(commitments: &[Hash]) -> Hash {
    let mut sorted = commitments.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let leaves: Vec<Hash> = sorted.iter().map(|c| merkle::leaf_hash(c)).collect();
    merkle::root_from_leaf_hashes(&leaves)
}

/// The considered bids of an auction, from its `bid.sealed` entries in log order, each given
/// as `(buyer, commitment)`: a sealed bid counts at its first entry only (a later entry with
/// the same commitment is a replay and void), and each buyer's last counting bid is
/// considered. Returns the indexes into `bids` of the considered ones, ordered by buyer.
/// The enclave closes auctions by this rule; `leadgate verify auction` recomputes it.
pub fn considered<B: Ord + Clone>(bids: &[(B, Hash)]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::with_capacity(bids.len());
    let mut last = std::collections::BTreeMap::new();
    for (i, (buyer, commitment)) in bids.iter().enumerate() {
        if seen.insert(*commitment) {
            last.insert(buyer.clone(), i);
        }
    }
    last.into_values().collect()
}

/// An opened bid: its public commitment and its secret amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedBid {
    /// SHA-256 of the sealed bid.
    pub commitment: Hash,
    /// The amount bid.
    pub amount: TokenAmount,
}

/// What an auction came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sold to the bid with commitment `winner` at `price`.
    Sold {
        /// The winning bid's commitment.
        winner: Hash,
        /// What the winner pays.
        price: TokenAmount,
    },
    /// No bid reached the reserve.
    Unsold,
}

/// Decides an auction from the considered bids (the last bid of each buyer). Independent of
/// the order of `bids`.
pub fn decide(
    bids: &[OpenedBid],
    reserve: TokenAmount,
    pricing: Pricing,
    seed: &[u8; 64],
) -> Outcome {
    let mut eligible: Vec<(TokenAmount, std::cmp::Reverse<Hash>, Hash)> = bids
        .iter()
        .filter(|b| b.amount >= reserve)
        .map(|b| {
            (
                b.amount,
                std::cmp::Reverse(tie_rank(seed, &b.commitment)),
                b.commitment,
            )
        })
        .collect();
    // Best first: highest amount, then lowest rank.
    eligible.sort_unstable_by(|a, b| b.cmp(a));
    let Some(&(amount, _, winner)) = eligible.first() else {
        return Outcome::Unsold;
    };
    let price = match pricing {
        Pricing::FirstPrice => amount,
        Pricing::SecondPrice => eligible.get(1).map_or(reserve, |b| b.0.max(reserve)),
    };
    Outcome::Sold { winner, price }
}

/// A bidder's check of an outcome against its own bid (which it knows was considered: check
/// that separately against [`commitments_root`]). The winner's amount is secret, so a
/// second-price loser who bid exactly the price cannot tell a lost tie from a lower bid; every
/// other contradiction is caught.
///
/// # Errors
/// [`AuctionError::OutcomeInconsistent`] naming the contradiction.
pub fn check_own_bid(
    own: &OpenedBid,
    outcome: &Outcome,
    reserve: TokenAmount,
    pricing: Pricing,
    seed: &[u8; 64],
) -> Result<(), AuctionError> {
    let bad = |why| Err(AuctionError::OutcomeInconsistent(why));
    match *outcome {
        Outcome::Unsold if own.amount >= reserve => bad("unsold although this bid met the reserve"),
        Outcome::Unsold => Ok(()),
        Outcome::Sold { price, .. } if price < reserve => bad("price below the reserve"),
        Outcome::Sold { winner, price } if winner == own.commitment => match pricing {
            Pricing::FirstPrice if price != own.amount => {
                bad("first price is not the winner's bid")
            }
            Pricing::SecondPrice if price > own.amount => {
                bad("second price above the winner's bid")
            }
            _ => Ok(()),
        },
        Outcome::Sold { .. } if own.amount < reserve => Ok(()),
        Outcome::Sold { price, .. } if own.amount > price => bad("a losing bid is above the price"),
        Outcome::Sold { winner, price } => {
            let lost_tie = tie_rank(seed, &winner) < tie_rank(seed, &own.commitment);
            if pricing == Pricing::FirstPrice && own.amount == price && !lost_tie {
                bad("this bid ties the winner's and wins the tie-break")
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    fn amt(u: u64) -> TokenAmount {
        TokenAmount::new(u).unwrap()
    }

    fn bid(tag: u8, amount: u64) -> OpenedBid {
        OpenedBid {
            commitment: Sha256::digest([tag]).into(),
            amount: amt(amount),
        }
    }

    fn seed(id: &str) -> [u8; 64] {
        SigningKey::from_bytes(&[9u8; 32])
            .sign(seed_message("o", id).as_bytes())
            .to_bytes()
    }

    #[test]
    fn amounts_are_capped_and_serialize_as_integers() {
        assert_eq!(
            TokenAmount::new(MAX_AMOUNT + 1),
            Err(AuctionError::AmountTooLarge)
        );
        assert_eq!(serde_json::to_string(&amt(1_500_000)).unwrap(), "1500000");
        assert!(serde_json::from_str::<TokenAmount>("9007199254740992").is_err());
        assert_eq!(
            serde_json::to_string(&Pricing::SecondPrice).unwrap(),
            "\"second_price\""
        );
    }

    #[test]
    fn seed_is_the_log_keys_signature_over_the_auction() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let s = seed("a1");
        verify_seed(&key.verifying_key(), "o", "a1", &s).unwrap();
        assert_eq!(
            verify_seed(&key.verifying_key(), "o", "a2", &s),
            Err(AuctionError::BadSeed)
        );
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(
            verify_seed(&other, "o", "a1", &s).unwrap_err().code(),
            "auction.bad_seed"
        );
    }

    #[test]
    fn highest_wins_reserve_excludes_ties_go_to_the_lowest_rank() {
        let s = seed("a");
        let bids = [bid(1, 5), bid(2, 9), bid(3, 7), bid(4, 2)];
        // (reserve, pricing, price paid by bid 2, the highest); second price with one
        // eligible bid is the reserve.
        for (reserve, pricing, price) in [
            (3, Pricing::FirstPrice, 9),
            (3, Pricing::SecondPrice, 7),
            (8, Pricing::SecondPrice, 8),
        ] {
            let want = Outcome::Sold {
                winner: bids[1].commitment,
                price: amt(price),
            };
            assert_eq!(decide(&bids, amt(reserve), pricing, &s), want);
        }
        assert_eq!(
            decide(&bids, amt(10), Pricing::FirstPrice, &s),
            Outcome::Unsold
        );
        assert_eq!(
            decide(&[], amt(0), Pricing::FirstPrice, &s),
            Outcome::Unsold
        );
        // A tie: the lower SHA-256(seed || commitment) wins, whatever the order.
        let tied = [bid(5, 9), bid(6, 9)];
        let want = if tie_rank(&s, &tied[0].commitment) < tie_rank(&s, &tied[1].commitment) {
            tied[0].commitment
        } else {
            tied[1].commitment
        };
        for order in [[tied[0], tied[1]], [tied[1], tied[0]]] {
            assert_eq!(
                decide(&order, amt(1), Pricing::SecondPrice, &s),
                Outcome::Sold {
                    winner: want,
                    price: amt(9)
                }
            );
        }
    }

    #[test]
    fn a_buyers_last_bid_counts_and_a_replayed_commitment_is_void() {
        // Buyer 1 bids c1, then c2; buyer 2 bids c3; the host replays c1 after c2.
        let bids = [(1u8, [1u8; 32]), (1, [2; 32]), (2, [3; 32]), (1, [1; 32])];
        assert_eq!(considered(&bids), vec![1, 2]);
        assert!(considered::<u8>(&[]).is_empty());
    }

    #[test]
    fn commitments_root_is_a_set_root() {
        let (a, b) = (bid(1, 0).commitment, bid(2, 0).commitment);
        assert_eq!(commitments_root(&[a, b]), commitments_root(&[b, a]));
        assert_eq!(commitments_root(&[a]), merkle::leaf_hash(&a));
        assert_ne!(commitments_root(&[a, b]), commitments_root(&[a]));
        assert_eq!(commitments_root(&[]), merkle::root_from_leaf_hashes(&[]));
    }

    #[test]
    fn tampered_outcomes_are_caught_by_some_bidder() {
        let s = seed("t");
        let bids = [bid(1, 5), bid(2, 9), bid(3, 7)];
        let r = amt(4);
        let check_all = |o: &Outcome, p| {
            bids.iter()
                .map(|b| check_own_bid(b, o, r, p, &s))
                .collect::<Result<Vec<_>, _>>()
        };
        // Wrong winner, a price under the top bid, a price under the reserve, unsold.
        let wrong = [
            Outcome::Sold {
                winner: bids[2].commitment,
                price: amt(7),
            },
            Outcome::Sold {
                winner: bids[1].commitment,
                price: amt(8),
            },
            Outcome::Sold {
                winner: bids[1].commitment,
                price: amt(3),
            },
            Outcome::Unsold,
        ];
        for o in wrong {
            assert_eq!(
                check_all(&o, Pricing::FirstPrice).unwrap_err().code(),
                "auction.outcome_inconsistent",
                "{o:?}"
            );
        }
        // Second price charged above the second bid's amount is fine for the losers but not
        // above the winner's own bid.
        let over = Outcome::Sold {
            winner: bids[1].commitment,
            price: amt(10),
        };
        assert!(check_all(&over, Pricing::SecondPrice).is_err());
    }

    proptest! {
        /// Every bidder accepts the true outcome, in any order of the bids, and a winner
        /// swapped for another eligible bidder is refused by someone.
        #[test]
        fn the_true_outcome_passes_every_bidders_check(
            amounts in proptest::collection::vec(0u64..20, 0..12),
            reserve in 0u64..20,
            second in any::<bool>(),
            id in "[a-z]{1,8}",
        ) {
            let s = seed(&id);
            let pricing = if second { Pricing::SecondPrice } else { Pricing::FirstPrice };
            let bids: Vec<OpenedBid> =
                amounts.iter().enumerate().map(|(i, &a)| bid(i as u8, a)).collect();
            let outcome = decide(&bids, amt(reserve), pricing, &s);
            let mut reversed = bids.clone();
            reversed.reverse();
            prop_assert_eq!(decide(&reversed, amt(reserve), pricing, &s), outcome);
            for b in &bids {
                prop_assert!(check_own_bid(b, &outcome, amt(reserve), pricing, &s).is_ok());
            }
            if let Outcome::Sold { winner, price } = outcome {
                for other in bids.iter().filter(|b| b.amount >= amt(reserve) && b.commitment != winner) {
                    let swapped = Outcome::Sold { winner: other.commitment, price };
                    let caught = bids
                        .iter()
                        .any(|b| check_own_bid(b, &swapped, amt(reserve), pricing, &s).is_err());
                    // Undetectable only in a second-price tie at the top, where the swap
                    // changes no one's price or verdict on amounts.
                    let top_tie = pricing == Pricing::SecondPrice && other.amount == price;
                    prop_assert!(caught || top_tie, "swap to {:?} not caught", other);
                }
            }
        }
    }
}
