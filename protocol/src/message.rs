//! The messages: [`Request`]s from host to enclave and [`Response`]s back, with what they carry.

use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::receipt::Receipt;
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use leadgate_verifier::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::credentials::AwsCredentials;
use serde_bytes::ByteBuf;

/// What the host stores beside a journal entry's leaf, besides the receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalRecord {
    /// Nothing (`log.epoch`, `auction.closed`, `auction.unsold`).
    None,
    /// The seller's sealed submission of a `lead.accepted` or `lead.rejected`.
    Lead(SealedLead),
    /// The sealed bid of a `bid.sealed` (its SHA-256 is the commitment).
    Bid(SealedBid),
    /// The lead sealed to its winner, of a `lead.released`.
    Release(ReleasedLead),
}

/// One appended entry as the enclave's journal keeps it (the appended tail the host has not yet confirmed durable). The host
/// recomputes the tree nodes from the leaf and checks them against the signed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Canonical event bytes.
    pub leaf: ByteBuf,
    /// The signed receipt (its `index` is the entry's).
    pub receipt: Receipt,
    /// What goes with the leaf.
    pub record: JournalRecord,
}

/// Where a `Replay` starts when it does not start at leaf 0: the receipt of leaf `from − 1`
/// (its root is the tree of `from` leaves) and the frontier of that tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreBase {
    /// The receipt of leaf `from − 1`.
    pub receipt: Receipt,
    /// Frontier peaks at `from`, largest subtree first, 32 bytes each.
    pub peaks: Vec<ByteBuf>,
}

/// One replayed leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreEntry {
    /// Canonical event bytes.
    pub leaf: ByteBuf,
    /// For a `bid.sealed` leaf: the sealed bid whose SHA-256 is its commitment.
    pub bid: Option<SealedBid>,
}

/// The host's view of the log tip, handed to a (re)starting enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// The receipt of the last stored leaf.
    pub receipt: Receipt,
    /// Frontier peaks at `receipt.index + 1`, largest subtree first, 32 bytes each.
    pub peaks: Vec<ByteBuf>,
    /// The latest signed checkpoint note, if any.
    pub checkpoint: Option<ByteBuf>,
    /// RFC 9162 consistency proof from the checkpoint's size to the tip's (32 bytes each);
    /// empty without a checkpoint.
    #[serde(default)]
    pub checkpoint_consistency: Vec<ByteBuf>,
}

/// Requests from host to enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// First message: sealed secrets (none on first start) and the log tip (none if empty).
    Boot {
        /// Sealed secrets blob from an earlier boot.
        sealed_secrets: Option<ByteBuf>,
        /// The host's log tip.
        tip: Option<Tip>,
        /// AWS credentials for the KMS sealer's calls (the instance role's); none in dev.
        #[serde(default)]
        aws_credentials: Option<AwsCredentials>,
    },
    /// Email tags of accepted events, to rebuild duplicate detection (32 bytes each).
    LoadTags {
        /// The tags.
        tags: Vec<ByteBuf>,
    },
    /// Leaves `from ..` to rebuild the auction book; chunks follow on (see the module doc).
    // Its variant name on the wire is `Replay`, as in frames of earlier releases.
    #[serde(rename = "Replay")]
    Restore {
        /// Index of the first entry.
        from: u64,
        /// Required in the first chunk when `from > 0`.
        base: Option<RestoreBase>,
        /// The leaves, in order (≤ [`crate::MAX_RESTORE_ENTRIES`]).
        entries: Vec<RestoreEntry>,
    },
    /// Finish start-up: append `log.epoch`.
    Start,
    /// An attestation document binding the enclave keys and `nonce` (≤ 1024 bytes).
    Attest {
        /// The requester's nonce.
        nonce: Option<ByteBuf>,
    },
    /// Sealed leads to take in, in order (≤ [`crate::MAX_BATCH`]).
    Submit {
        /// The leads.
        leads: Vec<SealedLead>,
    },
    /// Sealed bids, in order (≤ [`crate::MAX_BIDS`]).
    Bid {
        /// The bids.
        bids: Vec<SealedBid>,
    },
    /// The host's periodic nudge: close every auction whose close time has passed by the
    /// enclave's clock (the host's clock is never consulted).
    Tick,
    /// A buyer's request for a lead, with the sealed lead as stored by the host.
    Release {
        /// The signed request.
        request: ReleaseRequest,
        /// The seller's sealed submission of that lead.
        lead: SealedLead,
    },
    /// Sign a checkpoint: now if `force`, else only if one is due (host's periodic tick).
    Checkpoint {
        /// Sign even if not due.
        force: bool,
        /// Also sign the checkpoint for this `CheckpointAnchor` deployment (EIP-712).
        #[serde(default)]
        anchor: Option<AnchorTarget>,
    },
    /// Log size, epoch and root.
    Status,
    /// The host has durably stored entries `0 .. size`: the enclave may drop them from its
    /// journal. Answer: `Ok`.
    Durable {
        /// Stored log size.
        size: u64,
    },
    /// Journal entries from `from` on (at most [`crate::MAX_JOURNAL_ENTRIES`]); `journal.gap` if the
    /// enclave no longer holds entry `from`.
    Journal {
        /// First index wanted.
        from: u64,
    },
    /// Drop the running state (keys stay sealed at the host); the next `Boot` starts a new
    /// epoch from the host's tip. Entries past that tip are voided, exactly as when the
    /// enclave process restarts, which the host can always cause. Answer: `Ok`.
    Reset,
}

