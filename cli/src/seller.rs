//! `leadgate seller`: key generation and sealed submission.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _};
use ed25519_dalek::SigningKey;
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, RequestedTerms, SealedLead};
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
                    .map(|a| {
                        let terms: RequestedTerms = serde_json::from_value(a.clone())?;
                        anyhow::Ok(terms.decode()?)
                    })
                    .transpose()
                    .with_context(|| format!("line {}: auction terms", i + 1))?;
                (l.clone(), own)
            }
            _ => (v, None),
        };
        let terms = match (own, default) {
            (Some(o), Some(d)) => Some(AuctionRequest {
                reserve: o.reserve.or(d.reserve),
                // An instant auction takes no duration: the defaults' does not apply to it.
                duration_ms: if o.instant {
                    o.duration_ms
                } else {
                    o.duration_ms.or(d.duration_ms)
                },
                pricing: o.pricing.or(d.pricing),
                payout: o.payout.or(d.payout),
                off_site: o.off_site || d.off_site,
                instant: o.instant || d.instant,
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
    /// Keep the receipts already in `receipts` and send only the lines without one, reusing
    /// the sealed requests kept beside it.
    pub resume: bool,
    /// How long to keep retrying a lead the gateway cannot answer yet (503, no connection).
    pub retry_for: std::time::Duration,
}

/// The sidecar of `receipts`: every sealed request as sent, kept until answered, so a retry
/// (in this run or after `--resume`) sends the same bytes and gets the original answer.
fn sealed_path(receipts: &Path) -> PathBuf {
    let mut p = receipts.as_os_str().to_owned();
    p.push(".sealed");
    PathBuf::from(p)
}

/// JSON lines with a `line` field (1-based): the last object per line, by line number.
fn read_lines_by_number(path: &Path) -> anyhow::Result<std::collections::HashMap<usize, Value>> {
    let mut out = std::collections::HashMap::new();
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(out);
    };
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        // A line cut short by a kill is skipped: its request is sent again.
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(n) = v["line"].as_u64() {
            out.insert(n as usize, v);
        }
    }
    Ok(out)
}

/// An append-only JSON-lines file, flushed after each group of lines.
struct Appender(Mutex<std::io::BufWriter<std::fs::File>>);

impl Appender {
    fn open(path: &Path, truncate: bool) -> anyhow::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(!truncate)
            .write(true)
            .truncate(truncate)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self(Mutex::new(std::io::BufWriter::new(f))))
    }

    fn append(&self, lines: impl IntoIterator<Item = Value>) -> anyhow::Result<()> {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for v in lines {
            writeln!(w, "{v}")?;
        }
        w.flush()?;
        Ok(())
    }
}

