//! `leadgate bench submit`: a load generator. Pre-seals synthetic, valid, unique leads (one
//! seller key per 500 so per-seller limits do not bind), then posts them from N threads,
//! optionally paced to a target rate, and reports accepted submissions per second and
//! end-to-end latency percentiles (through the host, enclave and durable storage).
//! `leadgate bench rules` seals a population of buyers' auto-bid rule sets for it to meet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_verifier::api::{BatchAnswer, BatchResult};
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
    /// Spread the leads over [`INDUSTRIES`] and [`STATES`] (by index) instead of one
    /// industry and state, as a population of rule sets expects.
    pub varied: bool,
    /// Instant auctions: each answer carries its sale.
    pub instant: bool,
}

/// The industries of `bench submit --varied` and `bench rules`.
pub const INDUSTRIES: [&str; 7] = [
    "HVAC",
    "Insurance",
    "Roofing",
    "Mortgage",
    "Solar",
    "Software",
    "Plumbing",
];

/// The states of `bench submit --varied` and `bench rules`.
pub const STATES: [&str; 50] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY",
];

/// Options of `bench rules`.
pub struct RulesBenchArgs {
    pub gateway: String,
    pub trust: TrustArgs,
    /// Rule sets (one buyer each).
    pub count: usize,
    /// States each rule set includes.
    pub states: usize,
}

/// `bench rules`: seals and posts `count` rule sets of fresh buyers: buyer `i` bids on
/// industry `INDUSTRIES[i % 7]` in `states` states (`STATES[(i / 7 + k * 17) % 50]`), at
/// 1 to 5 USDC, with a budget that does not bind. Against `bench submit --varied`, a lead
/// meets `count / 350 × states` of them on average; with `states` 0 none (each rule set
/// takes only the state `ZZ`, which no lead has: the cost of evaluating them alone). Prints
/// how many were logged.
pub fn rules(a: RulesBenchArgs) -> anyhow::Result<()> {
    use leadgate_verifier::auction::TokenAmount;
    use leadgate_verifier::autobid::{seal_rules, RuleSet};
    let http = agent();
    let (_, keys) = attest_gateway(&http, &a.gateway, &a.trust)?;
    let next = AtomicUsize::new(0);
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= a.count {
                    break;
                }
                let buyer = SigningKey::generate(&mut rand_core::OsRng);
                let mut hpke = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut hpke);
                let (_, hpke_public) = leadgate_verifier::envelope::keypair_from_seed(&hpke);
                let mut set = RuleSet::open(
                    &buyer.verifying_key().to_bytes(),
                    &hpke_public,
                    now_ms(),
                    &[INDUSTRIES[i % INDUSTRIES.len()]],
                    TokenAmount::new(1_000_000 + (i as u64 % 5) * 1_000_000).unwrap_or_default(),
                    TokenAmount::new(1_000_000_000_000).unwrap_or_default(),
                );
                set.countries = vec!["US".into()];
                set.min_score = 40;
                // No state: a code no lead has, so the rule set is evaluated and never bids.
                set.states_include = if a.states == 0 {
                    vec!["ZZ".to_owned()]
                } else {
                    (0..a.states.min(STATES.len()))
                        .map(|k| STATES[(i / INDUSTRIES.len() + k * 17) % STATES.len()].to_owned())
                        .collect()
                };
                let posted = seal_rules(&buyer, &keys.intake_key, &keys.origin, &set)
                    .map_err(|e| e.to_string())
                    .and_then(|(sealed, _)| {
                        let mut r = http
                            .post(&format!("{}/v1/rules", a.gateway))
                            .send_json(&sealed)
                            .map_err(|e| e.to_string())?;
                        if r.status().is_success() {
                            Ok(())
                        } else {
                            Err(format!(
                                "HTTP {}: {}",
                                r.status().as_u16(),
                                r.body_mut().read_to_string().unwrap_or_default()
                            ))
                        }
                    });
                match posted {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_default() {
        eprintln!("first error: {e}");
    }
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    println!("{ok} rule sets logged, {failed} failed");
    if failed > 0 {
        anyhow::bail!("{failed} rule sets were refused");
    }
    Ok(())
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
            let (industry, state) = if a.varied {
                (INDUSTRIES[i % INDUSTRIES.len()], STATES[(i / INDUSTRIES.len()) % STATES.len()])
            } else {
                ("HVAC", "TX")
            };
            let lead = json!({
                "business": format!("Bench Co {run}-{i}"), "full_name": "Pat Bench", "first": "Pat", "last": "Bench",
                "email": format!("pat.bench.{run}.{i}@benchco{i}.com"), "role": "Owner",
                "website": format!("https://benchco{i}.com"), "industry": industry, "sub_industry": "General",
                "region": format!("Springfield, {state}"), "linkedin": "https://linkedin.com/in/patbench",
                "phone_numbers": ["+1-512-555-0100"], "founded_year": 1999, "number_of_locations": 3,
            });
            let terms = a.instant.then(|| leadgate_verifier::intake::AuctionRequest {
                instant: true,
                ..Default::default()
            });
            let sealed = leadgate_verifier::intake::seal_lead_with_terms(
                &sellers[i / 500], &keys.intake_key, &keys.origin, &serde_json::to_vec(&lead)?, now_ms(), terms,
            )?;
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
    let (next, accepted, errors, sold) = (
        AtomicUsize::new(0),
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
                                let body = resp.body_mut().read_to_vec().unwrap_or_default();
                                if a.instant
                                    && serde_json::from_slice::<serde_json::Value>(&body)
                                        .is_ok_and(|v| v["sale"]["status"] == "sold")
                                {
                                    sold.fetch_add(1, Ordering::Relaxed);
                                }
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
        "sold_instantly": sold.load(Ordering::Relaxed),
        "elapsed_s": elapsed, "per_second": accepted.load(Ordering::Relaxed) as f64 / elapsed,
        "p50_ms": percentile(&l, 0.50), "p99_ms": percentile(&l, 0.99), "max_ms": percentile(&l, 1.0),
    });
    if a.json {
        println!("{report}");
    } else {
        println!(
            "{} ok ({} sold instantly), {} errors in {:.2}s: {:.0} submissions/s; per-request latency ({} lead(s) each) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            report["ok"], report["sold_instantly"], report["errors"], elapsed, report["per_second"].as_f64().unwrap_or(0.0), batch,
            report["p50_ms"].as_f64().unwrap_or(0.0), report["p99_ms"].as_f64().unwrap_or(0.0), report["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
