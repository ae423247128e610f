//! The host's side of the enclave link: connecting, booting the enclave from stored state,
//! and every exchange that changes the log.
//!
//! Submissions run as a two-stage pipeline so that the enclave works on one batch while the
//! previous one is being committed: [`Gateway::send_batch`] (under the link lock) writes a
//! batch to the enclave without waiting ([`crate::link`] pipelines requests), and
//! [`Gateway::store_batch`] waits for its answer and stores its appends, in the same order,
//! before anyone is answered. Whatever reads the store to talk to the enclave (boot, a
//! checkpoint) first waits until every sent batch is stored ([`Gateway`]'s flush), so the
//! enclave never signs a checkpoint over entries that are not stored and never boots from a
//! stale tip. If storing fails, every later batch of that link is discarded unstored (the log
//! would have a gap) and the link is dropped.
//!
//! Healing: the host reconnects to the enclave, which is still running, and catches up: it
//! fetches the tail it did not store from the enclave's journal, checks each entry's receipt
//! and the recomputed tree against the enclave's root, and stores it, so no receipt the
//! enclave gave out is voided. After each commit the host confirms the stored size
//! (`Request::Durable`) so the enclave can drop that part of its journal. Only when the tail
//! is no longer held (`journal.gap`), or the running enclave holds another log, does the host
//! reset the enclave and boot it from its own tip (a new epoch). Clients are answered 503 with
//! `Retry-After` meanwhile; a retried submission or bid that was stored gets its original
//! answer.
//!
//! Files: this one (the link, its health, the flush barrier, checkpoints and attestation),
//! `boot.rs` (connect, boot, restore, catch-up), `intake.rs` (the whole submit pipeline, from
//! the API's queue to the stored answer), `market.rs` (bids, closes, releases).

use leadgate_verifier::ErrorCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use leadgate_protocol::{Request, Response, WireAppended};
use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::note::Note;
use serde_bytes::ByteBuf;
use tokio::sync::{watch, Mutex, MutexGuard, RwLock};

use crate::error::ApiError;
use crate::link::EnclaveConn;
pub use crate::link::LinkError;
use crate::storage::Store;

mod boot;
mod intake;
mod market;
mod rules;
#[cfg(test)]
mod tests;

pub use intake::{run_pipeline, Job, QueuedJob, SentBatch};
pub use market::{run_bids, QueuedBid};

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Unavailable => ApiError::new(
                ErrorCode::EnclaveUnavailable,
                "the enclave is not reachable; retry",
            ),
            LinkError::Protocol(m) => ApiError::internal("enclave protocol", m),
            LinkError::Enclave(e) => ApiError::from(e),
            LinkError::Store(e) => ApiError::storage(e),
            LinkError::Behind(m) => ApiError::new(ErrorCode::LogRollback, m),
            LinkError::Credentials(e) => ApiError::internal("aws credentials", e),
        }
    }
}

/// How far the stored log may grow before the host confirms it to the enclave outside the
/// heartbeat: well inside the enclave's journal (4,096 entries by default), with the three
/// batches of 256 that can be in flight on top.
const DURABLE_EVERY: u64 = 1_024;

/// Public facts learned at boot.
#[derive(Debug, Clone)]
pub struct EnclaveInfo {
    /// The bound public keys.
    pub keys: EnclaveKeys,
}

/// The enclave connection and the boot it belongs to.
struct Link {
    conn: Option<EnclaveConn>,
    /// The stored size last confirmed to the enclave on this connection.
    confirmed: u64,
    /// Incremented at every boot (first boot: 1).
    epoch: u64,
    /// Batches sent so far (all epochs).
    sent: u64,
}