/// Verifies the gateway's attestation, then seals and posts every lead. Each answer is
/// appended to `receipts` as soon as it arrives (flushed per request); at the end the file is
/// rewritten with one line per input lead, in input order. Sealed requests are kept in
/// `RECEIPTS.sealed` until answered, so retries send the same bytes.
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
    let sidecar = sealed_path(&a.receipts);
    let (mut answered, kept) = if a.resume {
        (
            read_lines_by_number(&a.receipts)?,
            read_lines_by_number(&sidecar)?,
        )
    } else {
        Default::default()
    };
    answered.retain(|_, v| v.get("receipt").is_some());
    let mut sealed: Vec<Option<SealedLead>> = vec![None; leads.len()];
    for (n, v) in kept {
        if let (Some(slot), Ok(s)) = (
            n.checked_sub(1).and_then(|i| sealed.get_mut(i)),
            serde_json::from_value::<SealedLead>(v["sealed"].clone()),
        ) {
            *slot = Some(s);
        }
    }
    let results: Vec<Mutex<Option<Value>>> = (0..leads.len())
        .map(|i| Mutex::new(answered.remove(&(i + 1))))
        .collect();
    let todo = results
        .iter()
        .filter(|r| r.lock().is_ok_and(|r| r.is_none()))
        .count();
    if a.resume {
        eprintln!(
            "resuming: {} of {} leads already have a receipt",
            leads.len() - todo,
            leads.len()
        );
    }
    let out = Appender::open(&a.receipts, !a.resume)?;
    let kept_sealed = Appender::open(&sidecar, !a.resume)?;
    let bar = indicatif::ProgressBar::new(todo as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} leads {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Requests run in parallel, but a lead waits for every earlier lead with the same email
    // to be answered: the seller's order decides which one is the original and which the
    // duplicate. A request never holds two leads with the same email, and workers take
    // requests in input order, so the lead waited for is always in flight or done.
    let earlier_same_email = earlier_same_email(&leads);
    let done: Vec<std::sync::atomic::AtomicBool> = results
        .iter()
        .map(|r| r.lock().is_ok_and(|r| r.is_some()).into())
        .collect();
    let pending: Vec<usize> = (0..leads.len())
        .filter(|&i| !done[i].load(Ordering::Relaxed))
        .collect();
    let chunks = request_chunks_of(&pending, &earlier_same_email, a.batch.clamp(1, 256));
    let next = AtomicUsize::new(0);
    let submitter = Submitter {
        http: &http,
        gateway: &a.gateway,
        seller: &seller,
        intake: &keys.intake_key,
        origin: &keys.origin,
        leads: &leads,
        terms: &terms,
        sealed: sealed.into_iter().map(Mutex::new).collect(),
        kept_sealed: &kept_sealed,
        retry_for: a.retry_for,
    };
    let started = std::time::Instant::now();
    let written: anyhow::Result<()> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..a.concurrency.max(1))
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        let Some(group) = chunks.get(c) else {
                            return Ok(());
                        };
                        for j in group.iter().filter_map(|&i| earlier_same_email[i]) {
                            while !done[j].load(Ordering::Acquire) {
                                std::thread::sleep(std::time::Duration::from_millis(1));
                            }
                        }
                        let answers = submitter.post_leads(group);
                        out.append(group.iter().zip(&answers).map(|(&i, v)| {
                            let mut v = v.clone();
                            v["line"] = json!(i + 1);
                            v
                        }))?;
                        for (&i, v) in group.iter().zip(answers) {
                            *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
                            done[i].store(true, Ordering::Release);
                            bar.inc(1);
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(anyhow!("a worker panicked")))
        })
    });
    written?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    drop(out);
    // The final file: one line per input lead, in input order.
    let tmp = a.receipts.with_extension("tmp");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
    );
    let (mut accepted, mut rejected, mut failed, mut sold_now) = (0, 0, 0, 0);
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
        if v["sale"]["status"] == "sold" {
            sold_now += 1;
        }
        v["line"] = json!(i + 1);
        writeln!(file, "{v}")?;
    }
    file.flush()?;
    drop(file);
    std::fs::rename(&tmp, &a.receipts)
        .with_context(|| format!("writing {}", a.receipts.display()))?;
    drop(kept_sealed);
    if failed == 0 {
        let _ = std::fs::remove_file(&sidecar);
    }
    eprintln!(
        "{} leads in {:.2}s ({:.0}/s): {accepted} accepted ({sold_now} sold instantly), {rejected} rejected, {failed} failed; receipts in {}",
        todo,
        elapsed.as_secs_f64(),
        todo as f64 / elapsed.as_secs_f64(),
        a.receipts.display()
    );
    if failed > 0 {
        bail!(
            "{failed} submissions failed; `--resume` sends them again with the same sealed bytes"
        );
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

/// [`request_chunks`] over the pending leads only (indexes into the input), in input order.
fn request_chunks_of(
    pending: &[usize],
    earlier_same_email: &[Option<usize>],
    batch: usize,
) -> Vec<Vec<usize>> {
    let earlier: Vec<Option<usize>> = pending
        .iter()
        .map(|&i| earlier_same_email[i].and_then(|j| pending.binary_search(&j).ok()))
        .collect();
    request_chunks(&earlier, batch)
        .into_iter()
        .map(|r| pending[r].to_vec())
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

/// Who sends leads where: the seller key, the gateway and the attested intake key and origin,
/// and each lead's sealed request once made.
struct Submitter<'a> {
    http: &'a ureq::Agent,
    gateway: &'a str,
    seller: &'a SigningKey,
    intake: &'a [u8; 32],
    origin: &'a str,
    leads: &'a [Vec<u8>],
    terms: &'a [Option<AuctionRequest>],
    sealed: Vec<Mutex<Option<SealedLead>>>,
    kept_sealed: &'a Appender,
    retry_for: std::time::Duration,
}

/// Answers that mean "not now": the lead is sent again, with the same bytes.
fn retry_later(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("server.overloaded" | "enclave.unavailable" | "storage.unavailable" | "server.busy")
    )
}

