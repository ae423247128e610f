//! The host's side of the start-up sequence (see the crate docs) and of the proofs it hands the
//! enclave, as pure functions over the stored tree: the [`Tip`] sent in `Boot`, the `Restore`
//! requests, and the [`SaleProof`] of a release. `leadgate-host` uses these, and the enclave's
//! own tests drive its core with the same functions, so the two cannot drift apart.

use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::merkle::{self, Frontier, NodeStore, ProofError};
use leadgate_verifier::note::Note;
use leadgate_verifier::receipt::Receipt;
use serde_bytes::ByteBuf;

use crate::{ProvenLeaf, Request, SaleProof, Tip};

/// Why the stored log cannot be turned into a start-up request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// The stored checkpoint note, or its body, does not parse.
    #[error("the stored checkpoint does not parse: {0}")]
    Checkpoint(String),
    /// The store lacks a tree node the peaks or the consistency proof need.
    #[error("the stored tree is incomplete: {0}")]
    Tree(#[from] ProofError),
}

fn peaks(frontier: &Frontier) -> Vec<ByteBuf> {
    frontier
        .peaks()
        .iter()
        .map(|p| ByteBuf::from(p.to_vec()))
        .collect()
}

/// The tip for `Boot`: the receipt of the last stored leaf (`last`, index `size − 1`), the
/// frontier peaks at `size` (32 bytes each, largest subtree first), and the latest stored
/// checkpoint note with an RFC 9162 §2.1.4 consistency proof from its size to `size`.
///
/// # Errors
/// [`BootError::Checkpoint`] if the note does not parse, [`BootError::Tree`] if `nodes` lacks
/// a node.
pub fn tip<S: NodeStore + ?Sized>(
    last: Receipt,
    nodes: &S,
    checkpoint: Option<Vec<u8>>,
) -> Result<Tip, BootError> {
    let size = last.index + 1;
    let frontier = Frontier::from_store(nodes, size)?;
    let checkpoint_consistency = match &checkpoint {
        Some(note) => {
            let text = Note::parse(note)
                .map_err(|e| BootError::Checkpoint(e.to_string()))?
                .text;
            let cp_size = Checkpoint::parse_text(&text)
                .map_err(|e| BootError::Checkpoint(e.to_string()))?
                .size;
            merkle::consistency_proof(nodes, cp_size, size)?
                .iter()
                .map(|h| ByteBuf::from(h.to_vec()))
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Tip {
        receipt: last,
        peaks: peaks(&frontier),
        checkpoint: checkpoint.map(ByteBuf::from),
        checkpoint_consistency,
    })
}

/// The `Restore` requests of one start-up, built chunk by chunk as the host reads its store:
/// from leaf 0, or from the size of the sealed state loaded before; each chunk continues
/// where the last ended.
#[derive(Debug)]
pub struct Restore {
    at: u64,
}

impl Restore {
    /// A restore of the leaves from `from` on (0, or the loaded state's size).
    pub fn new(from: u64) -> Self {
        Self { at: from }
    }

    /// The index the next chunk starts at.
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The request for the next chunk, leaf `at()` first. The enclave refuses a chunk of more
    /// than [`crate::MAX_RESTORE_ENTRIES`] leaves.
    pub fn next_request(&mut self, leaves: Vec<ByteBuf>) -> Request {
        let from = self.at;
        self.at += leaves.len() as u64;
        Request::Restore { from, leaves }
    }
}

/// The [`SaleProof`] for a release: the `lead.accepted` at `accepted.0` and the
/// `auction.closed` at `closed.0` (index and leaf bytes), each with its inclusion path in the
/// tree of `receipt` (`receipt.index + 1` leaves), read from `nodes`.
///
/// # Errors
/// [`BootError::Tree`] if `nodes` lacks a node of a path, or an index is outside the tree.
pub fn sale_proof<S: NodeStore + ?Sized>(
    receipt: Receipt,
    nodes: &S,
    accepted: (u64, Vec<u8>),
    closed: (u64, Vec<u8>),
) -> Result<SaleProof, BootError> {
    let size = receipt.index + 1;
    let proven = |(index, leaf): (u64, Vec<u8>)| -> Result<ProvenLeaf, BootError> {
        Ok(ProvenLeaf {
            index,
            leaf: ByteBuf::from(leaf),
            path: merkle::inclusion_proof(nodes, index, size)?
                .iter()
                .map(|h| ByteBuf::from(h.to_vec()))
                .collect(),
        })
    };
    Ok(SaleProof {
        accepted: proven(accepted)?,
        closed: proven(closed)?,
        receipt,
    })
}