/// A `CheckpointAnchor` deployment the host anchors to: the EIP-712 domain's chain id and
/// contract. The enclave signs only statements about its own log, so any target is safe to
/// sign for; the domain stops a signature from counting on another chain or contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AnchorTarget {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The contract address, 20 bytes.
    pub contract: ByteBuf,
}

/// An error as sent on the wire: stable code and a message without PII.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Stable code, e.g. `submission.bad_signature`; a text string in CBOR.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl WireError {
    /// A new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A created tree node on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireNode {
    /// 0 = leaf.
    pub level: u8,
    /// Index within the level.
    pub index: u64,
    /// 32-byte hash.
    pub hash: ByteBuf,
}

/// An append on the wire: the new leaf, the tree nodes it created and its signed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAppended {
    /// Leaf index.
    pub index: u64,
    /// Canonical event bytes.
    pub leaf: ByteBuf,
    /// Nodes to store.
    pub nodes: Vec<WireNode>,
    /// Signed receipt.
    pub receipt: Receipt,
}

/// The outcome for one submitted lead.
// `Logged` is the common case; boxing it would cost an allocation per lead to shrink the rare one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmitOutcome {
    /// An event was appended (`lead.accepted` or `lead.rejected`).
    Logged {
        /// Lead id.
        lead_id: String,
        /// Accepted or rejected by the intake rules.
        accepted: bool,
        /// Rejection reason code.
        reason: Option<String>,
        /// Score for accepted leads.
        score: Option<u8>,
        /// `email_tag` of an accepted lead, 32 bytes (the host indexes it for restarts).
        email_tag: Option<ByteBuf>,
        /// The append.
        appended: WireAppended,
    },
    /// The request was refused and nothing was appended (bad signature, replay, …).
    Refused(WireError),
}

/// The outcome for one sealed bid.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BidOutcome {
    /// `bid.sealed` was appended.
    Logged {
        /// Auction id.
        auction_id: String,
        /// Commitment, 32 bytes.
        commitment: ByteBuf,
        /// The append.
        appended: WireAppended,
    },
    /// Refused; nothing appended.
    Refused(WireError),
}

/// Public facts about the enclave and log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Tree size.
    pub size: u64,
    /// Root, 32 bytes.
    pub root: ByteBuf,
    /// Boot epoch.
    pub epoch: u64,
    /// Log origin.
    pub origin: String,
    /// `user_data` CBOR binding the public keys.
    pub keys: ByteBuf,
}

/// Responses from enclave to host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Boot done: the (possibly new) sealed secrets to store, and the public keys.
    Booted {
        /// Sealed secrets blob.
        sealed_secrets: ByteBuf,
        /// `user_data` CBOR of the public keys.
        keys: ByteBuf,
        /// The dev attestation root (PEM), in dev mode.
        dev_root_pem: Option<String>,
    },
    /// Generic success.
    Ok,
    /// Start done: the `log.epoch` append.
    Started {
        /// The append.
        appended: WireAppended,
    },
    /// An attestation document (COSE_Sign1 bytes).
    Attestation {
        /// The document.
        document: ByteBuf,
    },
    /// Per-lead outcomes, in request order.
    Submitted {
        /// Outcomes.
        results: Vec<SubmitOutcome>,
    },
    /// Per-bid outcomes, in request order.
    Bids {
        /// Outcomes.
        results: Vec<BidOutcome>,
    },
    /// The `auction.closed` / `auction.unsold` appends of this tick, in order.
    Ticked {
        /// The appends.
        closed: Vec<WireAppended>,
    },
    /// The lead sealed to its winner, and the `lead.released` append.
    Released {
        /// The envelope.
        released: ReleasedLead,
        /// The append.
        appended: WireAppended,
    },
    /// A signed checkpoint note, or none if not due.
    Checkpoint {
        /// The note bytes.
        note: Option<ByteBuf>,
        /// With a note and an anchor target: the anchor key's 65-byte `r ‖ s ‖ v` signature over
        /// the checkpoint's EIP-712 digest ([`leadgate_verifier::anchor`]).
        #[serde(default)]
        anchor_signature: Option<ByteBuf>,
    },
    /// Log status.
    Status(Status),
    /// Journal entries, in order from the asked index (empty at the end of the log).
    Journal {
        /// The entries.
        entries: Vec<JournalEntry>,
    },
    /// The request failed; nothing changed.
    Error(WireError),
}

impl JournalEntry {
    /// Approximate bytes the entry holds (leaf, receipt and record), for the bounds.
    pub fn weight(&self) -> usize {
        const RECEIPT: usize = 400;
        let record = match &self.record {
            JournalRecord::None => 0,
            JournalRecord::Lead(l) => {
                l.seller.len() + l.enc.len() + l.ciphertext.len() + l.signature.len() + 64
            }
            JournalRecord::Bid(b) => {
                b.auction_id.len() + b.buyer.len() + b.enc.len() + b.ciphertext.len() + 192
            }
            JournalRecord::Release(r) => r.enc.len() + r.ciphertext.len() + 128,
        };
        self.leaf.len() + RECEIPT + record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Restore` keeps the wire name `Replay`: a CBOR map keyed by that text string.
    #[test]
    fn restore_is_replay_on_the_wire() {
        let body = crate::encode(&Request::Restore {
            from: 0,
            base: None,
            entries: vec![],
        });
        let value: ciborium::Value = ciborium::from_reader(body.as_slice()).unwrap();
        let map = value.as_map().expect("externally tagged variant");
        assert_eq!(map[0].0, ciborium::Value::Text("Replay".into()));
        assert!(matches!(
            crate::decode::<Request>(&body).unwrap(),
            Request::Restore { from: 0, .. }
        ));
    }
}
