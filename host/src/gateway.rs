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

use leadgate_verifier::ErrorCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use leadgate_protocol::MAX_CLOSES_PER_TICK;
use leadgate_protocol::{
    BidOutcome, Request, Response, RestoreBase, RestoreEntry, Status, SubmitOutcome, Tip,
    WireAppended, WireError, WireNode, MAX_RESTORE_ENTRIES, MAX_TAGS_PER_FRAME,
};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::note::Note;
use leadgate_verifier::release::{ReleaseRequest, ReleasedLead};
use serde_bytes::ByteBuf;
use tokio::sync::{watch, Mutex, MutexGuard, RwLock};

use crate::error::ApiError;
use crate::link::{self, Answer, EnclaveConn};
use crate::storage::{LeadRecord, Store, StoreError, StoredBid, StoredSubmission};

/// A submission queued for the enclave.
#[derive(Clone)]
pub struct Job {
    /// The sealed lead.
    pub lead: SealedLead,
    /// The request body as received (stored as the ciphertext record).
    pub sealed_json: String,
    /// SHA-256(enc || ciphertext), hex.
    pub ciphertext_sha256: String,
}

/// Link failures.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Not connected, or the connection broke.
    #[error("enclave unavailable")]
    Unavailable,
    /// The enclave answered something unexpected.
    #[error("enclave protocol error: {0}")]
    Protocol(String),
    /// The enclave refused or failed, with its code.
    #[error("enclave error {}: {}", .0.code, .0.message)]
    Enclave(WireError),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The AWS credentials to lend the enclave at boot could not be had.
    #[error(transparent)]
    Credentials(#[from] crate::aws_credentials::CredentialsError),
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        LinkError::Store(StoreError::Db(e))
    }
}

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

/// A batch sent to the enclave, to be finished by [`Gateway::store_batch`].
pub struct SentBatch {
    answer: Answer,
    /// Per job: the stored answer of a retried submission (not sent), or `None`.
    stored: Vec<Option<SubmitOutcome>>,
    epoch: u64,
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
    /// Where the AWS credentials lent to the enclave at each boot (for its KMS sealer) come
    /// from, when configured; asked afresh at every boot.
    pub aws_credentials: std::sync::OnceLock<crate::aws_credentials::CredentialSource>,
    /// The stored log size, as of the last commit (read without touching the database).
    durable: AtomicU64,
    /// Whether the link is up and booted (read without taking the link lock).
    up: AtomicBool,
    /// Why the gateway is degraded, when it is.
    reason: std::sync::Mutex<Option<String>>,
}

fn now_ms() -> u64 {
    crate::clock::now_ms()
}

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

/// The original answer of a stored submission.
fn original_answer(rec: &LeadRecord) -> SubmitOutcome {
    SubmitOutcome::Logged {
        lead_id: rec.lead_id.clone(),
        accepted: rec.verdict == "accepted",
        reason: rec.reason.clone(),
        score: rec.score,
        email_tag: None,
        appended: stored_answer(rec.index, rec.receipt.clone()),
    }
}

fn replayed() -> SubmitOutcome {
    SubmitOutcome::Refused(WireError::new(
        ErrorCode::SubmissionReplayed,
        "this submission was already received",
    ))
}

fn expect_ok(resp: Response) -> Result<(), LinkError> {
    match resp {
        Response::Ok => Ok(()),
        Response::Error(e) => Err(enclave_err(e)),
        other => Err(LinkError::Protocol(format!("{other:?}"))),
    }
}

