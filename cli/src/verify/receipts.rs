//! `leadgate verify receipts`: each receipt signed by the attested log key and included, at its
//! index, in a checkpoint consistent with every earlier one seen.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::{self, Hash};
use leadgate_verifier::receipt::{Receipt, VerifiedReceipt};
use serde_json::Value;

use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::note::NoteVerifier;

use crate::http::{agent, attest_gateway, TrustArgs};

use super::checkpoints::{check_against_seen, LogId};
use super::source::{log_source, GatewaySource, LogSource};

/// `verify receipts`: from the gateway's API, or with `tiles` from the log's tiles alone
/// (the bucket or any static copy; then the log key is `log_key`, or the gateway's attested
/// one).
#[allow(clippy::too_many_arguments)]
pub fn receipts(
    path: &Path,
    gateway: Option<&str>,
    tiles: Option<&str>,
    log_key: Option<&str>,
    trust: &TrustArgs,
    state: &Path,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = agent();
    let verifier = match (log_key, gateway) {
        (Some(k), _) => NoteVerifier::parse(k).map_err(|e| anyhow!("--log-key: {e}"))?,
        (None, Some(g)) => attest_gateway(&http, g, trust)?.1.note_verifier()?,
        (None, None) => bail!("give --gateway URL (its attested log key) or --log-key VKEY"),
    };
    let log = LogId::from(&verifier);
    let Some(source) = log_source(&http, tiles, gateway) else {
        bail!("give --gateway URL or --tiles URL")
    };
    let source = source.as_ref();
    let note = source.checkpoint_note()?;
    let cp = verify_checkpoint(&note, &verifier, log.origin)
        .map_err(|e| anyhow!("checkpoint at {} rejected: {}: {e}", source.url(), e.code()))?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    // Rollback or fork against the last checkpoint this verifier saw (remembered if newer).
    check_against_seen(source, state, log, size, &root)?;
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
                match check_receipt(source, log, size, &root, v) {
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
    println!(
        "{} receipts verified in checkpoint size {size} root {} from {}; {} failed; {} lines without a receipt",
        ok.load(Ordering::Relaxed),
        hex::encode(root),
        source.url(),
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
    source: &dyn LogSource,
    log: LogId<'_>,
    size: u64,
    root: &Hash,
    line: &Value,
) -> anyhow::Result<()> {
    let receipt: Receipt =
        serde_json::from_value(line["receipt"].clone()).context("receipt JSON")?;
    let verified = receipt
        .verify(log.log_key, log.origin)
        .map_err(|e| anyhow!("{}", e.code()))?;
    let event = included_receipt_in(source, size, root, &verified)?;
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

/// The event a receipt promises, checked: signature by the attested log key; the leaf is in
/// the checkpoint (`size`, `root`) (inclusion); the checkpoint extends the tree the receipt
/// committed to (consistency); the served leaf hashes to the receipt's.
pub fn receipt_entry(
    http: &ureq::Agent,
    gateway: &str,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    size: u64,
    root: &Hash,
    receipt: &Receipt,
) -> anyhow::Result<Event> {
    included_receipt(http, gateway, size, root, &verified_receipt(keys, receipt)?)
}

/// A receipt's signature checked against the attested log key and origin.
///
/// # Errors
/// The receipt's error code (`receipt.*`).
pub fn verified_receipt(
    keys: &leadgate_verifier::keys::EnclaveKeys,
    receipt: &Receipt,
) -> anyhow::Result<VerifiedReceipt> {
    receipt
        .verify(&keys.log_key, &keys.origin)
        .map_err(|e| anyhow!("{}", e.code()))
}

/// [`receipt_entry`] for a receipt whose signature was already verified.
pub fn included_receipt(
    http: &ureq::Agent,
    gateway: &str,
    size: u64,
    root: &Hash,
    r: &VerifiedReceipt,
) -> anyhow::Result<Event> {
    included_receipt_in(&GatewaySource { http, gateway }, size, root, r)
}

/// [`included_receipt`] from any [`LogSource`]: the entry at the receipt's index is included
/// in the checkpoint (`size`, `root`) and hashes to the receipt's leaf hash, and the
/// checkpoint extends the tree the receipt signed.
pub fn included_receipt_in(
    source: &dyn LogSource,
    size: u64,
    root: &Hash,
    r: &VerifiedReceipt,
) -> anyhow::Result<Event> {
    if r.index >= size {
        bail!("index {} not yet in checkpoint of size {size}", r.index);
    }
    let leaf = source.entry(r.index, size)?;
    let proof = source.inclusion(r.index, size)?;
    merkle::verify_inclusion(&merkle::leaf_hash(&leaf), r.index, size, &proof, root)
        .map_err(|e| anyhow!("entry {} inclusion: {}", r.index, e.code()))?;
    if merkle::leaf_hash(&leaf) != r.leaf_hash {
        bail!("served entry does not match the receipt");
    }
    let proof = source.consistency(r.index + 1, size)?;
    merkle::verify_consistency(r.index + 1, size, &proof, &r.root, root)
        .map_err(|e| anyhow!("receipt root consistency: {}", e.code()))?;
    Event::from_leaf(&leaf).map_err(|e| anyhow!("entry {}: {}", r.index, e.code()))
}
