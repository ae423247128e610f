//! `leadgate verify`: attestation documents, checkpoints and receipts.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::attestation::{
    decode_document_input, verify_attestation, AttestationPolicy,
};
use leadgate_verifier::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::{self, Hash};
use leadgate_verifier::note::NoteVerifier;
use leadgate_verifier::receipt::Receipt;
use serde_json::{json, Value};

use crate::http::{
    agent, attest_gateway, check_trust, get_bytes, get_json, now_ms, root_der, TrustArgs,
};

/// `verify attestation`.
pub fn attestation(
    file: Option<&Path>,
    gateway: Option<&str>,
    at: Option<u64>,
    trust: &TrustArgs,
    as_json: bool,
) -> anyhow::Result<()> {
    let result = match (file, gateway) {
        (Some(f), None) => {
            let pcr0 = trust
                .pcr0
                .as_ref()
                .map(hex::decode)
                .transpose()
                .context("--pcr0 must be hex")?;
            let root = root_der(trust)?;
            let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let doc = decode_document_input(&raw).map_err(|e| anyhow!("{}: {e}", e.code()))?;
            let policy = AttestationPolicy {
                now_unix_ms: at.unwrap_or_else(now_ms),
                root_der: root.as_deref(),
                expected_pcr0: pcr0.as_deref(),
                allow_debug: trust.allow_debug,
                expected_nonce: None,
            };
            verify_attestation(&doc, &policy).map_err(|e| (e.code(), e.to_string()))
        }
        (None, Some(g)) => {
            if at.is_some() {
                bail!("--at applies to a FILE; a gateway's fresh document is checked at the current time");
            }
            check_trust(trust)?;
            attest_gateway(&agent(), g, trust)
                .map(|(v, _)| v)
                .map_err(|e| ("attestation.rejected", format!("{e:#}")))
        }
        _ => bail!("give exactly one of FILE or --gateway URL"),
    };
    match result {
        Ok(v) => {
            let d = v.document();
            let keys = v.enclave_keys().ok();
            if as_json {
                println!(
                    "{}",
                    json!({
                        "valid": true, "debug": v.is_debug(), "module_id": d.module_id, "timestamp_ms": d.timestamp_ms,
                        "pcr0": v.pcr(0).map(hex::encode), "pcr1": v.pcr(1).map(hex::encode), "pcr2": v.pcr(2).map(hex::encode),
                        "origin": keys.as_ref().map(|k| k.origin.clone()),
                        "log_key": keys.as_ref().and_then(|k| k.note_verifier().ok()).map(|n| n.to_vkey_string()),
                    })
                );
            } else {
                println!(
                    "attestation valid{}",
                    if v.is_debug() {
                        " (DEBUG MODE: PCRs all zero)"
                    } else {
                        ""
                    }
                );
                println!("module_id  {}", d.module_id);
                println!("timestamp  {}", d.timestamp_ms);
                for i in 0..3 {
                    println!(
                        "pcr{i}       {}",
                        v.pcr(i).map(hex::encode).unwrap_or_default()
                    );
                }
                if let Some(k) = keys {
                    println!("origin     {}", k.origin);
                    if let Ok(n) = k.note_verifier() {
                        println!("log key    {}", n.to_vkey_string());
                    }
                }
            }
            Ok(())
        }
        Err((code, msg)) => {
            if as_json {
                println!("{}", json!({"valid": false, "code": code, "message": msg}));
            } else {
                eprintln!("attestation INVALID: {code}: {msg}");
            }
            std::process::exit(1);
        }
    }
}

/// Fetches and verifies the gateway's checkpoint against the attested log key.
fn fetch_checkpoint(
    http: &ureq::Agent,
    gateway: &str,
    verifier: &NoteVerifier,
    origin: &str,
) -> anyhow::Result<VerifiedCheckpoint> {
    let note = get_bytes(http, &format!("{gateway}/v1/checkpoint"))?;
    verify_checkpoint(&note, verifier, origin)
        .map_err(|e| anyhow!("checkpoint rejected: {}: {e}", e.code()))
}

