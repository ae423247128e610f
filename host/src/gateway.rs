//! The host's side of the enclave link: connecting, booting the enclave from stored state,
//! and every exchange that changes the log. One lock covers an enclave call *and* the storing
//! of its result, so what the enclave appended is stored, in order, before anything else is
//! asked of it.

use std::time::Duration;

use leadgate_enclave::protocol::{
    decode, encode, read_frame, write_frame, Request, Response, SubmitOutcome, Tip, WireAppended,
    WireError, MAX_TAGS_PER_FRAME,
};
use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::note::Note;
use serde_bytes::ByteBuf;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiError;
use crate::storage::{Store, StoreError, StoredSubmission};

/// A submission queued for the enclave.
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
    /// The enclave refused (boot errors).
    #[error("enclave error {code}: {message}")]
    Enclave {
        /// Code.
        code: String,
        /// Message.
        message: String,
    },
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        LinkError::Store(StoreError::Db(e))
    }
}

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Unavailable => {
                ApiError::new("enclave.unavailable", "the enclave is not reachable; retry")
            }
            LinkError::Protocol(m) => ApiError::internal("enclave protocol", m),
            LinkError::Enclave { code, message } => ApiError::new(&code, message),
            LinkError::Store(e) => ApiError::internal("storage", e),
        }
    }
}

/// Public facts learned at boot.
#[derive(Debug, Clone)]
pub struct EnclaveInfo {
    /// The bound public keys.
    pub keys: EnclaveKeys,
}

/// The gateway: store + enclave connection.
pub struct Gateway {
    /// Storage.
    pub store: Store,
    addr: String,
    conn: Mutex<Option<TcpStream>>,
    info: RwLock<Option<EnclaveInfo>>,
}

fn now_ms() -> u64 {
    leadgate_enclave::transport::now_ms()
}

async fn exchange(stream: &mut TcpStream, req: &Request) -> Result<Response, LinkError> {
    write_frame(stream, &encode(req))
        .await
        .map_err(|_| LinkError::Unavailable)?;
    let body = read_frame(stream)
        .await
        .map_err(|_| LinkError::Unavailable)?
        .ok_or(LinkError::Unavailable)?;
    decode(&body).map_err(|e| LinkError::Protocol(e.to_string()))
}

/// Exchanges on the held connection. Any link failure drops the connection (the stream may
/// be out of step), so that [`Gateway::maintain`] reconnects and re-boots the enclave.
async fn exchange_held(conn: &mut Option<TcpStream>, req: &Request) -> Result<Response, LinkError> {
    let stream = conn.as_mut().ok_or(LinkError::Unavailable)?;
    let result = exchange(stream, req).await;
    if result.is_err() {
        *conn = None;
    }
    result
}

fn enclave_err(e: leadgate_enclave::protocol::WireError) -> LinkError {
    LinkError::Enclave {
        code: e.code,
        message: e.message,
    }
}

impl Gateway {
    /// A gateway that will connect to the enclave at `addr`.
    pub fn new(store: Store, addr: String) -> Self {
        Self {
            store,
            addr,
            conn: Mutex::new(None),
            info: RwLock::new(None),
        }
    }

    /// The enclave's keys, once booted.
    pub async fn info(&self) -> Option<EnclaveInfo> {
        self.info.read().await.clone()
    }

    /// Whether the link is up.
    pub async fn connected(&self) -> bool {
        self.conn.lock().await.is_some()
    }

