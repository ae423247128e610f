//! The messages: [`Request`]s from host to enclave and [`Response`]s back, with what they carry.

use leadgate_verifier::autobid::{RulesCancel, SealedRuleSet};
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
    /// The buyer's sealed rule set of a `rules.set` (its SHA-256 is the commitment).
    Rules(SealedRuleSet),
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

/// One part of the enclave's sealed state (see `leadgate_enclave::state`): the auction book's
/// open records and the duplicate-email filter at log size `size`, AES-256-GCM sealed under a
/// key only the enclave derives, in parts of at most [`crate::STATE_PART_BYTES`] of plaintext.
/// The host stores the parts and hands them back at the next boot, so that a restart replays
/// only the leaves after `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatePart {
    /// The log size the state is of.
    pub size: u64,
    /// The tree root at `size`, 32 bytes.
    pub root: ByteBuf,
    /// This part's position, from 0.
    pub index: u32,
    /// How many parts the state has.
    pub count: u32,
    /// `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`; the AAD binds the origin, `size`,
    /// `root`, `index` and `count`.
    pub blob: ByteBuf,
}

/// The log entries that close one auction, as the host stored them: the auction's
/// `lead.accepted` leaf and every `bid.sealed` leaf of it in log order, each with its sealed
/// bid. The enclave checks them against the running hash it keeps for the auction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseInput {
    /// The auction's `lead.accepted` leaf (canonical event bytes).
    pub accepted: ByteBuf,
    /// Its `bid.sealed` entries, in log order.
    pub bids: Vec<LoggedBid>,
}

/// A `bid.sealed` leaf with the sealed bid whose SHA-256 is its commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedBid {
    /// The `bid.sealed` leaf (canonical event bytes).
    pub leaf: ByteBuf,
    /// The sealed bid.
    pub sealed: SealedBid,
}

/// The outcome of closing one auction.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseOutcome {
    /// `auction.closed` or `auction.unsold` was appended.
    Logged(WireAppended),
    /// Refused; nothing appended (the auction stays open).
    Refused(WireError),
}

/// A log entry with its RFC 9162 §2.1.3 inclusion proof in the tree of the proof's receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenLeaf {
    /// Leaf index.
    pub index: u64,
    /// Canonical event bytes.
    pub leaf: ByteBuf,
    /// Inclusion path, 32 bytes each.
    pub path: Vec<ByteBuf>,
}

/// What a release stands on: the sale's `lead.accepted` and `auction.closed` entries, each
/// proven included in the tree of `receipt`, a receipt the enclave signed in its current
/// epoch (so the tree is this epoch's history, which no restart has voided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleProof {
    /// A receipt of the current epoch; its root is the tree of `receipt.index + 1` leaves.
    pub receipt: Receipt,
    /// The lead's `lead.accepted`.
    pub accepted: ProvenLeaf,
    /// The auction's `auction.closed`.
    pub closed: ProvenLeaf,
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

/// Requests from host to enclave. One is built per link frame and moved, never kept in bulk,
/// so the inline `Release` (a whole sealed lead) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
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
    /// One part of a sealed state ([`Response::SealedState`]), parts in order from 0, to
    /// restore from instead of leaf 0. Answer: `Ok`; `boot.state_invalid` drops the parts
    /// loaded so far (the host may then restore from leaf 0).
    LoadState {
        /// The part.
        part: StatePart,
    },
    /// Leaves `from ..` to rebuild the auction book and the duplicate-email filter: from 0, or
    /// from the size of the state loaded; chunks follow on (see the crate docs).
    // Its variant name on the wire is `Replay`.
    #[serde(rename = "Replay")]
    Restore {
        /// Index of the first leaf.
        from: u64,
        /// The leaves (canonical event bytes), in order (≤ [`crate::MAX_RESTORE_ENTRIES`]).
        leaves: Vec<ByteBuf>,
    },
    /// The sealed rule sets active at the tip (after the replay, before `Start`): each must
    /// be the active rule set of its buyer as the replayed log says (its commitment), and
    /// `Start` is refused while one is missing (`boot.rules_missing`). At most
    /// [`crate::MAX_RULE_SETS_PER_LOAD`] per request. Answer: `Ok`.
    LoadRules {
        /// The sealed rule sets, as the buyers posted them.
        sets: Vec<SealedRuleSet>,
    },
    /// On a settling gateway (`Booted { settling: true }`), after the replay: the stored
    /// entries of every open auction with bids, as for a `Close` (its `lead.accepted` and
    /// every `bid.sealed` with its sealed bid, checked against the running hash the replay
    /// rebuilt). The enclave opens the bids and counts each against its bidder's deposit
    /// again, so a restart does not forget what the deposits back. `Start` is refused
    /// (`boot.bids_missing`) while an open auction with bids was not given, or gained bids
    /// since. At most [`crate::MAX_CLOSES_PER_TICK`] auctions and, past the first,
    /// [`crate::MAX_CLOSE_BYTES`] per request. Answer: `Ok`.
    LoadBids {
        /// One input per open auction.
        auctions: Vec<CloseInput>,
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
    /// A buyer's sealed auto-bid rule set: appends `rules.set`. Answer:
    /// [`Response::RulesLogged`].
    SetRules {
        /// The rule set.
        rules: SealedRuleSet,
    },
    /// A buyer's cancellation of its active rule set: appends `rules.cancelled`. Answer:
    /// [`Response::RulesLogged`].
    CancelRules {
        /// The signed cancellation.
        cancel: RulesCancel,
    },
    /// The host's periodic nudge: which open auctions are due to close by the enclave's
    /// clock (the host's clock is never consulted). Answer: [`Response::Due`].
    Tick,
    /// Close due auctions from the entries the host stored (≤ [`crate::MAX_CLOSES_PER_TICK`]).
    Close {
        /// One input per auction.
        auctions: Vec<CloseInput>,
    },
    /// A buyer's request for a lead, with the sealed lead as stored by the host and the log
    /// entries that show the buyer won it.
    Release {
        /// The signed request.
        request: ReleaseRequest,
        /// The seller's sealed submission of that lead.
        lead: SealedLead,
        /// The sale, proven from the log.
        proof: SaleProof,
    },
    /// Sign a checkpoint: now if `force`, else only if one is due (host's periodic tick).
    Checkpoint {
        /// Sign even if not due.
        force: bool,
        /// Also sign the checkpoint for this `CheckpointAnchor` deployment (EIP-712).
        #[serde(default)]
        anchor: Option<AnchorTarget>,
    },
    /// Seal the enclave's state for a faster restart: part `part` of the state at the current
    /// size. Part 0 seals a new state if one is due (or `force`); the rest follow with no
    /// append in between. Answer: [`Response::SealedState`].
    SealState {
        /// The part wanted.
        part: u32,
        /// Seal even if not due.
        #[serde(default)]
        force: bool,
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
        /// An instant auction's `auction.closed` or `auction.unsold`, appended after the
        /// batch's leads and rule bids.
        #[serde(default)]
        sale: Option<WireAppended>,
    },
    /// The request was refused and nothing was appended (bad signature, replay, …).
    Refused(WireError),
}

