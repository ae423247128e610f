//! The link's two transports, TCP (dev) and vsock (AWS Nitro: the enclave's only channel to its
//! parent instance, `AF_VSOCK`, see "Nitro Enclaves concepts" in the AWS Nitro Enclaves User
//! Guide). Both carry the same frames ([`crate::frame`]): [`Listener`] (the enclave's side) and
//! [`connect`] (the host's) hand out a [`BoxStream`].
//!
//! Addresses: `vsock://CID:PORT` (CID 4294967295 = any, when listening; 3 = the parent
//! instance, as seen from the enclave), `tcp://HOST:PORT` or plain `HOST:PORT`.

use std::fmt;

use tokio::io::{AsyncRead, AsyncWrite};

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
