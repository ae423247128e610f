//! `leadgate-chaos`: runs a dev stack under load and does to it what operators and attackers
//! do, then checks every receipt a client was given. Run through `scripts/chaos` (release
//! build, as root: it mounts a tmpfs for the database and runs the host as `nobody` so file
//! permissions bind it). Not part of CI.
//!
//! Faults, in order: the host `kill -9`ed three times; the enclave `kill -9`ed and restarted;
//! a stray connection to the enclave's port logging leads while the host is down; the
//! database's tmpfs filled, then grown; the database files made read-only (and the host
//! restarted onto them), then restored; 10,000 slow-header connections; 200 unfinished
//! 16 MiB bodies; 100 enclave connections each sending most of an 8 MiB frame.
//!
//! For each fault: receipts acknowledged while it lasted, how many of them a later checkpoint
//! includes (same leaf at the same index, inclusion proof), lost (must be 0), voided (in a
//! tail a later `log.epoch` replaced), and the time from the fault's end until the gateway
//! serves again (`/healthz` says `ok` and an attestation comes back through the enclave). Writes the table to stdout and `summary.json` in the work directory.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ed25519_dalek::SigningKey;
use leadgate_e2e::{attested_keys, corpus, seal};
use leadgate_protocol::{encode, Request};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::receipt::Receipt;
use serde_json::{json, Value};

const HOST: &str = "127.0.0.1:8190";
const ENCLAVE: &str = "127.0.0.1:7190";
const GATEWAY: &str = "http://127.0.0.1:8190";

struct Procs {
    dir: PathBuf,
    bin: PathBuf,
    host: Option<Child>,
    enclave: Option<Child>,
}

