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

use crate::http::{agent, attest_gateway, TrustArgs};

use super::checkpoints::{
    fetch_checkpoint, fetch_consistency, included_entry, load_seen, save_seen,
};

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
    if let Some((seen_size, seen_root)) = load_seen(state, &keys)? {
        let (m, n, rm, rn) = if seen_size <= size {
            (seen_size, size, seen_root, root)
        } else {
            (size, seen_size, root, seen_root)
        };
        let proof = fetch_consistency(&http, gateway, m, n)?;
        merkle::verify_consistency(m, n, &proof, &rm, &rn).map_err(|e| {
            anyhow!(
                "FORK: checkpoint {size} is not consistent with the previously seen {seen_size}: {}",
                e.code()
            )
        })?;
        eprintln!("consistent with previously seen checkpoint of size {seen_size}");
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
    save_seen(state, &keys, size, &root)?;
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
    let event = receipt_entry(http, gateway, keys, size, root, &receipt)?;
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
    if r.index >= size {
        bail!("index {} not yet in checkpoint of size {size}", r.index);
    }
    let event = included_entry(http, gateway, r.index, size, root)?;
    if merkle::leaf_hash(&event.1) != r.leaf_hash {
        bail!("served entry does not match the receipt");
    }
    let proof = fetch_consistency(http, gateway, r.index + 1, size)?;
    merkle::verify_consistency(r.index + 1, size, &proof, &r.root, root)
        .map_err(|e| anyhow!("receipt root consistency: {}", e.code()))?;
    Ok(event.0)
}
