//! `leadgate bench submit`: a load generator. Pre-seals synthetic, valid, unique leads (one
//! seller key per 500 so per-seller limits do not bind), then posts them from N threads,
//! optionally paced to a target rate, and reports accepted submissions per second and
//! end-to-end latency percentiles (through the host, enclave and durable storage).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_verifier::api::{BatchAnswer, BatchResult};
use leadgate_verifier::intake::seal_lead;
use serde_json::json;

use crate::http::{agent, attest_gateway, now_ms, TrustArgs};

/// Options.
pub struct BenchArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    pub count: usize,
    pub concurrency: usize,
    pub rate: f64,
    pub json: bool,
    /// Where to write each request's timing as CSV (`sent_ms,latency_ms,ok`), if anywhere.
    pub latencies: Option<std::path::PathBuf>,
    /// Leads per request: 1 posts to `/v1/leads`, more to `/v1/leads/batch`.
    pub batch: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs the benchmark.
pub fn submit(a: BenchArgs) -> anyhow::Result<()> {
    let http = agent();
    let (_, keys) = attest_gateway(&http, &a.gateway, &a.trust)?;
    let run = now_ms();
    eprintln!("sealing {} synthetic leads...", a.count);
    let sellers: Vec<SigningKey> = (0..a.count.div_ceil(500))
        .map(|_| SigningKey::generate(&mut rand_core::OsRng))
        .collect();
    let bodies: Vec<Vec<u8>> = (0..a.count)
        .map(|i| {
            let lead = json!({
                "business": format!("Bench Co {run}-{i}"), "full_name": "Pat Bench", "first": "Pat", "last": "Bench",
                "email": format!("pat.bench.{run}.{i}@benchco{i}.com"), "role": "Owner",
                "website": format!("https://benchco{i}.com"), "industry": "HVAC", "sub_industry": "Heating",
                "region": "Austin, TX", "linkedin": "https://linkedin.com/in/patbench",
                "phone_numbers": ["+1-512-555-0100"], "founded_year": 1999, "number_of_locations": 3,
            });
            let sealed = seal_lead(&sellers[i / 500], &keys.intake_key, &keys.origin, &serde_json::to_vec(&lead)?, now_ms())?;
            Ok(serde_json::to_vec(&sealed)?)
        })
        .collect::<anyhow::Result<_>>()?;
    // Requests: one lead each, or `batch` leads per `/v1/leads/batch` body.
    let batch = a.batch.clamp(1, 256);
    let (url, bodies): (String, Vec<Vec<u8>>) = if batch == 1 {
        (format!("{}/v1/leads", a.gateway), bodies)
    } else {
        let joined = bodies
            .chunks(batch)
            .map(|c| {
                let mut b = b"{\"leads\":[".to_vec();
                b.extend(c.join(&b","[..]));
                b.extend(b"]}");
                b
            })
            .collect();
        (format!("{}/v1/leads/batch", a.gateway), joined)
    };
    // (index, sent since start, latency, ok) of every request, for --latencies.
    let timings: Mutex<Vec<(usize, Duration, Duration, bool)>> = Mutex::new(Vec::new());
    let latencies = Mutex::new(Vec::with_capacity(bodies.len()));
    // The first failure, reported with the summary (what kind of error the errors are).
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let (next, accepted, errors) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..a.concurrency.max(1) {
            s.spawn(|| {
                let mut local = Vec::new();
                let mut timed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= bodies.len() {
                        break;
                    }
                    if a.rate > 0.0 {
                        let due = start + Duration::from_secs_f64((i * batch) as f64 / a.rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let t = Instant::now();
                    let r = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(&bodies[i][..]);
                    let sent = t.duration_since(start);
                    let ok = matches!(&r, Ok(resp) if resp.status().is_success());
                    if a.latencies.is_some() {
                        timed.push((i, sent, t.elapsed(), ok));
                    }
                    match r {
                        Ok(mut resp) if resp.status().is_success() => {
                            // The answer is read to its end in both cases, as a client
                            // would read its receipt: ureq returns a connection to its pool
                            // only then, and an unread one is closed (a new TCP connection per
                            // request would load the host with accepts and teardowns).
                            let ok = if batch == 1 {
                                let _ = resp.body_mut().read_to_vec();
                                1
                            } else {
                                let results = resp
                                    .body_mut()
                                    .read_json::<BatchAnswer>()
                                    .map(|a| a.results)
                                    .unwrap_or_default();
                                let ok = results
                                    .iter()
                                    .filter(|r| matches!(r, BatchResult::Logged(_)))
                                    .count();
                                errors.fetch_add(results.len() - ok, Ordering::Relaxed);
                                if let Some(BatchResult::Error(e)) =
                                    results.iter().find(|r| matches!(r, BatchResult::Error(_)))
                                {
                                    first_error
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .get_or_insert_with(|| {
                                            format!(
                                                "in a batch answer: {}: {}",
                                                e.error.code, e.error.message
                                            )
                                        });
                                }
                                ok
                            };
                            accepted.fetch_add(ok, Ordering::Relaxed);
                            local.push(t.elapsed());
                        }
                        other => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let what = match other {
                                Ok(mut resp) => format!(
                                    "HTTP {}: {}",
                                    resp.status().as_u16(),
                                    resp.body_mut().read_to_string().unwrap_or_default()
                                ),
                                Err(e) => e.to_string(),
                            };
                            let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                            first.get_or_insert(what);
                        }
                    }
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
                timings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(timed);
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = first_error.into_inner().unwrap_or_default() {
        eprintln!("first error: {e}");
    }
    if let Some(path) = &a.latencies {
        let mut t = timings.into_inner().unwrap_or_default();
        t.sort_by_key(|x| x.0);
        let mut csv = String::from("sent_ms,latency_ms,ok\n");
        for (_, sent, lat, ok) in t {
            csv.push_str(&format!(
                "{:.3},{:.3},{}\n",
                sent.as_secs_f64() * 1000.0,
                lat.as_secs_f64() * 1000.0,
                u8::from(ok)
            ));
        }
        std::fs::write(path, csv)?;
    }
    let mut l = latencies.into_inner().unwrap_or_default();
    l.sort();
    let report = json!({
        "count": a.count, "concurrency": a.concurrency, "target_rate": a.rate, "leads_per_request": batch,
        "ok": accepted.load(Ordering::Relaxed), "errors": errors.load(Ordering::Relaxed),
        "elapsed_s": elapsed, "per_second": accepted.load(Ordering::Relaxed) as f64 / elapsed,
        "p50_ms": percentile(&l, 0.50), "p99_ms": percentile(&l, 0.99), "max_ms": percentile(&l, 1.0),
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "{} ok, {} errors in {:.2}s: {:.0} submissions/s; per-request latency ({} lead(s) each) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            report["ok"], report["errors"], elapsed, report["per_second"].as_f64().unwrap_or(0.0), batch,
            report["p50_ms"].as_f64().unwrap_or(0.0), report["p99_ms"].as_f64().unwrap_or(0.0), report["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
