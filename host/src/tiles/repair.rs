//! A database rebuilt or completed from the bucket: deleted, restored from an old backup, or
//! behind after a crash. The bucket is untrusted storage like the database itself, so every
//! entry is checked before it is stored: the checkpoint against the log's key, each entry's
//! receipt (signed by the log key, for the next index, over the leaf's hash, and the root the
//! tree grows to), each level-0 hash tile against the leaves, and finally the root against
//! the checkpoint. A bucket that fails any check is refused with the reason, and nothing past
//! the last good tile is stored. The enclave checks the result again when it boots from it.
//!
//! The host runs it by itself before it boots or catches up the enclave
//! ([`crate::gateway::Gateway`]), so a host restarted on a lost or rolled-back database
//! with `--bucket` serves again without anyone stepping in.

use ed25519_dalek::VerifyingKey;
use leadgate_protocol::{JournalEntry, JournalRecord, WireAppended, WireNode};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::merkle::{leaf_hash, Frontier};
use leadgate_verifier::note::NoteVerifier;
use serde_bytes::ByteBuf;

use super::bucket::{Bucket, BucketError};
use super::publish::{CHECKPOINT, LOG_KEY, SECRETS, STATE};
use super::records;
use crate::storage::{Store, StoreError};
use leadgate_verifier::tiles::{self as layout, TileRef, TILE_WIDTH};

/// Why a repair stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The bucket could not be read.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bucket's contents do not verify (the message says which object and why).
    #[error("the bucket does not verify: {0}")]
    Invalid(String),
    /// The database holds another tree than the bucket's checkpoint.
    #[error("{0}")]
    Fork(String),
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The database's size before.
    pub from: u64,
    /// Its size after (the bucket checkpoint's, when it was behind).
    pub to: u64,
    /// The bucket checkpoint's size (0 for an empty bucket).
    pub checkpoint: u64,
}

/// Checks entries that continue the tree `frontier` and turns them into appends to store:
/// each receipt signed by `log_key` for `origin`, for the next index, over the leaf's hash,
/// with the root the tree grows to. On success `frontier` has grown by every entry.
///
/// # Errors
/// A message naming the first entry that fails.
pub fn check_entries(
    frontier: &mut Frontier,
    entries: Vec<JournalEntry>,
    log_key: &VerifyingKey,
    origin: &str,
) -> Result<Vec<(WireAppended, JournalRecord)>, String> {
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let index = frontier.size();
        let r = e
            .receipt
            .verify(log_key, origin)
            .map_err(|err| format!("receipt {index}: {err}"))?;
        let hash = leaf_hash(&e.leaf);
        if r.index != index || r.leaf_hash != hash {
            return Err(format!("entry {index} does not follow on"));
        }
        let nodes = frontier.append(hash);
        if r.root != frontier.root() {
            return Err(format!(
                "entry {index}: root differs from the stored tree's"
            ));
        }
        out.push((
            WireAppended {
                index,
                leaf: e.leaf,
                nodes: nodes
                    .into_iter()
                    .map(|n| WireNode {
                        level: n.level,
                        index: n.index,
                        hash: ByteBuf::from(n.hash.to_vec()),
                    })
                    .collect(),
                receipt: e.receipt,
            },
            e.record,
        ));
    }
    Ok(out)
}

/// The log's key: `pinned` if given, else the bucket's `leadgate/log-key`.
pub(crate) async fn log_key(
    bucket: &Bucket,
    pinned: Option<&NoteVerifier>,
) -> Result<NoteVerifier, RepairError> {
    if let Some(k) = pinned {
        return Ok(k.clone());
    }
    let text = bucket
        .get(LOG_KEY)
        .await?
        .ok_or_else(|| RepairError::Invalid(format!("{LOG_KEY} is missing")))?;
    let text =
        std::str::from_utf8(&text).map_err(|e| RepairError::Invalid(format!("{LOG_KEY}: {e}")))?;
    NoteVerifier::parse(text.trim()).map_err(|e| RepairError::Invalid(format!("{LOG_KEY}: {e}")))
}

