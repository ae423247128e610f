//! `leadgate verify checkpoint`, and the log reads every verifier shares: checkpoints, the
//! last one seen (`--state`), consistency proofs, entries with their inclusion proofs.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::api::{ConsistencyProof, InclusionProof};
use leadgate_verifier::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use leadgate_verifier::event::Event;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{self, Hash};
use leadgate_verifier::note::NoteVerifier;

use crate::http::{agent, attest_gateway, get_bytes, get_typed, TrustArgs};

/// Fetches and verifies the gateway's checkpoint against the attested log key.
pub(super) fn fetch_checkpoint(
    http: &ureq::Agent,
    gateway: &str,
    verifier: &NoteVerifier,
    origin: &str,
) -> anyhow::Result<VerifiedCheckpoint> {
    let note = get_bytes(http, &format!("{gateway}/v1/checkpoint"))?;
    verify_checkpoint(&note, verifier, origin)
        .map_err(|e| anyhow!("checkpoint rejected: {}: {e}", e.code()))
}

/// The `proof` of a gateway proof answer: 32-byte hashes, hex.
pub fn hashes(proof: &[String]) -> anyhow::Result<Vec<Hash>> {
    proof
        .iter()
        .map(|h| {
            let b = hex::decode(h)?;
            b.try_into()
                .map_err(|_| anyhow!("proof hash is not 32 bytes"))
        })
        .collect()
}

/// `verify checkpoint`: a checkpoint FILE (or the gateway's) against the attested log key, or
/// an explicit `--log-key` vkey.
pub fn checkpoint(
    file: Option<&Path>,
    gateway: Option<&str>,
    log_key: Option<&str>,
    trust: &TrustArgs,
) -> anyhow::Result<()> {
    let http = agent();
    let (verifier, origin) = match (log_key, gateway) {
        (Some(k), _) => {
            let v = NoteVerifier::parse(k).map_err(|e| anyhow!("--log-key: {e}"))?;
            let o = v.name().to_owned();
            (v, o)
        }
        (None, Some(g)) => {
            let (_, keys) = attest_gateway(&http, g, trust)?;
            (keys.note_verifier()?, keys.origin)
        }
        (None, None) => {
            bail!("give --gateway URL (the key comes from its attestation) or --log-key VKEY")
        }
    };
    let cp = match (file, gateway) {
        (Some(f), _) => {
            let note = std::fs::read(f)?;
            verify_checkpoint(&note, &verifier, &origin)
                .map_err(|e| anyhow!("checkpoint rejected: {}: {e}", e.code()))?
        }
        (None, Some(g)) => fetch_checkpoint(&http, g, &verifier, &origin)?,
        (None, None) => bail!("give a checkpoint FILE or --gateway URL"),
    };
    println!(
        "checkpoint valid: origin {} size {} root {}",
        origin,
        cp.checkpoint().size,
        hex::encode(cp.checkpoint().root)
    );
    Ok(())
}

/// What a verifier remembers between runs: per log, the largest checkpoint it has verified.
/// A log is its origin and its log key: two logs with one origin (two dev stacks, or a log
/// whose key was replaced) are remembered apart, so neither is reported as a fork of the other.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SeenState {
    logs: Vec<Seen>,
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Seen {
    origin: String,
    /// The Ed25519 log key, hex (32 bytes).
    log_key: String,
    size: u64,
    root: String,
}

fn read_state(state: &Path) -> anyhow::Result<SeenState> {
    let Ok(bytes) = std::fs::read(state) else {
        return Ok(SeenState::default());
    };
    // A state file from before logs were keyed by their log key names none: start afresh.
    let v: serde_json::Value = serde_json::from_slice(&bytes).context("reading verifier state")?;
    if v.get("logs").is_none() {
        return Ok(SeenState::default());
    }
    serde_json::from_value(v).context("reading verifier state")
}

/// The checkpoint (size, root) of the log with these keys that this verifier last saw, from
/// the state file (JSON `{"logs": [{"origin", "log_key": hex, "size", "root": hex}]}`); `None`
/// if there is none for this log.
///
/// # Errors
/// A state file that does not parse.
pub fn load_seen(state: &Path, keys: &EnclaveKeys) -> anyhow::Result<Option<(u64, Hash)>> {
    let log_key = hex::encode(keys.log_key.as_bytes());
    let Some(seen) = read_state(state)?
        .logs
        .into_iter()
        .find(|l| l.origin == keys.origin && l.log_key == log_key)
    else {
        return Ok(None);
    };
    let root: Hash = hex::decode(&seen.root)?
        .try_into()
        .map_err(|_| anyhow!("bad state root"))?;
    Ok(Some((seen.size, root)))
}