impl Procs {
    fn start_enclave(&mut self) -> anyhow::Result<()> {
        let log = append(&self.dir.join("enclave.log"))?;
        self.enclave = Some(
            Command::new(self.bin.join("leadgate-enclave"))
                .args(["--listen", ENCLAVE, "--state-dir"])
                .arg(self.dir.join("enclave"))
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    /// The host runs as `nobody`, so that read-only files bind it.
    fn start_host(&mut self) -> anyhow::Result<()> {
        let log = append(&self.dir.join("host.log"))?;
        self.host = Some(
            Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(self.bin.join("leadgate-host"))
                .args(["--listen", HOST, "--enclave", ENCLAVE, "--db"])
                .arg(self.dir.join("db/host.db"))
                .args([
                    "--seller-daily-limit",
                    "10000000",
                    "--max-connections",
                    "2048",
                ])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    fn kill_host(&mut self) {
        if let Some(mut c) = self.host.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn kill_enclave(&mut self) {
        if let Some(mut c) = self.enclave.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(c: &Option<Child>) -> Option<u32> {
        c.as_ref().map(Child::id)
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_host();
        self.kill_enclave();
    }
}

fn append(p: &Path) -> anyhow::Result<std::fs::File> {
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)?)
}

fn sh(cmd: &str) -> anyhow::Result<()> {
    let ok = Command::new("sh").args(["-c", cmd]).status()?.success();
    if !ok {
        bail!("`{cmd}` failed");
    }
    Ok(())
}

/// Resident memory now and at peak, KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn healthy(http: &ureq::Agent) -> bool {
    http.get(&format!("{GATEWAY}/healthz"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
        .is_some_and(|v| v["status"] == "ok")
}

/// Serving: `/healthz` says `ok` and an attestation comes back through the enclave.
fn serving(http: &ureq::Agent) -> bool {
    healthy(http)
        && http
            .get(&format!("{GATEWAY}/attest?nonce=00"))
            .call()
            .is_ok_and(|r| r.status() == 200)
}

/// Time from now until the gateway serves (polled every 10 ms, up to 60 s).
fn time_to_healthy(http: &ureq::Agent) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if serving(http) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the gateway did not serve again within 60 s")
}

/// One answered lead: when its answer arrived and its receipt.
struct Acked {
    at: Instant,
    receipt: Receipt,
}

/// The load: clients posting batches of 32 sealed leads, each retried with the same bytes
/// until answered (as `leadgate seller submit` does).
struct Load {
    acked: Arc<Mutex<Vec<Acked>>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_load(http: &ureq::Agent, leads: Vec<SealedLead>, clients: usize) -> Load {
    let acked: Arc<Mutex<Vec<Acked>>> = Default::default();
    let refused: Arc<AtomicUsize> = Default::default();
    let stop: Arc<AtomicBool> = Default::default();
    let chunks: Arc<Vec<Vec<SealedLead>>> = Arc::new(leads.chunks(32).map(<[_]>::to_vec).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let threads = (0..clients)
        .map(|_| {
            let (http, acked, refused, stop, chunks, next) = (
                http.clone(),
                acked.clone(),
                refused.clone(),
                stop.clone(),
                chunks.clone(),
                next.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(chunk) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let mut pending: Vec<&SealedLead> = chunk.iter().collect();
                    while !pending.is_empty() && !stop.load(Ordering::Relaxed) {
                        let answer = http
                            .post(&format!("{GATEWAY}/v1/leads/batch"))
                            .header("content-type", "application/json")
                            .send_json(json!({ "leads": pending }));
                        let Ok(mut r) = answer else {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        };
                        let v: Value = r.body_mut().read_json().unwrap_or(Value::Null);
                        let Some(results) = v["results"].as_array() else {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        };
                        let mut again = Vec::new();
                        for (lead, r) in pending.iter().zip(results) {
                            if let Ok(receipt) =
                                serde_json::from_value::<Receipt>(r["receipt"].clone())
                            {
                                acked.lock().unwrap().push(Acked {
                                    at: Instant::now(),
                                    receipt,
                                });
                            } else if matches!(
                                r["error"]["code"].as_str(),
                                Some(
                                    "enclave.unavailable"
                                        | "storage.unavailable"
                                        | "server.overloaded"
                                        | "server.busy"
                                )
                            ) {
                                again.push(*lead);
                            } else {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        pending = again;
                        if !pending.is_empty() {
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
        })
        .collect();
    Load {
        acked,
        refused,
        stop,
        threads,
    }
}

/// One fault's window and how long the gateway took to serve again after it ended.
struct Fault {
    name: String,
    start: Instant,
    end: Instant,
    healed: Duration,
    note: String,
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: leadgate-chaos WORKDIR")?,
    );
    let bin = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();
    std::fs::create_dir_all(dir.join("enclave"))?;
    std::fs::create_dir_all(dir.join("db"))?;
    let db = dir.join("db");
    sh(&format!("mount -t tmpfs -o size=1g tmpfs {}", db.display()))?;
    let result = run(&dir, &bin);
    let _ = sh(&format!("umount -l {}", db.display()));
    result
}

fn run(dir: &Path, bin: &Path) -> anyhow::Result<()> {
    let db = dir.join("db");
    sh(&format!(
        "chown 65534:65534 {0} && chmod 755 {0}",
        db.display()
    ))?;
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut p = Procs {
        dir: dir.to_path_buf(),
        bin: bin.to_path_buf(),
        host: None,
        enclave: None,
    };
    p.start_enclave()?;
    p.start_host()?;
    time_to_healthy(&http)?;
    let keys = attested_keys(&http, GATEWAY, &dir.join("enclave/dev-root.pem"));
    // 90,000 leads: the corpus with the email made distinct per copy.
    let seller = SigningKey::from_bytes(&[42; 32]);
    let corpus = corpus();
    let leads: Vec<SealedLead> = (0..45)
        .flat_map(|k| {
            corpus.iter().map(move |l| {
                let mut lead = l["lead"].clone();
                if let Some(e) = lead["email"].as_str().map(str::to_owned) {
                    lead["email"] = json!(e.replacen('@', &format!(".c{k}@"), 1));
                }
                lead
            })
        })
        .map(|lead| seal(&seller, &keys, &lead))
        .collect();
    println!("sealed {} leads; load starts", leads.len());
    let load = start_load(&http, leads, 4);
    let mut faults: Vec<Fault> = Vec::new();
    let pause = || std::thread::sleep(Duration::from_millis(1500));
    pause();

    for round in 1..=3 {
        let start = Instant::now();
        p.kill_host();
        p.start_host()?;
        let end = Instant::now();
        let healed = time_to_healthy(&http)?;
        faults.push(Fault {
            name: format!("host kill -9 #{round}"),
            start,
            end,
            healed,
            note: String::new(),
        });
        pause();
    }

    let start = Instant::now();
    p.kill_enclave();
    p.start_enclave()?;
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    faults.push(Fault {
        name: "enclave kill -9".into(),
        start,
        end,
        healed,
        note: "new epoch from the host's tip".into(),
    });
    pause();

    // A stray process takes the enclave's session while the host is down and logs leads.
    let start = Instant::now();
    p.kill_host();
    let stray_seller = SigningKey::from_bytes(&[43; 32]);
    let stray_leads: Vec<SealedLead> = corpus
        .iter()
        .take(5)
        .map(|l| {
            let mut lead = l["lead"].clone();
            if let Some(e) = lead["email"].as_str().map(str::to_owned) {
                lead["email"] = json!(e.replacen('@', ".stray@", 1));
            }
            seal(&stray_seller, &keys, &lead)
        })
        .collect();
    let stray = stray_submit(&stray_leads)?;
    p.start_host()?;
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    faults.push(Fault {
        name: "stray enclave connection while the host is down".into(),
        start,
        end,
        healed,
        note: format!("{} entries logged through it", stray.len()),
    });
    pause();

    let start = Instant::now();
    let _ = sh(&format!(
        "dd if=/dev/zero of={}/fill bs=1M 2>/dev/null",
        db.display()
    ));
    std::thread::sleep(Duration::from_secs(3));
    let during = !healthy(&http);
    sh(&format!(
        "rm -f {0}/fill && mount -o remount,size=2g {0}",
        db.display()
    ))?;
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    faults.push(Fault {
        name: "database tmpfs full, then grown".into(),
        start,
        end,
        healed,
        note: format!("degraded while full: {during}"),
    });
    pause();

    let start = Instant::now();
    sh(&format!(
        "chmod 444 {0}/host.db* && chmod 555 {0}",
        db.display()
    ))?;
    p.kill_host();
    p.start_host()?;
    std::thread::sleep(Duration::from_secs(3));
    let during = !healthy(&http);
    sh(&format!(
        "chmod 755 {0} && chmod 644 {0}/host.db*",
        db.display()
    ))?;
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    faults.push(Fault {
        name: "database read-only (host restarted onto it), then restored".into(),
        start,
        end,
        healed,
        note: format!("degraded while read-only: {during}"),
    });
    pause();

    // 10,000 connections that send half a request head; /healthz latency meanwhile.
    let start = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..10_000 {
        if let Ok(mut s) = TcpStream::connect(HOST) {
            let _ = s.write_all(b"POST /v1/leads HTTP/1.1\r\nHost: x\r\n");
            slow.push(s);
        }
    }
    let mut lat = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let ok = healthy(&http);
        lat.push((t.elapsed(), ok));
    }
    drop(slow);
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    let mut ms: Vec<f64> = lat.iter().map(|(d, _)| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    faults.push(Fault {
        name: "10,000 slow-header connections".into(),
        start,
        end,
        healed,
        note: format!(
            "/healthz ok {}/50, p50 {:.1} ms, max {:.1} ms",
            lat.iter().filter(|(_, ok)| *ok).count(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        ),
    });

    // 200 unfinished 16 MiB bodies (15 MiB of each sent): the host's peak memory.
    let host_pid = Procs::pid(&p.host).context("host pid")?;
    let before = rss_kib(host_pid);
    let start = Instant::now();
    let chunk = vec![b'x'; 1 << 20];
    let head = b"POST /v1/leads/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16777216\r\n\r\n";
    let held = hold_partial(200, HOST, Duration::from_secs(5), head, &chunk, 15);
    let during = rss_kib(host_pid);
    drop(held);
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    faults.push(Fault {
        name: "200 unfinished 16 MiB bodies".into(),
        start,
        end,
        healed,
        note: format!(
            "host RSS {} MiB before, {} MiB during, peak {} MiB",
            before.0 / 1024,
            during.0 / 1024,
            during.1 / 1024
        ),
    });

    // 100 enclave connections, each announcing an 8 MiB frame and sending 6 MiB of it.
    let enclave_pid = Procs::pid(&p.enclave).context("enclave pid")?;
    let before = rss_kib(enclave_pid);
    let start = Instant::now();
    let held = hold_partial(
        100,
        ENCLAVE,
        Duration::from_secs(3),
        &(8u32 << 20).to_be_bytes(),
        &chunk,
        6,
    );
    let during = rss_kib(enclave_pid);
    drop(held);
    let end = Instant::now();
    let healed = time_to_healthy(&http)?;
    faults.push(Fault {
        name: "100 enclave connections with 8 MiB frames".into(),
        start,
        end,
        healed,
        note: format!(
            "enclave RSS {} MiB before, {} MiB during, peak {} MiB",
            before.0 / 1024,
            during.0 / 1024,
            during.1 / 1024
        ),
    });
    pause();

    load.stop.store(true, Ordering::Relaxed);
    for t in load.threads {
        let _ = t.join();
    }
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    let refused = load.refused.load(Ordering::Relaxed);
    report(&http, &keys, dir, &faults, &acked, &stray, refused)
}

/// Sends one `Submit` on a raw link connection, retrying while the session is busy (the dead
/// host's session closing); returns the receipts of what was logged.
fn stray_submit(leads: &[SealedLead]) -> anyhow::Result<Vec<Receipt>> {
    let body = encode(&Request::Submit {
        leads: leads.to_vec(),
    });
    for _ in 0..200 {
        let mut s = TcpStream::connect(ENCLAVE)?;
        s.write_all(&(body.len() as u32).to_be_bytes())?;
        s.write_all(&body)?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut answer)?;
        match leadgate_protocol::decode::<leadgate_protocol::Response>(&answer)? {
            leadgate_protocol::Response::Submitted { results } => {
                return Ok(results
                    .into_iter()
                    .filter_map(|r| match r {
                        leadgate_protocol::SubmitOutcome::Logged { appended, .. } => {
                            Some(appended.receipt)
                        }
                        leadgate_protocol::SubmitOutcome::Refused(_) => None,
                    })
                    .collect())
            }
            leadgate_protocol::Response::Error(e)
                if e.code == leadgate_verifier::ErrorCode::SessionBusy =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => bail!("stray submit: {other:?}"),
        }
    }
    bail!("the enclave never freed the session")
}

/// Checks every receipt against a fresh checkpoint and prints the per-fault table.
fn report(
    http: &ureq::Agent,
    keys: &EnclaveKeys,
    dir: &Path,
    faults: &[Fault],
    acked: &[Acked],
    stray: &[Receipt],
    refused: usize,
) -> anyhow::Result<()> {
    // A checkpoint now (503 with Retry-After while the gateway heals: asked again).
    let mut note = Vec::new();
    for _ in 0..100 {
        let mut r = http
            .post(&format!("{GATEWAY}/v1/checkpoint"))
            .send_empty()?;
        if r.status() == 200 {
            note = r.body_mut().read_to_vec()?;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cp = verify_checkpoint(&note, &keys.note_verifier()?, &keys.origin)
        .map_err(|e| anyhow::anyhow!("checkpoint: {e}"))?;
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    // The log.epoch entries: (index, previous_size) — a receipt at index i of an earlier
    // epoch is voided when a later epoch starts at previous_size <= i.
    let mut epochs = Vec::new();
    let mut leaves: Vec<Option<Vec<u8>>> = Vec::new();
    let fetch = |i: u64| -> Option<Vec<u8>> {
        http.get(&format!("{GATEWAY}/v1/entries/{i}"))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|mut r| r.body_mut().read_to_vec().ok())
    };
    for i in 0..size {
        let leaf = fetch(i);
        if let Some(v) = leaf
            .as_ref()
            .and_then(|l| serde_json::from_slice::<Value>(l).ok())
        {
            if v["kind"] == "log.epoch" {
                epochs.push((
                    v["epoch"].as_u64().unwrap_or(0),
                    v["previous_size"].as_u64().unwrap_or(0),
                ));
            }
        }
        leaves.push(leaf);
    }
    let check = |r: &Receipt| -> &'static str {
        let Ok(v) = r.verify(&keys.log_key, &keys.origin) else {
            return "lost";
        };
        let same_leaf = leaves
            .get(v.index as usize)
            .and_then(Option::as_ref)
            .is_some_and(|l| merkle::leaf_hash(l) == v.leaf_hash);
        if same_leaf {
            let proof: Option<Vec<[u8; 32]>> = http
                .get(&format!(
                    "{GATEWAY}/v1/proof/inclusion?index={}&size={size}",
                    v.index
                ))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .and_then(|p| {
                    p["proof"]
                        .as_array()?
                        .iter()
                        .map(|h| hex::decode(h.as_str()?).ok()?.try_into().ok())
                        .collect()
                });
            if proof.is_some_and(|p| {
                merkle::verify_inclusion(&v.leaf_hash, v.index, size, &p, &root).is_ok()
            }) {
                return "verified";
            }
            return "lost";
        }
        if epochs
            .iter()
            .any(|&(e, prev)| e > v.epoch && prev <= v.index)
        {
            "voided"
        } else {
            "lost"
        }
    };
    println!();
    println!("| fault | acked during | verified | lost | voided | serves again after fault end |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut total = (0, 0, 0, 0);
    for (k, f) in faults.iter().enumerate() {
        let until = faults.get(k + 1).map(|n| n.start);
        let mut counts = (0, 0, 0, 0);
        for a in acked
            .iter()
            .filter(|a| a.at >= f.start && until.is_none_or(|u| a.at < u))
        {
            counts.0 += 1;
            match check(&a.receipt) {
                "verified" => counts.1 += 1,
                "voided" => counts.3 += 1,
                _ => counts.2 += 1,
            }
        }
        if f.name.starts_with("stray") {
            for r in stray {
                counts.0 += 1;
                match check(r) {
                    "verified" => counts.1 += 1,
                    "voided" => counts.3 += 1,
                    _ => counts.2 += 1,
                }
            }
        }
        println!(
            "| {} | {} | {} | {} | {} | {:.0} ms{} |",
            f.name,
            counts.0,
            counts.1,
            counts.2,
            counts.3,
            f.healed.as_secs_f64() * 1e3,
            if f.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.note)
            }
        );
        rows.push(json!({
            "fault": f.name, "acked": counts.0, "verified": counts.1, "lost": counts.2,
            "voided": counts.3, "healed_ms": f.healed.as_millis() as u64,
            "fault_ms": (f.end - f.start).as_millis() as u64, "note": f.note,
        }));
        total = (
            total.0 + counts.0,
            total.1 + counts.1,
            total.2 + counts.2,
            total.3 + counts.3,
        );
    }
    let all: Vec<&str> = acked.iter().map(|a| check(&a.receipt)).collect();
    let lost_all = all.iter().filter(|c| **c == "lost").count();
    println!(
        "\nall receipts: {} acked, {} verified in the checkpoint of size {size}, {lost_all} lost, {} voided; {refused} leads refused by the rules' codes",
        all.len(),
        all.iter().filter(|c| **c == "verified").count(),
        all.iter().filter(|c| **c == "voided").count(),
    );
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_vec_pretty(&json!({
            "faults": rows, "acked": all.len(), "lost": lost_all, "checkpoint_size": size,
        }))?,
    )?;
    if lost_all > 0 || total.2 > 0 {
        bail!("{lost_all} acknowledged receipts lost");
    }
    Ok(())
}

/// Opens `n` connections to `addr` at once, each sending `head` and then `chunks` copies of
/// `chunk` (stopping at the first failed write), and returns the ones still open: requests or
/// frames left unfinished, for as long as the caller holds them.
fn hold_partial(
    n: usize,
    addr: &'static str,
    write_timeout: Duration,
    head: &[u8],
    chunk: &[u8],
    chunks: usize,
) -> Vec<TcpStream> {
    let handles: Vec<std::thread::JoinHandle<Option<TcpStream>>> = (0..n)
        .map(|_| {
            let (head, chunk) = (head.to_vec(), chunk.to_vec());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).ok()?;
                s.set_write_timeout(Some(write_timeout)).ok()?;
                s.write_all(&head).ok()?;
                for _ in 0..chunks {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                Some(s)
            })
        })
        .collect();
    handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect()
}