/// The gateway: store + enclave connection.
pub struct Gateway {
    /// Storage.
    pub store: Store,
    addr: leadgate_protocol::transport::Endpoint,
    conn: Mutex<Link>,
    info: RwLock<Option<EnclaveInfo>>,
    /// Batches stored (or discarded) so far; the flush barrier waits on it.
    stored: watch::Sender<u64>,
    /// The link epoch whose batch failed to store (0: none).
    failed_epoch: AtomicU64,
    /// The anchoring worker, when anchoring is configured.
    pub anchorer: std::sync::OnceLock<std::sync::Arc<crate::anchor::Anchorer>>,
    /// The settling worker, when settlement is configured; woken by every stored close.
    pub settler: std::sync::OnceLock<std::sync::Arc<crate::settle::Settler>>,
    /// Where the AWS credentials lent to the enclave at each boot (for its KMS sealer) come
    /// from, when configured; asked afresh at every boot.
    pub aws_credentials: std::sync::OnceLock<crate::aws_credentials::CredentialSource>,
    /// The stored log size, as of the last commit (read without touching the database).
    durable: AtomicU64,
    /// Whether the link is up and booted (read without taking the link lock).
    up: AtomicBool,
    /// Why the gateway is degraded, when it is.
    reason: std::sync::Mutex<Option<String>>,
    /// The bucket a store that is behind is repaired from before every boot and catch-up
    /// ([`crate::tiles::repair`]), when one is configured.
    pub repair_from: std::sync::OnceLock<crate::tiles::bucket::Bucket>,
    /// Whether the log is published to a bucket: then only what the bucket holds is confirmed
    /// to the enclave ([`Gateway::published_to`]).
    publishing: AtomicBool,
    /// The log size the bucket's checkpoint covers.
    published: AtomicU64,
    /// Why publishing to the bucket fails, while it does.
    publish_error: std::sync::Mutex<Option<String>>,
    /// A time by which every entry then stored was in the bucket (Unix ms): every unpublished
    /// entry has waited at most since then.
    published_all_ms: AtomicU64,
    /// Damage the scrub found and could not repair: the first damaged index and why.
    damage: std::sync::Mutex<Option<(u64, String)>>,
    /// Entries found damaged while being served or published, for the scrub to check and
    /// repair first.
    suspects: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

/// How long entries may wait to be published before `/healthz` says the bucket lags.
const PUBLISH_LAG_MS: u64 = 5_000;

/// Exchanges on the held connection. Any link failure drops the connection (the stream may
/// be out of step), so that [`Gateway::maintain`] reconnects and re-boots the enclave.
async fn exchange_held(
    conn: &mut Option<EnclaveConn>,
    req: &Request,
) -> Result<Response, LinkError> {
    let result = conn.as_mut().ok_or(LinkError::Unavailable)?.call(req).await;
    if result.is_err() {
        *conn = None;
    }
    result
}

/// A stored append as answered again: index and receipt (the leaf and nodes are not sent).
fn stored_answer(index: u64, receipt: leadgate_verifier::receipt::Receipt) -> WireAppended {
    WireAppended {
        index,
        leaf: ByteBuf::new(),
        nodes: Vec::new(),
        receipt,
    }
}

fn expect_ok(resp: Response) -> Result<(), LinkError> {
    match resp {
        Response::Ok => Ok(()),
        Response::Error(e) => Err(LinkError::Enclave(e)),
        other => Err(LinkError::Protocol(format!("{other:?}"))),
    }
}

impl Gateway {
    /// A gateway that will connect to the enclave at `addr`.
    pub fn new(store: Store, addr: leadgate_protocol::transport::Endpoint) -> Self {
        Self {
            store,
            addr,
            conn: Mutex::new(Link {
                conn: None,
                confirmed: 0,
                epoch: 0,
                sent: 0,
            }),
            info: RwLock::new(None),
            stored: watch::channel(0).0,
            failed_epoch: AtomicU64::new(0),
            anchorer: std::sync::OnceLock::new(),
            settler: std::sync::OnceLock::new(),
            aws_credentials: std::sync::OnceLock::new(),
            durable: AtomicU64::new(0),
            up: AtomicBool::new(false),
            reason: std::sync::Mutex::new(Some("starting: the enclave link is not up yet".into())),
            repair_from: std::sync::OnceLock::new(),
            publishing: AtomicBool::new(false),
            published: AtomicU64::new(0),
            publish_error: std::sync::Mutex::new(None),
            published_all_ms: AtomicU64::new(crate::clock::now_ms()),
            damage: std::sync::Mutex::new(None),
            suspects: std::sync::Mutex::new(Default::default()),
        }
    }

