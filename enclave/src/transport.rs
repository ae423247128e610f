//! The host ↔ enclave link: length-prefixed CBOR frames ([`crate::protocol`]) over TCP (dev) or
//! vsock (AWS Nitro: the enclave's only channel to its parent instance, `AF_VSOCK`, see "Nitro
//! Enclaves concepts" in the AWS Nitro Enclaves User Guide). Both transports carry the same
//! frames through the same code: [`Listener`] and [`connect`] hand out a [`BoxStream`] and
//! [`serve`] runs one frame loop for either.
//!
//! Addresses: `vsock://CID:PORT` (CID 4294967295 = any, when listening; 3 = the parent
//! instance, as seen from the enclave), `tcp://HOST:PORT` or plain `HOST:PORT`.
//!
//! One host connection at a time is served; requests are handled in order. A malformed frame
//! gets an error frame and the connection stays usable; an oversized length prefix closes the
//! connection (the stream can no longer be framed).

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Serves connections on `listener` until the task is dropped.
///
/// # Errors
/// Only if accepting fails fatally.
pub async fn serve(listener: Listener, enclave: Arc<Mutex<Enclave>>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        tracing::info!(%peer, "host connected");
        let enclave = enclave.clone();
        // The lock is held per request, so a second connection would interleave but never
        // corrupt state.
        tokio::spawn(async move {
            serve_connection(stream, enclave).await;
            tracing::info!(%peer, "host disconnected");
        });
    }
}

/// The frame loop of one connection: read a request, answer it, until the peer closes or the
/// framing breaks.
pub async fn serve_connection(stream: BoxStream, enclave: Arc<Mutex<Enclave>>) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    loop {
        let body = match read_frame(&mut rd).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(code = e.code(), "closing host connection");
                let resp = Response::Error(WireError::new(e.code(), e.to_string()));
                let _ = write_frame(&mut wr, &encode(&resp)).await;
                break;
            }
        };
        let resp = match decode::<Request>(&body) {
            Ok(req) => {
                let mut e = enclave.lock().await;
                tokio::task::block_in_place(|| e.handle(req, now_ms()))
            }
            Err(e) => Response::Error(WireError::new(e.code(), e.to_string())),
        };
        if write_frame(&mut wr, &encode(&resp)).await.is_err() {
            break;
        }
    }
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
