//! The scrub: every stored leaf checked against the tree and its receipt, so damage on the
//! host's disk (a changed byte in a row) is found by the host, not only by a verifier. An
//! entry is sound when its leaf hashes to the stored level-0 node and to the leaf hash its
//! receipt signs (for its index, by the log key). The tail is checked before every boot of
//! the enclave (with a bucket, [`repair_tail`]) and at start, the rest in
//! the background at [`SCRUB_ENTRIES_PER_SECOND`], round and round; an entry found damaged
//! while being served or published (its leaf does not hash to its node, checked on every
//! read) is checked within a second ([`Gateway::suspect`]). A damaged entry is
//! repaired from the bucket when one is configured and its copy verifies; otherwise the host
//! says so in `/healthz` and refuses to serve proofs and entries (`storage.damaged`) until a
//! repair or a restored database fixes it.

use std::sync::Arc;
use std::time::Duration;

use leadgate_verifier::merkle::leaf_hash;

use super::bucket::Bucket;
use crate::gateway::Gateway;
use crate::storage::{Store, StoreError};

/// Entries checked per second in the background.
pub const SCRUB_ENTRIES_PER_SECOND: u64 = 2_048;
/// Entries at the tail checked first, at start.
pub const SCRUB_TAIL: u64 = 4_096;

/// The indexes in `from .. to` whose stored leaf, level-0 node and receipt disagree.
///
/// # Errors
/// Database errors; a missing entry is reported as damaged.
pub async fn damaged(
    store: &Store,
    log_key: &ed25519_dalek::VerifyingKey,
    origin: &str,
    from: u64,
    to: u64,
) -> Result<Vec<u64>, StoreError> {
    let entries = match store.journal_entries(from, to).await {
        Ok(e) => e,
        Err(StoreError::Inconsistent(_)) => return Ok((from..to).collect()),
        Err(e) => return Err(e),
    };
    let nodes = store.node_range(0, from, to - from).await?;
    let mut bad = Vec::new();
    for (i, e) in (from..).zip(&entries) {
        let h = leaf_hash(&e.leaf);
        let node_ok = nodes.get((i - from) as usize) == Some(&h);
        let receipt_ok = e
            .receipt
            .verify(log_key, origin)
            .is_ok_and(|r| r.index == i && r.leaf_hash == h);
        if !(node_ok && receipt_ok) {
            bad.push(i);
        }
    }
    Ok(bad)
}

/// Checks the last [`SCRUB_TAIL`] stored entries and replaces the damaged ones with the
/// bucket's verified copies ([`super::repair::repair_entries`]). Run before every boot: a new
/// enclave process replays the stored tail, and refuses a damaged one as a fork
/// (`log.fork`), so the background scrub, which runs once the enclave is up, would never get
/// to it. Returns how many entries were replaced; 0 without a log key to check against (an
/// empty bucket and no `pinned_key`).
///
/// # Errors
/// [`super::repair::RepairError`]: damage the bucket cannot mend (the entry is beyond its
/// checkpoint, or its copy does not verify), or a database or bucket failure.
pub async fn repair_tail(
    store: &Store,
    bucket: &Bucket,
    pinned_key: Option<&leadgate_verifier::note::NoteVerifier>,
) -> Result<usize, super::repair::RepairError> {
    let size = store.size().await?;
    if size == 0 {
        return Ok(0);
    }
    let key = match super::repair::log_key(bucket, pinned_key).await {
        Ok(k) => k,
        Err(super::repair::RepairError::Invalid(_)) if pinned_key.is_none() => return Ok(0),
        Err(e) => return Err(e),
    };
    let bad = damaged(
        store,
        key.public_key(),
        key.name(),
        size.saturating_sub(SCRUB_TAIL),
        size,
    )
    .await?;
    if bad.is_empty() {
        return Ok(0);
    }
    super::repair::repair_entries(store, bucket, &bad, Some(&key)).await?;
    tracing::warn!(
        first = bad[0],
        count = bad.len(),
        "damaged entries in the stored tail repaired from the bucket before boot"
    );
    Ok(bad.len())
}

/// Scrubs the gateway's store for ever (see the module docs).
pub async fn run(gateway: Arc<Gateway>, bucket: Option<Bucket>) {
    let mut cursor: Option<u64> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(info) = gateway.info().await else {
            continue;
        };
        let size = gateway.stored_size();
        if size == 0 {
            continue;
        }
        // The tail first, then the rest from 0, wrapping.
        let (from, to) = match cursor {
            None => (size.saturating_sub(SCRUB_TAIL), size),
            Some(c) if c >= size => (0, size.min(SCRUB_ENTRIES_PER_SECOND)),
            Some(c) => (c, size.min(c + SCRUB_ENTRIES_PER_SECOND)),
        };
        cursor = Some(if cursor.is_none() { 0 } else { to });
        let keys = &info.keys;
        // Entries found damaged while served or published come first.
        let mut found = Vec::new();
        for i in gateway.take_suspects() {
            if i < size {
                match damaged(&gateway.store, &keys.log_key, &keys.origin, i, i + 1).await {
                    Ok(bad) => found.extend(bad),
                    Err(e) => tracing::warn!(error = %e, "scrub: reading the store failed"),
                }
            }
        }
        let checked = damaged(&gateway.store, &keys.log_key, &keys.origin, from, to)
            .await
            .map(|mut bad| {
                bad.extend(found);
                bad.sort_unstable();
                bad.dedup();
                bad
            });
        match checked {
            Ok(bad) if bad.is_empty() => {
                if gateway.damage().is_some_and(|d| d.0 >= from && d.0 < to) {
                    gateway.set_damage(None);
                }
            }
            Ok(bad) => {
                tracing::error!(first = bad[0], count = bad.len(), "scrub: damaged entries");
                let repaired = match &bucket {
                    Some(b) => super::repair::repair_entries(
                        &gateway.store,
                        b,
                        &bad,
                        keys.note_verifier().ok().as_ref(),
                    )
                    .await
                    .map_err(|e| e.to_string()),
                    None => Err("no bucket to repair from".into()),
                };
                match repaired {
                    Ok(()) => {
                        tracing::warn!(count = bad.len(), "scrub: damaged entries repaired from the bucket");
                        gateway.set_damage(None);
                    }
                    Err(e) => gateway.set_damage(Some((
                        bad[0],
                        format!(
                            "entries {:?} are damaged in the database (leaf, node or receipt disagree) and could not be repaired: {e}; proofs are refused until they are",
                            &bad[..bad.len().min(8)]
                        ),
                    ))),
                }
            }
            Err(e) => tracing::warn!(error = %e, "scrub: reading the store failed"),
        }
    }
}
