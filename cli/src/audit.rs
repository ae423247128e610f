//! `leadgate audit`: every red-flag check against one gateway, one line each (see
//! `leadgate_verifier::audit` for the checks and their names). Exit status 0 only if none
//! fails.

use leadgate_verifier::api::EpochList;
use std::io::BufRead as _;
use std::path::Path;

use leadgate_verifier::audit::{
    attestation_checks, checkpoint_signature_check, consistency_check, epoch_keys_check,
    epochs_check, key_binding_check, voided_by, AttestationExpectations, Check, Report,
};
use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::event::Event;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::Hash;
use leadgate_verifier::note::Note;
use leadgate_verifier::receipt::Receipt;
use rand_core::RngCore as _;

use crate::anchor::ChainView;
use crate::http::{agent, fetch_attestation, get_bytes, now_ms, root_der, TrustArgs};
use crate::verify::{
    fetch_consistency, included_entry, included_receipt, load_seen, save_seen, sign_checkpoint_now,
    verified_receipt,
};

/// How far back from a receipt's index the audit looks for the `log.epoch` that voids it.
/// Only events acknowledged but lost in a crash lie between the two, a handful in practice.
const VOID_SCAN_LIMIT: u64 = 4096;

/// Options of `leadgate audit`.
pub struct AuditArgs<'a> {
    /// Gateway base URL.
    pub gateway: &'a str,
    /// `--pcr0`, `--allow-debug`, `--root`.
    pub trust: &'a TrustArgs,
    /// JSON-RPC URL and CheckpointAnchor address, if the log is anchored.
    pub chain: Option<(&'a str, &'a str)>,
    /// Receipts file (JSON lines with a `receipt` member, as `seller submit` writes).
    pub receipts: Option<&'a Path>,
    /// Where this auditor remembers the last checkpoint it saw.
    pub state: &'a Path,
    /// Print the report as JSON.
    pub json: bool,
    /// PCR0 values (hex) of earlier images the auditor accepts in the log's history, besides
    /// the expected one.
    pub allow_pcr0: &'a [String],
}

/// Runs the audit, prints the report, and exits 1 if any check failed.
///
/// # Errors
/// Only for bad options (a `--pcr0` that is not hex, an unreadable `--root`); everything the
/// gateway or the chain does wrong is a failed check in the report.
pub fn audit(a: &AuditArgs<'_>) -> anyhow::Result<()> {
    let report = run(a)?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}

