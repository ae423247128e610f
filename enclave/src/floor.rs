//! The floor: the newest tree the log signed, learned by a freshly started enclave from what
//! the host cannot roll back on its own, before it signs anything. While it runs the enclave
//! knows that tree itself (its log); after a restart it asks the floor sources once, at its
//! first `Boot`:
//!
//! - [`FloorSource::Checkpoint`]: a URL of the log's published checkpoint (the bucket's
//!   `checkpoint`, C2SP tlog-tiles), checked against the log key the enclave unseals. A
//!   missing object (404) is a log with nothing published yet.
//! - [`FloorSource::Anchor`]: the `CheckpointAnchor` contract's `latest()` (size, root),
//!   read with `eth_call` from a JSON-RPC node. The contract took it only with the enclave's
//!   anchor signature.
//!
//! The request goes to the URL's host directly, or through `via` (a vsock proxy on Nitro,
//! as the KMS calls go); `https://` URLs are TLS with the Mozilla roots (`webpki-roots`),
//! `http://` is for a local server in dev only. A source that cannot be read or does not
//! verify stops the boot (`log.floor_unavailable`): the enclave never signs without knowing
//! its floor. See `docs/recovery.md`, "The log never forks".

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use leadgate_protocol::transport::Endpoint;
use leadgate_verifier::merkle::Hash;
use tokio_rustls::rustls;

/// Largest answer read from a floor source.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long one floor request may take.
pub const FLOOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the floor is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorSource {
    /// The log's published checkpoint note at `url`.
    Checkpoint {
        /// `http(s)://host[:port]/path`.
        url: String,
        /// A proxy to connect through instead of the URL's host (vsock on Nitro).
        via: Option<Endpoint>,
    },
    /// The anchor contract's latest anchored checkpoint.
    Anchor {
        /// The JSON-RPC URL.
        rpc: String,
        /// The contract address, 20 bytes.
        contract: [u8; 20],
        /// A proxy to connect through.
        via: Option<Endpoint>,
    },
}

impl FloorSource {
    /// What it is, for messages and `log.epoch`-time logs.
    pub fn describe(&self) -> String {
        match self {
            FloorSource::Checkpoint { url, .. } => format!("the checkpoint at {url}"),
            FloorSource::Anchor { contract, .. } => {
                format!("the anchor contract 0x{}", hex::encode(contract))
            }
        }
    }
}

/// What one source answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorFound {
    /// A checkpoint note, to verify against the log key.
    Note(Vec<u8>),
    /// An anchored tree (size 0: nothing anchored yet).
    Tree {
        /// Tree size.
        size: u64,
        /// Root, 32 bytes.
        root: Hash,
    },
    /// Nothing published yet (404).
    Nothing,
}

/// One source's answer, or why it could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorReport {
    /// [`FloorSource::describe`].
    pub source: String,
    /// The answer.
    pub found: Result<FloorFound, String>,
}

struct Url<'a> {
    tls: bool,
    host: &'a str,
    authority: &'a str,
    path: &'a str,
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url}: not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url {
        tls,
        host,
        authority,
        path,
    })
}

