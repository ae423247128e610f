//! # leadgate-host
//!
//! The untrusted half of leadgate: it relays requests to the enclave, stores everything
//! durably (SQLite), serves entries and proofs, and schedules checkpoints. It sees no
//! plaintext and signs nothing; clients verify what it serves.
//!
//! Layout: [`anchor`] (on-chain anchoring, alloy), [`api`] (HTTP routes), [`aws_credentials`]
//! (credentials lent to the enclave's KMS sealer), [`chain`] (a gas account's provider; a sent transaction followed), [`clock`] (Unix ms), [`gateway`] (enclave link, boot, catch-up, the submit
//! pipeline and the store-then-answer rule), [`http`] (the HTTP server under connection, header and body limits), [`link`] (the pipelined enclave connection), [`metrics`] (`GET /metrics`), [`settle`] (submitting the enclave's settlements, alloy), [`storage`] (sqlx), [`ratelimit`], [`error`] (JSON errors).
#![forbid(unsafe_code)]

pub mod anchor;
pub mod api;
pub mod aws_credentials;
pub mod chain;
pub mod clock;
pub mod error;
pub mod gateway;
pub mod http;
pub mod link;
pub mod metrics;
pub mod ratelimit;
pub mod settle;
pub mod storage;
pub mod tiles;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::api::AppState;
use crate::gateway::Gateway;
use crate::ratelimit::SellerLimiter;
use crate::storage::Store;

/// Host options.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Enclave link: `vsock://CID:PORT` on Nitro, a TCP `host:port` in dev.
    pub enclave_addr: leadgate_protocol::transport::Endpoint,
    /// SQLite database path.
    pub db_path: std::path::PathBuf,
    /// Largest request body, bytes ([`HostConfig::DEFAULT_MAX_BODY_BYTES`]).
    pub max_body_bytes: usize,
    /// Submissions per seller per UTC day ([`HostConfig::DEFAULT_SELLER_DAILY_LIMIT`]).
    pub seller_daily_limit: u32,
    /// How often to ask the enclave to close due auctions and whether a checkpoint is due,
    /// ms ([`HostConfig::DEFAULT_TICK_MS`]). The enclave decides by its own clock; this only
    /// bounds the lag.
    pub tick_ms: u64,
    /// Submission and bid queue length before answering 503 ([`HostConfig::DEFAULT_QUEUE_LEN`]).
    pub queue_len: usize,
    /// How often the database's WAL is checkpointed, beside the writes, ms
    /// ([`HostConfig::DEFAULT_WAL_CHECKPOINT_MS`], [`Store::checkpoint_wal`]).
    pub wal_checkpoint_ms: u64,
    /// The bucket the log is published to and repaired from (see [`tiles::bucket`] for the
    /// URLs); none: the log is kept in the database only, and served from it.
    pub bucket: Option<String>,
    /// On-chain anchoring; off when `None` (no RPC configured).
    pub anchor: Option<anchor::AnchorConfig>,
    /// Submitting the settlements the enclave signs to the `LeadEscrow`; off when `None`.
    pub settle: Option<settle::SettleConfig>,
    /// Where the AWS credentials lent to the enclave at each boot come from, for its KMS
    /// sealer (Nitro); asked afresh at every boot. `None` in dev.
    pub aws_credentials: Option<aws_credentials::CredentialSource>,
    /// Connection, header and body limits of the HTTP server.
    pub http: http::HttpLimits,
}

impl HostConfig {
    /// Default largest request body, bytes: 64 KiB (a 16 KiB lead sealed and base64-encoded
    /// is about 22 KiB).
    pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
    /// Default submissions per seller per UTC day.
    pub const DEFAULT_SELLER_DAILY_LIMIT: u32 = 1_000;
    /// Default tick, ms: a close is logged at most this late.
    pub const DEFAULT_TICK_MS: u64 = 1_000;
    /// Default queue length.
    pub const DEFAULT_QUEUE_LEN: usize = 8_192;
    /// Default WAL checkpoint interval, ms: at 2,000 submissions/s about 12 MiB of WAL
    /// builds up in 250 ms, which is then all a commit at [`storage::WAL_BACKSTOP_PAGES`]
    /// has left to copy.
    pub const DEFAULT_WAL_CHECKPOINT_MS: u64 = 250;

    /// Defaults (the `leadgate-host` binary's flags default to the same constants).
    pub fn new(
        enclave_addr: leadgate_protocol::transport::Endpoint,
        db_path: std::path::PathBuf,
    ) -> Self {
        Self {
            enclave_addr,
            db_path,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            seller_daily_limit: Self::DEFAULT_SELLER_DAILY_LIMIT,
            tick_ms: Self::DEFAULT_TICK_MS,
            queue_len: Self::DEFAULT_QUEUE_LEN,
            wal_checkpoint_ms: Self::DEFAULT_WAL_CHECKPOINT_MS,
            bucket: None,
            anchor: None,
            settle: None,
            aws_credentials: None,
            http: http::HttpLimits::default(),
        }
    }
}

