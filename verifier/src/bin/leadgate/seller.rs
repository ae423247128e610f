//! `leadgate seller`: key generation and sealed submission.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use ed25519_dalek::SigningKey;
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, SealedLead};
use serde_json::{json, Value};

use crate::http::{agent, attest_gateway, error_code, now_ms, write_key_file, TrustArgs};

/// Writes a new Ed25519 seller key: JSON `{"ed25519_secret": hex, "seller": hex}`, mode 0600.
pub fn keygen(out: &Path) -> anyhow::Result<()> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let body = json!({
        "ed25519_secret": hex::encode(key.to_bytes()),
        "seller": hex::encode(key.verifying_key().to_bytes()),
    });
    write_key_file(out, &body)?;
    println!("{}", body["seller"].as_str().unwrap_or_default());
    Ok(())
}

/// Reads a key file written by [`keygen`].
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let secret: [u8; 32] = hex::decode(
        v["ed25519_secret"]
            .as_str()
            .ok_or_else(|| anyhow!("no ed25519_secret"))?,
    )?
    .try_into()
    .map_err(|_| anyhow!("ed25519_secret must be 32 bytes"))?;
    Ok(SigningKey::from_bytes(&secret))
}

/// Reads leads: each line a bare lead object or a corpus line `{"lead": {...}, ...}`, whose
/// optional `"auction"` object (`reserve`, `duration_ms`, `pricing`) overrides `default` field
/// by field. Returns the lead JSON and its auction terms, per line.
pub fn read_leads(
    path: &Path,
    default: Option<AuctionRequest>,
) -> anyhow::Result<Vec<(Vec<u8>, Option<AuctionRequest>)>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", i + 1))?;
        let (lead, own) = match v.get("lead") {
            Some(l) if l.is_object() => {
                let own: Option<AuctionRequest> = v
                    .get("auction")
                    .map(|a| serde_json::from_value(a.clone()))
                    .transpose()
                    .with_context(|| format!("line {}: auction terms", i + 1))?;
                (l.clone(), own)
            }
            _ => (v, None),
        };
        let terms = match (own, default) {
            (Some(o), Some(d)) => Some(AuctionRequest {
                reserve: o.reserve.or(d.reserve),
                duration_ms: o.duration_ms.or(d.duration_ms),
                pricing: o.pricing.or(d.pricing),
            }),
            (o, d) => o.or(d),
        };
        out.push((serde_json::to_vec(&lead)?, terms));
    }
    Ok(out)
}

/// Options for `seller submit`.
pub struct SubmitArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    pub key: PathBuf,
    pub receipts: PathBuf,
    pub leads: PathBuf,
    pub concurrency: usize,
    /// Leads per request: 1 uses `POST /v1/leads`, more `POST /v1/leads/batch`.
    pub batch: usize,
    /// Auction terms for every lead (a line's own `"auction"` overrides them).
    pub terms: Option<AuctionRequest>,
}

