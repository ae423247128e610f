//! The host ↔ enclave protocol: CBOR (RFC 8949) messages in length-prefixed frames.
//!
//! Frame: 4-byte big-endian body length, then the body, at most [`MAX_FRAME_LEN`] bytes. The
//! host sends one [`Request`] and reads one [`Response`], in order. A frame that does not decode
//! gets a [`Response::Error`] with code `protocol.malformed_frame`; the enclave never crashes on
//! input.
//!
//! Start-up sequence: `Boot` (sealed secrets and the host's log tip) → `LoadTags`* (the
//! `email_tag`s of all accepted events, in chunks) → `Replay`* (the leaves from the last
//! `log.epoch`'s `replay_from` to the tip, with the sealed bid of each `bid.sealed`; required
//! when there is a tip) → `Start` (appends `log.epoch`). Then any of `Attest`, `Submit`,
//! `Bid`, `Tick`, `Release`, `Checkpoint`, `Status`, `Durable`, `Journal`.
//!
//! Reconnecting to a running enclave (the host restarted or dropped the link): `Boot` answers
//! `boot.already_booted`; the host compares `Status` with its store and, if the enclave is
//! ahead, fetches the missing tail with `Journal` (entries the host has not confirmed with
//! `Durable`), checks it against the enclave's root and stores it. If the tail is gone
//! (`journal.gap`), or the enclave is not started or holds another log, the host sends
//! `Reset` and boots it again from its own tip: a new epoch, as after an enclave restart.
//!
//! Sessions: the enclave serves one host session at a time (see [`crate::transport`]).

use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::merkle::NewNode;
use leadgate_verifier::receipt::Receipt;
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::log::Appended;

/// Largest frame body, bytes: a submit batch of 256 leads of 16 KiB is 5.6 MiB in base64.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;
/// Most leads in one `Submit`.
pub const MAX_BATCH: usize = 256;
/// Most tags in one `LoadTags` (32 bytes each; 64k tags ≈ 2.2 MiB of CBOR).
pub const MAX_TAGS_PER_FRAME: usize = 65_536;
/// Most entries in one `Replay` (a leaf is at most 8 KiB, a sealed bid under 1 KiB; leaves
/// average under 1 KiB, so 2,048 entries stay far below [`MAX_FRAME_LEN`]).
pub const MAX_REPLAY_ENTRIES: usize = 2_048;
/// Most bids in one `Bid`.
pub const MAX_BIDS: usize = 256;
/// Most entries in one `Journal` answer.
pub const MAX_JOURNAL_ENTRIES: usize = 1_024;
/// Most bytes (by [`JournalEntry::weight`]) in one `Journal` answer, past its first entry:
/// base64 and CBOR keep the frame under [`MAX_FRAME_LEN`].
pub const MAX_JOURNAL_BYTES: usize = 4 * 1024 * 1024;

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

/// One appended entry as the enclave's journal keeps it (see [`crate::journal`]). The host
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
pub struct ReplayBase {
    /// The receipt of leaf `from − 1`.
    pub receipt: Receipt,
    /// Frontier peaks at `from`, largest subtree first, 32 bytes each.
    pub peaks: Vec<ByteBuf>,
}

/// One replayed leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEntry {
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
        aws_credentials: Option<crate::kms::AwsCredentials>,
    },
    /// Email tags of accepted events, to rebuild duplicate detection (32 bytes each).
    LoadTags {
        /// The tags.
        tags: Vec<ByteBuf>,
    },
    /// Leaves `from ..` to rebuild the auction book; chunks follow on (see the module doc).
    Replay {
        /// Index of the first entry.
        from: u64,
        /// Required in the first chunk when `from > 0`.
        base: Option<ReplayBase>,
        /// The leaves, in order (≤ [`MAX_REPLAY_ENTRIES`]).
        entries: Vec<ReplayEntry>,
    },
    /// Finish start-up: append `log.epoch`.
    Start,
    /// An attestation document binding the enclave keys and `nonce` (≤ 1024 bytes).
    Attest {
        /// The requester's nonce.
        nonce: Option<ByteBuf>,
    },
    /// Sealed leads to take in, in order (≤ [`MAX_BATCH`]).
    Submit {
        /// The leads.
        leads: Vec<SealedLead>,
    },
    /// Sealed bids, in order (≤ [`MAX_BIDS`]).
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
    /// Journal entries from `from` on (at most [`MAX_JOURNAL_ENTRIES`]); `journal.gap` if the
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
    /// Stable code, e.g. `submission.bad_signature`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl WireError {
    /// A new error.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
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

/// An append on the wire: see [`Appended`].
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

impl From<Appended> for WireAppended {
    fn from(a: Appended) -> Self {
        Self {
            index: a.index,
            leaf: ByteBuf::from(a.leaf),
            nodes: a
                .nodes
                .into_iter()
                .map(|n: NewNode| WireNode {
                    level: n.level,
                    index: n.index,
                    hash: ByteBuf::from(n.hash.to_vec()),
                })
                .collect(),
            receipt: a.receipt,
        }
    }
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

/// Errors decoding frames. Code: `protocol.malformed_frame` or `protocol.frame_too_large`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Over [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not the expected CBOR message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge(_) => "protocol.frame_too_large",
            FrameError::Malformed(_) => "protocol.malformed_frame",
            FrameError::Io(_) => "protocol.io",
        }
    }
}

/// Encodes a message body (CBOR).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(msg, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a message body, rejecting trailing bytes.
///
/// # Errors
/// [`FrameError::TooLarge`], [`FrameError::Malformed`].
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut rest = body;
    let msg =
        ciborium::de::from_reader(&mut rest).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed("trailing bytes".into()));
    }
    Ok(msg)
}

/// Reads one frame body. `Ok(None)` at a clean end of stream.
///
/// # Errors
/// [`FrameError::Io`], [`FrameError::TooLarge`] (the stream is then unusable).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    use tokio::io::AsyncReadExt as _;
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    // Grown as bytes arrive, so a peer that announces a large frame and sends little of it
    // costs what it sent, not what it announced.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(body))
}

/// Writes one frame.
///
/// # Errors
/// [`FrameError::Io`], [`FrameError::TooLarge`].
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> Result<(), FrameError> {
    use tokio::io::AsyncWriteExt as _;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}
