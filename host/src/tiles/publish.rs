//! Publishing the log to the bucket, and the rule that makes the bucket its durable copy.
//!
//! Each round ([`Publisher::publish_once`], every [`PUBLISH_EVERY`] while the log grows):
//!
//! 1. a checkpoint of everything stored is signed (the enclave signs it once every batch
//!    sent to it is stored; it is kept in the database too);
//! 2. the tiles the tree grew since the bucket's checkpoint are written: hash tiles at every
//!    level, and beside each level-0 tile its entry bundle and record bundle
//!    ([`super::records`]); a full tile is written once, when it fills, and never again;
//! 3. then the checkpoint, so the bucket's checkpoint never covers a tile it lacks;
//! 4. then, and only then, the size is confirmed to the enclave (`Durable`), which may drop
//!    those entries from its journal;
//! 5. the partial tiles of tiles that became full are deleted (readers fall back to the full
//!    tile, as the spec allows).
//!
//! The enclave's newest sealed state the bucket's log covers is written by a loop of its own
//! ([`Publisher::publish_state`]): a state is megabytes and its write can take over a second,
//! during which rounds, and so the confirmations that free the enclave's journal, must go on.
//!
//! So every entry the enclave signed a receipt for is in the enclave's journal or in the
//! bucket (or both), whatever happens to the host's disk. If the bucket is unreachable,
//! nothing more is confirmed; the enclave's journal fills to its bound and it then refuses
//! appends (`journal.full`, 503) until the bucket is back: the gateway slows down, it never
//! loses an acknowledged entry. `/healthz` says why meanwhile.
//!
//! Beside the log, the bucket keeps the enclave's sealed secrets (`leadgate/secrets`, only the
//! enclave can open them) and the log's note verifier key (`leadgate/log-key`, C2SP
//! signed-note vkey text), which a database rebuilt from the bucket needs.

use std::sync::Arc;
use std::time::Duration;

use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::note::Note;

use super::bucket::{Bucket, BucketError};
use super::records;
use crate::gateway::{Gateway, LinkError};
use crate::storage::StoreError;
use leadgate_verifier::tiles::{self as layout, BundleError, TileRef};

/// How often the publisher looks for new entries.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The bucket path of the log's checkpoint (C2SP tlog-tiles).
pub const CHECKPOINT: &str = "checkpoint";
/// The bucket path of the enclave's sealed secrets.
pub const SECRETS: &str = "leadgate/secrets";
/// The bucket path of the log's note verifier key.
pub const LOG_KEY: &str = "leadgate/log-key";
/// The bucket path of the enclave's newest sealed state (its fast-boot state, see
/// `leadgate_enclave::state`) that the bucket's log covers: a CBOR array of its parts
/// (`leadgate_protocol::StatePart`), replaced whole by each newer state.
pub const STATE: &str = "leadgate/state";

/// Why a round failed; nothing is confirmed to the enclave for it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The enclave did not sign the checkpoint.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bucket failed.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A leaf too long for an entry bundle (the enclave refuses to make one).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The database lacks what the checkpoint covers, or the bucket holds something that is
    /// not a checkpoint.
    #[error("{0}")]
    Inconsistent(String),
}

/// The size a checkpoint note covers.
///
/// # Errors
/// [`PublishError::Inconsistent`] if it is not a checkpoint note.
pub fn checkpoint_size(note: &[u8]) -> Result<u64, PublishError> {
    let bad = |e: String| PublishError::Inconsistent(format!("checkpoint: {e}"));
    let note = Note::parse(note).map_err(|e| bad(e.to_string()))?;
    Ok(Checkpoint::parse_text(&note.text)
        .map_err(|e| bad(e.to_string()))?
        .size)
}

/// Publishes the gateway's log to a bucket.
pub struct Publisher {
    bucket: Bucket,
    gateway: Arc<Gateway>,
    /// The size the bucket's checkpoint covers, held for the length of a round.
    published: tokio::sync::Mutex<u64>,
    /// The size the last round of this process published, for the state loop to read
    /// without waiting for a round; 0 until the first round, which runs only once the boot
    /// (and any repair of the database) is done, so no state is taken from a database not
    /// yet repaired.
    published_size: std::sync::atomic::AtomicU64,
    /// Whether the secrets and log key were written by this process.
    keys_written: std::sync::atomic::AtomicBool,
    /// The size of the sealed state in [`STATE`]: read at start, then the size this process
    /// last wrote. Only a newer state replaces it.
    state_written: std::sync::atomic::AtomicU64,
}

