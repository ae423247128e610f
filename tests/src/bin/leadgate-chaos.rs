//! `leadgate-chaos`: runs a dev stack under load and does to it what operators and attackers
//! do, then checks every receipt a client was given. Run through `scripts/chaos` (release
//! build, as root: it mounts a tmpfs for the database and runs the host as `nobody` so file
//! permissions bind it). Not part of CI.
//!
//! The host publishes the log to a bucket on a real S3-protocol server (moto, installed by
//! `scripts/s3-server`), and every enclave process reads its floor from the bucket's
//! checkpoint (`--floor-checkpoint`).
//!
//! Faults, in order: the host `kill -9`ed three times; the enclave `kill -9`ed and restarted;
//! a stray connection to the enclave's port logging leads while the host is down; the
//! database's tmpfs filled, then grown; the database files made read-only (and the host
//! restarted onto them), then restored; the bucket unreachable for a minute; the database
//! deleted; replaced by a copy 1,000 and by one 50,000 entries old; one stored leaf's bytes
//! changed (the last three also each with the enclave killed at the same moment); 10,000
//! slow-header connections; 200 unfinished 16 MiB bodies; 100 enclave connections each
//! sending most of an 8 MiB frame.
//!
//! For each fault: receipts acknowledged between the end of the fault before it and its own
//! end (the ones it could destroy), how many of them a later checkpoint
//! includes (same leaf at the same index, inclusion proof), lost (must be 0), voided (in a
//! tail a later `log.epoch` replaced), and the time from the fault's end until the gateway
//! serves again (`/healthz` says `ok` and an attestation comes back through the enclave; for
//! a changed leaf, also the entry served with its own bytes). A watcher reads
//! `GET /checkpoint` every 200 ms throughout, and every checkpoint it saw must be consistent
//! with the final one. Writes the table to stdout and `summary.json` in the work directory.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use ed25519_dalek::SigningKey;
use leadgate_e2e::{attested_keys, corpus, corrupt_leaf, seal, stored_size, S3Server};
use leadgate_protocol::{encode, Request};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::receipt::Receipt;
use leadgate_verifier::tiles::{decode_bundle, TileRef, TILE_WIDTH};
use serde_json::{json, Value};

const HOST: &str = "127.0.0.1:8190";
const ENCLAVE: &str = "127.0.0.1:7190";
const GATEWAY: &str = "http://127.0.0.1:8190";

struct Procs {
    dir: PathBuf,
    bin: PathBuf,
    host: Option<Child>,
    enclave: Option<Child>,
    /// The real S3-protocol server holding the log's bucket.
    s3: S3Server,
}

/// The bucket the host publishes to (`s3://BUCKET/log`).
const BUCKET: &str = "leadgate-chaos";