/// A bid the enclave made for a buyer under its rule set: the `bid.sealed` append (with
/// `rules`) and the sealed bid to store with it, as for a buyer's own bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuledBid {
    /// Auction id.
    pub auction_id: String,
    /// The sealed bid: sealed by the enclave to its own intake key, signed by the log key.
    pub sealed: SealedBid,
    /// The append.
    pub appended: WireAppended,
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
        /// Whether the enclave settles sales (started with an escrow): the host then sends
        /// `LoadBids` after the replay.
        #[serde(default)]
        settling: bool,
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
        /// The bids the enclave made under buyers' rule sets on the accepted leads, appended
        /// after the batch's leads, in log order.
        #[serde(default)]
        bids: Vec<RuledBid>,
    },
    /// A `rules.set` or `rules.cancelled` append.
    RulesLogged {
        /// The append.
        appended: WireAppended,
    },
    /// Per-bid outcomes, in request order.
    Bids {
        /// Outcomes.
        results: Vec<BidOutcome>,
    },
    /// Ids of the open auctions due to close, oldest close time first (at most
    /// [`crate::MAX_CLOSES_PER_TICK`]).
    Due {
        /// Auction ids.
        auctions: Vec<String>,
    },
    /// Per-auction close outcomes, in request order.
    Closed {
        /// Outcomes.
        results: Vec<CloseOutcome>,
    },
    /// A part of the sealed state, or none when no state is due.
    SealedState {
        /// The part.
        part: Option<StatePart>,
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

impl CloseInput {
    /// Approximate bytes the input holds (leaves and sealed bids), for packing `Close`.
    pub fn weight(&self) -> usize {
        self.accepted.len()
            + self
                .bids
                .iter()
                .map(|b| {
                    b.leaf.len()
                        + b.sealed.auction_id.len()
                        + b.sealed.buyer.len()
                        + b.sealed.enc.len()
                        + b.sealed.ciphertext.len()
                        + b.sealed.signature.len()
                        + 64
                })
                .sum::<usize>()
    }
}

/// Packs close inputs, in order, into the `Close` (or `LoadBids`) requests the host sends:
/// at most [`crate::MAX_CLOSES_PER_TICK`] auctions and, past each request's first,
/// [`crate::MAX_CLOSE_BYTES`] by [`CloseInput::weight`].
pub fn pack_close_inputs(inputs: Vec<CloseInput>) -> Vec<Vec<CloseInput>> {
    let mut out: Vec<Vec<CloseInput>> = Vec::new();
    let mut bytes = 0;
    for input in inputs {
        let w = input.weight();
        match out.last_mut() {
            Some(last)
                if last.len() < crate::MAX_CLOSES_PER_TICK
                    && bytes + w <= crate::MAX_CLOSE_BYTES =>
            {
                bytes += w;
                last.push(input);
            }
            _ => {
                bytes = w;
                out.push(vec![input]);
            }
        }
    }
    out
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
            JournalRecord::Rules(r) => r.enc.len() + r.ciphertext.len() + 256,
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
            leaves: vec![],
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