fn hashes(v: &Value) -> anyhow::Result<Vec<Hash>> {
    v["proof"]
        .as_array()
        .ok_or_else(|| anyhow!("no proof"))?
        .iter()
        .map(|h| {
            let b = hex::decode(h.as_str().unwrap_or_default())?;
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

/// What a verifier remembers between runs: the largest checkpoint it has verified.
#[derive(serde::Serialize, serde::Deserialize)]
struct Seen {
    origin: String,
    size: u64,
    root: String,
}

/// `verify receipts`.
pub fn receipts(
    path: &Path,
    gateway: &str,
    trust: &TrustArgs,
    state: &Path,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, gateway, trust)?;
    let verifier = keys.note_verifier()?;
    let cp = fetch_checkpoint(&http, gateway, &verifier, &keys.origin)?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);

    // Consistency with the last checkpoint this verifier saw.
    if let Ok(bytes) = std::fs::read(state) {
        let seen: Seen = serde_json::from_slice(&bytes).context("reading verifier state")?;
        if seen.origin == keys.origin {
            let seen_root: Hash = hex::decode(&seen.root)?
                .try_into()
                .map_err(|_| anyhow!("bad state root"))?;
            let (m, n, rm, rn) = if seen.size <= size {
                (seen.size, size, seen_root, root)
            } else {
                (size, seen.size, root, seen_root)
            };
            let p = get_json(
                &http,
                &format!("{gateway}/v1/proof/consistency?from={m}&to={n}"),
            )?;
            merkle::verify_consistency(m, n, &hashes(&p)?, &rm, &rn).map_err(|e| {
                anyhow!(
                    "FORK: checkpoint {size} is not consistent with the previously seen {}: {}",
                    seen.size,
                    e.code()
                )
            })?;
            eprintln!(
                "consistent with previously seen checkpoint of size {}",
                seen.size
            );
        }
    }
    let mut lines = Vec::new();
    for (i, line) in std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    )
    .lines()
    .enumerate()
    {
        let line = line?;
        if !line.trim().is_empty() {
            lines.push((
                i + 1,
                serde_json::from_str::<Value>(&line).with_context(|| format!("line {}", i + 1))?,
            ));
        }
    }
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let (next, ok, skipped) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((n, v)) = lines.get(i) else { break };
                if v.get("receipt").is_none() {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match check_receipt(&http, gateway, &keys, size, &root, v) {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("line {n}: {e:#}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    let seen = Seen {
        origin: keys.origin.clone(),
        size,
        root: hex::encode(root),
    };
    std::fs::write(state, serde_json::to_vec(&seen)?)
        .with_context(|| format!("writing {}", state.display()))?;
    println!(
        "{} receipts verified in checkpoint size {size} root {}; {} failed; {} lines without a receipt",
        ok.load(Ordering::Relaxed),
        hex::encode(root),
        failures.len(),
        skipped.load(Ordering::Relaxed)
    );
    for f in failures.iter().take(20) {
        eprintln!("FAIL {f}");
    }
    if !failures.is_empty() {
        bail!("{} receipts failed verification", failures.len());
    }
    Ok(())
}

/// One receipt: signature by the attested log key; the leaf is in the checkpoint (inclusion);
/// the checkpoint extends the tree the receipt committed to (consistency); the served leaf
/// hashes to the receipt's and says what the seller was told.
fn check_receipt(
    http: &ureq::Agent,
    gateway: &str,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    size: u64,
    root: &Hash,
    line: &Value,
) -> anyhow::Result<()> {
    let receipt: Receipt =
        serde_json::from_value(line["receipt"].clone()).context("receipt JSON")?;
    let r = receipt
        .verify(&keys.log_key, &keys.origin)
        .map_err(|e| anyhow!("{}", e.code()))?;
    if r.index >= size {
        bail!("index {} not yet in checkpoint of size {size}", r.index);
    }
    let p = get_json(
        http,
        &format!("{gateway}/v1/proof/inclusion?index={}&size={size}", r.index),
    )?;
    merkle::verify_inclusion(&r.leaf_hash, r.index, size, &hashes(&p)?, root)
        .map_err(|e| anyhow!("inclusion: {}", e.code()))?;
    let p = get_json(
        http,
        &format!(
            "{gateway}/v1/proof/consistency?from={}&to={size}",
            r.index + 1
        ),
    )?;
    merkle::verify_consistency(r.index + 1, size, &hashes(&p)?, &r.root, root)
        .map_err(|e| anyhow!("receipt root consistency: {}", e.code()))?;
    let leaf = get_bytes(http, &format!("{gateway}/v1/entries/{}", r.index))?;
    if merkle::leaf_hash(&leaf) != r.leaf_hash {
        bail!("served entry does not match the receipt");
    }
    let event = Event::from_leaf(&leaf).map_err(|e| anyhow!("entry: {}", e.code()))?;
    let (lead_id, verdict) = match &event {
        Event::LeadAccepted(e) => (e.lead_id.as_str(), "accepted"),
        Event::LeadRejected(e) => (e.lead_id.as_str(), "rejected"),
        other => bail!(
            "receipt points at a {} event, not a lead verdict",
            other.kind()
        ),
    };
    if line
        .get("lead_id")
        .and_then(Value::as_str)
        .is_some_and(|l| l != lead_id)
        || line
            .get("verdict")
            .and_then(Value::as_str)
            .is_some_and(|v| v != verdict)
    {
        bail!("entry's lead id or verdict differs from what the gateway answered");
    }
    Ok(())
}

/// Default verifier state file.
pub fn default_state() -> PathBuf {
    PathBuf::from(".leadgate-seen.json")
}
