//! Log events (leaves): one JSON object each, serialized with RFC 8785 canonical JSON.
//!
//! Every event has `kind` and `time` (Unix ms, enclave clock). No event type has a field for
//! personal data: lead events carry an id, the seller's public key, the ciphertext's SHA-256,
//! the verdict and the redacted listing, and `email_tag`, a keyed hash (HMAC-SHA-256 under an
//! enclave-only key) that lets anyone see two accepted leads share an email without learning it.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::auction::{Pricing, TokenAmount};
use crate::jcs::{self, JcsError};
use crate::settlement::{EthAddress, SignedSettlement};

/// Largest leaf made or accepted, in bytes. A `lead.accepted` event with maximal listing
/// fields is under 2 KiB; 8 KiB bounds parsing work on untrusted leaves, and keeps every leaf
/// inside the 65,535-byte entry of a C2SP tlog-tiles entry bundle ([`crate::tiles`]).
pub const MAX_EVENT_LEN: usize = 8 * 1024;
const _: () = assert!(MAX_EVENT_LEN <= crate::tiles::MAX_ENTRY_BYTES);

/// Errors for events. Codes: `event.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Over [`MAX_EVENT_LEN`].
    #[error("event larger than {MAX_EVENT_LEN} bytes")]
    TooLarge,
    /// Not JSON, an unknown kind, an unknown or missing field.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Valid JSON but not in RFC 8785 canonical form.
    #[error("event is not canonical JSON")]
    NotCanonical,
    /// Contains a number JCS cannot carry.
    #[error(transparent)]
    Jcs(#[from] JcsError),
}

impl EventError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            EventError::TooLarge => ErrorCode::EventTooLarge,
            EventError::Malformed(_) => ErrorCode::EventMalformed,
            EventError::NotCanonical | EventError::Jcs(_) => ErrorCode::EventNotCanonical,
        }
    }
}

/// The redacted, public part of a lead: what buyers see before they win it. Free-text fields are
/// the seller's own words about the company and role, capped at [`MAX_LISTING_FIELD`] chars.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// Industry, e.g. `HVAC`.
    pub industry: String,
    /// Sub-industry, e.g. `Heating Services`.
    pub sub_industry: String,
    /// Company region, e.g. `Austin, TX`.
    pub region: String,
    /// The contact's role, e.g. `General Manager`.
    pub role: String,
    /// `LLC`, `Corporation`, … if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_type: Option<String>,
    /// `Private`, `Public`, … if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership_type: Option<String>,
    /// Number of company locations, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_locations: Option<u64>,
    /// Year the company was founded, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub founded_year: Option<u64>,
}

/// Longest listing text field, in characters.
pub const MAX_LISTING_FIELD: usize = 120;

/// `log.epoch`: the enclave (re)started. Receipts of epoch `epoch − 1` for indexes at or above
/// `previous_size` are void: the previous epoch ended there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEpoch {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// This boot's epoch number, starting at 1.
    pub epoch: u64,
    /// Tree size at which the previous epoch ended (0 for the first).
    pub previous_size: u64,
    /// Root hash at `previous_size`, hex (64 chars).
    pub previous_root: String,
    /// The log origin.
    pub origin: String,
    /// The log key as a C2SP vkey string.
    pub log_key: String,
    /// HPKE X25519 intake public key, hex (64 chars).
    pub intake_key: String,
    /// secp256k1 anchor public key, SEC1 compressed, hex (66 chars).
    pub anchor_key: String,
    /// Where this boot's restore started: the log size of the sealed state the enclave
    /// restored (its open auctions and duplicate-email filter as of that size), or 0 when it
    /// rebuilt them from leaf 0. The enclave replayed every leaf from here to
    /// `previous_size` onto that state and checked they hash to the tip's root, so the host
    /// could not hide a bid or a close. Entries written before sealed states existed used it
    /// for the first leaf such a replay needed.
    pub replay_from: u64,
    /// The measurements of the enclave image that wrote this entry, from its own attestation
    /// document (all zeros in dev mode): the log is the history of every image that ever
    /// signed it, and `leadgate audit --pcr0` names any epoch that ran other code. Absent only
    /// in entries written before enclaves recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<EpochPcrs>,
}

