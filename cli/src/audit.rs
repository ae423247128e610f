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
use leadgate_verifier::checkpoint::{verify_checkpoint, Checkpoint};
use leadgate_verifier::event::{Event, LogEpoch};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{self, Frontier, Hash};
use leadgate_verifier::note::{Note, NoteVerifier};
use leadgate_verifier::receipt::Receipt;
use rand_core::RngCore as _;

use crate::anchor::ChainView;
use crate::http::{agent, fetch_attestation, get_bytes, now_ms, root_der, TrustArgs};
use crate::verify::source::{GatewaySource, LogSource, TileSource};
use crate::verify::{
    included_entry, included_entry_in, included_receipt_in, load_seen_checkpoint, save_seen_log,
    sign_checkpoint_now, verified_receipt, LogId,
};

/// How far back from a receipt's index the audit looks for the `log.epoch` that voids it.
/// Only events acknowledged but lost in a crash lie between the two, a handful in practice.
const VOID_SCAN_LIMIT: u64 = 4096;

/// Options of `leadgate audit`.
pub struct AuditArgs<'a> {
    /// Gateway base URL: the attestation, and the log through its API.
    pub gateway: Option<&'a str>,
    /// The log's C2SP tlog-tiles URL prefix, audited with no gateway: the bucket or any
    /// static copy of it (see [`run_tiles`]).
    pub tiles: Option<&'a str>,
    /// The log's note verifier key (`origin+keyid+base64`); required with `tiles`, where no
    /// attestation gives it.
    pub log_key: Option<&'a str>,
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
    let pcr0 = crate::http::expected_pcr0(a.trust)?;
    let mut allowed = a
        .allow_pcr0
        .iter()
        .map(|h| crate::http::parse_pcr0(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    allowed.extend(pcr0.clone());
    match (a.tiles, a.gateway) {
        (Some(tiles), None) => run_tiles(a, tiles, &allowed),
        (None, Some(gateway)) => run_gateway(a, gateway, pcr0, &allowed),
        _ => anyhow::bail!("give --gateway URL or --tiles URL (not both)"),
    }
}

/// The audit of a live gateway: a fresh attestation for our nonce gives the keys, the
/// gateway's API the log.
fn run_gateway(
    a: &AuditArgs<'_>,
    gateway: &str,
    pcr0: Option<Vec<u8>>,
    allowed: &[Vec<u8>],
) -> anyhow::Result<Report> {
    let http = agent();
    let root = root_der(a.trust)?;
    let mut report = Report::default();
    let checks = &mut report.checks;

    // The attestation, fresh for our nonce.
    let mut nonce = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let document = match fetch_attestation(&http, gateway, &nonce) {
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
    let served = get_bytes(&http, &format!("{gateway}/v1/checkpoint"))
        .or_else(|e| sign_checkpoint_now(&http, gateway).map_err(|_| e));
    let note = match served {
        Ok(n) => Some(covering_receipts(&http, gateway, n, a.receipts)),
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

    let source = GatewaySource {
        http: &http,
        gateway,
    };
    report.checks.push(consistency(
        &source,
        a.state,
        (&keys).into(),
        size,
        &cp_root,
    )?);

    // Every epoch's image, and its keys against the attested enclave's.
    report.checks.extend(epochs(
        &http,
        gateway,
        size,
        &cp_root,
        &keys,
        allowed,
        a.trust.allow_debug,
    ));

    // The on-chain anchors.
    report.checks.extend(anchors_and_receipts(
        &http,
        a,
        |view| match view.check_binding("gateway's attestation", &verified, &keys) {
            Ok(m) => Check::pass("anchor.registration", m),
            Err(e) => Check::fail("anchor.registration", format!("{e:#}")),
        },
        &source,
        &keys,
        (size, cp_root),
    ));
    Ok(report)
}

/// The audit of a log from its tiles alone, with no gateway: the bucket, or any static copy
/// of it, after the host is gone or while it lies. No attestation is at hand, so:
/// - the log key is `--log-key` (the auditor's trust in it comes from an attestation checked
///   before, `leadgate verify attestation`, or the anchor contract's registration);
/// - `log.entries` reads every entry bundle, checks each leaf against the level-0 hash tile
///   and parses it as an event, and rebuilds the tree: its root must be the checkpoint's;
/// - the intake and anchor keys are the newest `log.epoch`'s, which must carry the log key;
///   `log.epoch_keys` then holds every other epoch to them, and `log.epochs` judges every
///   epoch's PCR0 as the gateway audit does;
/// - `anchor.registration` needs the enclave's attestation and is skipped
///   (`leadgate verify anchor --registration FILE --tiles URL` checks it from the chain).
fn run_tiles(a: &AuditArgs<'_>, tiles: &str, allowed: &[Vec<u8>]) -> anyhow::Result<Report> {
    let http = agent();
    let log_key = a
        .log_key
        .ok_or_else(|| anyhow::anyhow!("--tiles needs --log-key VKEY: no attestation gives it"))?;
    let verifier = NoteVerifier::parse(log_key).map_err(|e| anyhow::anyhow!("--log-key: {e}"))?;
    let source = TileSource::new(&http, tiles);
    let mut report = Report::default();
    report.checks.push(Check::skip(
        "attestation.signature",
        format!(
            "no gateway: the log is read from its tiles at {tiles}, under --log-key for {}",
            verifier.name()
        ),
    ));
    let note = match source.checkpoint_note() {
        Ok(n) => n,
        Err(e) => {
            report.checks.push(Check::fail(
                "checkpoint.signature",
                format!("no checkpoint in the tiles: {e:#}"),
            ));
            return Ok(report);
        }
    };
    let cp = match verify_checkpoint(&note, &verifier, verifier.name()) {
        Ok(v) => v.checkpoint().clone(),
        Err(e) => {
            report.checks.push(Check::fail(
                "checkpoint.signature",
                format!("{}: {e}", e.code()),
            ));
            return Ok(report);
        }
    };
    let (size, cp_root) = (cp.size, cp.root);
    report.checks.push(Check::pass(
        "checkpoint.signature",
        format!(
            "origin {} size {size} root {} (--log-key)",
            cp.origin,
            hex::encode(cp_root)
        ),
    ));

    report.checks.push(consistency(
        &source,
        a.state,
        (&verifier).into(),
        size,
        &cp_root,
    )?);

    // Every entry, rebuilt into the tree.
    let mut frontier = Frontier::new();
    let mut found = Vec::new();
    let mut settlements = leadgate_verifier::audit::SettlementAudit::default();
    let scanned = source.scan_entries(size, |index, leaf| {
        frontier.append(merkle::leaf_hash(leaf));
        match Event::from_leaf(leaf) {
            Ok(event) => {
                settlements.observe(index, &event);
                if let Event::LogEpoch(e) = event {
                    found.push((index, e));
                }
            }
            Err(e) => anyhow::bail!("entry {index} is not an event: {}", e.code()),
        }
        Ok(())
    });
    let entries = match scanned {
        Err(e) => Check::fail("log.entries", format!("{e:#}")),
        Ok(()) if frontier.root() != cp_root => Check::fail(
            "log.entries",
            format!(
                "the {size} entries in the tiles hash to root {}, not the checkpoint's",
                hex::encode(frontier.root())
            ),
        ),
        Ok(()) => Check::pass(
            "log.entries",
            format!(
                "all {size} entries read from the entry bundles, each matching its hash tile and \
                 an event; they hash to the checkpoint's root"
            ),
        ),
    };
    let entries_ok = entries.status != leadgate_verifier::audit::Status::Fail;
    report.checks.push(entries);
    if !entries_ok {
        return Ok(report);
    }
    report.checks.push(settlements.check());

    // The keys: the newest epoch's, which must carry the given log key.
    let vkey = verifier.to_vkey_string();
    let keys = match found.last() {
        None => {
            report.checks.push(Check::fail(
                "keys.binding",
                "the log holds no log.epoch to take the intake and anchor keys from",
            ));
            None
        }
        Some((index, e)) if e.log_key == vkey && e.origin == verifier.name() => {
            match epoch_keys(e) {
                Ok(k) => {
                    report.checks.push(Check::pass(
                        "keys.binding",
                        format!(
                            "the newest log.epoch (epoch {}, entry {index}) carries --log-key; \
                             its intake and anchor keys are the log's",
                            e.epoch
                        ),
                    ));
                    Some(k)
                }
                Err(err) => {
                    report.checks.push(Check::fail(
                        "keys.binding",
                        format!("the newest log.epoch (entry {index}): {err:#}"),
                    ));
                    None
                }
            }
        }
        Some((index, e)) => {
            report.checks.push(Check::fail(
                "keys.binding",
                format!(
                    "the newest log.epoch (epoch {}, entry {index}) carries log key {}, not \
                     --log-key",
                    e.epoch, e.log_key
                ),
            ));
            None
        }
    };
    report
        .checks
        .push(epochs_check(&found, allowed, a.trust.allow_debug));
    let Some(keys) = keys else {
        return Ok(report);
    };
    report.checks.push(epoch_keys_check(&found, &keys));

    report.checks.extend(anchors_and_receipts(
        &http,
        a,
        |_| {
            Check::skip(
                "anchor.registration",
                "needs the enclave's attestation: `leadgate verify anchor --registration FILE \
                 --tiles URL` checks it against the chain",
            )
        },
        &source,
        &keys,
        (size, cp_root),
    ));
    Ok(report)
}

/// The keys a `log.epoch` records, decoded.
pub(crate) fn epoch_keys(e: &LogEpoch) -> anyhow::Result<EnclaveKeys> {
    let log = NoteVerifier::parse(&e.log_key).map_err(|err| anyhow::anyhow!("log_key: {err}"))?;
    let intake: [u8; 32] = hex::decode(&e.intake_key)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("intake_key is not 32 bytes"))?;
    let anchor: [u8; 33] = hex::decode(&e.anchor_key)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("anchor_key is not 33 bytes"))?;
    Ok(EnclaveKeys {
        origin: e.origin.clone(),
        log_key: *log.public_key(),
        intake_key: intake,
        anchor_key: anchor,
    })
}

/// `checkpoint.consistency` against the checkpoint this auditor saw last time (proof from
/// `source`), remembering the served one when it passes. A rollback fails the check, so a
/// checkpoint that passes is never smaller than the one remembered.
fn consistency(
    source: &dyn LogSource,
    state: &Path,
    log: LogId<'_>,
    size: u64,
    root: &Hash,
) -> anyhow::Result<Check> {
    let seen = load_seen_checkpoint(state, log)?.map(|s| (s.size, s.root));
    let check = match seen {
        Some((m, _)) if m != size => {
            let (lo, hi) = (m.min(size), m.max(size));
            match source.consistency(lo, hi) {
                Ok(proof) => consistency_check(seen, (size, *root), Some(&proof)),
                Err(e) => Check::fail(
                    "checkpoint.consistency",
                    format!("no consistency proof from size {lo} to {hi}: {e:#}"),
                ),
            }
        }
        _ => consistency_check(seen, (size, *root), None),
    };
    if check.status != leadgate_verifier::audit::Status::Fail {
        save_seen_log(state, log, size, root)?;
    }
    Ok(check)
}

/// [`anchor_checks`], then `receipts` ([`receipts_check`]): the checks both audits end with.
fn anchors_and_receipts(
    http: &ureq::Agent,
    a: &AuditArgs<'_>,
    registration: impl FnOnce(&ChainView) -> Check,
    source: &dyn LogSource,
    keys: &EnclaveKeys,
    (size, root): (u64, Hash),
) -> Vec<Check> {
    let mut checks = anchor_checks(http, a.chain, registration, source, size, root).to_vec();
    checks.push(receipts_check(source, keys, size, &root, a.receipts));
    checks
}

/// `anchor.registration` (judged by `registration` from the chain's view) and
/// `anchor.consistency`: the served checkpoint (`size`, `root`) is anchored or consistent with
/// the latest anchor ([`ChainView::check_served`], the proof from `source`). Both skip
/// without a chain, and both fail when it cannot be read.
fn anchor_checks(
    http: &ureq::Agent,
    chain: Option<(&str, &str)>,
    registration: impl FnOnce(&ChainView) -> Check,
    source: &dyn LogSource,
    size: u64,
    root: Hash,
) -> [Check; 2] {
    let Some((rpc, contract)) = chain else {
        return [
            Check::skip("anchor.registration", "no --rpc/--contract given"),
            Check::skip("anchor.consistency", "no --rpc/--contract given"),
        ];
    };
    let view = match ChainView::read(http, rpc, contract) {
        Ok(v) => v,
        Err(e) => {
            let why = format!("reading the chain: {e:#}");
            return [
                Check::fail("anchor.registration", why.clone()),
                Check::fail("anchor.consistency", why),
            ];
        }
    };
    let consistency = match view.check_served(Some(source), size, root) {
        Ok(m) => Check::pass(
            "anchor.consistency",
            format!(
                "{m}; {} anchors on chain {}",
                view.history.len(),
                view.chain_id
            ),
        ),
        Err(e) => Check::fail("anchor.consistency", format!("{e:#}")),
    };
    [registration(&view), consistency]
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
    source: &dyn LogSource,
    keys: &EnclaveKeys,
    size: u64,
    root: &Hash,
    path: Option<&Path>,
) -> Check {
    const NAME: &str = "receipts";
    let Some(path) = path else {
        return Check::skip(NAME, "no --receipts given");
    };
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
        match receipt_status(source, keys, size, root, &receipt) {
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
    source: &dyn LogSource,
    keys: &EnclaveKeys,
    size: u64,
    root: &Hash,
    receipt: &Receipt,
) -> anyhow::Result<ReceiptStatus> {
    let r = verified_receipt(keys, receipt)?;
    let not_included = match included_receipt_in(source, size, root, &r) {
        Ok(_) => return Ok(ReceiptStatus::Included),
        Err(e) => e,
    };
    // Not in the log as promised: only a log.epoch of the next epoch, at or before the
    // receipt's index, excuses it. Epochs only grow along the log, so scan back from there.
    let mut i = r.index.min(size);
    let floor = i.saturating_sub(VOID_SCAN_LIMIT);
    while i > floor {
        i -= 1;
        if let (Event::LogEpoch(e), _) = included_entry_in(source, i, size, root)? {
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
