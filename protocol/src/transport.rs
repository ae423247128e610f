//! The link's transports, TCP (dev) and vsock (AWS Nitro: the enclave's only channel to its
//! parent instance, `AF_VSOCK`, see "Nitro Enclaves concepts" in the AWS Nitro Enclaves User
//! Guide), and [`InProcess`] for a host and an enclave in one process (tests). All carry the
//! same frames ([`crate::frame`]): [`Listener`] (the enclave's side) and [`connect`] (the
//! host's) hand out a [`BoxStream`].
//!
//! Addresses: `vsock://CID:PORT` (CID 4294967295 = any, when listening; 3 = the parent
//! instance, as seen from the enclave), `tcp://HOST:PORT` or plain `HOST:PORT`.

use std::fmt;

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A byte stream of either transport.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Stream for T {}

/// A connected stream, TCP or vsock.
pub type BoxStream = Box<dyn Stream>;

/// An in-process link: each [`connect`] makes an in-memory duplex stream
/// ([`tokio::io::duplex`], 64 KiB buffered each way) and hands one end to the [`Listener`]
/// bound to it. Made in code only (it has no address): one value, cloned, for both sides.
#[derive(Clone)]
pub struct InProcess {
    streams: mpsc::Sender<BoxStream>,
    /// The listener's end, until [`Listener::bind`] takes it.
    unbound: Arc<Mutex<Option<mpsc::Receiver<BoxStream>>>>,
}

impl InProcess {
    /// Bytes buffered in each direction of a connection.
    pub const BUFFER_BYTES: usize = 64 * 1024;

    /// A new link, not yet bound.
    pub fn new() -> Self {
        let (streams, rx) = mpsc::channel(16);
        Self {
            streams,
            unbound: Arc::new(Mutex::new(Some(rx))),
        }
    }

    fn is_bound(&self) -> bool {
        self.unbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for InProcess {
    fn eq(&self, other: &Self) -> bool {
        self.streams.same_channel(&other.streams)
    }
}

impl Eq for InProcess {}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InProcess")
    }
}

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
    /// In the same process (tests): no address, see [`InProcess`].
    InProcess(InProcess),
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
            Endpoint::InProcess(_) => f.write_str("in-process"),
        }
    }
}

/// Connects to `endpoint` (the host's side of the link).
///
/// # Errors
/// The transport's I/O error; for [`Endpoint::InProcess`], `ConnectionRefused` when no
/// listener is bound to it (or it was dropped).
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
        Endpoint::InProcess(link) => {
            let refused = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            if !link.is_bound() {
                return Err(refused());
            }
            let (ours, theirs) = tokio::io::duplex(InProcess::BUFFER_BYTES);
            link.streams
                .send(Box::new(theirs))
                .await
                .map_err(|_| refused())?;
            Ok(Box::new(ours))
        }
    }
}

/// A bound listener of either transport (the enclave's side of the link).
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// vsock.
    Vsock(tokio_vsock::VsockListener),
    /// In the same process.
    InProcess {
        /// The link, for [`Listener::local_endpoint`].
        link: InProcess,
        /// The listener's end of it.
        streams: tokio::sync::Mutex<mpsc::Receiver<BoxStream>>,
    },
}

impl Listener {
    /// Binds `endpoint`.
    ///
    /// # Errors
    /// The transport's I/O error (for vsock, also where the kernel has no `AF_VSOCK`; for
    /// [`Endpoint::InProcess`], `AddrInUse` if a listener was bound to it before).
    pub async fn bind(endpoint: &Endpoint) -> std::io::Result<Self> {
        Ok(match endpoint {
            Endpoint::Tcp(addr) => Listener::Tcp(tokio::net::TcpListener::bind(addr).await?),
            Endpoint::Vsock { cid, port } => Listener::Vsock(tokio_vsock::VsockListener::bind(
                tokio_vsock::VsockAddr::new(*cid, *port),
            )?),
            Endpoint::InProcess(link) => {
                let rx = link
                    .unbound
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse))?;
                Listener::InProcess {
                    link: link.clone(),
                    streams: tokio::sync::Mutex::new(rx),
                }
            }
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
            Listener::InProcess { link, .. } => Endpoint::InProcess(link.clone()),
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
            Listener::InProcess { streams, .. } => match streams.lock().await.recv().await {
                Some(s) => Ok((s, "in-process".to_owned())),
                // Unreachable while this listener's own link holds a sender.
                None => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
            },
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

    #[tokio::test]
    async fn an_in_process_link_connects_only_while_bound_once() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let link = Endpoint::InProcess(InProcess::new());
        let refused = connect(&link).await.err().map(|e| e.kind());
        assert_eq!(refused, Some(std::io::ErrorKind::ConnectionRefused));

        let listener = Listener::bind(&link).await.unwrap();
        assert_eq!(listener.local_endpoint().unwrap(), link);
        let again = Listener::bind(&link).await.err().map(|e| e.kind());
        assert_eq!(again, Some(std::io::ErrorKind::AddrInUse));

        let mut host = connect(&link).await.unwrap();
        let (mut enclave, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, "in-process");
        host.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        enclave.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        enclave.write_all(b"pong").await.unwrap();
        host.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        drop(listener);
        let refused = connect(&link).await.err().map(|e| e.kind());
        assert_eq!(refused, Some(std::io::ErrorKind::ConnectionRefused));
    }
}