fn run(a: &AuditArgs<'_>) -> anyhow::Result<Report> {
    let http = agent();
    let pcr0 = crate::http::expected_pcr0(a.trust)?;
    let mut allowed = a
        .allow_pcr0
        .iter()
        .map(|h| crate::http::parse_pcr0(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    allowed.extend(pcr0.clone());
    let root = root_der(a.trust)?;
    let mut report = Report::default();
    let checks = &mut report.checks;

    // The attestation, fresh for our nonce.
    let mut nonce = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let document = match fetch_attestation(&http, a.gateway, &nonce) {
        Ok(d) => d,
        Err(e) => {
            checks.push(Check::fail(
                "attestation.signature",
                format!("no attestation from the gateway: {e:#}"),
            ));
            return Ok(report);
        }
    };
    let (att_checks, verified) = attestation_checks(
        &document,
        &AttestationExpectations {
            now_unix_ms: now_ms(),
            root_der: root.as_deref(),
            expected_pcr0: pcr0.as_deref(),
            allow_debug: a.trust.allow_debug,
            nonce: Some(&nonce),
        },
    );
    checks.extend(att_checks);

    // The checkpoint and the keys that signed it.
    let not_checked = |why: &str| format!("not checked: {why}");
    // A young log may have no checkpoint yet: then ask the enclave to sign one.
    let served = get_bytes(&http, &format!("{}/v1/checkpoint", a.gateway))
        .or_else(|e| sign_checkpoint_now(&http, a.gateway).map_err(|_| e));
    let note = match served {
        Ok(n) => Some(covering_receipts(&http, a.gateway, n, a.receipts)),
        Err(e) => {
            checks.push(Check::fail(
                "checkpoint.signature",
                format!("no checkpoint from the gateway: {e:#}"),
            ));
            None
        }
    };
    let (Some(verified), Some(note)) = (verified, note) else {
        for name in [
            "keys.binding",
            "checkpoint.signature",
            "checkpoint.consistency",
        ] {
            if report.get(name).is_none() {
                report.checks.push(Check::fail(
                    name,
                    not_checked("no verified attestation and checkpoint"),
                ));
            }
        }
        return Ok(report);
    };
    let (binding, keys) = key_binding_check(&verified, &note);
    checks.push(binding);
    let Some(keys) = keys else {
        return Ok(report);
    };
    let (signature, cp) = checkpoint_signature_check(&keys, &note);
    checks.push(signature);
    let Some(cp) = cp else {
        checks.push(Check::fail(
            "checkpoint.consistency",
            not_checked("the checkpoint did not verify"),
        ));
        return Ok(report);
    };
    let (size, cp_root) = (cp.size, cp.root);

    // Consistency with the checkpoint this auditor saw last time.
    let seen = load_seen(a.state, &keys)?;
    let consistency = match seen {
        Some((m, _)) if m != size => {
            let (lo, hi) = (m.min(size), m.max(size));
            match fetch_consistency(&http, a.gateway, lo, hi) {
                Ok(proof) => consistency_check(seen, (size, cp_root), Some(&proof)),
                Err(e) => Check::fail(
                    "checkpoint.consistency",
                    format!("no consistency proof from size {lo} to {hi}: {e:#}"),
                ),
            }
        }
        _ => consistency_check(seen, (size, cp_root), None),
    };
    // A rollback fails the check, so a checkpoint that passes is never smaller than the seen.
    let consistent = consistency.status != leadgate_verifier::audit::Status::Fail;
    checks.push(consistency);
    if consistent {
        save_seen(a.state, &keys, size, &cp_root)?;
    }

    // Every epoch's image, and its keys against the attested enclave's.
    checks.extend(epochs(
        &http,
        a.gateway,
        size,
        &cp_root,
        &keys,
        &allowed,
        a.trust.allow_debug,
    ));

    // The on-chain anchors.
    match a.chain {
        None => {
            checks.push(Check::skip(
                "anchor.registration",
                "no --rpc/--contract given",
            ));
            checks.push(Check::skip(
                "anchor.consistency",
                "no --rpc/--contract given",
            ));
        }
        Some((rpc, contract)) => match ChainView::read(&http, rpc, contract) {
            Err(e) => {
                let why = format!("reading the chain: {e:#}");
                checks.push(Check::fail("anchor.registration", why.clone()));
                checks.push(Check::fail("anchor.consistency", why));
            }
            Ok(view) => {
                checks.push(
                    match view.check_binding("gateway's attestation", &verified, &keys) {
                        Ok(m) => Check::pass("anchor.registration", m),
                        Err(e) => Check::fail("anchor.registration", format!("{e:#}")),
                    },
                );
                checks.push(
                    match view.check_served(&http, Some(a.gateway), size, cp_root) {
                        Ok(m) => Check::pass(
                            "anchor.consistency",
                            format!(
                                "{m}; {} anchors on chain {}",
                                view.history.len(),
                                view.chain_id
                            ),
                        ),
                        Err(e) => Check::fail("anchor.consistency", format!("{e:#}")),
                    },
                );
            }
        },
    }

    // Receipts.
    checks.push(match a.receipts {
        None => Check::skip("receipts", "no --receipts given"),
        Some(path) => receipts_check(&http, a.gateway, &keys, size, &cp_root, path),
    });
    Ok(report)
}

/// `log.epochs` and `log.epoch_keys`: every `log.epoch` the gateway lists (`GET
/// /v1/epochs`), each fetched with its inclusion proof in the checkpoint, judged by
/// [`epochs_check`] and, against the attested `keys`, [`epoch_keys_check`].
fn epochs(
    http: &ureq::Agent,
    gateway: &str,
    size: u64,
    root: &Hash,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    allowed: &[Vec<u8>],
    allow_debug: bool,
) -> Vec<Check> {
    let listed: EpochList = match crate::http::get_typed(http, &format!("{gateway}/v1/epochs")) {
        Ok(v) => v,
        Err(e) => {
            return vec![Check::fail(
                "log.epochs",
                format!("no epoch index from the gateway: {e:#}"),
            )]
        }
    };
    let mut found = Vec::new();
    for i in listed.epochs {
        if i >= size {
            continue; // after the checkpoint: the next audit sees it
        }
        match included_entry(http, gateway, i, size, root) {
            Ok((Event::LogEpoch(e), _)) => found.push((i, e)),
            Ok((other, _)) => {
                return vec![Check::fail(
                    "log.epochs",
                    format!("entry {i} is listed as a log.epoch but is {}", other.kind()),
                )]
            }
            Err(e) => return vec![Check::fail("log.epochs", format!("{e:#}"))],
        }
    }
    vec![
        epochs_check(&found, allowed, allow_debug),
        epoch_keys_check(&found, keys),
    ]
}

/// The served checkpoint, or a newer one the gateway signs now (`POST /v1/checkpoint`) if the
/// served one does not yet cover every receipt in the file.
fn covering_receipts(
    http: &ureq::Agent,
    gateway: &str,
    note: Vec<u8>,
    receipts: Option<&Path>,
) -> Vec<u8> {
    let Some(max_index) = receipts
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["receipt"]["index"].as_u64())
                .max()
        })
    else {
        return note;
    };
    let served_size = Note::parse(&note)
        .ok()
        .and_then(|n| Checkpoint::parse_text(&n.text).ok())
        .map(|c| c.size);
    if served_size.is_some_and(|s| s > max_index) {
        return note;
    }
    sign_checkpoint_now(http, gateway).unwrap_or(note)
}