impl Procs {
    fn start_enclave(&mut self) -> anyhow::Result<()> {
        let log = append(&self.dir.join("enclave.log"))?;
        self.enclave = Some(
            Command::new(self.bin.join("leadgate-enclave"))
                .args(["--listen", ENCLAVE, "--state-dir"])
                .arg(self.dir.join("enclave"))
                .arg("--floor-checkpoint")
                .arg(self.floor())
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
                .envs(self.s3.host_env())
                .args(["--listen", HOST, "--enclave", ENCLAVE, "--db"])
                .arg(self.dir.join("db/host.db"))
                .args(["--bucket", &format!("s3://{BUCKET}/log")])
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

    /// The bucket's checkpoint, which a restarted enclave reads as its floor.
    fn floor(&self) -> String {
        format!("{}/{BUCKET}/log/checkpoint", self.s3.endpoint)
    }

    /// The size of the bucket's checkpoint (0 before the first).
    fn published(&self) -> u64 {
        self.s3
            .get(BUCKET, "log/checkpoint")
            .and_then(|n| leadgate_host::tiles::publish::checkpoint_size(&n).ok())
            .unwrap_or(0)
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

/// Time from now until the gateway serves (polled every 10 ms, up to 300 s: a database
/// rebuilt from the bucket takes a while).
fn time_to_healthy(http: &ureq::Agent) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if serving(http) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("the gateway did not serve again within 300 s")
}

/// One answered lead: when its answer arrived and its receipt.
struct Acked {
    at: Instant,
    receipt: Receipt,
}

/// The load: clients posting batches of 32 sealed leads (at most [`LOAD_PER_CLIENT`] a
/// second each), each retried with the same bytes
/// until answered (as `leadgate seller submit` does). Leads are sealed by the clients as they
/// go, from the corpus with the email made distinct per pass, until the load is stopped.
struct Load {
    acked: Arc<Mutex<Vec<Acked>>>,
    refused: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Leads a second each load client sends at most: four clients make 600 a second, so that
/// a run of about ten minutes keeps the log (and the database tmpfs) to a few hundred
/// thousand entries.
const LOAD_PER_CLIENT: f64 = 150.0;

/// Lead `n` of the load: corpus lead `n % len`, its email made distinct for pass `n / len`.
fn load_lead(corpus: &[Value], seller: &SigningKey, keys: &EnclaveKeys, n: usize) -> SealedLead {
    let mut lead = corpus[n % corpus.len()]["lead"].clone();
    if let Some(e) = lead["email"].as_str().map(str::to_owned) {
        lead["email"] = json!(e.replacen('@', &format!(".c{}@", n / corpus.len()), 1));
    }
    seal(seller, keys, &lead)
}

fn start_load(http: &ureq::Agent, keys: &EnclaveKeys, clients: usize) -> Load {
    let acked: Arc<Mutex<Vec<Acked>>> = Default::default();
    let refused: Arc<AtomicUsize> = Default::default();
    let stop: Arc<AtomicBool> = Default::default();
    let corpus = Arc::new(corpus());
    let seller = SigningKey::from_bytes(&[42; 32]);
    let next = Arc::new(AtomicUsize::new(0));
    let threads = (0..clients)
        .map(|_| {
            let (http, acked, refused, stop, corpus, seller, keys, next) = (
                http.clone(),
                acked.clone(),
                refused.clone(),
                stop.clone(),
                corpus.clone(),
                seller.clone(),
                keys.clone(),
                next.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let began = Instant::now();
                    let first = next.fetch_add(32, Ordering::Relaxed);
                    let chunk: Vec<SealedLead> = (first..first + 32)
                        .map(|n| load_lead(&corpus, &seller, &keys, n))
                        .collect();
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
                                        | "journal.full"
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
                    // At most LOAD_PER_CLIENT leads a second from each client.
                    let batch = Duration::from_secs_f64(32.0 / LOAD_PER_CLIENT);
                    std::thread::sleep(batch.saturating_sub(began.elapsed()));
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

/// Reads the gateway's `GET /checkpoint` every 200 ms until `stop`, as a verifier that
/// remembers what it saw; returns every distinct note.
fn watch_checkpoints(
    http: &ureq::Agent,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    let http = http.clone();
    std::thread::spawn(move || {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let note = http
                .get(&format!("{GATEWAY}/checkpoint"))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|mut r| r.body_mut().read_to_vec().ok());
            if let Some(n) = note {
                if seen.last() != Some(&n) {
                    seen.push(n);
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        seen
    })
}

/// One fault's window and how long the gateway took to serve again after it ended.
struct Fault {
    name: String,
    start: Instant,
    end: Instant,
    healed: Duration,
    note: String,
}

/// `/healthz`'s status and reason, as one line.
fn health(http: &ureq::Agent) -> String {
    http.get(&format!("{GATEWAY}/healthz"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
        .map(|v| format!("{} ({})", v["status"], v["reason"].as_str().unwrap_or("")))
        .unwrap_or_else(|| "no answer".into())
}

/// Copies the host database files (`host.db`, `-wal`, `-shm`) from directory `from` to `to`.
/// Polls `check` every 50 ms for up to `limit`; the time it took to hold.
fn until(limit: Duration, mut check: impl FnMut() -> bool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("not within {limit:?}")
}

/// The faults of the log's durable copy, under load: the bucket unreachable for a minute; the
/// host's database deleted, and replaced by copies 1,000 and 50,000 entries old; one stored
/// leaf's bytes changed; the last three each also with the enclave killed (-9) at the same
/// moment (the new enclave process reads its floor from the bucket's checkpoint).
fn bucket_faults(
    p: &mut Procs,
    http: &ureq::Agent,
    db: &Path,
    faults: &mut Vec<Fault>,
) -> anyhow::Result<()> {
    let pause = || std::thread::sleep(Duration::from_millis(1500));
    let db_file = db.join("host.db");
    let snapshot = p.dir.join("snapshot");
    let chown = || sh(&format!("chown 65534:65534 {}/host.db*", db.display()));
    // Stops the host (and the enclave, with `both`), all at once.
    let stop = |p: &mut Procs, both: bool| {
        p.kill_host();
        if both {
            p.kill_enclave();
        }
    };
    let restart = |p: &mut Procs, both: bool| -> anyhow::Result<()> {
        if both {
            p.start_enclave()?;
        }
        p.start_host()
    };
    let with = |both: bool| if both { ", enclave killed too" } else { "" };

    let start = Instant::now();
    p.s3.pause();
    std::thread::sleep(Duration::from_secs(60));
    let during = health(http);
    p.s3.resume();
    let end = Instant::now();
    let healed = time_to_healthy(http)?;
    faults.push(Fault {
        name: "bucket unreachable for a minute (its server frozen)".into(),
        start,
        end,
        healed,
        note: format!("/healthz after the minute: {during}"),
    });
    pause();

    for both in [false, true] {
        let start = Instant::now();
        stop(p, both);
        let (size, published) = (stored_size(&db_file), p.published());
        leadgate_e2e::delete_db(db);
        restart(p, both)?;
        let end = Instant::now();
        let healed = time_to_healthy(http)?;
        faults.push(Fault {
            name: format!("database deleted{}", with(both)),
            start,
            end,
            healed,
            note: format!("{size} entries stored, {published} in the bucket"),
        });
        pause();
    }

    for age in [1_000u64, 50_000] {
        for both in [false, true] {
            p.kill_host();
            leadgate_e2e::copy_db(db, &snapshot)?;
            p.start_host()?;
            let old = stored_size(&snapshot.join("host.db"));
            time_to_healthy(http)?;
            until(Duration::from_secs(600), || {
                stored_size(&db_file) >= old + age
            })?;
            let start = Instant::now();
            stop(p, both);
            let (size, published) = (stored_size(&db_file), p.published());
            leadgate_e2e::copy_db(&snapshot, db)?;
            chown()?;
            restart(p, both)?;
            let end = Instant::now();
            let healed = time_to_healthy(http)?;
            faults.push(Fault {
                name: format!(
                    "database replaced by a copy {age} entries old{}",
                    with(both)
                ),
                start,
                end,
                healed,
                note: format!(
                    "the copy had {old} of {size} entries stored, {published} in the bucket"
                ),
            });
            pause();
        }
    }

    // One stored leaf's bytes changed: an old one with everything running (the background
    // scrub finds it), and the last published one with host and enclave killed (the scrub
    // of the tail at start finds it). Serving again: the entry served with its own bytes.
    for both in [false, true] {
        let start = Instant::now();
        let index = if both {
            stop(p, both);
            p.published() - 1
        } else {
            p.published() / 2
        };
        let original = corrupt_leaf(&db_file, index);
        if both {
            restart(p, both)?;
        }
        let end = Instant::now();
        let mut served_damaged = 0;
        let healed = until(Duration::from_secs(300), || {
            let body = http
                .get(&format!("{GATEWAY}/v1/entries/{index}"))
                .call()
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|mut r| r.body_mut().read_to_vec().ok());
            match body {
                Some(b) if b == original => serving(http),
                Some(_) => {
                    served_damaged += 1;
                    false
                }
                None => false,
            }
        })?;
        faults.push(Fault {
            name: format!("one stored leaf's bytes changed{}", with(both)),
            start,
            end,
            healed,
            note: format!(
                "leaf {index}; served with the changed bytes {served_damaged} times (polled every 50 ms) before the scrub repaired it"
            ),
        });
        pause();
    }
    Ok(())
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
    let s3 = S3Server::start(&dir.join("s3.log"));
    s3.create_bucket(BUCKET);
    let mut p = Procs {
        dir: dir.to_path_buf(),
        bin: bin.to_path_buf(),
        host: None,
        enclave: None,
        s3,
    };
    p.start_enclave()?;
    p.start_host()?;
    time_to_healthy(&http)?;
    let keys = attested_keys(&http, GATEWAY, &dir.join("enclave/dev-root.pem"));
    let corpus = corpus();
    println!("load starts");
    let load = start_load(&http, &keys, 4);
    let seen = watch_checkpoints(&http, load.stop.clone());
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
        "rm -f {0}/fill && mount -o remount,size=4g {0}",
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

    bucket_faults(&mut p, &http, &db, &mut faults)?;

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
    let seen = seen
        .join()
        .map_err(|_| anyhow::anyhow!("checkpoint watcher panicked"))?;
    report(
        &http,
        &keys,
        dir,
        Run {
            faults: &faults,
            acked: &acked,
            stray: &stray,
            seen: &seen,
            refused,
        },
    )
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
            leadgate_protocol::Response::Submitted { results, .. } => {
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

/// The hashes of `GET /v1/proof/{query}` (`inclusion?…` or `consistency?…`), or `None` if
/// the gateway did not answer with a well-formed proof.
fn fetch_proof(http: &ureq::Agent, query: &str) -> Option<Vec<[u8; 32]>> {
    let answer: Value = http
        .get(&format!("{GATEWAY}/v1/proof/{query}"))
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()?;
    answer["proof"]
        .as_array()?
        .iter()
        .map(|h| hex::decode(h.as_str()?).ok()?.try_into().ok())
        .collect()
}

/// What a run produced: the faults, the receipts the load and the stray connection got, the
/// checkpoints the watcher saw, and how many leads the rules refused.
struct Run<'a> {
    faults: &'a [Fault],
    acked: &'a [Acked],
    stray: &'a [Receipt],
    seen: &'a [Vec<u8>],
    refused: usize,
}

/// Checks every receipt against a fresh checkpoint and prints the per-fault table.
fn report(http: &ureq::Agent, keys: &EnclaveKeys, dir: &Path, run: Run) -> anyhow::Result<()> {
    let Run {
        faults,
        acked,
        stray,
        seen,
        refused,
    } = run;
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
    // Every leaf, from the gateway's entry bundles (C2SP tlog-tiles), 256 a request.
    for t in 0..size.div_ceil(TILE_WIDTH) {
        let tile = TileRef {
            level: 0,
            index: t,
            width: (size - t * TILE_WIDTH).min(TILE_WIDTH),
        };
        let bundle = http
            .get(&format!("{GATEWAY}/{}", tile.entries_path()))
            .call()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|mut r| r.body_mut().read_to_vec().ok())
            .and_then(|b| decode_bundle(&b).ok())
            .filter(|b| b.len() as u64 == tile.width);
        let Some(bundle) = bundle else {
            bail!("{} could not be read", tile.entries_path());
        };
        for leaf in bundle {
            if let Ok(v) = serde_json::from_slice::<Value>(&leaf) {
                if v["kind"] == "log.epoch" {
                    epochs.push((
                        v["epoch"].as_u64().unwrap_or(0),
                        v["previous_size"].as_u64().unwrap_or(0),
                    ));
                }
            }
            leaves.push(Some(leaf));
        }
    }
    // Every checkpoint the watcher saw is consistent with the final one.
    let vkey = keys.note_verifier()?;
    let mut inconsistent = Vec::new();
    for old in seen {
        let Ok(old) = verify_checkpoint(old, &vkey, &keys.origin) else {
            inconsistent.push("a note that does not verify".to_owned());
            continue;
        };
        let (m, old_root) = (old.checkpoint().size, old.checkpoint().root);
        let ok = if m > size {
            false
        } else if m == size || m == 0 {
            m == 0 || old_root == root
        } else {
            fetch_proof(http, &format!("consistency?from={m}&to={size}"))
                .is_some_and(|p| merkle::verify_consistency(m, size, &p, &old_root, &root).is_ok())
        };
        if !ok {
            inconsistent.push(format!("size {m}"));
        }
    }
    println!(
        "checkpoints seen by a watcher (GET /checkpoint every 200 ms): {}, consistent with the final one: {}{}",
        seen.len(),
        seen.len() - inconsistent.len(),
        if inconsistent.is_empty() { String::new() } else { format!(" (not: {})", inconsistent.join(", ")) }
    );
    let check = |r: &Receipt| -> &'static str {
        let Ok(v) = r.verify(&keys.log_key, &keys.origin) else {
            return "lost";
        };
        let same_leaf = leaves
            .get(v.index as usize)
            .and_then(Option::as_ref)
            .is_some_and(|l| merkle::leaf_hash(l) == v.leaf_hash);
        if same_leaf {
            let proof = fetch_proof(http, &format!("inclusion?index={}&size={size}", v.index));
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
    println!("| fault | acked before it (since the previous fault's end) | verified | lost | voided | serves again after fault end |");
    println!("|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    let mut total = (0, 0, 0, 0);
    for (k, f) in faults.iter().enumerate() {
        // A fault's receipts: those acknowledged since the previous fault ended, up to its
        // own end (the ones it could have destroyed); the last fault's also all after it.
        let since = k.checked_sub(1).map(|p| faults[p].end);
        let until = (k + 1 < faults.len()).then_some(f.end);
        let mut counts = (0, 0, 0, 0);
        for a in acked
            .iter()
            .filter(|a| since.is_none_or(|s| a.at > s) && until.is_none_or(|u| a.at <= u))
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
            "checkpoints_seen": seen.len(), "checkpoints_inconsistent": inconsistent,
        }))?,
    )?;
    if lost_all > 0 || total.2 > 0 {
        bail!("{lost_all} acknowledged receipts lost");
    }
    if !inconsistent.is_empty() {
        bail!("checkpoints not consistent with the final one: {inconsistent:?}");
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