/// How many level-0 tiles a repair fetches at once (each three objects).
const FETCH_AHEAD: usize = 8;

async fn object(bucket: &Bucket, path: &str) -> Result<bytes::Bytes, RepairError> {
    bucket
        .get(path)
        .await?
        .ok_or_else(|| RepairError::Invalid(format!("{path} is missing")))
}

/// Level-0 tile `tile`'s entries from the bucket, checked against its hash tile: each leaf
/// with its receipt and record (not yet checked against the log key).
///
/// # Errors
/// [`RepairError::Invalid`] naming the object that is missing or does not verify.
async fn verified_tile(
    bucket: &Bucket,
    tile: TileRef,
) -> Result<Vec<leadgate_protocol::JournalEntry>, RepairError> {
    let (entries_path, hash_path, records_path) =
        (tile.entries_path(), tile.path(), tile.records_path());
    let (bundle, hashes, records) = tokio::try_join!(
        object(bucket, &entries_path),
        object(bucket, &hash_path),
        object(bucket, &records_path)
    )?;
    let leaves = layout::decode_bundle(&bundle)
        .map_err(|e| RepairError::Invalid(format!("{entries_path}: {e}")))?;
    let expect: Vec<u8> = leaves.iter().flat_map(|l| leaf_hash(l)).collect();
    if leaves.len() as u64 != tile.width || hashes.as_ref() != expect.as_slice() {
        return Err(RepairError::Invalid(format!(
            "{} does not hash to {}",
            tile.entries_path(),
            tile.path()
        )));
    }
    records::join(&records, leaves)
        .map_err(|e| RepairError::Invalid(format!("{records_path}: {e}")))
}

/// Brings `store` up to the bucket's checkpoint (see the module docs). A database at or past
/// it is checked against it (its root at the checkpoint's size) and left alone.
///
/// # Errors
/// Any [`RepairError`]; tiles stored before it stay (each was checked).
pub async fn repair(
    store: &Store,
    bucket: &Bucket,
    pinned_key: Option<&NoteVerifier>,
) -> Result<Repaired, RepairError> {
    let from = store.size().await?;
    let Some(note) = bucket.get(CHECKPOINT).await? else {
        return Ok(Repaired {
            from,
            to: from,
            checkpoint: 0,
        });
    };
    let key = log_key(bucket, pinned_key).await?;
    let cp = verify_checkpoint(&note, &key, key.name())
        .map_err(|e| RepairError::Invalid(format!("{CHECKPOINT}: {e}")))?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    if from >= size {
        if store.frontier(size).await?.root() != root {
            return Err(RepairError::Fork(format!(
                "the database's tree at {size} entries differs from the bucket's checkpoint"
            )));
        }
        return Ok(Repaired {
            from,
            to: from,
            checkpoint: size,
        });
    }
    if store.sealed_secrets().await?.is_none() {
        let secrets = object(bucket, SECRETS).await?;
        store.put_sealed_secrets(&secrets).await?;
    }
    let mut frontier = store.frontier(from).await?;
    let started = std::time::Instant::now();
    // Tiles are fetched FETCH_AHEAD at a time, in order, while earlier ones are checked and
    // stored: a restore is bound by the bucket's latency only once per window.
    let mut tiles = (from / TILE_WIDTH..=(size - 1) / TILE_WIDTH).map(|index| TileRef {
        level: 0,
        index,
        width: (size - index * TILE_WIDTH).min(TILE_WIDTH),
    });
    let mut fetching = std::collections::VecDeque::new();
    loop {
        while fetching.len() < FETCH_AHEAD {
            let Some(tile) = tiles.next() else { break };
            let b = bucket.clone();
            fetching.push_back((
                tile,
                tokio::spawn(async move { verified_tile(&b, tile).await }),
            ));
        }
        let Some((tile, fetch)) = fetching.pop_front() else {
            break;
        };
        let entries = fetch
            .await
            .map_err(|e| RepairError::Invalid(format!("fetching {}: {e}", tile.path())))??;
        let skip = (frontier.size() - tile.first()) as usize;
        let entries = entries.into_iter().skip(skip).collect();
        let batch = check_entries(&mut frontier, entries, key.public_key(), key.name())
            .map_err(|e| RepairError::Invalid(format!("{}: {e}", tile.records_path())))?;
        store.store_journal(&batch, crate::clock::now_ms()).await?;
    }
    if frontier.root() != root {
        return Err(RepairError::Invalid(format!(
            "the entries do not hash to the {CHECKPOINT}'s root"
        )));
    }
    store
        .put_checkpoint(size, &note, crate::clock::now_ms())
        .await?;
    restore_state(store, bucket, size).await?;
    tracing::info!(
        from,
        to = size,
        ms = started.elapsed().as_millis() as u64,
        bucket = bucket.url(),
        "database repaired from the bucket"
    );
    Ok(Repaired {
        from,
        to: size,
        checkpoint: size,
    })
}