impl Publisher {
    /// A publisher that continues from the bucket's checkpoint (none: an empty bucket), and
    /// tells the gateway to confirm only what the bucket holds.
    ///
    /// # Errors
    /// The bucket is unreachable, or its `checkpoint` is not a checkpoint.
    pub async fn new(bucket: Bucket, gateway: Arc<Gateway>) -> Result<Arc<Self>, PublishError> {
        let size = match bucket.get(CHECKPOINT).await? {
            Some(note) => checkpoint_size(&note)?,
            None => 0,
        };
        // A state object that does not decode is treated as absent: the next state replaces
        // it.
        let state = match bucket.get(STATE).await? {
            Some(bytes) => {
                ciborium::from_reader::<Vec<leadgate_protocol::StatePart>, _>(bytes.as_ref())
                    .ok()
                    .and_then(|parts| parts.first().map(|p| p.size))
                    .unwrap_or(0)
            }
            None => 0,
        };
        gateway.publish_to_bucket(size);
        Ok(Arc::new(Self {
            bucket,
            gateway,
            published: tokio::sync::Mutex::new(size),
            published_size: 0.into(),
            keys_written: false.into(),
            state_written: state.into(),
        }))
    }

    /// The bucket.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Publishes every stored entry past the bucket's checkpoint (see the module docs).
    /// Returns the new published size, or `None` if there was nothing to publish.
    ///
    /// # Errors
    /// Any [`PublishError`]; the bucket's checkpoint is then unchanged.
    pub async fn publish_once(&self) -> Result<Option<u64>, PublishError> {
        let mut published = self.published.lock().await;
        let began_ms = crate::clock::now_ms();
        let stored = self.gateway.stored_size();
        if stored <= *published {
            self.gateway.published_all(began_ms);
            return Ok(None);
        }
        if !self.gateway.connected().await {
            return Ok(None);
        }
        self.write_keys().await?;
        let note = self.gateway.checkpoint_to_publish().await?;
        let size = checkpoint_size(&note)?;
        if size < *published {
            return Err(PublishError::Inconsistent(format!(
                "the enclave signed a checkpoint of {size} entries, behind the bucket's {}",
                *published
            )));
        }
        let grown = layout::grown_tiles(*published, size);
        let mut objects = Vec::new();
        for tile in &grown {
            objects.extend(self.tile_objects(*tile).await?);
        }
        // The round's objects are independent of each other: written at once, all of them
        // before the checkpoint.
        let mut puts = tokio::task::JoinSet::new();
        for (path, bytes) in objects {
            let bucket = self.bucket.clone();
            puts.spawn(async move { bucket.put(&path, bytes).await });
        }
        while let Some(put) = puts.join_next().await {
            put.map_err(|e| PublishError::Inconsistent(format!("publishing task: {e}")))??;
        }
        self.bucket.put(CHECKPOINT, note).await?;
        *published = size;
        self.published_size
            .store(size, std::sync::atomic::Ordering::Release);
        self.gateway.published_to(Ok(size));
        if size >= stored {
            self.gateway.published_all(began_ms);
        }
        // Partial tiles of a tile that is now full are no longer needed by any checkpoint's
        // reader who falls back to the full tile (c2sp.org/tlog-tiles, "Partial Tiles"):
        // deleted beside the next rounds, off their path.
        let mut prefixes = Vec::new();
        for tile in grown.iter().filter(|t| t.is_full()) {
            prefixes.push(format!("{}.p", tile.path()));
            if tile.level == 0 {
                prefixes.push(format!("{}.p", tile.entries_path()));
                prefixes.push(format!("{}.p", tile.records_path()));
            }
        }
        if !prefixes.is_empty() {
            let bucket = self.bucket.clone();
            tokio::spawn(async move {
                for p in prefixes {
                    if let Err(e) = bucket.delete_children(&p).await {
                        tracing::warn!(error = %e, prefix = p, "deleting partial tiles failed");
                    }
                }
            });
        }
        Ok(Some(size))
    }

