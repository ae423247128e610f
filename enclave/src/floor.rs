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
//! The requests are [`crate::fetch`]'s (directly, or through `via`, a vsock proxy on Nitro;
//! `https://` is TLS with the Mozilla roots, `http://` is for a local server in dev only) and
//! [`crate::chain`]'s for the contract. A source that cannot be read or does not
//! verify stops the boot (`log.floor_unavailable`): the enclave never signs without knowing
//! its floor. See `docs/recovery.md`, "The log never forks".

use leadgate_protocol::transport::Endpoint;
use leadgate_verifier::merkle::Hash;

use crate::chain::{selector, Block, Rpc};
use crate::fetch::request;

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
            let rpc = Rpc {
                url: rpc.clone(),
                via: via.clone(),
            };
            let answers = rpc
                .calls(contract, &[selector("latest()").to_vec()], Block::Latest)
                .await?;
            let bytes = &answers[0];
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
    crate::blocking::run(fetch(sources)).unwrap_or_else(|e| {
        sources
            .iter()
            .map(|s| FloorReport {
                source: s.describe(),
                found: Err(e.clone()),
            })
            .collect()
    })
}