fn enclave_err(e: WireError) -> LinkError {
    LinkError::Enclave(e)
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
            aws_credentials: std::sync::OnceLock::new(),
            durable: AtomicU64::new(0),
            up: AtomicBool::new(false),
            reason: std::sync::Mutex::new(Some("starting: the enclave link is not up yet".into())),
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
        let size = self.stored_size();
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

    /// Keeps the link up: connects, boots or catches up whenever it is down, retrying with
    /// backoff (200 ms, then 400 ms, then every 500 ms). Runs forever.
    pub async fn maintain(self: std::sync::Arc<Self>) {
        let mut last_beat = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut guard = self.link().await;
            if guard.conn.is_none() {
                self.up.store(false, Ordering::Release);
                // Boot reads the tip from the store: everything sent must be in it.
                self.flush(&guard).await;
                match leadgate_protocol::transport::connect(&self.addr).await {
                    Ok(stream) => {
                        let mut conn = EnclaveConn::new(stream);
                        match self.boot(&mut conn).await {
                            Ok(info) => {
                                tracing::info!(origin = %info.keys.origin, "enclave link up");
                                *self.info.write().await = Some(info);
                                guard.conn = Some(conn);
                                guard.confirmed = 0;
                                guard.epoch += 1;
                                self.confirm_durable(&mut guard, true).await;
                                *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = None;
                                self.up.store(true, Ordering::Release);
                                backoff = Duration::from_millis(200);
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "enclave boot or catch-up failed");
                                self.degraded(format!("enclave boot or catch-up failed: {e}"));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "enclave not reachable");
                        self.degraded(format!("enclave not reachable: {e}"));
                    }
                }
            }
            let down = guard.conn.is_none();
            drop(guard);
            tokio::time::sleep(if down {
                backoff
            } else {
                Duration::from_millis(200)
            })
            .await;
            if down {
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            // Heartbeat: a dead enclave is noticed within a second even when idle, so
            // `/healthz` tells the truth and the next boot starts promptly; it also keeps the
            // enclave's session alive and confirms what is stored.
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = tokio::time::Instant::now();
                if self.connected().await {
                    if let Err(LinkError::Unavailable) = self.call(&Request::Status).await {
                        tracing::warn!("enclave link lost");
                    }
                }
            }
        }
    }

    async fn tip(&self) -> Result<Option<Tip>, LinkError> {
        let Some(receipt) = self.store.last_receipt().await? else {
            return Ok(None);
        };
        let size = receipt.index + 1;
        let frontier = self.store.frontier(size).await?;
        let checkpoint = self.store.latest_checkpoint().await?;
        let mut checkpoint_consistency = Vec::new();
        if let Some(note) = &checkpoint {
            let cp_size = Note::parse(note)
                .ok()
                .and_then(|n| Checkpoint::parse_text(&n.text).ok())
                .map(|c| c.size)
                .ok_or_else(|| LinkError::Protocol("stored checkpoint does not parse".into()))?;
            let proof = self
                .store
                .with_nodes(|st| merkle::consistency_proof(st, cp_size, size))
                .await?
                .map_err(|e| LinkError::Store(StoreError::Inconsistent(e.to_string())))?;
            checkpoint_consistency = proof.iter().map(|h| ByteBuf::from(h.to_vec())).collect();
        }
        Ok(Some(Tip {
            receipt,
            peaks: frontier
                .peaks()
                .iter()
                .map(|p| ByteBuf::from(p.to_vec()))
                .collect(),
            checkpoint: checkpoint.map(ByteBuf::from),
            checkpoint_consistency,
        }))
    }

    /// The start-up sequence (see `leadgate_enclave::protocol`). An enclave that is already
    /// running (host restarted, link dropped) is caught up ([`Gateway::reconcile`]), or reset
    /// and booted again from the stored tip.
    async fn boot(&self, conn: &mut EnclaveConn) -> Result<EnclaveInfo, LinkError> {
        self.boot_once(conn, true).await
    }

    /// [`Gateway::boot`]; `reconcile` is false after a reset, when the enclave must boot.
    async fn boot_once(
        &self,
        conn: &mut EnclaveConn,
        reconcile: bool,
    ) -> Result<EnclaveInfo, LinkError> {
        self.stored_to(self.store.size().await?);
        let sealed = self.store.sealed_secrets().await?;
        let tip = self.tip().await?;
        let aws_credentials = match self.aws_credentials.get() {
            Some(source) => Some(source.resolve().await?),
            None => None,
        };
        let resp = conn
            .call(&Request::Boot {
                sealed_secrets: sealed.clone().map(ByteBuf::from),
                tip,
                aws_credentials,
            })
            .await?;
        let keys = match resp {
            Response::Booted {
                sealed_secrets,
                keys,
                ..
            } => {
                if sealed.as_deref() != Some(sealed_secrets.as_slice()) {
                    self.store.put_sealed_secrets(&sealed_secrets).await?;
                }
                let tags = self.store.email_tags().await?;
                for chunk in tags.chunks(MAX_TAGS_PER_FRAME) {
                    let tags = chunk.iter().cloned().map(ByteBuf::from).collect();
                    expect_ok(conn.call(&Request::LoadTags { tags }).await?)?;
                }
                self.restore(conn).await?;
                match conn.call(&Request::Start).await? {
                    Response::Started { appended } => {
                        self.store
                            .store_appends(&[&appended], &[], now_ms())
                            .await?;
                        self.stored_to(appended.index + 1);
                    }
                    Response::Error(e) => return Err(enclave_err(e)),
                    other => return Err(LinkError::Protocol(format!("{other:?}"))),
                }
                keys
            }
            Response::Error(e) if e.code == ErrorCode::BootAlreadyBooted && reconcile => {
                match self.reconcile(conn).await? {
                    Some(keys) => keys,
                    None => {
                        // Another log, not started, or the tail is gone: boot afresh from our
                        // tip (a new epoch), as after an enclave restart.
                        expect_ok(conn.call(&Request::Reset).await?)?;
                        return Box::pin(self.boot_once(conn, false)).await;
                    }
                }
            }
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let keys = EnclaveKeys::from_attested(Some(&keys), None)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        Ok(EnclaveInfo { keys })
    }

    /// A running enclave met on (re)connect: returns its keys once the store holds exactly its
    /// log (after catching up on a tail the store lacks), or `None` when it must be reset: it
    /// has not finished start-up, holds another log, is behind the store, or no longer holds
    /// the tail the store lacks.
    async fn reconcile(&self, conn: &mut EnclaveConn) -> Result<Option<ByteBuf>, LinkError> {
        let status = match conn.call(&Request::Status).await? {
            Response::Status(status) => status,
            Response::Error(e) if e.code == ErrorCode::EnclaveNotReady => {
                tracing::warn!("the running enclave never finished start-up; resetting it");
                return Ok(None);
            }
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let size = self.store.size().await?;
        let ours = self.store.sealed_secrets().await?.is_some();
        if !ours || status.size < size {
            tracing::warn!(
                enclave = status.size,
                store = size,
                "the running enclave holds another log; resetting it"
            );
            return Ok(None);
        }
        if status.size > size {
            self.degraded(format!(
                "catching up: enclave has {} entries, store has {size}",
                status.size
            ));
            if !self.catch_up(conn, &status, size).await? {
                return Ok(None);
            }
        } else if status.root.as_slice() != self.store.frontier(size).await?.root() {
            tracing::warn!(
                size,
                "the running enclave's root differs from the store's; resetting it"
            );
            return Ok(None);
        }
        Ok(Some(status.keys))
    }

    /// Fetches entries `size ..` from the enclave's journal, checks them (each receipt signed
    /// by the log key, for the next index, over the leaf's hash and the root the stored tree
    /// grows to; the last root equal to the enclave's) and stores them, chunk by chunk. False
    /// if the enclave no longer holds them (`journal.gap`).
    async fn catch_up(
        &self,
        conn: &mut EnclaveConn,
        status: &Status,
        size: u64,
    ) -> Result<bool, LinkError> {
        let keys = EnclaveKeys::from_attested(Some(&status.keys), None)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        let mut frontier = self.store.frontier(size).await?;
        let bad = |m: String| LinkError::Protocol(format!("journal: {m}"));
        while frontier.size() < status.size {
            let from = frontier.size();
            let entries = match conn.call(&Request::Journal { from }).await? {
                Response::Journal { entries } if !entries.is_empty() => entries,
                Response::Journal { .. } => {
                    return Err(bad("ended before the enclave's size".into()))
                }
                Response::Error(e) if e.code == ErrorCode::JournalGap => {
                    tracing::warn!(from, error = %e.message, "the enclave no longer holds the tail");
                    return Ok(false);
                }
                Response::Error(e) => return Err(enclave_err(e)),
                other => return Err(LinkError::Protocol(format!("{other:?}"))),
            };
            let mut batch = Vec::with_capacity(entries.len());
            for e in entries {
                let index = frontier.size();
                let r = e
                    .receipt
                    .verify(&keys.log_key, &keys.origin)
                    .map_err(|err| bad(format!("receipt {index}: {err}")))?;
                let leaf_hash = merkle::leaf_hash(&e.leaf);
                if r.index != index || r.leaf_hash != leaf_hash {
                    return Err(bad(format!("entry {index} does not follow on")));
                }
                let nodes = frontier.append(leaf_hash);
                if r.root != frontier.root() {
                    return Err(bad(format!(
                        "entry {index}: root differs from the stored tree's"
                    )));
                }
                let appended = WireAppended {
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
                };
                batch.push((appended, e.record));
            }
            self.store.store_journal(&batch, now_ms()).await?;
            self.stored_to(frontier.size());
            tracing::info!(
                from,
                to = frontier.size(),
                "caught up from the enclave's journal"
            );
        }
        if frontier.root().as_slice() != status.root.as_slice() {
            return Err(bad("caught-up root differs from the enclave's".into()));
        }
        Ok(true)
    }

    /// Replays the leaves from the last `log.epoch`'s `replay_from` to the tip, each
    /// `bid.sealed` with its sealed bid, so the enclave rebuilds its auction book (it checks
    /// the replay against the tip; see `leadgate_enclave::restore`).
    async fn restore(&self, conn: &mut EnclaveConn) -> Result<(), LinkError> {
        let size = self.store.size().await?;
        if size == 0 {
            return Ok(());
        }
        let from = self.store.last_replay_from().await?.unwrap_or(0).min(size);
        let mut base = if from > 0 {
            let receipt = self.store.receipt(from - 1).await?.ok_or_else(|| {
                LinkError::Store(StoreError::Inconsistent(format!("no receipt {}", from - 1)))
            })?;
            let peaks = self
                .store
                .frontier(from)
                .await?
                .peaks()
                .iter()
                .map(|p| ByteBuf::from(p.to_vec()))
                .collect();
            Some(RestoreBase { receipt, peaks })
        } else {
            None
        };
        let mut at = from;
        while at < size {
            let rows = self
                .store
                .restore_entries(at, MAX_RESTORE_ENTRIES as u64)
                .await?;
            if rows.is_empty() {
                break;
            }
            let n = rows.len() as u64;
            let entries = rows
                .into_iter()
                .map(|(leaf, bid)| {
                    let bid = bid
                        .map(|j| serde_json::from_str::<SealedBid>(&j))
                        .transpose()
                        .map_err(|e| LinkError::Store(StoreError::Inconsistent(e.to_string())))?;
                    Ok(RestoreEntry {
                        leaf: ByteBuf::from(leaf),
                        bid,
                    })
                })
                .collect::<Result<Vec<_>, LinkError>>()?;
            expect_ok(
                conn.call(&Request::Restore {
                    from: at,
                    base: base.take(),
                    entries,
                })
                .await?,
            )?;
            at += n;
        }
        tracing::info!(from, to = size, "replayed the log for the auction book");
        Ok(())
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
            link.conn = None;
            return Err(LinkError::Unavailable);
        }
        self.confirm_durable(&mut link, false).await;
        let resp = exchange_held(&mut link.conn, req).await?;
        Ok((link, resp))
    }

    /// Sends sealed bids (with their JSON as received) to the enclave and stores every
    /// `bid.sealed` with its sealed bid before anyone is answered.
    ///
    /// # Errors
    /// [`LinkError`]s; a storage failure also drops the link.
    pub async fn place_bids(
        &self,
        bids: &[(SealedBid, String)],
    ) -> Result<Vec<BidOutcome>, LinkError> {
        // A retry of a stored bid (the same sealed bytes) gets its original answer.
        let commitments: Vec<Option<String>> = bids
            .iter()
            .map(|(b, _)| b.decode().ok().map(|d| hex::encode(d.commitment)))
            .collect();
        let originals = self.bid_originals(bids, &commitments).await?;
        let fresh: Vec<&(SealedBid, String)> = bids
            .iter()
            .zip(&originals)
            .filter(|(_, o)| o.is_none())
            .map(|(b, _)| b)
            .collect();
        let mut fresh_results = if fresh.is_empty() {
            Vec::new()
        } else {
            self.place_fresh_bids(&fresh).await?
        }
        .into_iter();
        let mut results: Vec<BidOutcome> = originals
            .into_iter()
            .map(|o| o.or_else(|| fresh_results.next()))
            .collect::<Option<_>>()
            .ok_or_else(|| LinkError::Protocol("bid answers do not match the bids".into()))?;
        // A retry that raced its original to the enclave is refused there as a replay; the
        // original is stored by now (batches are stored in order), so answer with it.
        let replayed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(
                |(_, r)| matches!(r, BidOutcome::Refused(e) if e.code == ErrorCode::BidReplayed),
            )
            .map(|(i, _)| i)
            .collect();
        if !replayed.is_empty() {
            let again: Vec<(SealedBid, String)> =
                replayed.iter().map(|&i| bids[i].clone()).collect();
            let again_c: Vec<Option<String>> =
                replayed.iter().map(|&i| commitments[i].clone()).collect();
            for (&i, o) in replayed
                .iter()
                .zip(self.bid_originals(&again, &again_c).await?)
            {
                if let Some(o) = o {
                    results[i] = o;
                }
            }
        }
        Ok(results)
    }

    /// The stored answer of each bid whose exact sealed bytes were stored, else `None`.
    async fn bid_originals(
        &self,
        bids: &[(SealedBid, String)],
        commitments: &[Option<String>],
    ) -> Result<Vec<Option<BidOutcome>>, LinkError> {
        let keys: Vec<&str> = commitments.iter().flatten().map(String::as_str).collect();
        let stored = self.store.bid_answers(&keys).await?;
        Ok(bids
            .iter()
            .zip(commitments)
            .map(|((bid, _), c)| {
                let c = c.as_deref()?;
                let (json, index, receipt) = stored.get(c)?;
                let original: SealedBid = serde_json::from_str(json).ok()?;
                let commitment = ByteBuf::from(hex::decode(c).ok()?);
                (original == *bid).then(|| BidOutcome::Logged {
                    auction_id: bid.auction_id.clone(),
                    commitment,
                    appended: stored_answer(*index, receipt.clone()),
                })
            })
            .collect())
    }

    async fn place_fresh_bids(
        &self,
        bids: &[&(SealedBid, String)],
    ) -> Result<Vec<BidOutcome>, LinkError> {
        let req = Request::Bid {
            bids: bids.iter().map(|(b, _)| b.clone()).collect(),
        };
        let (mut link, resp) = self.exchange_appending(&req).await?;
        let results = match resp {
            Response::Bids { results } if results.len() == bids.len() => results,
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut appends = Vec::new();
        let mut stored = Vec::new();
        let hexes: Vec<String> = results
            .iter()
            .map(|r| match r {
                BidOutcome::Logged { commitment, .. } => hex::encode(commitment),
                BidOutcome::Refused(_) => String::new(),
            })
            .collect();
        for ((r, (bid, json)), commitment) in results.iter().zip(bids.iter().copied()).zip(&hexes) {
            if let BidOutcome::Logged { appended, .. } = r {
                appends.push(appended);
                stored.push(StoredBid {
                    index: appended.index,
                    auction_id: &bid.auction_id,
                    buyer: &bid.buyer,
                    commitment,
                    sealed_json: json,
                });
            }
        }
        if let Err(e) = self.store.store_bids(&appends, &stored).await {
            link.conn = None;
            return Err(e.into());
        }
        if let Some(last) = appends.last() {
            self.stored_to(last.index + 1);
        }
        Ok(results)
    }

    /// Asks the enclave to close every auction due by its clock, and stores the closes.
    /// Returns how many closed.
    ///
    /// # Errors
    /// [`LinkError`]s; a storage failure also drops the link.
    pub async fn tick(&self) -> Result<usize, LinkError> {
        let mut total = 0;
        loop {
            let (mut link, resp) = self.exchange_appending(&Request::Tick).await?;
            let closed = match resp {
                Response::Ticked { closed } => closed,
                Response::Error(e) => return Err(enclave_err(e)),
                other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
            };
            let appends: Vec<&WireAppended> = closed.iter().collect();
            if let Err(e) = self.store.store_closes(&appends).await {
                link.conn = None;
                return Err(e.into());
            }
            if let Some(last) = appends.last() {
                self.stored_to(last.index + 1);
            }
            total += closed.len();
            if closed.len() < MAX_CLOSES_PER_TICK {
                if total > 0 {
                    tracing::info!(closed = total, "auctions closed");
                }
                return Ok(total);
            }
        }
    }

    /// Forwards a buyer's release request with the stored sealed lead; stores the
    /// `lead.released` append and the envelope before answering.
    ///
    /// # Errors
    /// The enclave's refusal (`release.*`), [`LinkError`]s.
    pub async fn release(
        &self,
        request: ReleaseRequest,
    ) -> Result<(ReleasedLead, WireAppended), LinkError> {
        let Some(sealed) = self.store.sealed_lead(&request.lead_id).await? else {
            return Err(LinkError::Enclave(WireError::new(
                ErrorCode::ReleaseNotSold,
                "no accepted lead with this id",
            )));
        };
        let lead = serde_json::from_str(&sealed)
            .map_err(|e| LinkError::Store(StoreError::Inconsistent(e.to_string())))?;
        let (lead_id, buyer) = (request.lead_id.clone(), request.buyer.clone());
        let (mut link, resp) = self
            .exchange_appending(&Request::Release { request, lead })
            .await?;
        let (released, appended) = match resp {
            Response::Released { released, appended } => (released, appended),
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let json =
            serde_json::to_string(&released).map_err(|e| LinkError::Protocol(e.to_string()))?;
        if let Err(e) = self
            .store
            .store_release(&appended, &lead_id, &buyer, &json)
            .await
        {
            link.conn = None;
            return Err(e.into());
        }
        self.stored_to(appended.index + 1);
        Ok((released, appended))
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
            Response::Error(e) => Err(enclave_err(e)),
            other => Err(LinkError::Protocol(format!("{other:?}"))),
        }
    }

    /// Stage 1 of a submission batch: writes it to the enclave and returns at once. The batch
    /// must then go to [`Gateway::store_batch`] (in the order batches were sent), which waits
    /// for the answer and stores it before anyone is answered.
    ///
    /// A retry of a stored submission (the same sealed request) is answered here with the
    /// stored answer and receipt, and not sent: the enclave's replay memory does not survive
    /// its restarts. The same ciphertext under another signature or seller is refused as
    /// `submission.replayed`. Repeats within the batch, or of a batch not yet stored, go to
    /// the enclave, which checks each signature before its replay memory (an unsigned copy
    /// sent first must not shadow the genuine submission); [`Gateway::store_batch`] answers
    /// the genuine retry among them from the store.
    ///
    /// # Errors
    /// [`LinkError::Unavailable`] (nothing was sent), storage errors.
    pub async fn send_batch(&self, jobs: &[Job]) -> Result<SentBatch, LinkError> {
        // Looked up before the link is taken: a query under the link lock would serialize
        // every batch behind it. An original stored after this look-up is caught as a race
        // in `store_batch`.
        let stored = self.submission_originals(jobs).await?;
        let mut link = self.link().await;
        if link.conn.is_none() {
            return Err(LinkError::Unavailable);
        }
        let req = Request::Submit {
            leads: jobs
                .iter()
                .zip(&stored)
                .filter(|(_, r)| r.is_none())
                .map(|(j, _)| j.lead.clone())
                .collect(),
        };
        self.confirm_durable(&mut link, false).await;
        let sent = match link.conn.as_mut() {
            Some(c) => c.send(&req).await,
            None => Err(LinkError::Unavailable),
        };
        let answer = match sent {
            Ok(a) => a,
            Err(e) => {
                link.conn = None;
                return Err(e);
            }
        };
        link.sent += 1;
        Ok(SentBatch {
            answer,
            stored,
            epoch: link.epoch,
        })
    }

    /// Per job: the stored answer if a submission with its ciphertext was stored (the
    /// original when the sealed request is the same, else `submission.replayed`), or `None`.
    async fn submission_originals(
        &self,
        jobs: &[Job],
    ) -> Result<Vec<Option<SubmitOutcome>>, LinkError> {
        let hashes: Vec<&str> = jobs.iter().map(|j| j.ciphertext_sha256.as_str()).collect();
        let stored = self.store.submission_answers(&hashes).await?;
        Ok(jobs
            .iter()
            .map(|j| {
                let (json, rec) = stored.get(&j.ciphertext_sha256)?;
                let same = serde_json::from_str::<SealedLead>(json).is_ok_and(|l| l == j.lead);
                Some(if same {
                    original_answer(rec)
                } else {
                    replayed()
                })
            })
            .collect())
    }

    /// Stage 2: waits for a sent batch's answer, stores every append (one transaction) and
    /// returns the outcomes to answer with, one per job. Batches must be stored in the order
    /// they were sent.
    ///
    /// # Errors
    /// The enclave's refusal of the whole batch; [`LinkError::Unavailable`] if the link
    /// closed before the answer, or for a batch sent after one that failed on the same link
    /// (it is discarded: storing it would leave a gap); protocol and storage errors (these
    /// fail the link: it is dropped, and the host catches up from the enclave's journal).
    pub async fn store_batch(
        &self,
        jobs: &[Job],
        batch: SentBatch,
    ) -> Result<Vec<SubmitOutcome>, LinkError> {
        let epoch = batch.epoch;
        let result = self.store_batch_inner(jobs, batch).await;
        if matches!(result, Err(LinkError::Protocol(_) | LinkError::Store(_))) {
            self.failed_epoch.store(epoch, Ordering::Release);
        }
        self.stored.send_modify(|n| *n += 1);
        result
    }

    async fn store_batch_inner(
        &self,
        jobs: &[Job],
        batch: SentBatch,
    ) -> Result<Vec<SubmitOutcome>, LinkError> {
        let response = link::answer(batch.answer).await;
        if self.failed_epoch.load(Ordering::Acquire) == batch.epoch {
            return Err(LinkError::Unavailable);
        }
        let fresh = batch.stored.iter().filter(|r| r.is_none()).count();
        let fresh_results = match response? {
            Response::Submitted { results } if results.len() == fresh => results,
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut fresh_results = fresh_results.into_iter();
        // (outcome, whether this batch stores it): stored answers are not stored again.
        let outcomes: Vec<(SubmitOutcome, bool)> = batch
            .stored
            .into_iter()
            .map(|r| match r {
                Some(stored) => (stored, false),
                None => (fresh_results.next().unwrap_or_else(replayed), true),
            })
            .collect();
        let appends: Vec<&WireAppended> = outcomes
            .iter()
            .filter_map(|(r, new)| match r {
                SubmitOutcome::Logged { appended, .. } if *new => Some(appended),
                _ => None,
            })
            .collect();
        let subs: Vec<StoredSubmission<'_>> = jobs
            .iter()
            .zip(&outcomes)
            .filter(|(_, (_, new))| *new)
            .map(|(j, (outcome, _))| StoredSubmission {
                seller: &j.lead.seller,
                ciphertext_sha256: &j.ciphertext_sha256,
                sealed_json: &j.sealed_json,
                outcome,
            })
            .collect();
        self.store.store_appends(&appends, &subs, now_ms()).await?;
        if let Some(last) = appends.last() {
            self.stored_to(last.index + 1);
        }
        let mut outcomes: Vec<SubmitOutcome> = outcomes.into_iter().map(|(o, _)| o).collect();
        // A retry that raced its original to the enclave is refused there as a replay; the
        // original's batch is stored by now, so answer with it.
        let raced: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(
                |(_, o)| matches!(o, SubmitOutcome::Refused(e) if e.code == ErrorCode::SubmissionReplayed),
            )
            .map(|(i, _)| i)
            .collect();
        if !raced.is_empty() {
            let retried: Vec<Job> = raced.iter().map(|&i| jobs[i].clone()).collect();
            for (&i, o) in raced.iter().zip(self.submission_originals(&retried).await?) {
                if let Some(o) = o {
                    outcomes[i] = o;
                }
            }
        }
        Ok(outcomes)
    }

    /// Asks for a checkpoint (now if `force`) and stores it, with the enclave's anchor
    /// signature when anchoring is on. Returns the note if one was signed.
    pub async fn checkpoint(&self, force: bool) -> Result<Option<Vec<u8>>, LinkError> {
        // The lock is held until the note is stored, and the checkpoint is asked for only once
        // every sent batch is stored: a stored checkpoint never covers unstored entries.
        let anchor = self.anchorer.get().map(|a| a.target());
        let (_link, resp) = self
            .exchange_appending(&Request::Checkpoint { force, anchor })
            .await?;
        let (note, anchor_signature) = match resp {
            Response::Checkpoint {
                note,
                anchor_signature,
            } => (note, anchor_signature),
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let Some(note) = note else { return Ok(None) };
        let parsed = Note::parse(&note).map_err(|e| LinkError::Protocol(e.to_string()))?;
        let cp =
            Checkpoint::parse_text(&parsed.text).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.store.put_checkpoint(cp.size, &note, now_ms()).await?;
        tracing::info!(size = cp.size, "checkpoint stored");
        if let (Some(a), Some(sig)) = (self.anchorer.get(), anchor_signature) {
            a.enqueue(cp.size, &cp.root, &sig, now_ms()).await?;
        }
        Ok(Some(note.into_vec()))
    }
}