/// One HTTP/1.1 request; returns the status and body.
async fn request(
    url: &str,
    via: Option<&Endpoint>,
    post: Option<Vec<u8>>,
) -> Result<(u16, Bytes), String> {
    let u = parse_url(url)?;
    let endpoint = match via {
        Some(v) => v.clone(),
        None => {
            let port = if u.authority.contains(':') {
                u.authority.to_owned()
            } else {
                format!("{}:{}", u.authority, if u.tls { 443 } else { 80 })
            };
            Endpoint::Tcp(port)
        }
    };
    let stream = leadgate_protocol::transport::connect(&endpoint)
        .await
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let mut builder = http::Request::builder()
        .uri(u.path)
        .header(http::header::HOST, u.authority)
        .header(http::header::USER_AGENT, "leadgate-enclave");
    builder = match &post {
        Some(_) => builder
            .method("POST")
            .header(http::header::CONTENT_TYPE, "application/json"),
        None => builder.method("GET"),
    };
    let request = builder
        .body(Full::new(Bytes::from(post.unwrap_or_default())))
        .map_err(|e| format!("request: {e}"))?;
    let response = if u.tls {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(u.host.to_owned())
            .map_err(|e| format!("server name: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await?
    } else {
        send(hyper_util::rt::TokioIo::new(stream), request).await?
    };
    Ok(response)
}

async fn send<T>(io: T, request: http::Request<Full<Bytes>>) -> Result<(u16, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("HTTP body: {e}"))?
        .to_bytes();
    driver.abort();
    Ok((status, body))
}

/// `keccak256("latest()")[..4]`, the `CheckpointAnchor.latest()` selector.
fn latest_selector() -> [u8; 4] {
    use sha3::Digest as _;
    let h = sha3::Keccak256::digest(b"latest()");
    [h[0], h[1], h[2], h[3]]
}

async fn read(source: &FloorSource) -> Result<FloorFound, String> {
    match source {
        FloorSource::Checkpoint { url, via } => {
            let (status, body) = request(url, via.as_ref(), None).await?;
            match status {
                200 => Ok(FloorFound::Note(body.to_vec())),
                404 => Ok(FloorFound::Nothing),
                s => Err(format!("HTTP {s}")),
            }
        }
        FloorSource::Anchor { rpc, contract, via } => {
            let call = serde_json::json!({
                "jsonrpc": "2.0", "id": 1, "method": "eth_call",
                "params": [{"to": format!("0x{}", hex::encode(contract)),
                            "data": format!("0x{}", hex::encode(latest_selector()))}, "latest"],
            });
            let body = serde_json::to_vec(&call).map_err(|e| e.to_string())?;
            let (status, answer) = request(rpc, via.as_ref(), Some(body)).await?;
            if status != 200 {
                return Err(format!("HTTP {status}"));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&answer).map_err(|e| format!("JSON-RPC answer: {e}"))?;
            let result = v
                .get("result")
                .and_then(|r| r.as_str())
                .ok_or_else(|| format!("JSON-RPC error: {}", v.get("error").unwrap_or(&v)))?;
            let bytes = hex::decode(result.trim_start_matches("0x"))
                .map_err(|e| format!("eth_call result: {e}"))?;
            if bytes.len() != 64 || bytes[..24].iter().any(|&b| b != 0) {
                return Err("eth_call result is not (uint64, bytes32)".into());
            }
            let size = u64::from_be_bytes(bytes[24..32].try_into().expect("8 bytes"));
            let root: Hash = bytes[32..64].try_into().expect("32 bytes");
            Ok(FloorFound::Tree { size, root })
        }
    }
}

/// Asks every source (concurrently, each within [`FLOOR_TIMEOUT`]).
pub async fn fetch(sources: &[FloorSource]) -> Vec<FloorReport> {
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in sources.iter().cloned().enumerate() {
        set.spawn(async move {
            let found = match tokio::time::timeout(FLOOR_TIMEOUT, read(&s)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {FLOOR_TIMEOUT:?}")),
            };
            (
                i,
                FloorReport {
                    source: s.describe(),
                    found,
                },
            )
        });
    }
    let mut out: Vec<(usize, FloorReport)> = Vec::with_capacity(sources.len());
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// [`fetch`] from synchronous code (the enclave's boot), on a thread of its own.
pub fn fetch_blocking(sources: &[FloorSource]) -> Vec<FloorReport> {
    if sources.is_empty() {
        return Vec::new();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(fetch(sources)),
                    Err(e) => sources
                        .iter()
                        .map(|s| FloorReport {
                            source: s.describe(),
                            found: Err(format!("runtime: {e}")),
                        })
                        .collect(),
                }
            })
            .join()
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_the_selector() {
        let u = parse_url("http://127.0.0.1:9000/bucket/log/checkpoint").unwrap();
        assert_eq!(
            (u.tls, u.host, u.authority, u.path),
            (
                false,
                "127.0.0.1",
                "127.0.0.1:9000",
                "/bucket/log/checkpoint"
            )
        );
        let u = parse_url("https://example.com").unwrap();
        assert_eq!((u.tls, u.host, u.path), (true, "example.com", "/"));
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("http:///y").is_err());
        // The compiler's method identifier (contracts/artifacts, `methodIdentifiers`).
        assert_eq!(hex::encode(latest_selector()), "52bfe789");
    }
}