/// Verifies the gateway's attestation, then seals and posts every lead; writes one receipt line
/// per input lead, in input order.
pub fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let http = agent();
    let (att, keys) =
        attest_gateway(&http, &a.gateway, &a.trust).context("refusing to send leads")?;
    eprintln!(
        "attested: origin {} module {}{}",
        keys.origin,
        att.document().module_id,
        if att.is_debug() {
            " (DEBUG/dev enclave)"
        } else {
            ""
        }
    );
    let seller = read_key(&a.key)?;
    let (leads, terms): (Vec<_>, Vec<_>) = read_leads(&a.leads, a.terms)?.into_iter().unzip();
    let bar = indicatif::ProgressBar::new(leads.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} leads {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let results: Vec<Mutex<Option<Value>>> = leads.iter().map(|_| Mutex::new(None)).collect();
    // Requests run in parallel, but a lead waits for every earlier lead with the same email
    // to be answered: the seller's order decides which one is the original and which the
    // duplicate. A request never holds two leads with the same email, and workers take
    // requests in input order, so the lead waited for is always in flight or done.
    let earlier_same_email = earlier_same_email(&leads);
    let chunks = request_chunks(&earlier_same_email, a.batch.clamp(1, 256));
    let done: Vec<std::sync::atomic::AtomicBool> =
        leads.iter().map(|_| Default::default()).collect();
    let next = AtomicUsize::new(0);
    let submitter = Submitter {
        http: &http,
        gateway: &a.gateway,
        seller: &seller,
        intake: &keys.intake_key,
        origin: &keys.origin,
        leads: &leads,
        terms: &terms,
    };
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.concurrency.max(1) {
            s.spawn(|| loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                let Some(range) = chunks.get(c).cloned() else {
                    break;
                };
                for j in range.clone().filter_map(|i| earlier_same_email[i]) {
                    while !done[j].load(Ordering::Acquire) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                let answers = submitter.post_leads(range.clone());
                for (i, v) in range.zip(answers) {
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
                    done[i].store(true, Ordering::Release);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&a.receipts)
            .with_context(|| format!("creating {}", a.receipts.display()))?,
    );
    let (mut accepted, mut rejected, mut failed) = (0, 0, 0);
    for (i, r) in results.into_iter().enumerate() {
        let mut v = r
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(Value::Null);
        match v["verdict"].as_str() {
            Some("accepted") => accepted += 1,
            Some("rejected") => rejected += 1,
            _ => failed += 1,
        }
        v["line"] = json!(i + 1);
        writeln!(out, "{v}")?;
    }
    out.flush()?;
    eprintln!(
        "{} leads in {:.2}s ({:.0}/s): {accepted} accepted, {rejected} rejected, {failed} failed; receipts in {}",
        leads.len(),
        elapsed.as_secs_f64(),
        leads.len() as f64 / elapsed.as_secs_f64(),
        a.receipts.display()
    );
    if failed > 0 {
        bail!("{failed} submissions failed");
    }
    Ok(())
}

/// For each lead, the index of the closest earlier lead with the same email (case-insensitive).
fn earlier_same_email(leads: &[Vec<u8>]) -> Vec<Option<usize>> {
    let mut last: std::collections::HashMap<String, usize> = Default::default();
    leads
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let email = serde_json::from_slice::<Value>(l)
                .ok()
                .and_then(|v| v["email"].as_str().map(|e| e.trim().to_lowercase()))?;
            last.insert(email, i)
        })
        .collect()
}

/// Splits leads into consecutive requests of at most `batch` leads, cutting before a lead
/// whose email already appears in the current request.
fn request_chunks(
    earlier_same_email: &[Option<usize>],
    batch: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    for (i, earlier) in earlier_same_email.iter().enumerate() {
        let repeats_in_chunk = earlier.is_some_and(|j| j >= start);
        if i > start && (i - start == batch || repeats_in_chunk) {
            chunks.push(start..i);
            start = i;
        }
    }
    if start < earlier_same_email.len() {
        chunks.push(start..earlier_same_email.len());
    }
    chunks
}

/// Who sends leads where: the seller key, the gateway and the attested intake key and origin.
struct Submitter<'a> {
    http: &'a ureq::Agent,
    gateway: &'a str,
    seller: &'a SigningKey,
    intake: &'a [u8; 32],
    origin: &'a str,
    leads: &'a [Vec<u8>],
    terms: &'a [Option<AuctionRequest>],
}