/// Remembers checkpoint (`size`, `root`) of the log with these keys in the state file,
/// keeping what it remembers of other logs.
///
/// # Errors
/// Reading or writing the file.
pub fn save_seen(state: &Path, keys: &EnclaveKeys, size: u64, root: &Hash) -> anyhow::Result<()> {
    let mut all = read_state(state)?;
    let log_key = hex::encode(keys.log_key.as_bytes());
    all.logs
        .retain(|l| !(l.origin == keys.origin && l.log_key == log_key));
    all.logs.push(Seen {
        origin: keys.origin.clone(),
        log_key,
        size,
        root: hex::encode(root),
    });
    std::fs::write(state, serde_json::to_vec(&all)?)
        .with_context(|| format!("writing {}", state.display()))
}

/// `GET {gateway}/v1/proof/consistency?from=FROM&to=TO`: the RFC 9162 §2.1.4 proof hashes.
///
/// # Errors
/// Fetch failures, or an answer whose `proof` is not a list of 32-byte hex hashes.
pub fn fetch_consistency(
    http: &ureq::Agent,
    gateway: &str,
    from: u64,
    to: u64,
) -> anyhow::Result<Vec<Hash>> {
    let p: ConsistencyProof = get_typed(
        http,
        &format!("{gateway}/v1/proof/consistency?from={from}&to={to}"),
    )?;
    hashes(&p.proof)
}

/// `POST {gateway}/v1/checkpoint`: the enclave signs a checkpoint of the log as it is now;
/// returns the note, not yet verified.
///
/// # Errors
/// Fetch failures or a non-2xx status.
pub fn sign_checkpoint_now(http: &ureq::Agent, gateway: &str) -> anyhow::Result<Vec<u8>> {
    let mut resp = http
        .post(&format!("{gateway}/v1/checkpoint"))
        .send_empty()
        .context("POST /v1/checkpoint")?;
    if !resp.status().is_success() {
        bail!("POST /v1/checkpoint: {}", resp.status().as_u16());
    }
    Ok(resp.body_mut().read_to_vec()?)
}

/// Fetches entry `index` and proves it is in the checkpoint (`size`, `root`); returns the
/// event and its leaf bytes.
pub fn included_entry(
    http: &ureq::Agent,
    gateway: &str,
    index: u64,
    size: u64,
    root: &Hash,
) -> anyhow::Result<(Event, Vec<u8>)> {
    if index >= size {
        bail!("entry {index} is not in the checkpoint of size {size}");
    }
    let leaf = get_bytes(http, &format!("{gateway}/v1/entries/{index}"))?;
    let p: InclusionProof = get_typed(
        http,
        &format!("{gateway}/v1/proof/inclusion?index={index}&size={size}"),
    )?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(&leaf),
        index,
        size,
        &hashes(&p.proof)?,
        root,
    )
    .map_err(|e| anyhow!("entry {index} inclusion: {}", e.code()))?;
    let event = Event::from_leaf(&leaf).map_err(|e| anyhow!("entry {index}: {}", e.code()))?;
    Ok((event, leaf))
}

/// The gateway's checkpoint, verified; if it does not cover `min_size` entries, asks the
/// gateway to sign one now.
pub fn checkpoint_covering(
    http: &ureq::Agent,
    gateway: &str,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    min_size: u64,
) -> anyhow::Result<VerifiedCheckpoint> {
    let verifier = keys.note_verifier()?;
    let cp = fetch_checkpoint(http, gateway, &verifier, &keys.origin);
    if let Ok(cp) = &cp {
        if cp.checkpoint().size >= min_size {
            return Ok(cp.clone());
        }
    }
    let note = sign_checkpoint_now(http, gateway)?;
    let cp = verify_checkpoint(&note, &verifier, &keys.origin)
        .map_err(|e| anyhow!("checkpoint rejected: {}: {e}", e.code()))?;
    if cp.checkpoint().size < min_size {
        bail!(
            "the gateway's new checkpoint does not cover entry {}",
            min_size - 1
        );
    }
    Ok(cp)
}

/// Default verifier state file.
pub fn default_state() -> PathBuf {
    PathBuf::from(".leadgate-seen.json")
}
