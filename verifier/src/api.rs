//! The gateway's HTTP API contract: the JSON body of every request and answer, as serde types.
//!
//! The host serves exactly these types, and the CLI and the tests read them, so a field cannot
//! change on one side only. With the `openapi` feature each type also derives its JSON Schema
//! (`utoipa`), from which the host builds the OpenAPI 3.1 document it serves at
//! `GET /openapi.json` (committed as `docs/openapi.json`). `docs/PROTOCOL.md` gives the
//! formats inside the fields (signed texts, AADs, encodings).
//!
//! Conventions: ids and hashes are lowercase hex (lead and auction ids 32 digits, keys and
//! hashes 64); binary blobs are standard padded base64; times are Unix ms; amounts are
//! [`TokenAmount`]s. An optional field that has no value is `null` (never left out) in an
//! answer.

use serde::{Deserialize, Serialize};

use crate::auction::{Pricing, TokenAmount};
use crate::event::Listing;
use crate::intake::SealedLead;
use crate::receipt::Receipt;
use crate::release::ReleasedLead;
use crate::ErrorCode;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Every error answer: `{"error": {"code", "message"}}`, with the HTTP status of
/// [`ErrorCode::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The content of an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable code (`area.condition`).
    pub code: ErrorCode,
    /// For people; may change between releases.
    pub message: String,
}

/// `GET /attest?nonce=<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AttestAnswer {
    /// The attestation document (COSE_Sign1), base64.
    pub document: String,
    /// The log's origin.
    pub origin: String,
}

/// A submission's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Logged as `lead.accepted`; an auction is open.
    Accepted,
    /// Logged as `lead.rejected` with a reason.
    Rejected,
}

/// `POST /v1/leads` (and each logged entry of a batch): the enclave's verdict and the receipt
/// of the entry that records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitAnswer {
    /// Accepted or rejected.
    pub verdict: Verdict,
    /// The rejection reason (`missing_required`, …); `null` when accepted.
    pub reason: Option<String>,
    /// The score 0–100; `null` when rejected.
    pub score: Option<u8>,
    /// Lead id, 32 hex digits (the first 16 bytes of `ciphertext_sha256`).
    pub lead_id: String,
    /// Leaf index of the entry.
    pub index: u64,
    /// The entry's signed receipt.
    pub receipt: Receipt,
    /// An accepted instant auction's outcome, decided within this request; absent for other
    /// leads, and in the answer to a retried submission (then see `GET /v1/auctions/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale: Option<Box<InstantSale>>,
}

/// An instant auction's outcome (docs/PROTOCOL.md §4, "Instant sale"): its close entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstantSale {
    /// `sold` or `unsold`.
    pub status: AuctionStatus,
    /// Leaf index of its `auction.closed` or `auction.unsold`.
    pub index: u64,
    /// That entry's signed receipt.
    pub receipt: Receipt,
    /// The winning buyer id (64 hex digits); `null` when unsold.
    pub winner: Option<String>,
    /// The price, token units; `null` when unsold.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub price: Option<TokenAmount>,
    /// Bids considered (all made under buyers' rule sets).
    pub bids: u64,
    /// The signed settlement, on a gateway that settles on chain.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub settlement: Option<crate::settlement::SignedSettlement>,
}

/// `POST /v1/leads/batch` request: 1 to 256 sealed leads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The sealed leads, queued in this order.
    pub leads: Vec<SealedLead>,
}

/// `POST /v1/leads/batch` answer: one result per lead, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchAnswer {
    /// The results.
    pub results: Vec<BatchResult>,
}

/// One lead's result in a [`BatchAnswer`]: its answer, or the error it alone got (the code
/// carries the status it would have had).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(untagged)]
pub enum BatchResult {
    /// Logged.
    Logged(SubmitAnswer),
    /// Refused or failed.
    Error(ErrorBody),
}

/// `GET /v1/leads/{lead_id}`: a stored verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeadRecord {
    /// Lead id, 32 hex digits.
    pub lead_id: String,
    /// Seller public key, 64 hex digits.
    pub seller: String,
    /// Accepted or rejected.
    pub verdict: Verdict,
    /// Rejection reason; `null` when accepted.
    pub reason: Option<String>,
    /// Score; `null` when rejected.
    pub score: Option<u8>,
    /// Leaf index.
    pub index: u64,
    /// The signed receipt.
    pub receipt: Receipt,
}

/// Where an auction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuctionStatus {
    /// Taking bids.
    Open,
    /// Closed with a winner (`auction.closed`).
    Sold,
    /// Closed without one (`auction.unsold`).
    Unsold,
}