/// PCR0, PCR1 and PCR2 (SHA-384, 48 bytes each, lowercase hex, 96 chars) as an enclave's
/// attestation document reports them: PCR0 the whole image, PCR1 the kernel and bootstrap,
/// PCR2 the application (AWS Nitro Enclaves User Guide, "Where to get an enclave's
/// measurements"). `leadgate pcr EIF` and the image build's `pcr.json` give the same values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochPcrs {
    /// PCR0: kernel, cmdline and both ramdisks.
    pub pcr0: String,
    /// PCR1: kernel, cmdline and AWS's bootstrap ramdisk.
    pub pcr1: String,
    /// PCR2: the customer ramdisk (the enclave binary and its settings).
    pub pcr2: String,
}

/// The auction a `lead.accepted` opens. The auction id is the lead id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionTerms {
    /// Lowest amount that can win, in the settlement token's smallest unit (USDC: 6 decimals).
    pub reserve: TokenAmount,
    /// When bidding closes, Unix ms, enclave clock.
    pub closes_at: u64,
    /// `first_price` or `second_price`.
    pub pricing: Pricing,
    /// The seller's payout address from its signed submission, which a settlement of this
    /// auction must pay; absent when the seller named none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout: Option<EthAddress>,
    /// The seller marked the lead as captured off its own site; absent when it did not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub off_site: bool,
    /// An instant auction: `closes_at` is the acceptance time, and its close follows in the
    /// same batch, right after the bids of buyers' rule sets; absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instant: bool,
}

/// `lead.accepted`: a lead passed intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadAccepted {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Lead id: hex of the first 16 bytes of `ciphertext_sha256` (32 chars).
    pub lead_id: String,
    /// Seller Ed25519 public key, hex (64 chars).
    pub seller: String,
    /// SHA-256 of `enc || ciphertext`, hex (64 chars).
    pub ciphertext_sha256: String,
    /// Score 0–100.
    pub score: u8,
    /// Score reasons, stable codes.
    pub reasons: Vec<String>,
    /// Redacted listing.
    pub listing: Listing,
    /// HMAC-SHA-256 of the normalised email under the enclave's tag key, hex (64 chars).
    pub email_tag: String,
    /// The auction this acceptance opens.
    pub auction: AuctionTerms,
}

/// `lead.rejected`: a lead failed intake; `reason` is the first rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadRejected {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Lead id, as in [`LeadAccepted::lead_id`].
    pub lead_id: String,
    /// Seller Ed25519 public key, hex.
    pub seller: String,
    /// SHA-256 of `enc || ciphertext`, hex.
    pub ciphertext_sha256: String,
    /// Intake rule code, e.g. `malformed_email`.
    pub reason: String,
}

/// `bid.sealed`: the enclave took a sealed bid. Only its commitment is public; a buyer's later
/// bid in the same auction replaces its earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BidSealed {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Auction (lead) id, 32 hex chars.
    pub auction_id: String,
    /// Buyer id (Ed25519 public key), hex (64 chars).
    pub buyer: String,
    /// SHA-256 of the sealed bid (enc ‖ ciphertext), hex (64 chars).
    pub commitment: String,
    /// Present when the enclave made the bid for the buyer under an auto-bid rule set: that
    /// rule set's commitment (its `rules.set`), hex (64 chars). The bid is of the rule set's
    /// `max_bid`, sealed by the enclave to its own intake key ([`crate::autobid`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<String>,
}

/// `rules.set`: a buyer's sealed auto-bid rule set took effect, replacing the buyer's earlier
/// one if any. Only its commitment is public ([`crate::autobid`]); it applies to every lead
/// accepted after this entry, in log order, until the buyer's next `rules.set` or
/// `rules.cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSet {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Buyer id (Ed25519 public key), hex (64 chars).
    pub buyer: String,
    /// SHA-256 of the sealed rule set (enc ‖ ciphertext), hex (64 chars).
    pub commitment: String,
    /// The rule set's `issued_at_ms` (Unix ms, buyer's clock): a buyer's changes take effect
    /// only in increasing order of it, so an old rule set cannot be posted again.
    pub issued_at: u64,
}