    /// Confirms entries to the enclave only once the bucket holds them (see
    /// [`crate::tiles::publish`]), from a bucket whose checkpoint covers `size` entries.
    pub fn publish_to_bucket(&self, size: u64) {
        self.published.fetch_max(size, Ordering::AcqRel);
        self.publishing.store(true, Ordering::Release);
    }

    /// Records that the bucket's checkpoint now covers `size` entries (they may be confirmed
    /// to the enclave), or why publishing failed.
    pub fn published_to(&self, result: Result<u64, String>) {
        let mut error = self.publish_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(size) => {
                self.published.fetch_max(size, Ordering::AcqRel);
                *error = None;
            }
            Err(e) => *error = Some(e),
        }
    }

    /// Damage found by the scrub and not repaired: (first damaged index, why).
    pub fn damage(&self) -> Option<(u64, String)> {
        self.damage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records damage found by the scrub, or that it is gone.
    pub fn set_damage(&self, damage: Option<(u64, String)>) {
        *self.damage.lock().unwrap_or_else(|p| p.into_inner()) = damage;
    }

    /// Hands entry `index`, whose stored leaf does not hash to its tree node, to the scrub,
    /// which checks and repairs it within a second; returns the `storage.damaged` error (503)
    /// to answer with meanwhile.
    pub fn suspect(&self, index: u64) -> ApiError {
        self.suspects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(index);
        ApiError::new(
            ErrorCode::StorageDamaged,
            format!(
                "entry {index} is damaged in the database (its leaf does not hash to its tree node); it is being repaired"
            ),
        )
    }

    /// The entries handed to the scrub since its last call (at most 4,096 taken at once).
    pub fn take_suspects(&self) -> Vec<u64> {
        let mut s = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        let taken: Vec<u64> = s.iter().copied().take(4_096).collect();
        for i in &taken {
            s.remove(i);
        }
        taken
    }

    /// `storage.damaged` while the scrub reports damage: no proof or entry is served over it.
    ///
    /// # Errors
    /// [`ApiError`] with `storage.damaged`.
    pub fn refuse_if_damaged(&self) -> Result<(), ApiError> {
        match self.damage() {
            Some((_, why)) => Err(ApiError::new(ErrorCode::StorageDamaged, why)),
            None => Ok(()),
        }
    }

    /// Records that the bucket holds every entry stored by `as_of_ms` (Unix ms): a round that
    /// began then found nothing to publish, or published at least what was stored when it
    /// began. Every entry still unpublished was stored later, so its wait is at most the time
    /// since; under steady load a round rarely catches up with entries stored while it runs.
    pub fn published_all(&self, as_of_ms: u64) {
        self.published_all_ms.fetch_max(as_of_ms, Ordering::AcqRel);
    }

    /// The size the bucket's checkpoint covers, when publishing.
    pub fn published_size(&self) -> Option<u64> {
        self.publishing
            .load(Ordering::Acquire)
            .then(|| self.published.load(Ordering::Acquire))
    }

    /// The size that may be confirmed to the enclave: what is stored, and published when a
    /// bucket is configured.
    fn confirmable_size(&self) -> u64 {
        let stored = self.stored_size();
        match self.published_size() {
            Some(p) => p.min(stored),
            None => stored,
        }
    }

    /// The stored log size as of the last commit (no database access).
    pub fn stored_size(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Whether the gateway serves, and why not when it does not (no lock, no database).
    pub fn health(&self) -> (bool, Option<String>) {
        let up = self.up.load(Ordering::Acquire);
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (up, if up { None } else { reason })
    }

    /// Why publishing to the bucket fails, while it does: the gateway is then degraded (it
    /// serves until the enclave's unconfirmed tail is full, then refuses appends).
    pub fn publish_error(&self) -> Option<String> {
        if let Some(e) = self
            .publish_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(format!("publishing to the bucket fails: {e}"));
        }
        let published = self.published_size()?;
        let behind = self.stored_size().saturating_sub(published);
        let since =
            crate::clock::now_ms().saturating_sub(self.published_all_ms.load(Ordering::Acquire));
        (behind > 0 && since > PUBLISH_LAG_MS).then(|| {
            format!(
                "publishing to the bucket lags: {behind} entries unpublished, the oldest waiting \
                 up to {} s (appends stop when the enclave's unconfirmed tail is full)",
                since / 1000
            )
        })
    }

    fn degraded(&self, why: impl Into<String>) {
        self.up.store(false, Ordering::Release);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.into());
    }