/// `receipts`: each receipt in the file is signed by the attested log key and its event is in
/// the checkpoint (inclusion, and the receipt's root is consistent with the checkpoint), or a
/// `log.epoch` event in the checkpoint publicly voids it.
fn receipts_check(
    http: &ureq::Agent,
    gateway: &str,
    keys: &EnclaveKeys,
    size: u64,
    root: &Hash,
    path: &Path,
) -> Check {
    const NAME: &str = "receipts";
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Check::fail(NAME, format!("{}: {e}", path.display())),
    };
    let (mut included, mut voided, mut failures) = (0u64, 0u64, Vec::new());
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("line {}: {e}", i + 1));
                break;
            }
        };
        let receipt = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v.get("receipt").cloned())
            .and_then(|r| serde_json::from_value::<Receipt>(r).ok());
        let Some(receipt) = receipt else {
            continue; // a rejected submission's line carries no receipt
        };
        match receipt_status(http, gateway, keys, size, root, &receipt) {
            Ok(ReceiptStatus::Included) => included += 1,
            Ok(ReceiptStatus::Voided) => voided += 1,
            Err(e) => failures.push(format!("line {}: {e:#}", i + 1)),
        }
    }
    if failures.is_empty() {
        Check::pass(
            NAME,
            format!("{included} receipt(s) included in checkpoint size {size}, {voided} publicly voided by log.epoch"),
        )
    } else {
        let shown: Vec<&str> = failures.iter().take(3).map(String::as_str).collect();
        Check::fail(
            NAME,
            format!(
                "{} receipt(s) neither included nor voided ({included} included, {voided} voided): {}",
                failures.len(),
                shown.join("; ")
            ),
        )
    }
}

enum ReceiptStatus {
    Included,
    Voided,
}

fn receipt_status(
    http: &ureq::Agent,
    gateway: &str,
    keys: &EnclaveKeys,
    size: u64,
    root: &Hash,
    receipt: &Receipt,
) -> anyhow::Result<ReceiptStatus> {
    let r = verified_receipt(keys, receipt)?;
    let not_included = match included_receipt(http, gateway, size, root, &r) {
        Ok(_) => return Ok(ReceiptStatus::Included),
        Err(e) => e,
    };
    // Not in the log as promised: only a log.epoch of the next epoch, at or before the
    // receipt's index, excuses it. Epochs only grow along the log, so scan back from there.
    let mut i = r.index.min(size);
    let floor = i.saturating_sub(VOID_SCAN_LIMIT);
    while i > floor {
        i -= 1;
        if let (Event::LogEpoch(e), _) = included_entry(http, gateway, i, size, root)? {
            if voided_by(&r, &keys.origin, &e) {
                return Ok(ReceiptStatus::Voided);
            }
            if e.epoch <= r.epoch {
                break;
            }
        }
    }
    anyhow::bail!(
        "receipt for index {} (epoch {}): {not_included:#}, and no log.epoch voids it",
        r.index,
        r.epoch
    )
}
