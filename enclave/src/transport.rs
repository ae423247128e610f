//! The host ↔ enclave link: length-prefixed CBOR frames ([`crate::protocol`]) over TCP (dev) or
//! vsock (AWS Nitro: the enclave's only channel to its parent instance, `AF_VSOCK`, see "Nitro
//! Enclaves concepts" in the AWS Nitro Enclaves User Guide). Both transports carry the same
//! frames through the same code: [`Listener`] and [`connect`] hand out a [`BoxStream`] and
//! [`serve`] runs one frame loop for either.
//!
//! Addresses: `vsock://CID:PORT` (CID 4294967295 = any, when listening; 3 = the parent
//! instance, as seen from the enclave), `tcp://HOST:PORT` or plain `HOST:PORT`.
//!
//! One host session at a time is served (see [`serve_with`]); requests are handled in order.
//! A malformed frame gets an error frame and the connection stays usable; an oversized length
//! prefix closes the connection (the stream can no longer be framed). Connections are capped,
//! and idle or slow ones dropped ([`LinkLimits`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;

use crate::core::Enclave;
use crate::protocol::{decode, encode, read_frame, write_frame, Request, Response, WireError};

/// The enclave's clock, Unix ms. The enclave never takes time from the host.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A byte stream of either transport.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Stream for T {}

/// A connected stream, TCP or vsock.
pub type BoxStream = Box<dyn Stream>;

/// Where the link listens or connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP `host:port` (dev).
    Tcp(String),
    /// An `AF_VSOCK` context ID and port (Nitro).
    Vsock {
        /// Context ID: 3 is the parent instance; an enclave's is chosen at `run-enclave`.
        cid: u32,
        /// Port.
        port: u32,
    },
}

/// An address that is neither `vsock://CID:PORT` nor a TCP `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad link address {0:?}: expected vsock://CID:PORT, tcp://HOST:PORT or HOST:PORT")]
pub struct BadEndpoint(pub String);

impl std::str::FromStr for Endpoint {
    type Err = BadEndpoint;

    fn from_str(s: &str) -> Result<Self, BadEndpoint> {
        let bad = || BadEndpoint(s.to_owned());
        if let Some(rest) = s.strip_prefix("vsock://") {
            let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
            return Ok(Endpoint::Vsock {
                cid: cid.parse().map_err(|_| bad())?,
                port: port.parse().map_err(|_| bad())?,
            });
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Endpoint::Tcp(hostport.to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
            Endpoint::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
        }
    }
}

/// Connects to `endpoint` (the host's side of the link).
///
/// # Errors
/// The transport's I/O error.
pub async fn connect(endpoint: &Endpoint) -> std::io::Result<BoxStream> {
    match endpoint {
        Endpoint::Tcp(addr) => {
            let s = tokio::net::TcpStream::connect(addr).await?;
            let _ = s.set_nodelay(true);
            Ok(Box::new(s))
        }
        Endpoint::Vsock { cid, port } => {
            let s =
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?;
            Ok(Box::new(s))
        }
    }
}

/// A bound listener of either transport (the enclave's side of the link).
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// vsock.
    Vsock(tokio_vsock::VsockListener),
}

impl Listener {
    /// Binds `endpoint`.
    ///
    /// # Errors
    /// The transport's I/O error (for vsock, also where the kernel has no `AF_VSOCK`).
    pub async fn bind(endpoint: &Endpoint) -> std::io::Result<Self> {
        Ok(match endpoint {
            Endpoint::Tcp(addr) => Listener::Tcp(tokio::net::TcpListener::bind(addr).await?),
            Endpoint::Vsock { cid, port } => Listener::Vsock(tokio_vsock::VsockListener::bind(
                tokio_vsock::VsockAddr::new(*cid, *port),
            )?),
        })
    }

    /// The bound address (with the port the OS chose, if it was 0).
    ///
    /// # Errors
    /// The transport's I/O error.
    pub fn local_endpoint(&self) -> std::io::Result<Endpoint> {
        Ok(match self {
            Listener::Tcp(l) => Endpoint::Tcp(l.local_addr()?.to_string()),
            Listener::Vsock(l) => {
                let a = l.local_addr()?;
                Endpoint::Vsock {
                    cid: a.cid(),
                    port: a.port(),
                }
            }
        })
    }

    /// Waits for the next connection; returns it and the peer's address for the logs.
    ///
    /// # Errors
    /// The transport's I/O error.
    pub async fn accept(&self) -> std::io::Result<(BoxStream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), format!("tcp://{peer}")))
            }
            Listener::Vsock(l) => {
                let (s, peer) = l.accept().await?;
                Ok((
                    Box::new(s),
                    format!("vsock://{}:{}", peer.cid(), peer.port()),
                ))
            }
        }
    }
}

/// Limits of the link server: they bound the enclave's memory for connections (at most
/// `max_connections` × [`crate::protocol::MAX_FRAME_LEN`] of frames being read) whatever
/// peers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    /// Most open connections (the host session and connections not yet refused); a
    /// connection past it is closed at once. Default 4.
    pub max_connections: usize,
    /// A connection that sends no frame for this long is closed, and a session this idle
    /// may be taken over, ms. Default 15,000 (the host sends a heartbeat every second).
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
                tracing::warn!(connection = id, code = e.code(), "closing connection");
                let resp = reply(Response::Error(WireError::new(e.code(), e.to_string())));
                let _ = tokio::time::timeout(frame, write_frame(&mut wr, &resp)).await;
                break;
            }
        };
        let (resp, close) = match decode::<Request>(&body) {
            Err(e) => (
                Response::Error(WireError::new(e.code(), e.to_string())),
                false,
            ),
            Ok(_) if !sessions.claim(id) => (
                Response::Error(WireError::new(
                    "session.busy",
                    "another host session is active",
                )),
                true,
            ),
            Ok(req) => {
                let mut e = enclave.lock().await;
                (
                    tokio::task::block_in_place(|| e.handle(req, now_ms())),
                    false,
                )
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(
            "vsock://16:7000".parse(),
            Ok(Endpoint::Vsock {
                cid: 16,
                port: 7000
            })
        );
        assert_eq!(
            "127.0.0.1:7000".parse(),
            Ok(Endpoint::Tcp("127.0.0.1:7000".into()))
        );
        assert_eq!(
            "tcp://localhost:1".parse(),
            Ok(Endpoint::Tcp("localhost:1".into()))
        );
        assert_eq!(
            Endpoint::Vsock { cid: 3, port: 8 }.to_string(),
            "vsock://3:8"
        );
        for bad in [
            "vsock://16",
            "vsock://x:1",
            "vsock://1:-1",
            "127.0.0.1",
            ":80",
            "host:99999",
            "",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }
}
