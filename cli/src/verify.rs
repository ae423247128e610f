//! `leadgate verify`: attestation documents, checkpoints and receipts.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use leadgate_verifier::api::{AuctionDetail, ConsistencyProof, InclusionProof};
use leadgate_verifier::attestation::{
    decode_document_input, verify_attestation, AttestationPolicy,
};
use leadgate_verifier::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use leadgate_verifier::event::Event;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{self, Hash};
use leadgate_verifier::note::NoteVerifier;
use leadgate_verifier::receipt::{Receipt, VerifiedReceipt};
use serde_json::{json, Value};

use crate::http::{
    agent, attest_gateway, check_trust, get_bytes, get_typed, now_ms, root_der, TrustArgs,
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
            let pcr0 = crate::http::expected_pcr0(trust)?;
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
            verify_attestation(&doc, &policy).map_err(|e| (e.code().as_str(), e.to_string()))
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

/// `verify auction`: for each auction (ID, or every auction in the bids file), checks that its
/// `lead.accepted` and close events are in a checkpoint signed by the attested log key, that
/// the tie-break seed is the log key's signature, that the served `bid.sealed` entries give
/// exactly the committed set of considered bids, and, for the caller's own bids (`buyer bid`'s
/// output), that the last one is in that set and the outcome is consistent with its amount.
pub fn auction(
    id: Option<&str>,
    gateway: &str,
    trust: &TrustArgs,
    my_bids: Option<&Path>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, gateway, trust)?;
    let mut own: Vec<Value> = Vec::new();
    if let Some(p) = my_bids {
        for line in std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            own.push(serde_json::from_str(line).context("bids file line")?);
        }
    }
    let mut ids: Vec<String> = match id {
        Some(i) => vec![i.to_owned()],
        None => own
            .iter()
            .filter_map(|b| b["auction_id"].as_str().map(str::to_owned))
            .collect(),
    };
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        bail!("give an auction ID or --my-bid FILE");
    }
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(i) else { break };
                let mine: Vec<&Value> = own.iter().filter(|b| b["auction_id"] == **id).collect();
                match check_auction(&http, gateway, &keys, id, &mine) {
                    Ok(line) => println!("{line}"),
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("auction {id}: {e:#}")),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!(
        "{} auctions verified, {} failed",
        ids.len() - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        bail!("{} auctions failed verification", failures.len());
    }
    Ok(())
}

