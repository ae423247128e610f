//! The host's side of the start-up sequence (see the crate docs), as pure functions over the
//! stored tree: the [`Tip`] sent in `Boot`, the `LoadTags` chunks, and the `Restore` requests
//! with their [`RestoreBase`]. `leadgate-host` boots the enclave with these, and the enclave's
//! own tests drive its core with the same functions, so the two cannot drift apart.

use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::merkle::{self, Frontier, NodeStore, ProofError};
use leadgate_verifier::note::Note;
use leadgate_verifier::receipt::Receipt;
use serde_bytes::ByteBuf;

use crate::{Request, RestoreBase, RestoreEntry, Tip, MAX_TAGS_PER_FRAME};

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

/// The `LoadTags` requests for `tags` (16-byte email tags), at most [`MAX_TAGS_PER_FRAME`]
/// each, in order.
pub fn load_tags(tags: &[Vec<u8>]) -> impl Iterator<Item = Request> + '_ {
    tags.chunks(MAX_TAGS_PER_FRAME)
        .map(|chunk| Request::LoadTags {
            tags: chunk.iter().cloned().map(ByteBuf::from).collect(),
        })
}

/// The `Restore` requests of one start-up, built chunk by chunk as the host reads its store:
/// the first carries the [`RestoreBase`] (the receipt of leaf `from − 1` and the peaks at
/// `from`; none when `from` is 0), each continues where the last ended.
#[derive(Debug)]
pub struct Restore {
    at: u64,
    base: Option<RestoreBase>,
}

impl Restore {
    /// A restore of the leaves from `from` on. `before` is the receipt of leaf `from − 1`
    /// (required when `from` > 0; ignored at 0).
    ///
    /// # Errors
    /// [`BootError::Tree`] if `nodes` lacks a node of the peaks at `from`.
    pub fn new<S: NodeStore + ?Sized>(
        from: u64,
        before: Option<Receipt>,
        nodes: &S,
    ) -> Result<Self, BootError> {
        let base = match before {
            Some(receipt) if from > 0 => Some(RestoreBase {
                receipt,
                peaks: peaks(&Frontier::from_store(nodes, from)?),
            }),
            _ => None,
        };
        Ok(Self { at: from, base })
    }

    /// The index the next chunk starts at.
    pub fn at(&self) -> u64 {
        self.at
    }

    /// The request for the next chunk, leaf `at()` first. The enclave refuses a chunk of more
    /// than [`crate::MAX_RESTORE_ENTRIES`] entries.
    pub fn next_request(&mut self, entries: Vec<RestoreEntry>) -> Request {
        let from = self.at;
        self.at += entries.len() as u64;
        Request::Restore {
            from,
            base: self.base.take(),
            entries,
        }
    }
}
