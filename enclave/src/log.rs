//! The append-only log as the enclave holds it: the Merkle frontier (O(log n) hashes), the
//! boot epoch, and the signing key. Appends return what the host must persist: the leaf, the
//! new tree nodes, and a signed receipt.

use ed25519_dalek::SigningKey;
use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::event::{Event, EventError};
use leadgate_verifier::merkle::{leaf_hash, Frontier, Hash, NewNode};
use leadgate_verifier::note::{Note, NoteSigner};
use leadgate_verifier::receipt::Receipt;

/// A tree the enclave signed a receipt or checkpoint for, or learned of from a source the
/// host cannot roll back alone (the bucket's checkpoint, the anchor contract): no tree the
/// enclave signs may fail to extend it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTree {
    /// Tree size, entries.
    pub size: u64,
    /// RFC 6962 root, 32 bytes.
    pub root: Hash,
    /// Where it is known from, for error messages (`this enclave`, `the bucket's checkpoint`,
    /// `the anchor contract`).
    pub source: String,
}

/// Everything one append produced, for the host to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Leaf index.
    pub index: u64,
    /// Canonical event bytes.
    pub leaf: Vec<u8>,
    /// Tree nodes created (leaf hash first).
    pub nodes: Vec<NewNode>,
    /// Signed receipt.
    pub receipt: Receipt,
}

/// An append whose receipt is not signed yet (see [`Log::append_unsigned`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedAppend {
    origin: String,
    epoch: u64,
    index: u64,
    leaf: Vec<u8>,
    nodes: Vec<NewNode>,
    leaf_hash: Hash,
    root: Hash,
    time: u64,
}

impl UnsignedAppend {
    /// The leaf index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The leaf's RFC 6962 leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        self.leaf_hash
    }

    /// Signs the receipt for the tree of size `index + 1`.
    pub fn sign(self, key: &SigningKey) -> Appended {
        let receipt = Receipt::sign(
            key,
            &self.origin,
            self.epoch,
            self.index,
            &self.leaf_hash,
            &self.root,
            self.time,
        );
        Appended {
            index: self.index,
            leaf: self.leaf,
            nodes: self.nodes,
            receipt,
        }
    }
}

/// The enclave's log state.
pub struct Log {
    origin: String,
    epoch: u64,
    frontier: Frontier,
    last_checkpoint_size: Option<u64>,
    last_checkpoint_ms: u64,
}

impl Log {
    /// A log continuing from `frontier` in boot `epoch`.
    pub fn new(origin: &str, epoch: u64, frontier: Frontier, now_ms: u64) -> Self {
        Self {
            origin: origin.to_owned(),
            epoch,
            frontier,
            last_checkpoint_size: None,
            last_checkpoint_ms: now_ms,
        }
    }

    /// Tree size.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Current frontier.
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Boot epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The current tree, which the receipt of its last append (or a checkpoint) signed.
    pub fn signed_tree(&self) -> SignedTree {
        SignedTree {
            size: self.size(),
            root: self.root(),
            source: "this enclave".into(),
        }
    }

    /// Appends `event` and signs its receipt.
    ///
    /// # Errors
    /// [`EventError`] if the event cannot be canonicalized (a bug, not input).
    pub fn append(&mut self, key: &SigningKey, event: &Event) -> Result<Appended, EventError> {
        Ok(self.append_unsigned(event)?.sign(key))
    }

    /// Appends `event`; its receipt is signed later with [`UnsignedAppend::sign`] (on any
    /// thread: the tree has already moved on). Nothing may leave the enclave unsigned.
    ///
    /// # Errors
    /// [`EventError`] if the event cannot be canonicalized (a bug, not input).
    pub fn append_unsigned(&mut self, event: &Event) -> Result<UnsignedAppend, EventError> {
        let leaf = event.to_leaf()?;
        let leaf_hash = leaf_hash(&leaf);
        let index = self.frontier.size();
        let nodes = self.frontier.append(leaf_hash);
        Ok(UnsignedAppend {
            origin: self.origin.clone(),
            epoch: self.epoch,
            index,
            leaf,
            nodes,
            leaf_hash,
            root: self.frontier.root(),
            time: event.time(),
        })
    }

    /// Signs a checkpoint of the current tree. A `periodic` one (due by the interval, or
    /// signed for anchoring) restarts the interval; one signed only to publish does not.
    pub fn checkpoint(&mut self, key: &SigningKey, now_ms: u64, periodic: bool) -> Note {
        let body = Checkpoint {
            origin: self.origin.clone(),
            size: self.frontier.size(),
            root: self.frontier.root(),
            extensions: Vec::new(),
        };
        if periodic {
            self.last_checkpoint_size = Some(body.size);
            self.last_checkpoint_ms = now_ms;
        }
        NoteSigner::new(&self.origin, key)
            .and_then(|s| s.sign(&body.to_text()))
            .expect("origin is validated at start-up and checkpoint text has no controls")
    }

    /// Whether a periodic checkpoint is due: the interval has passed and the tree grew since the
    /// last one (or none was signed in this boot).
    pub fn checkpoint_due(&self, now_ms: u64, interval_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_checkpoint_ms) >= interval_ms
            && self.last_checkpoint_size != Some(self.frontier.size())
    }
}

/// The append as the host receives it.
impl From<Appended> for leadgate_protocol::WireAppended {
    fn from(a: Appended) -> Self {
        Self {
            index: a.index,
            leaf: serde_bytes::ByteBuf::from(a.leaf),
            nodes: a
                .nodes
                .into_iter()
                .map(|n: NewNode| leadgate_protocol::WireNode {
                    level: n.level,
                    index: n.index,
                    hash: serde_bytes::ByteBuf::from(n.hash.to_vec()),
                })
                .collect(),
            receipt: a.receipt,
        }
    }
}