    /// The objects of one grown tile: the hash tile, and for level 0 its entry and record
    /// bundles, as (path, bytes).
    async fn tile_objects(&self, tile: TileRef) -> Result<Vec<(String, Vec<u8>)>, PublishError> {
        let store = &self.gateway.store;
        let hashes = store
            .node_range(8 * tile.level, tile.first(), tile.width)
            .await?;
        if hashes.len() as u64 != tile.width {
            return Err(PublishError::Inconsistent(format!(
                "the database lacks hashes of tile {}",
                tile.path()
            )));
        }
        let mut out = Vec::with_capacity(3);
        if tile.level == 0 {
            let entries = store
                .journal_entries(tile.first(), tile.first() + tile.width)
                .await?;
            // A damaged row is never published (a full tile is written once): the scrub
            // repairs it from the bucket's earlier partial tile, then the round goes on.
            if let Some(i) = (0..entries.len()).find(|&i| {
                hashes.get(i) != Some(&leadgate_verifier::merkle::leaf_hash(&entries[i].leaf))
            }) {
                let index = tile.first() + i as u64;
                let _ = self.gateway.suspect(index);
                return Err(PublishError::Inconsistent(format!(
                    "entry {index} is damaged in the database (its leaf does not hash to its tree node)"
                )));
            }
            let bundle = layout::encode_bundle(entries.iter().map(|e| e.leaf.as_slice()))?;
            out.push((tile.entries_path(), bundle));
            out.push((tile.records_path(), records::encode(&entries)));
        }
        out.push((tile.path(), hashes.concat()));
        Ok(out)
    }

    /// Writes the newest stored sealed state that the bucket's checkpoint covers to
    /// [`STATE`] when it is newer than the one there: a host rebuilt from the bucket hands it
    /// to a new enclave process, which then replays only the leaves after it. It takes the
    /// size this process's last round published, so a state is never in the bucket before
    /// the entries it is of, and nothing before the first round (a database restored from an
    /// old copy holds only old states until its repair at boot). Returns the size of the
    /// state written, or `None` if there was nothing newer to write.
    ///
    /// # Errors
    /// [`PublishError::Store`] or [`PublishError::Bucket`]; the bucket's state is then the
    /// previous one.
    pub async fn publish_state(&self) -> Result<Option<u64>, PublishError> {
        use std::sync::atomic::Ordering;
        let published = self.published_size.load(Ordering::Acquire);
        let store = &self.gateway.store;
        let Some(size) = store.latest_state_size(published).await? else {
            return Ok(None);
        };
        if size <= self.state_written.load(Ordering::Acquire) {
            return Ok(None);
        }
        let Some(parts) = store.latest_state(published).await? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&parts, &mut bytes)
            .map_err(|e| PublishError::Inconsistent(format!("encoding the sealed state: {e}")))?;
        self.bucket.put(STATE, bytes).await?;
        self.state_written.store(size, Ordering::Release);
        tracing::info!(size, parts = parts.len(), "sealed enclave state published");
        Ok(Some(size))
    }

    /// Writes the sealed secrets and the log key once per process (they change only when
    /// the log starts).
    async fn write_keys(&self) -> Result<(), PublishError> {
        use std::sync::atomic::Ordering;
        if self.keys_written.load(Ordering::Acquire) {
            return Ok(());
        }
        let Some(info) = self.gateway.info().await else {
            return Err(PublishError::Inconsistent(
                "the enclave is not booted".into(),
            ));
        };
        let vkey = info
            .keys
            .note_verifier()
            .map_err(|e| PublishError::Inconsistent(e.to_string()))?
            .to_vkey_string();
        if let Some(secrets) = self.gateway.store.sealed_secrets().await? {
            self.bucket.put(SECRETS, secrets).await?;
        }
        self.bucket.put(LOG_KEY, format!("{vkey}\n")).await?;
        self.keys_written.store(true, Ordering::Release);
        Ok(())
    }

    /// Publishes every [`PUBLISH_EVERY`], for ever, the sealed state in a loop beside the
    /// rounds; failures are logged, reported in `/healthz` and retried.
    pub async fn run(self: Arc<Self>) {
        let states = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PUBLISH_EVERY).await;
                if let Err(e) = states.publish_state().await {
                    tracing::warn!(error = %e, bucket = states.bucket.url(), "publishing the sealed state failed");
                }
            }
        });
        loop {
            tokio::time::sleep(PUBLISH_EVERY).await;
            match self.publish_once().await {
                Ok(Some(size)) => tracing::debug!(size, "published to the bucket"),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, bucket = self.bucket.url(), "publishing failed");
                    self.gateway.published_to(Err(e.to_string()));
                }
            }
        }
    }
}
