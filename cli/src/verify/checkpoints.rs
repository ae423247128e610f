//! `leadgate verify checkpoint`, and the log reads every verifier shares: checkpoints, the
//! last one seen (`--state`), consistency proofs, entries with their inclusion proofs.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::api::ConsistencyProof;
use leadgate_verifier::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use leadgate_verifier::event::Event;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{self, Hash};
use leadgate_verifier::note::NoteVerifier;

use super::source::log_source;
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

/// Options of `verify checkpoint`.
pub struct CheckpointArgs<'a> {
    /// A signed note file to verify instead of the served checkpoint.
    pub file: Option<&'a Path>,
    /// Gateway base URL: its attested log key, and its checkpoint and proofs.
    pub gateway: Option<&'a str>,
    /// The log's C2SP tlog-tiles URL prefix: its `checkpoint` and proofs from the tiles.
    pub tiles: Option<&'a str>,
    /// The log's note verifier key (`origin+keyid+base64`), instead of the attested one.
    pub log_key: Option<&'a str>,
    /// `--pcr0`, `--allow-debug`, `--root`.
    pub trust: &'a TrustArgs,
    /// The verifier's state file (the last checkpoint it saw of each log).
    pub state: &'a Path,
}

/// `verify checkpoint`: a checkpoint FILE, the gateway's or the tiles' against the attested
/// log key or an explicit `--log-key` vkey. A checkpoint read from the gateway or the tiles
/// must also extend the one this verifier saw last (`--state`).
///
/// # Errors
/// The checkpoint does not verify; [`LogMisbehaved`] for a rollback or fork; fetch failures.
pub fn checkpoint(a: &CheckpointArgs<'_>) -> anyhow::Result<()> {
    let http = agent();
    let (verifier, origin) = match (a.log_key, a.gateway) {
        (Some(k), _) => {
            let v = NoteVerifier::parse(k).map_err(|e| anyhow!("--log-key: {e}"))?;
            let o = v.name().to_owned();
            (v, o)
        }
        (None, Some(g)) => {
            let (_, keys) = attest_gateway(&http, g, a.trust)?;
            (keys.note_verifier()?, keys.origin)
        }
        (None, None) => {
            bail!("give --gateway URL (the key comes from its attestation) or --log-key VKEY")
        }
    };
    let source = log_source(&http, a.tiles, a.gateway);
    let note = match (a.file, &source) {
        (Some(f), _) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, Some(source)) => source.checkpoint_note()?,
        (None, None) => bail!("give a checkpoint FILE, --gateway URL or --tiles URL"),
    };
    let cp = verify_checkpoint(&note, &verifier, &origin)
        .map_err(|e| anyhow!("checkpoint rejected: {}: {e}", e.code()))?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    if let (None, Some(source)) = (a.file, &source) {
        check_against_seen(source.as_ref(), a.state, (&verifier).into(), size, &root)?;
    }
    println!(
        "checkpoint valid: origin {} size {} root {}",
        origin,
        size,
        hex::encode(root)
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
    /// When it was verified, Unix ms (absent in files written before it was kept).
    #[serde(default)]
    seen_ms: Option<u64>,
}

/// A log as a verifier remembers it: its origin and its Ed25519 log key.
#[derive(Debug, Clone, Copy)]
pub struct LogId<'a> {
    /// The origin (the note key's name).
    pub origin: &'a str,
    /// The log key.
    pub log_key: &'a ed25519_dalek::VerifyingKey,
}

impl<'a> From<&'a EnclaveKeys> for LogId<'a> {
    fn from(k: &'a EnclaveKeys) -> Self {
        Self {
            origin: &k.origin,
            log_key: &k.log_key,
        }
    }
}

impl<'a> From<&'a NoteVerifier> for LogId<'a> {
    fn from(v: &'a NoteVerifier) -> Self {
        Self {
            origin: v.name(),
            log_key: v.public_key(),
        }
    }
}

/// The newest checkpoint of a log this verifier has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root, 32 bytes.
    pub root: Hash,
    /// When it was verified, Unix ms, if known.
    pub seen_ms: Option<u64>,
}

/// A log that shows a verifier less than, or something else than, a checkpoint it verified
/// before: a rollback or a fork. `leadgate` exits with status 3 for it (a network error or
/// any other failure is status 1), so a seller's script can tell the two apart.
#[derive(Debug)]
pub struct LogMisbehaved(pub String);

impl std::fmt::Display for LogMisbehaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogMisbehaved {}