/// Stores the bucket's sealed state ([`STATE`]) when it is of at most `size` entries and
/// newer than the store's newest state at or below `size` (a database restored from an old
/// copy has an old one), so that the next boot replays only the leaves after it. The state is
/// opaque to the host; the enclave checks it (AEAD under its own key, bound to the size and
/// root) and refuses one that does not match its log.
///
/// # Errors
/// [`RepairError::Invalid`] if the object is not a whole sealed state; bucket and database
/// errors.
async fn restore_state(store: &Store, bucket: &Bucket, size: u64) -> Result<(), RepairError> {
    let Some(bytes) = bucket.get(STATE).await? else {
        return Ok(());
    };
    let parts: Vec<leadgate_protocol::StatePart> = ciborium::from_reader(bytes.as_ref())
        .map_err(|e| RepairError::Invalid(format!("{STATE}: {e}")))?;
    let Some(state) = parts.first().map(|p| p.size).filter(|&s| s <= size) else {
        return Ok(());
    };
    if store
        .latest_state_size(size)
        .await?
        .is_some_and(|have| have >= state)
    {
        return Ok(());
    }
    store.put_state(&parts).await.map_err(|e| match e {
        StoreError::Inconsistent(why) => RepairError::Invalid(format!("{STATE}: {why}")),
        e => RepairError::Store(e),
    })?;
    Ok(())
}

/// Replaces damaged entries `indexes` of the store with the bucket's copies, each checked
/// first: its tile as [`repair`] checks it (of the tree the bucket's checkpoint signs), and
/// its leaf against its receipt, signed by the log key (`pinned_key`, else the bucket's
/// `leadgate/log-key`) for its index.
///
/// # Errors
/// [`RepairError::Invalid`] if an entry is beyond the bucket's checkpoint or its copy does not
/// verify; the entries before it are replaced.
pub async fn repair_entries(
    store: &Store,
    bucket: &Bucket,
    indexes: &[u64],
    pinned_key: Option<&NoteVerifier>,
) -> Result<(), RepairError> {
    let key = log_key(bucket, pinned_key).await?;
    let note = object(bucket, CHECKPOINT).await?;
    let cp = verify_checkpoint(&note, &key, key.name())
        .map_err(|e| RepairError::Invalid(format!("{CHECKPOINT}: {e}")))?;
    let size = cp.checkpoint().size;
    for &index in indexes {
        let tile = layout::tile_for(size, 0, index).ok_or_else(|| {
            RepairError::Invalid(format!("entry {index} is beyond the bucket's checkpoint"))
        })?;
        let entries = verified_tile(bucket, tile).await?;
        let Some(entry) = entries.get((index - tile.first()) as usize) else {
            return Err(RepairError::Invalid(format!("{} is short", tile.path())));
        };
        let h = leaf_hash(&entry.leaf);
        let receipt_ok = entry
            .receipt
            .verify(key.public_key(), key.name())
            .is_ok_and(|r| r.index == index && r.leaf_hash == h);
        if !receipt_ok {
            return Err(RepairError::Invalid(format!(
                "the bucket's entry {index} does not verify"
            )));
        }
        store
            .replace_entry(index, &entry.leaf, &entry.receipt, &h)
            .await?;
    }
    Ok(())
}