impl Submitter<'_> {
    /// Lead `i`'s sealed request: the one made before (this run or, with `--resume`, an
    /// earlier one), or a new one, kept beside the receipts before it is sent. `fresh` seals
    /// anew (after `submission.stale`). A refusal to seal comes back as the lead's answer.
    fn sealed(&self, i: usize, fresh: bool) -> Result<SealedLead, Value> {
        let mut slot = self.sealed[i].lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(s), false) = (slot.as_ref(), fresh) {
            return Ok(s.clone());
        }
        let terms = self.terms.get(i).copied().flatten();
        let s = seal_lead_with_terms(
            self.seller,
            self.intake,
            self.origin,
            &self.leads[i],
            now_ms(),
            terms,
        )
        .map_err(|e| json!({"error": {"code": e.code(), "message": e.to_string()}}))?;
        self.kept_sealed
            .append([json!({"line": i + 1, "sealed": s})])
            .map_err(|e| json!({"error": {"code": "client.io", "message": format!("{e:#}")}}))?;
        *slot = Some(s.clone());
        Ok(s)
    }

    /// Posts `leads` (one request, or a batch request for several), retrying each lead while
    /// the gateway says to retry (no connection, 503, or a retry code in a batch answer) for
    /// up to `retry_for`, always with the same sealed bytes. One answer per lead, in order.
    fn post_leads(&self, leads: &[usize]) -> Vec<Value> {
        let mut answers: Vec<Option<Value>> = vec![None; leads.len()];
        let mut fresh = vec![false; leads.len()];
        let mut delay = std::time::Duration::from_millis(100);
        let deadline = std::time::Instant::now() + self.retry_for;
        loop {
            let mut pending = Vec::new();
            let mut sealed = Vec::new();
            for (k, &i) in leads.iter().enumerate() {
                if answers[k].is_some() {
                    continue;
                }
                match self.sealed(i, std::mem::take(&mut fresh[k])) {
                    Ok(s) => {
                        pending.push(k);
                        sealed.push(s);
                    }
                    Err(e) => answers[k] = Some(e),
                }
            }
            if pending.is_empty() {
                break;
            }
            let results = if leads.len() == 1 {
                self.post(&format!("{}/v1/leads", self.gateway), json!(sealed[0]))
                    .map(|v| vec![v])
            } else {
                self.post(
                    &format!("{}/v1/leads/batch", self.gateway),
                    json!({ "leads": sealed }),
                )
                .map(|v| match v["results"].as_array() {
                    Some(r) if r.len() == pending.len() => r.clone(),
                    _ => vec![v; pending.len()],
                })
            };
            for (k, r) in pending.iter().zip(results.unwrap_or_default()) {
                let code = r["error"]["code"].as_str();
                if code == Some("submission.stale") {
                    // Never logged (a logged one is answered with its receipt): seal anew.
                    fresh[*k] = true;
                } else if !retry_later(code) {
                    answers[*k] = Some(r);
                }
            }
            if answers.iter().all(Option::is_some) || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(std::time::Duration::from_secs(2));
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    json!({"error": {"code": "client.gave_up", "message": "the gateway could not answer in time"}})
                })
            })
            .collect()
    }

    /// One POST: the JSON answer (an error answer as `{"error", "status"}`), or `None` when
    /// there was no answer to keep (no connection, 503).
    fn post(&self, url: &str, body: Value) -> Option<Value> {
        let mut resp = self.http.post(url).send_json(body).ok()?;
        let status = resp.status().as_u16();
        let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
        match status {
            200..=299 => Some(v),
            503 => None,
            _ => Some(
                json!({"error": {"code": v["error"]["code"], "message": error_code(&v)}, "status": status}),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{request_chunks, request_chunks_of};

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

    #[test]
    fn resumed_requests_cut_only_at_pending_repeats() {
        // Leads 0..7 as above; 0 and 4 were answered before.
        let earlier = [None, None, Some(0), None, None, Some(3), None];
        let pending = [1, 2, 3, 5, 6];
        // 2 repeats 0 (answered), so it does not cut; 5 repeats 3 (pending), so it does.
        assert_eq!(
            request_chunks_of(&pending, &earlier, 32),
            vec![vec![1, 2, 3], vec![5, 6]]
        );
    }
}