/// `date` of a Unix ms time, UTC (`YYYY-MM-DD HH:MM:SS UTC`).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Checks that the log at `source` (its verified checkpoint `size`, `root`) extends what this
/// verifier saw of it before, and remembers the newer of the two.
///
/// # Errors
/// [`LogMisbehaved`] for a rollback (fewer entries than a checkpoint seen before) or a fork
/// (not consistent with it); fetch failures otherwise.
pub fn check_against_seen(
    source: &dyn super::source::LogSource,
    state: &Path,
    log: LogId<'_>,
    size: u64,
    root: &Hash,
) -> anyhow::Result<()> {
    if let Some(seen) = load_seen_checkpoint(state, log)? {
        let when = seen
            .seen_ms
            .map_or_else(|| "earlier".to_owned(), |ms| format!("on {}", utc(ms)));
        if seen.size > size {
            return Err(LogMisbehaved(format!(
                "ROLLBACK: the log at {} has {size} entries, fewer than the checkpoint of {} \
                 entries you verified {when}",
                source.url(),
                seen.size
            ))
            .into());
        }
        if seen.size == size && seen.root != *root {
            return Err(LogMisbehaved(format!(
                "FORK: the log at {}'s checkpoint of {size} entries has another root than the \
                 one you verified {when}",
                source.url()
            ))
            .into());
        }
        if seen.size < size {
            let proof = source.consistency(seen.size, size)?;
            merkle::verify_consistency(seen.size, size, &proof, &seen.root, root).map_err(|e| {
                LogMisbehaved(format!(
                    "FORK: the log at {}'s checkpoint of {size} entries is not consistent with \
                     the checkpoint of {} entries you verified {when} ({})",
                    source.url(),
                    seen.size,
                    e.code()
                ))
            })?;
        }
        eprintln!(
            "consistent with the checkpoint of {} entries verified {when}",
            seen.size
        );
    }
    save_seen_log(state, log, size, root)
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

/// The checkpoint of `log` this verifier last saw, with when it was verified, from the state
/// file (JSON `{"logs": [{"origin", "log_key": hex, "size", "root": hex, "seen_ms"}]}`);
/// `None` if there is none for this log.
///
/// # Errors
/// A state file that does not parse.
pub fn load_seen_checkpoint(
    state: &Path,
    log: LogId<'_>,
) -> anyhow::Result<Option<SeenCheckpoint>> {
    let log_key = hex::encode(log.log_key.as_bytes());
    let Some(seen) = read_state(state)?
        .logs
        .into_iter()
        .find(|l| l.origin == log.origin && l.log_key == log_key)
    else {
        return Ok(None);
    };
    let root: Hash = hex::decode(&seen.root)?
        .try_into()
        .map_err(|_| anyhow!("bad state root"))?;
    Ok(Some(SeenCheckpoint {
        size: seen.size,
        root,
        seen_ms: seen.seen_ms,
    }))
}

/// Remembers checkpoint (`size`, `root`) of `log` in the state file, with the time, keeping
/// what it remembers of other logs. A checkpoint smaller than the one remembered is not
/// remembered (a verifier never forgets the newest tree it saw).
///
/// # Errors
/// Reading or writing the file.
pub fn save_seen_log(state: &Path, log: LogId<'_>, size: u64, root: &Hash) -> anyhow::Result<()> {
    let mut all = read_state(state)?;
    let log_key = hex::encode(log.log_key.as_bytes());
    if all
        .logs
        .iter()
        .any(|l| l.origin == log.origin && l.log_key == log_key && l.size > size)
    {
        return Ok(());
    }
    all.logs
        .retain(|l| !(l.origin == log.origin && l.log_key == log_key));
    all.logs.push(Seen {
        origin: log.origin.to_owned(),
        log_key,
        size,
        root: hex::encode(root),
        seen_ms: Some(crate::http::now_ms()),
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

/// Fetches entry `index` from the gateway and proves it is in the checkpoint (`size`,
/// `root`); returns the event and its leaf bytes.
///
/// # Errors
/// As [`included_entry_in`].
pub fn included_entry(
    http: &ureq::Agent,
    gateway: &str,
    index: u64,
    size: u64,
    root: &Hash,
) -> anyhow::Result<(Event, Vec<u8>)> {
    included_entry_in(
        &super::source::GatewaySource { http, gateway },
        index,
        size,
        root,
    )
}

/// Reads entry `index` from `source` and proves it is in the checkpoint (`size`, `root`)
/// with an RFC 9162 §2.1.3 inclusion proof from the same source; returns the event and its
/// leaf bytes.
///
/// # Errors
/// The index is not in the checkpoint, a read fails, the proof does not verify, or the
/// leaf is not an event.
pub fn included_entry_in(
    source: &dyn super::source::LogSource,
    index: u64,
    size: u64,
    root: &Hash,
) -> anyhow::Result<(Event, Vec<u8>)> {
    if index >= size {
        bail!("entry {index} is not in the checkpoint of size {size}");
    }
    let leaf = source.entry(index, size)?;
    let proof = source.inclusion(index, size)?;
    merkle::verify_inclusion(&merkle::leaf_hash(&leaf), index, size, &proof, root)
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