fn check_auction(
    http: &ureq::Agent,
    gateway: &str,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    id: &str,
    mine: &[&Value],
) -> anyhow::Result<String> {
    use leadgate_verifier::auction::{
        check_own_bid, commitments_root, considered, verify_seed, OpenedBid, Outcome, TokenAmount,
    };
    let a: AuctionDetail = get_typed(http, &format!("{gateway}/v1/auctions/{id}"))?;
    let close_index = a
        .auction
        .close_index
        .ok_or_else(|| anyhow!("not closed yet (status {})", a.auction.status.as_str()))?;
    let open_index = a.auction.open_index;
    let cp = checkpoint_covering(http, gateway, keys, close_index + 1)?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    let Event::LeadAccepted(opened) = included_entry(http, gateway, open_index, size, &root)?.0
    else {
        bail!("entry {open_index} is not a lead.accepted");
    };
    if opened.lead_id != id {
        bail!("entry {open_index} is another lead's acceptance");
    }
    let terms = opened.auction;
    let close = included_entry(http, gateway, close_index, size, &root)?.0;
    let (auction_id, time, reserve, bids, croot, seed_hex, outcome, winner) = match &close {
        Event::AuctionClosed(c) => {
            if c.pricing != terms.pricing {
                bail!("closed with another pricing rule than the seller's");
            }
            let w: Hash = hex::decode(&c.winning_commitment)?
                .try_into()
                .map_err(|_| anyhow!("bad winning commitment"))?;
            (
                &c.auction_id,
                c.time,
                c.reserve,
                c.bids,
                &c.commitments_root,
                &c.seed,
                Outcome::Sold {
                    winner: w,
                    price: c.price,
                },
                Some(c.winner.clone()),
            )
        }
        Event::AuctionUnsold(u) => (
            &u.auction_id,
            u.time,
            u.reserve,
            u.bids,
            &u.commitments_root,
            &u.seed,
            Outcome::Unsold,
            None,
        ),
        other => bail!("entry {close_index} is a {}, not a close", other.kind()),
    };
    if auction_id != id {
        bail!("the close is another auction's");
    }
    if time < terms.closes_at {
        bail!(
            "closed at {time}, before its close time {}",
            terms.closes_at
        );
    }
    if reserve != terms.reserve {
        bail!("closed with another reserve than the seller's");
    }
    let seed: [u8; 64] = hex::decode(seed_hex)?
        .try_into()
        .map_err(|_| anyhow!("seed is not 64 bytes"))?;
    verify_seed(&keys.log_key, &keys.origin, id, &seed).map_err(|e| anyhow!("{}", e.code()))?;
    // The considered set, by the enclave's rule (`leadgate_verifier::auction::considered`),
    // from the bid.sealed entries between open and close in log order.
    let mut entries: Vec<_> = a
        .bid_entries
        .iter()
        .filter(|b| b.index > open_index && b.index < close_index)
        .collect();
    entries.sort_by_key(|b| b.index);
    let keyed: Vec<(&str, Hash)> = entries
        .iter()
        .map(|b| {
            hex::decode(&b.commitment)
                .ok()
                .and_then(|v| v.try_into().ok())
                .map(|c| (b.buyer.as_str(), c))
                .ok_or_else(|| anyhow!("bad commitment"))
        })
        .collect::<anyhow::Result<_>>()?;
    let considered: Vec<Hash> = considered(&keyed).into_iter().map(|i| keyed[i].1).collect();
    if hex::encode(commitments_root(&considered)) != *croot || considered.len() as u64 != bids {
        bail!("the served bid entries are not the set the enclave committed to");
    }
    let mut verdict = match (&outcome, &winner) {
        (Outcome::Sold { price, .. }, Some(w)) => {
            format!(
                "auction {id}: sold to {w} at {} ({bids} bids)",
                price.units()
            )
        }
        _ => format!("auction {id}: unsold ({bids} bids)"),
    };
    // The caller's last bid.
    if let Some(b) = mine.iter().max_by_key(|b| b["index"].as_u64().unwrap_or(0)) {
        let receipt: Receipt = serde_json::from_value(b["receipt"].clone())?;
        let Event::BidSealed(ev) = receipt_entry(http, gateway, keys, size, &root, &receipt)?
        else {
            bail!("my bid's receipt is not for a bid.sealed");
        };
        let commitment: Hash = hex::decode(b["commitment"].as_str().unwrap_or_default())?
            .try_into()
            .map_err(|_| anyhow!("bad commitment in my bid file"))?;
        if ev.commitment != hex::encode(commitment) || ev.auction_id != id {
            bail!("my bid's logged entry is for another bid");
        }
        if !considered.contains(&commitment) {
            bail!("my last bid is not among the bids the enclave considered");
        }
        let own = OpenedBid {
            commitment,
            amount: TokenAmount::new(b["amount"].as_u64().unwrap_or(u64::MAX))?,
        };
        check_own_bid(&own, &outcome, terms.reserve, terms.pricing, &seed)
            .map_err(|e| anyhow!("{}: {e}", e.code()))?;
        if winner.as_deref() == Some(ev.buyer.as_str())
            && !matches!(outcome, Outcome::Sold { winner, .. } if winner == commitment)
        {
            bail!("I won with a bid that is not my last one");
        }
        verdict.push_str(if winner.as_deref() == Some(ev.buyer.as_str()) {
            "; my bid won, consistent"
        } else {
            "; my bid lost, consistent"
        });
    }
    Ok(verdict)
}