/// `rules.cancelled`: the buyer cancelled its active rule set; the enclave bids for it no more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesCancelled {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Buyer id, hex (64 chars).
    pub buyer: String,
    /// The cancelled rule set's commitment, hex (64 chars).
    pub commitment: String,
    /// The cancellation's `issued_at_ms` (Unix ms, buyer's clock).
    pub issued_at: u64,
}

/// `auction.closed`: the auction was sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionClosed {
    /// Unix ms, enclave clock (at or after `closes_at`).
    pub time: u64,
    /// Auction (lead) id.
    pub auction_id: String,
    /// Winning buyer id, hex (64 chars).
    pub winner: String,
    /// The winning bid's commitment, hex (64 chars).
    pub winning_commitment: String,
    /// The winner's HPKE public key from its bid, hex (64 chars): where the lead is sealed.
    pub winner_hpke: String,
    /// What the winner pays, smallest token units.
    pub price: TokenAmount,
    /// The auction's reserve.
    pub reserve: TokenAmount,
    /// The auction's pricing rule.
    pub pricing: Pricing,
    /// Number of bids considered (the last of each buyer).
    pub bids: u64,
    /// RFC 6962 root over the considered commitments, sorted ([`crate::auction::commitments_root`]), hex.
    pub commitments_root: String,
    /// Tie-break seed: the log key's Ed25519 signature over the auction's seed message, hex (128 chars).
    pub seed: String,
    /// The settlement the enclave signed for this sale, when the gateway settles on chain
    /// (`docs/settlement.md`): with `auction_id` and `price`, what `LeadEscrow.settle` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SignedSettlement>,
}

/// `auction.unsold`: no considered bid reached the reserve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionUnsold {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Auction (lead) id.
    pub auction_id: String,
    /// The auction's reserve.
    pub reserve: TokenAmount,
    /// Number of bids considered.
    pub bids: u64,
    /// RFC 6962 root over the considered commitments, hex.
    pub commitments_root: String,
    /// Tie-break seed, hex (128 chars).
    pub seed: String,
}

/// `lead.released`: the lead was sealed to its winner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadReleased {
    /// Unix ms, enclave clock.
    pub time: u64,
    /// Lead id.
    pub lead_id: String,
    /// The winning buyer id, hex.
    pub buyer: String,
    /// SHA-256(enc ‖ ciphertext) of the envelope handed to the buyer, hex.
    pub sealed_sha256: String,
}

/// A log event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Event {
    /// See [`LogEpoch`].
    #[serde(rename = "log.epoch")]
    LogEpoch(LogEpoch),
    /// See [`LeadAccepted`].
    #[serde(rename = "lead.accepted")]
    LeadAccepted(LeadAccepted),
    /// See [`LeadRejected`].
    #[serde(rename = "lead.rejected")]
    LeadRejected(LeadRejected),
    /// See [`BidSealed`].
    #[serde(rename = "bid.sealed")]
    BidSealed(BidSealed),
    /// See [`AuctionClosed`].
    #[serde(rename = "auction.closed")]
    AuctionClosed(AuctionClosed),
    /// See [`AuctionUnsold`].
    #[serde(rename = "auction.unsold")]
    AuctionUnsold(AuctionUnsold),
    /// See [`LeadReleased`].
    #[serde(rename = "lead.released")]
    LeadReleased(LeadReleased),
    /// See [`RulesSet`].
    #[serde(rename = "rules.set")]
    RulesSet(RulesSet),
    /// See [`RulesCancelled`].
    #[serde(rename = "rules.cancelled")]
    RulesCancelled(RulesCancelled),
}

impl Event {
    /// The canonical leaf bytes (RFC 8785), at most [`MAX_EVENT_LEN`].
    ///
    /// # Errors
    /// [`EventError::Jcs`] if a number is out of range; [`EventError::TooLarge`] over
    /// [`MAX_EVENT_LEN`].
    pub fn to_leaf(&self) -> Result<Vec<u8>, EventError> {
        let value = serde_json::to_value(self).map_err(|e| EventError::Malformed(e.to_string()))?;
        let leaf = jcs::to_canonical_string(&value)?.into_bytes();
        // Where leaves are made: none over the limit is ever signed or published.
        if leaf.len() > MAX_EVENT_LEN {
            return Err(EventError::TooLarge);
        }
        Ok(leaf)
    }