/// Serves the API on `listener` until `shutdown` resolves, then stops every background task
/// (the enclave link, the pipelines, the tick, anchoring, settling) before returning.
///
/// # Errors
/// Storage open errors and server errors.
pub async fn run(
    config: HostConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // A database that cannot be opened now (read-only files, a full or missing disk) is
    // retried: the host comes up by itself once the storage does.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let store = loop {
        match Store::open(&config.db_path).await {
            Ok(store) => break store,
            Err(e) => {
                tracing::error!(error = %e, db = %config.db_path.display(), "opening the database failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stopped(stop.clone()) => return Ok(()),
                }
            }
        }
    };
    // Every background task lives in this set: when the server stops, they are stopped too
    // (at an await point: a store transaction in progress rolls back, nothing was answered
    // for it), and the enclave link and the database are closed.
    let mut tasks = tokio::task::JoinSet::new();
    let wal = store.clone();
    let gateway = Arc::new(Gateway::new(store.clone(), config.enclave_addr.clone()));
    if let Some(credentials) = config.aws_credentials.clone() {
        let _ = gateway.aws_credentials.set(credentials);
    }
    if let Some(anchor) = config.anchor.clone() {
        tracing::info!(?anchor, "anchoring checkpoints");
        let anchorer = anchor::Anchorer::new(store.clone(), anchor)?;
        let _ = gateway.anchorer.set(anchorer.clone());
        tasks.spawn(anchorer.run());
    }
    if let Some(settle) = config.settle.clone() {
        tracing::info!(?settle, "settling sales");
        let settler = settle::Settler::new(store, settle)?;
        let _ = gateway.settler.set(settler.clone());
        tasks.spawn(settler.run());
    }
    if let Some(url) = &config.bucket {
        let bucket = tiles::bucket::Bucket::open(url)?;
        tracing::info!(bucket = url, "publishing the log to the bucket");
        // Before the link comes up: nothing is confirmed to the enclave until the bucket has it.
        gateway.publish_to_bucket(0);
        let _ = gateway.repair_from.set(bucket.clone());
        let publishing = gateway.clone();
        tasks.spawn(async move {
            loop {
                match tiles::publish::Publisher::new(bucket.clone(), publishing.clone()).await {
                    Ok(p) => return p.run().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the bucket failed; retrying");
                        publishing.published_to(Err(e.to_string()));
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
    tasks.spawn(tiles::scrub::run(
        gateway.clone(),
        gateway.repair_from.get().cloned(),
    ));
    tasks.spawn(gateway.clone().maintain());
    let metrics = Arc::new(metrics::Metrics::new());
    let (tx, rx) = mpsc::channel(config.queue_len);
    tasks.spawn(gateway::run_pipeline(gateway.clone(), rx, metrics.clone()));
    let ticker = gateway.clone();
    let tick = Duration::from_millis(config.tick_ms);
    tasks.spawn(async move {
        loop {
            tokio::time::sleep(tick).await;
            if ticker.connected().await {
                if let Err(e) = ticker.tick().await {
                    tracing::warn!(error = %e, "auction tick failed");
                }
                if let Err(e) = ticker.checkpoint(false).await {
                    tracing::warn!(error = %e, "checkpoint tick failed");
                }
                if let Err(e) = ticker.seal_state(false).await {
                    tracing::warn!(error = %e, "sealing the enclave state failed");
                }
            }
        }
    });
    let wal_every = Duration::from_millis(config.wal_checkpoint_ms.max(1));
    tasks.spawn(async move {
        loop {
            tokio::time::sleep(wal_every).await;
            let started = std::time::Instant::now();
            match wal.checkpoint_wal().await {
                Ok(c) => tracing::debug!(
                    frames = c.wal_frames,
                    checkpointed = c.checkpointed_frames,
                    busy = c.busy,
                    ms = started.elapsed().as_millis() as u64,
                    "WAL checkpoint"
                ),
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
    });
    let (bid_tx, bid_rx) = mpsc::channel(config.queue_len);
    tasks.spawn(gateway::run_bids(gateway.clone(), bid_rx, metrics.clone()));
    let state = Arc::new(AppState {
        gateway,
        queue: tx,
        bids: bid_tx,
        limiter: SellerLimiter::new(config.seller_daily_limit),
        max_body_bytes: config.max_body_bytes,
        body_budget: http::BodyBudget::new(config.http.max_buffered_bytes),
        body_timeout: config.http.body_timeout,
        metrics,
        anchoring: config.anchor.is_some(),
    });
    tracing::info!(addr = %listener.local_addr()?, limits = ?config.http, "host listening");
    let served = http::serve(listener, api::router(state), config.http, stopped(stop)).await;
    tasks.shutdown().await;
    tracing::info!("host stopped");
    served?;
    Ok(())
}
