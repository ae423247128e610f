//! The enclave's link server: one frame loop ([`leadgate_protocol::frame`]) around the core
//! over either transport ([`leadgate_protocol::transport::Listener`], TCP or vsock).
//!
//! One host session at a time is served (see [`serve_with`]); requests are handled in order.
//! A malformed frame gets an error frame and the connection stays usable; an oversized length
//! prefix closes the connection (the stream can no longer be framed). Connections are capped,
//! and idle or slow ones dropped ([`LinkLimits`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use leadgate_protocol::transport::{BoxStream, Listener};
use leadgate_protocol::{decode, encode, read_frame, write_frame, Request, Response};
use tokio::sync::Mutex;

use crate::core::Enclave;
use crate::error::EnclaveError;

/// Limits of the link server: they bound the enclave's memory for connections (at most
/// `max_connections` × [`leadgate_protocol::MAX_FRAME_LEN`] of frames being read) whatever
/// peers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Most open connections (the host session and connections not yet refused); a
    /// connection past it is closed at once. Default 4.
    pub max_connections: usize,
    /// A connection that sends no frame for this long is closed, and a session this idle
    /// may be taken over, ms. Default 15,000 (the host sends a heartbeat every 250 ms).
    pub idle_ms: u64,
    /// Longest a frame may take to arrive once its length prefix is read, and an answer to
    /// be written, ms. Default 30,000 (8 MiB at under 300 KB/s).
    pub frame_ms: u64,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            max_connections: 4,
            idle_ms: 15_000,
            frame_ms: 30_000,
        }
    }
}

/// The one host session. A connection claims it with its first request that decodes; while
/// the session's connection is open and has sent a request within [`LinkLimits::idle_ms`],
/// any other connection's request is refused with `session.busy` and that connection closed.
/// A host that crashed loses its connection at once (the kernel closes it), so its
/// successor's first request takes over; a hung one is taken over once idle. Everything the
/// enclave logs goes through one session at a time, so the host that holds it sees every
/// append, and catches up (`Request::Journal`) on whatever another session appended.
struct Sessions {
    current: std::sync::Mutex<Option<(u64, Instant)>>,
    idle: Duration,
}

impl Sessions {
    /// Whether connection `id` holds (or now takes) the session; refreshes its activity.
    fn claim(&self, id: u64) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match *current {
            Some((holder, ref mut last)) if holder == id => {
                *last = Instant::now();
                true
            }
            Some((_, last)) if last.elapsed() < self.idle => false,
            previous => {
                if previous.is_some() {
                    tracing::warn!(session = id, "idle host session taken over");
                }
                *current = Some((id, Instant::now()));
                true
            }
        }
    }

    /// Connection `id` closed: frees the session if it held it.
    fn release(&self, id: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*current, Some((holder, _)) if holder == id) {
            *current = None;
        }
    }
}

/// Serves connections on `listener` with the default [`LinkLimits`] until the task is dropped.
///
/// # Errors
/// None in practice: accept failures (out of file descriptors, a peer gone before accept) are
/// logged and retried.
pub async fn serve(listener: Listener, enclave: Arc<Mutex<Enclave>>) -> std::io::Result<()> {
    serve_with(listener, enclave, LinkLimits::default()).await
}

/// Serves connections on `listener` under `limits`, one host session at a time (see
/// `Sessions`), until the task is dropped.
///
/// # Errors
/// As [`serve`].
pub async fn serve_with(
    listener: Listener,
    enclave: Arc<Mutex<Enclave>>,
    limits: LinkLimits,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let sessions = Arc::new(Sessions {
        current: std::sync::Mutex::new(None),
        idle: Duration::from_millis(limits.idle_ms),
    });
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: at the connection limit");
            continue;
        };
        next_id += 1;
        let id = next_id;
        tracing::info!(%peer, connection = id, "connection opened");
        let (enclave, sessions) = (enclave.clone(), sessions.clone());
        tokio::spawn(async move {
            serve_connection(stream, enclave, &sessions, id, limits).await;
            drop(permit);
            tracing::info!(%peer, connection = id, "connection closed");
        });
    }
}

/// The frame loop of one connection: read a request, answer it, until the peer closes, the
/// framing breaks, a limit is hit, or another connection holds the session.
async fn serve_connection(
    stream: BoxStream,
    enclave: Arc<Mutex<Enclave>>,
    sessions: &Sessions,
    id: u64,
    limits: LinkLimits,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let frame = Duration::from_millis(limits.frame_ms);
    let read_limit = Duration::from_millis(limits.idle_ms) + frame;
    let reply = |resp: Response| encode(&resp);
    loop {
        let body = match tokio::time::timeout(read_limit, read_frame(&mut rd)).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) => break,
            Err(_) => {
                tracing::info!(connection = id, "closing an idle or slow connection");
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(connection = id, code = %e.code(), "closing connection");
                let resp = reply(Response::Error(EnclaveError::from(e).into()));
                let _ = tokio::time::timeout(frame, write_frame(&mut wr, &resp)).await;
                break;
            }
        };
        let (resp, close) = match decode::<Request>(&body) {
            Err(e) => (Response::Error(EnclaveError::from(e).into()), false),
            Ok(_) if !sessions.claim(id) => {
                (Response::Error(EnclaveError::SessionBusy.into()), true)
            }
            Ok(req) => (handle(&enclave, req).await, false),
        };
        drop(body);
        let written = tokio::time::timeout(frame, write_frame(&mut wr, &reply(resp))).await;
        if close || !matches!(written, Ok(Ok(()))) {
            if close {
                tracing::warn!(
                    connection = id,
                    "request refused: another host session is active"
                );
            }
            break;
        }
    }
    // Before the stream closes, so a peer that sees the close can take the session at once.
    sessions.release(id);
}

/// Handles one request. A `Boot` to an unbooted enclave unseals (or seals) its secrets first,
/// without the enclave's lock: with the KMS sealer that is a network call of up to
/// [`crate::kms::CALL_TIMEOUT`], and nothing else waits on it. The core checks again that
/// it is unbooted when the secrets arrive (one host session at a time sends `Boot`).
async fn handle(enclave: &Mutex<Enclave>, req: Request) -> Response {
    let req = match req {
        Request::Boot {
            sealed_secrets,
            tip,
            aws_credentials,
        } => {
            let booting = {
                let e = enclave.lock().await;
                (!e.is_booted()).then(|| (e.sealer(), e.floor_sources().to_vec()))
            };
            let Some((sealer, floor_sources)) = booting else {
                return Response::Error(EnclaveError::AlreadyBooted.into());
            };
            let has_tip = tip.is_some();
            let secrets = tokio::task::spawn_blocking(move || {
                Enclave::boot_secrets(
                    sealer.as_ref(),
                    sealed_secrets.as_deref().map(|b| b.as_slice()),
                    has_tip,
                    aws_credentials.as_ref(),
                    &floor_sources,
                )
            })
            .await;
            let secrets = match secrets {
                Ok(s) => s,
                Err(join) => {
                    tracing::error!(error = %join, "sealing task failed");
                    return Response::Error(
                        EnclaveError::BadState("sealing failed; boot again").into(),
                    );
                }
            };
            let mut e = enclave.lock().await;
            return tokio::task::block_in_place(|| e.boot(secrets, tip, crate::clock::now_ms()));
        }
        other => other,
    };
    let mut e = enclave.lock().await;
    tokio::task::block_in_place(|| e.handle(req, crate::clock::now_ms()))
}