    /// Parses leaf bytes, requiring canonical form.
    ///
    /// # Errors
    /// Any [`EventError`].
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, EventError> {
        if bytes.len() > MAX_EVENT_LEN {
            return Err(EventError::TooLarge);
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::Malformed(e.to_string()))?;
        if jcs::to_canonical_string(&value)?.as_bytes() != bytes {
            return Err(EventError::NotCanonical);
        }
        serde_json::from_value(value).map_err(|e| EventError::Malformed(e.to_string()))
    }

    /// The event's `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::LogEpoch(_) => "log.epoch",
            Event::LeadAccepted(_) => "lead.accepted",
            Event::LeadRejected(_) => "lead.rejected",
            Event::BidSealed(_) => "bid.sealed",
            Event::AuctionClosed(_) => "auction.closed",
            Event::AuctionUnsold(_) => "auction.unsold",
            Event::LeadReleased(_) => "lead.released",
            Event::RulesSet(_) => "rules.set",
            Event::RulesCancelled(_) => "rules.cancelled",
        }
    }

    /// The event's `time`, Unix ms.
    pub fn time(&self) -> u64 {
        match self {
            Event::LogEpoch(e) => e.time,
            Event::LeadAccepted(e) => e.time,
            Event::LeadRejected(e) => e.time,
            Event::BidSealed(e) => e.time,
            Event::AuctionClosed(e) => e.time,
            Event::AuctionUnsold(e) => e.time,
            Event::LeadReleased(e) => e.time,
            Event::RulesSet(e) => e.time,
            Event::RulesCancelled(e) => e.time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted() -> Event {
        Event::LeadAccepted(LeadAccepted {
            time: 1_700_000_000_000,
            lead_id: "00".repeat(16),
            seller: "11".repeat(32),
            ciphertext_sha256: "22".repeat(32),
            score: 87,
            reasons: vec!["email_matches_website".into()],
            listing: Listing {
                industry: "HVAC".into(),
                sub_industry: "Heating".into(),
                region: "Austin, TX".into(),
                role: "Owner".into(),
                company_type: Some("LLC".into()),
                ownership_type: None,
                number_of_locations: Some(3),
                founded_year: None,
            },
            email_tag: "33".repeat(32),
            auction: AuctionTerms {
                reserve: TokenAmount::new(1_000_000).unwrap(),
                closes_at: 1_700_000_060_000,
                pricing: Pricing::SecondPrice,
                payout: None,
                off_site: false,
                instant: false,
            },
        })
    }

    /// No leaf over the limit is ever made (so every leaf fits a tile's entry bundle).
    #[test]
    fn an_event_over_the_limit_makes_no_leaf() {
        let mut e = accepted();
        if let Event::LeadAccepted(a) = &mut e {
            a.reasons = vec!["r".repeat(MAX_EVENT_LEN)];
        }
        assert_eq!(e.to_leaf(), Err(EventError::TooLarge));
        assert!(accepted().to_leaf().unwrap().len() <= MAX_EVENT_LEN);
    }

    #[test]
    fn round_trip_is_canonical_and_golden() {
        let leaf = accepted().to_leaf().unwrap();
        let text = String::from_utf8(leaf.clone()).unwrap();
        assert!(text.starts_with(r#"{"auction":{"closes_at":1700000060000,"pricing":"second_price","reserve":1000000},"ciphertext_sha256":"2222"#), "{text}");
        assert!(text.contains(r#""kind":"lead.accepted""#));
        assert!(text.contains(r#""listing":{"company_type":"LLC","industry":"HVAC","number_of_locations":3,"region":"Austin, TX","role":"Owner","sub_industry":"Heating"}"#));
        assert_eq!(Event::from_leaf(&leaf).unwrap(), accepted());
    }

    #[test]
    fn non_canonical_unknown_and_oversized_are_rejected() {
        let leaf = String::from_utf8(accepted().to_leaf().unwrap()).unwrap();
        let spaced = leaf.replacen(':', ": ", 1);
        assert_eq!(
            Event::from_leaf(spaced.as_bytes()),
            Err(EventError::NotCanonical)
        );
        let extra = leaf.replacen("{", r#"{"aaa":1,"#, 1);
        assert_eq!(
            Event::from_leaf(extra.as_bytes()).unwrap_err().code(),
            "event.malformed"
        );
        let kind = leaf.replace("lead.accepted", "lead.unknown");
        assert_eq!(
            Event::from_leaf(kind.as_bytes()).unwrap_err().code(),
            "event.malformed"
        );
        assert_eq!(
            Event::from_leaf(&vec![b' '; MAX_EVENT_LEN + 1]),
            Err(EventError::TooLarge)
        );
    }

    #[test]
    fn no_event_type_has_a_pii_field() {
        let forbidden = [
            "email",
            "name",
            "first",
            "last",
            "full_name",
            "phone",
            "phone_numbers",
            "linkedin",
            "website",
            "business",
            "amount",
            "bid_amount",
            "nonce",
        ];
        let epoch = Event::LogEpoch(LogEpoch {
            time: 0,
            epoch: 1,
            previous_size: 0,
            previous_root: String::new(),
            origin: "o".into(),
            log_key: String::new(),
            intake_key: String::new(),
            anchor_key: String::new(),
            replay_from: 0,
            pcrs: Some(EpochPcrs {
                pcr0: "00".repeat(48),
                pcr1: "00".repeat(48),
                pcr2: "00".repeat(48),
            }),
        });
        let rejected = Event::LeadRejected(LeadRejected {
            time: 0,
            lead_id: String::new(),
            seller: String::new(),
            ciphertext_sha256: String::new(),
            reason: "x".into(),
        });
        let amount = TokenAmount::new(1).unwrap();
        let bid = Event::BidSealed(BidSealed {
            time: 0,
            auction_id: String::new(),
            buyer: String::new(),
            commitment: String::new(),
            rules: None,
        });
        let closed = Event::AuctionClosed(AuctionClosed {
            time: 0,
            auction_id: String::new(),
            winner: String::new(),
            winning_commitment: String::new(),
            winner_hpke: String::new(),
            price: amount,
            reserve: amount,
            pricing: Pricing::FirstPrice,
            bids: 1,
            commitments_root: String::new(),
            seed: String::new(),
            settlement: None,
        });
        let unsold = Event::AuctionUnsold(AuctionUnsold {
            time: 0,
            auction_id: String::new(),
            reserve: amount,
            bids: 0,
            commitments_root: String::new(),
            seed: String::new(),
        });
        let released = Event::LeadReleased(LeadReleased {
            time: 0,
            lead_id: String::new(),
            buyer: String::new(),
            sealed_sha256: String::new(),
        });
        for e in [accepted(), epoch, rejected, bid, closed, unsold, released] {
            let leaf = e.to_leaf().unwrap();
            assert_eq!(
                Event::from_leaf(&leaf).unwrap(),
                e,
                "{} round trip",
                e.kind()
            );
            fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
                if let serde_json::Value::Object(m) = v {
                    for (k, v) in m {
                        out.push(k.clone());
                        keys(v, out);
                    }
                }
            }
            let mut all = Vec::new();
            keys(&serde_json::to_value(&e).unwrap(), &mut all);
            for k in all {
                assert!(!forbidden.contains(&k.as_str()), "{} has {k}", e.kind());
            }
        }
    }

    #[test]
    fn an_epoch_written_before_pcrs_were_recorded_still_parses() {
        let old = br#"{"anchor_key":"a","epoch":1,"intake_key":"i","kind":"log.epoch","log_key":"k","origin":"o","previous_root":"","previous_size":0,"replay_from":0,"time":1}"#;
        match Event::from_leaf(old).unwrap() {
            Event::LogEpoch(e) => assert_eq!(e.pcrs, None),
            other => panic!("{other:?}"),
        }
    }
}