    /// Records a commit that made the stored log `size` long.
    fn stored_to(&self, size: u64) {
        self.durable.fetch_max(size, Ordering::AcqRel);
    }

    /// Pipelines `Durable` ahead of the next request when the store grew by at least
    /// [`DURABLE_EVERY`] entries since the last one, or by any amount when `now` (the
    /// heartbeat). Its answer is not waited for: it only lets the enclave drop journal entries.
    /// Confirming every batch would add an enclave round of work per batch.
    async fn confirm_durable(&self, link: &mut Link, now: bool) {
        let size = self.confirmable_size();
        let due = if now {
            size > link.confirmed
        } else {
            size >= link.confirmed + DURABLE_EVERY
        };
        if !due {
            return;
        }
        if let Some(conn) = link.conn.as_mut() {
            if conn.send(&Request::Durable { size }).await.is_ok() {
                link.confirmed = size;
            }
        }
    }

    /// Locks the link, dropping the connection if it closed or a batch of its epoch failed
    /// to store.
    async fn link(&self) -> MutexGuard<'_, Link> {
        let mut link = self.conn.lock().await;
        if let Some(c) = &link.conn {
            if !c.is_alive() {
                tracing::warn!("enclave link closed");
                link.conn = None;
                self.degraded("enclave link closed; reconnecting");
            } else if self.failed_epoch.load(Ordering::Acquire) == link.epoch {
                tracing::error!("a batch failed to store; dropping the enclave link");
                link.conn = None;
                self.degraded("storage failed; reconnecting and catching up");
            }
        }
        link
    }

    /// Waits until every batch sent on `link` is stored or discarded. Called with the link
    /// locked, so no new batch can be sent meanwhile.
    async fn flush(&self, link: &Link) {
        let mut rx = self.stored.subscribe();
        let _ = rx.wait_for(|stored| *stored >= link.sent).await;
    }

    /// The enclave's keys, once booted.
    pub async fn info(&self) -> Option<EnclaveInfo> {
        self.info.read().await.clone()
    }

    /// Whether the link is up.
    pub async fn connected(&self) -> bool {
        self.link().await.conn.is_some()
    }

    /// Locks the link for an exchange that appends to (or signs over) the log outside the
    /// submission pipeline: waits until every sent batch is stored, then exchanges `req`. The
    /// caller stores the answer while holding the guard (and drops the connection if that
    /// fails), so nothing is signed over unstored entries.
    async fn exchange_appending(
        &self,
        req: &Request,
    ) -> Result<(MutexGuard<'_, Link>, Response), LinkError> {
        let mut link = self.link().await;
        if link.conn.is_none() {
            return Err(LinkError::Unavailable);
        }
        self.flush(&link).await;
        if self.failed_epoch.load(Ordering::Acquire) == link.epoch {
            tracing::error!("a batch failed to store; dropping the enclave link");
            link.conn = None;
            self.degraded("storage failed; reconnecting and catching up");
            return Err(LinkError::Unavailable);
        }
        self.confirm_durable(&mut link, false).await;
        let resp = exchange_held(&mut link.conn, req).await?;
        Ok((link, resp))
    }

    /// Sends one request that does not change the log.
    async fn call(&self, req: &Request) -> Result<Response, LinkError> {
        let mut link = self.link().await;
        self.confirm_durable(&mut link, true).await;
        exchange_held(&mut link.conn, req).await
    }

    /// An attestation document for `nonce`.
    pub async fn attest(&self, nonce: Option<Vec<u8>>) -> Result<Vec<u8>, LinkError> {
        match self
            .call(&Request::Attest {
                nonce: nonce.map(ByteBuf::from),
            })
            .await?
        {
            Response::Attestation { document } => Ok(document.into_vec()),
            Response::Error(e) => Err(LinkError::Enclave(e)),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    /// Asks the enclave to seal its state when one is due (or now, if `force`) and stores
    /// every part, holding the link so that no append comes between the parts. Returns the
    /// sealed state's log size, if one was sealed.
    pub async fn seal_state(&self, force: bool) -> Result<Option<u64>, LinkError> {
        let (mut link, resp) = self
            .exchange_appending(&Request::SealState { part: 0, force })
            .await?;
        let first = match resp {
            Response::SealedState { part: None } => return Ok(None),
            Response::SealedState { part: Some(p) } => p,
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let (size, count) = (first.size, first.count);
        let mut parts = vec![first];
        for part in 1..count {
            match exchange_held(&mut link.conn, &Request::SealState { part, force }).await? {
                Response::SealedState { part: Some(p) } => parts.push(p),
                Response::Error(e) => return Err(LinkError::Enclave(e)),
                other => return Err(LinkError::Protocol(format!("{other:?}"))),
            }
        }
        drop(link);
        self.store.put_state(&parts).await?;
        tracing::info!(size, parts = count, "sealed enclave state stored");
        Ok(Some(size))
    }

    /// Asks for a checkpoint (now if `force`) and stores it, with the enclave's anchor
    /// signature when anchoring is on. Returns the note if one was signed.
    pub async fn checkpoint(&self, force: bool) -> Result<Option<Vec<u8>>, LinkError> {
        self.checkpoint_with(force, true).await
    }

    /// A checkpoint of everything stored, to publish (never anchored: the anchoring cadence
    /// is the periodic checkpoint's). Returns the note.
    pub async fn checkpoint_to_publish(&self) -> Result<Vec<u8>, LinkError> {
        self.checkpoint_with(true, false)
            .await?
            .ok_or_else(|| LinkError::Protocol("a forced checkpoint came back empty".into()))
    }

    async fn checkpoint_with(
        &self,
        force: bool,
        anchored: bool,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        // The lock is held until the note is stored, and the checkpoint is asked for only once
        // every sent batch is stored: a stored checkpoint never covers unstored entries.
        let anchor = self.anchorer.get().filter(|_| anchored).map(|a| a.target());
        let (_link, resp) = self
            .exchange_appending(&Request::Checkpoint { force, anchor })
            .await?;
        let (note, anchor_signature) = match resp {
            Response::Checkpoint {
                note,
                anchor_signature,
            } => (note, anchor_signature),
            Response::Error(e) => return Err(LinkError::Enclave(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let Some(note) = note else { return Ok(None) };
        let parsed = Note::parse(&note).map_err(|e| LinkError::Protocol(e.to_string()))?;
        let cp =
            Checkpoint::parse_text(&parsed.text).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.store
            .put_checkpoint(cp.size, &note, crate::clock::now_ms())
            .await?;
        tracing::info!(size = cp.size, "checkpoint stored");
        if let (Some(a), Some(sig)) = (self.anchorer.get(), anchor_signature) {
            a.enqueue(cp.size, &cp.root, &sig, crate::clock::now_ms())
                .await?;
        }
        Ok(Some(note.into_vec()))
    }
}