impl AuctionStatus {
    /// `open`, `sold` or `unsold`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuctionStatus::Open => "open",
            AuctionStatus::Sold => "sold",
            AuctionStatus::Unsold => "unsold",
        }
    }

    /// The status named `s`, if any.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "open" => Some(AuctionStatus::Open),
            "sold" => Some(AuctionStatus::Sold),
            "unsold" => Some(AuctionStatus::Unsold),
            _ => None,
        }
    }
}

/// An auction as listed: every field comes from public log entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Auction {
    /// Auction id = lead id, 32 hex digits.
    pub auction_id: String,
    /// Leaf index of its `lead.accepted`.
    pub open_index: u64,
    /// The redacted listing.
    pub listing: Listing,
    /// Score 0–100.
    pub score: u8,
    /// Reserve.
    pub reserve: TokenAmount,
    /// Close time, Unix ms (enclave clock).
    pub closes_at: u64,
    /// First or second price.
    pub pricing: Pricing,
    /// Open, sold or unsold.
    pub status: AuctionStatus,
    /// Leaf index of its `auction.closed` or `auction.unsold`; `null` while open.
    pub close_index: Option<u64>,
    /// Winning buyer id, 64 hex digits; `null` unless sold.
    pub winner: Option<String>,
    /// The winner's price; `null` unless sold.
    pub price: Option<TokenAmount>,
    /// Bids considered at close; `null` while open.
    pub bids: Option<u64>,
}

/// `GET /v1/auctions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuctionList {
    /// The page, soonest close first.
    pub auctions: Vec<Auction>,
}

/// A `bid.sealed` entry of an auction (never its amount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BidEntry {
    /// Leaf index.
    pub index: u64,
    /// Buyer id, 64 hex digits.
    pub buyer: String,
    /// SHA-256(enc ‖ ciphertext) of the sealed bid, 64 hex digits.
    pub commitment: String,
}

/// `GET /v1/auctions/{id}`: the auction and its bid entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuctionDetail {
    /// The auction.
    #[serde(flatten)]
    pub auction: Auction,
    /// Its `bid.sealed` entries, in log order.
    pub bid_entries: Vec<BidEntry>,
}

/// `POST /v1/bids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BidAnswer {
    /// Auction id.
    pub auction_id: String,
    /// The bid's commitment, 64 hex digits.
    pub commitment: String,
    /// Leaf index of its `bid.sealed`.
    pub index: u64,
    /// The entry's signed receipt.
    pub receipt: Receipt,
}

/// `POST /v1/rules` and `POST /v1/rules/cancel`: the logged rule change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RulesAnswer {
    /// Buyer id, 64 hex digits.
    pub buyer: String,
    /// The rule set's commitment, 64 hex digits.
    pub commitment: String,
    /// Leaf index of its `rules.set` or `rules.cancelled`.
    pub index: u64,
    /// The entry's signed receipt.
    pub receipt: Receipt,
}

/// One logged rule change of a buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleChangeEntry {
    /// Leaf index.
    pub index: u64,
    /// `rules.set` or `rules.cancelled`.
    pub kind: String,
    /// The rule set's commitment, 64 hex digits.
    pub commitment: String,
}

/// `GET /v1/rules/{buyer}`: the buyer's logged rule changes, oldest first, and its active rule
/// set's commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleChanges {
    /// Buyer id.
    pub buyer: String,
    /// The active rule set's commitment, if any.
    pub active: Option<String>,
    /// Every change, oldest first.
    pub changes: Vec<RuleChangeEntry>,
}

/// `POST /v1/leads/{lead_id}/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReleaseAnswer {
    /// Lead id.
    pub lead_id: String,
    /// Leaf index of its `lead.released`.
    pub index: u64,
    /// The entry's signed receipt.
    pub receipt: Receipt,
    /// The lead sealed to the winner's HPKE key.
    pub released: ReleasedLead,
}

/// What an anchor's transaction has come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AnchorState {
    /// Not sent yet.
    Pending,
    /// Sent, not yet mined.
    Sent,
    /// Mined.
    Anchored,
    /// A later checkpoint was anchored first; this one is not needed.
    Superseded,
    /// The chain holds another root for this size.
    Conflict,
}

/// One anchor as the host records it (auditors check the chain itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnchorStatus {
    /// Tree size.
    pub size: u64,
    /// Root hash, 64 hex digits.
    pub root: String,
    /// Where its transaction stands.
    pub state: AnchorState,
    /// `0x`-prefixed transaction hash (32 bytes), once sent.
    pub tx_hash: Option<String>,
    /// Block of the anchoring transaction.
    pub block_number: Option<u64>,
    /// Gas the anchoring transaction used.
    pub gas_used: Option<u64>,
    /// Failed attempts so far.
    pub attempts: u64,
    /// The last failure (RPC or revert text).
    pub last_error: Option<String>,
    /// The enclave's 65-byte EIP-712 signature, hex: anyone may submit the anchor with it.
    pub signature: String,
}