impl Submitter<'_> {
    /// Seals and signs lead `i` now; a refusal to seal comes back as the lead's error answer.
    fn seal(&self, i: usize) -> Result<SealedLead, Value> {
        let terms = self.terms.get(i).copied().flatten();
        seal_lead_with_terms(
            self.seller,
            self.intake,
            self.origin,
            &self.leads[i],
            now_ms(),
            terms,
        )
        .map_err(|e| json!({"error": {"code": e.code(), "message": e.to_string()}}))
    }

    /// Seals and posts `leads` (one request, or a batch request for several), retrying each lead
    /// while the gateway says to retry (503, or `overloaded`/`enclave.unavailable` in a batch
    /// answer). One answer per lead, in order.
    fn post_leads(&self, range: std::ops::Range<usize>) -> Vec<Value> {
        if range.len() == 1 {
            return vec![self.post_one(range.start)];
        }
        let leads: Vec<usize> = range.collect();
        let mut answers: Vec<Option<Value>> = vec![None; leads.len()];
        let mut delay = std::time::Duration::from_millis(100);
        for _attempt in 0..20 {
            let pending: Vec<usize> = (0..leads.len()).filter(|&i| answers[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let mut sealed = Vec::with_capacity(pending.len());
            for &i in &pending {
                match self.seal(leads[i]) {
                    Ok(s) => sealed.push(s),
                    Err(e) => answers[i] = Some(e),
                }
            }
            let pending: Vec<usize> = pending
                .into_iter()
                .filter(|&i| answers[i].is_none())
                .collect();
            let url = format!("{}/v1/leads/batch", self.gateway);
            let results = match self.http.post(&url).send_json(json!({ "leads": sealed })) {
                Ok(mut resp) if resp.status().as_u16() != 503 => {
                    let status = resp.status().as_u16();
                    let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
                    match v["results"].as_array() {
                        Some(r) if r.len() == pending.len() => r.clone(),
                        _ => {
                            let e = json!({"error": {"code": v["error"]["code"], "message": error_code(&v)}, "status": status});
                            for &i in &pending {
                                answers[i] = Some(e.clone());
                            }
                            break;
                        }
                    }
                }
                _ => Vec::new(),
            };
            for (&i, r) in pending.iter().zip(results) {
                let retry = matches!(
                    r["error"]["code"].as_str(),
                    Some("overloaded" | "enclave.unavailable")
                );
                if !retry {
                    answers[i] = Some(r);
                }
            }
            if answers.iter().all(Option::is_some) {
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
        answers
        .into_iter()
        .map(|a| {
            a.unwrap_or_else(
                || json!({"error": {"code": "client.gave_up", "message": "gateway kept answering 503"}}),
            )
        })
        .collect()
    }

    /// Seals and posts one lead, retrying while the gateway says to retry (503).
    fn post_one(&self, lead: usize) -> Value {
        let mut delay = std::time::Duration::from_millis(100);
        for _attempt in 0..20 {
            let sealed = match self.seal(lead) {
                Ok(s) => s,
                Err(e) => return e,
            };
            let url = format!("{}/v1/leads", self.gateway);
            let mut resp = match self.http.post(&url).send_json(&sealed) {
                Ok(r) => r,
                Err(e) => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                    let _ = e;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
            if status == 503 {
                std::thread::sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
                continue;
            }
            if (200..300).contains(&status) {
                return v;
            }
            return json!({"error": {"code": v["error"]["code"], "message": error_code(&v)}, "status": status});
        }
        json!({"error": {"code": "client.gave_up", "message": "gateway kept answering 503"}})
    }
}

#[cfg(test)]
mod tests {
    use super::request_chunks;

    #[test]
    fn requests_never_hold_two_leads_with_one_email() {
        // Leads 2 and 5 repeat the emails of 0 and 3.
        let earlier = [None, None, Some(0), None, None, Some(3), None];
        assert_eq!(request_chunks(&earlier, 32), vec![0..2, 2..5, 5..7]);
        assert_eq!(request_chunks(&earlier, 2), vec![0..2, 2..4, 4..6, 6..7]);
        assert_eq!(request_chunks(&earlier, 1).len(), 7);
        // A repeat of a lead in an earlier request does not cut.
        assert_eq!(request_chunks(&[None, None, Some(0)], 2), vec![0..2, 2..3]);
        assert!(request_chunks(&[], 8).is_empty());
    }
}