    /// Keeps the link up: connects and boots whenever it is down. Runs forever.
    pub async fn maintain(self: std::sync::Arc<Self>) {
        let mut last_beat = tokio::time::Instant::now();
        loop {
            let mut guard = self.conn.lock().await;
            if guard.is_none() {
                match TcpStream::connect(&self.addr).await {
                    Ok(mut stream) => {
                        let _ = stream.set_nodelay(true);
                        match self.boot(&mut stream).await {
                            Ok(info) => {
                                tracing::info!(origin = %info.keys.origin, "enclave booted");
                                *self.info.write().await = Some(info);
                                *guard = Some(stream);
                            }
                            Err(e) => tracing::error!(error = %e, "enclave boot failed"),
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "enclave not reachable"),
                }
            }
            drop(guard);
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Heartbeat: a dead enclave is noticed within a second even when idle, so
            // `/healthz` tells the truth and the next boot starts promptly.
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
    /// running (host restarted) is accepted only if its log equals what is stored.
    async fn boot(&self, stream: &mut TcpStream) -> Result<EnclaveInfo, LinkError> {
        let sealed = self.store.sealed_secrets().await?;
        let tip = self.tip().await?;
        let resp = exchange(
            stream,
            &Request::Boot {
                sealed_secrets: sealed.clone().map(ByteBuf::from),
                tip,
            },
        )
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
                    match exchange(stream, &Request::LoadTags { tags }).await? {
                        Response::Ok => {}
                        Response::Error(e) => return Err(enclave_err(e)),
                        other => return Err(LinkError::Protocol(format!("{other:?}"))),
                    }
                }
                match exchange(stream, &Request::Start).await? {
                    Response::Started { appended } => {
                        self.store
                            .store_appends(&[&appended], &[], now_ms())
                            .await?
                    }
                    Response::Error(e) => return Err(enclave_err(e)),
                    other => return Err(LinkError::Protocol(format!("{other:?}"))),
                }
                keys
            }
            Response::Error(e) if e.code == "boot.already_booted" => {
                let Response::Status(status) = exchange(stream, &Request::Status).await? else {
                    return Err(LinkError::Protocol("expected status".into()));
                };
                let size = self.store.size().await?;
                let root = self.store.frontier(size).await?.root();
                if status.size != size || status.root.as_slice() != root {
                    return Err(LinkError::Enclave {
                        code: "boot.state_mismatch".into(),
                        message: format!(
                            "running enclave has size {}, store has {size}",
                            status.size
                        ),
                    });
                }
                status.keys
            }
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let keys = EnclaveKeys::from_attested(Some(&keys), None)
            .map_err(|e| LinkError::Protocol(e.to_string()))?;
        Ok(EnclaveInfo { keys })
    }

    /// Sends one request that does not change the log.
    async fn call(&self, req: &Request) -> Result<Response, LinkError> {
        exchange_held(&mut *self.conn.lock().await, req).await
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

    /// Submits a batch and stores every append before returning the outcomes.
    ///
    /// Replays (already stored, or twice in this batch) are refused here, before the enclave:
    /// the enclave's own replay memory does not survive its restarts.
    pub async fn submit_batch(&self, jobs: &[Job]) -> Result<Vec<SubmitOutcome>, LinkError> {
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            return Err(LinkError::Unavailable);
        }
        let hashes: Vec<&str> = jobs.iter().map(|j| j.ciphertext_sha256.as_str()).collect();
        let mut seen = self.store.stored_submissions(&hashes).await?;
        let replayed: Vec<bool> = hashes
            .iter()
            .map(|h| !seen.insert((*h).to_owned()))
            .collect();
        let req = Request::Submit {
            leads: jobs
                .iter()
                .zip(&replayed)
                .filter(|(_, r)| !**r)
                .map(|(j, _)| j.lead.clone())
                .collect(),
        };
        let fresh = replayed.iter().filter(|r| !**r).count();
        let fresh_results = match exchange_held(&mut guard, &req).await? {
            Response::Submitted { results } if results.len() == fresh => results,
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("unexpected {other:?}"))),
        };
        let mut fresh_results = fresh_results.into_iter();
        let results: Vec<SubmitOutcome> = replayed
            .iter()
            .map(|&r| match if r { None } else { fresh_results.next() } {
                Some(outcome) => outcome,
                None => SubmitOutcome::Refused(WireError::new(
                    "submission.replayed",
                    "this submission was already received",
                )),
            })
            .collect();
        let appends: Vec<&WireAppended> = results
            .iter()
            .filter_map(|r| match r {
                SubmitOutcome::Logged { appended, .. } => Some(appended),
                SubmitOutcome::Refused(_) => None,
            })
            .collect();
        let subs: Vec<StoredSubmission<'_>> = jobs
            .iter()
            .zip(&results)
            .map(|(j, outcome)| StoredSubmission {
                seller: &j.lead.seller,
                ciphertext_sha256: &j.ciphertext_sha256,
                sealed_json: &j.sealed_json,
                outcome,
            })
            .collect();
        if let Err(e) = self.store.store_appends(&appends, &subs, now_ms()).await {
            // The enclave's log moved on but the store did not: drop the link. Re-boot will
            // find the enclave ahead of the store and refuse until an operator acts.
            *guard = None;
            return Err(e.into());
        }
        Ok(results)
    }

    /// Asks for a checkpoint (now if `force`) and stores it. Returns the note if one was signed.
    pub async fn checkpoint(&self, force: bool) -> Result<Option<Vec<u8>>, LinkError> {
        // The lock is held until the note is stored, like a submission batch.
        let mut guard = self.conn.lock().await;
        let note = match exchange_held(&mut guard, &Request::Checkpoint { force }).await? {
            Response::Checkpoint { note } => note,
            Response::Error(e) => return Err(enclave_err(e)),
            other => return Err(LinkError::Protocol(format!("{other:?}"))),
        };
        let Some(note) = note else { return Ok(None) };
        let parsed = Note::parse(&note).map_err(|e| LinkError::Protocol(e.to_string()))?;
        let cp =
            Checkpoint::parse_text(&parsed.text).map_err(|e| LinkError::Protocol(e.to_string()))?;
        self.store.put_checkpoint(cp.size, &note, now_ms()).await?;
        tracing::info!(size = cp.size, "checkpoint stored");
        Ok(Some(note.into_vec()))
    }
}