/// `GET /v1/anchors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AnchorList {
    /// Every anchor, by size.
    pub anchors: Vec<AnchorStatus>,
}

/// What a settlement's submission has come to (`docs/settlement.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SettlementState {
    /// Logged, not submitted yet (or submitted and refused for a reason that may pass, such
    /// as a balance short of the price: retried).
    Pending,
    /// The host's transaction is sent and not yet mined.
    Sent,
    /// The escrow records the auction as paid (`LeadEscrow.settled`), by the host's
    /// transaction or anyone else's.
    Settled,
    /// The escrow will never pay this signature: it names another escrow or chain than the
    /// host's, or its signer is no longer the anchor's key. Not retried.
    Failed,
}

/// One logged settlement and where its payment stands, as the host records it. The
/// settlement itself is public in the log (the `auction.closed` at `close_index`), so a
/// seller can check the chain and submit it without this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SettlementStatus {
    /// Auction (lead) id, 32 hex digits.
    pub auction_id: String,
    /// Leaf index of the `auction.closed` that carries the settlement.
    pub close_index: u64,
    /// When the auction closed: Unix ms, enclave clock.
    pub closed_ms: u64,
    /// EIP-155 chain id of the escrow.
    pub chain_id: u64,
    /// The `LeadEscrow` contract, `0x` + 40 hex digits.
    pub escrow: String,
    /// The winner's deposit address, `0x` + 40 hex digits.
    pub buyer: String,
    /// The seller's payout address, `0x` + 40 hex digits.
    pub seller: String,
    /// The price, smallest token units.
    pub price: TokenAmount,
    /// The fee, basis points of the price.
    pub fee_bps: u16,
    /// Who is credited the fee (the zero address when there is none).
    pub fee_recipient: String,
    /// The anchor key's EIP-712 signature, 65 bytes as 130 hex digits.
    pub signature: String,
    /// Where the payment stands.
    pub state: SettlementState,
    /// `0x`-prefixed hash (32 bytes) of the host's transaction, once sent; none when another
    /// submitter paid it first.
    pub tx_hash: Option<String>,
    /// Block of the host's settling transaction, once mined.
    pub block_number: Option<u64>,
    /// Gas the host's settling transaction used.
    pub gas_used: Option<u64>,
    /// Failed attempts so far.
    pub attempts: u64,
    /// The last failure (RPC text or the escrow's revert), if any.
    pub last_error: Option<String>,
    /// When the host saw it paid: Unix ms, host clock.
    pub settled_ms: Option<u64>,
}

/// `GET /v1/epochs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EpochList {
    /// The leaf index of every `log.epoch`, ascending.
    pub epochs: Vec<u64>,
}

/// `GET /v1/proof/inclusion`: an RFC 9162 §2.1.3 inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// Leaf index.
    pub index: u64,
    /// Tree size.
    pub size: u64,
    /// The proof's hashes, 64 hex digits each.
    pub proof: Vec<String>,
}

/// `GET /v1/proof/consistency`: an RFC 9162 §2.1.4 consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub from: u64,
    /// The newer tree size.
    pub to: u64,
    /// The proof's hashes, 64 hex digits each.
    pub proof: Vec<String>,
}

/// Whether the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving.
    Ok,
    /// Not serving writes; `reason` says why.
    Degraded,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Ok or degraded.
    pub status: HealthStatus,
    /// Stored log size as of the last commit.
    pub size: u64,
    /// Whether the enclave link is up.
    pub enclave: bool,
    /// The fault, when degraded; `null` otherwise.
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_results_tell_answers_from_errors() {
        let v = serde_json::json!({"results": [
            {"error": {"code": "submission.stale", "message": "old"}},
        ]});
        let b: BatchAnswer = serde_json::from_value(v).unwrap();
        assert_eq!(
            b.results,
            vec![BatchResult::Error(ErrorBody {
                error: ErrorDetail {
                    code: ErrorCode::SubmissionStale,
                    message: "old".into()
                }
            })]
        );
        // An unknown code is not an error body of this protocol.
        let v = serde_json::json!({"results": [{"error": {"code": "nope", "message": ""}}]});
        assert!(serde_json::from_value::<BatchAnswer>(v).is_err());
    }

    #[test]
    fn null_fields_are_written_not_left_out() {
        let h = Health {
            status: HealthStatus::Ok,
            size: 3,
            enclave: true,
            reason: None,
        };
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"status":"ok","size":3,"enclave":true,"reason":null}"#
        );
    }
}
