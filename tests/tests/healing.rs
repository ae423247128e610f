//! The gateway heals itself: a host killed under load comes back on the same running enclave
//! and catches up on what the enclave appended but the host never stored; a stray connection
//! to the enclave's port cannot wedge it; past the enclave's journal bound appends are refused,
//! never voided. Every check is against real processes on the loopback.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use leadgate_e2e::{corpus, proof, seal, Stack};
use leadgate_protocol::{decode, encode, Request, Response, SubmitOutcome};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::receipt::Receipt;
use leadgate_verifier::ErrorCode;
use serde_json::{json, Value};

/// One request on a raw link connection, as any local process could send it.
fn link_call(stream: &mut TcpStream, req: &Request) -> Response {
    let body = encode(req);
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).unwrap();
    decode(&body).unwrap()
}

/// Connects to the enclave's port, retrying while it refuses (the dead host's session may
/// take a moment to close).
fn stray_session(stack: &Stack, req: &Request) -> Response {
    for _ in 0..100 {
        let mut s = TcpStream::connect(stack.enclave_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        match link_call(&mut s, req) {
            Response::Error(e) if e.code == "session.busy" => {
                std::thread::sleep(Duration::from_millis(50))
            }
            other => return other,
        }
    }
    panic!("the enclave never freed the session");
}

fn post_batch(stack: &Stack, leads: &[SealedLead]) -> Option<Vec<Value>> {
    let mut r = stack
        .http
        .post(&format!("{}/v1/leads/batch", stack.gateway))
        .header("content-type", "application/json")
        .send_json(json!({ "leads": leads }))
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.body_mut().read_json().ok()?;
    Some(v["results"].as_array()?.clone())
}

/// Each receipt is in the served log at its index (same leaf) and included in `note`.
fn assert_all_included(stack: &Stack, keys: &EnclaveKeys, receipts: &[Receipt], note: &[u8]) {
    let cp = verify_checkpoint(note, &keys.note_verifier().unwrap(), &keys.origin).unwrap();
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    for receipt in receipts {
        let r = receipt.verify(&keys.log_key, &keys.origin).unwrap();
        let leaf = stack.get_bytes(&format!("/v1/entries/{}", r.index));
        assert_eq!(merkle::leaf_hash(&leaf), r.leaf_hash, "entry {}", r.index);
        let p = stack.get_json(&format!(
            "/v1/proof/inclusion?index={}&size={size}",
            r.index
        ));
        merkle::verify_inclusion(&r.leaf_hash, r.index, size, &proof(&p), &root).unwrap();
    }
}

fn receipt_of(answer: &Value) -> Option<Receipt> {
    serde_json::from_value(answer.get("receipt")?.clone()).ok()
}

fn sealed_corpus(keys: &EnclaveKeys, n: usize) -> Vec<SealedLead> {
    let seller = SigningKey::from_bytes(&[7; 32]);
    corpus()
        .iter()
        .take(n)
        .map(|l| seal(&seller, keys, &l["lead"]))
        .collect()
}

/// Posts `chunks` from `clients` threads, retrying each batch with the same sealed bytes
/// until it is answered (as `leadgate seller submit` does); returns (lead number, answer).
fn post_until_answered(
    http: ureq::Agent,
    gateway: String,
    chunks: Vec<Vec<SealedLead>>,
    clients: usize,
) -> std::thread::JoinHandle<Vec<(usize, Value)>> {
    std::thread::spawn(move || {
        let chunks = std::sync::Arc::new(chunks);
        let handles: Vec<_> = (0..clients)
            .map(|w| {
                let (http, gateway, chunks) = (http.clone(), gateway.clone(), chunks.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    for (i, chunk) in chunks.iter().enumerate().filter(|(i, _)| i % clients == w) {
                        let deadline = std::time::Instant::now() + Duration::from_secs(120);
                        let results = loop {
                            let answer = http
                                .post(&format!("{gateway}/v1/leads/batch"))
                                .header("content-type", "application/json")
                                .send_json(json!({ "leads": chunk }));
                            if let Ok(mut r) = answer {
                                if r.status() == 200 {
                                    let v: Value = r.body_mut().read_json().unwrap();
                                    let results = v["results"].as_array().unwrap().clone();
                                    // Retry leads answered 503 (the gateway was healing).
                                    if results.iter().all(|r| {
                                        !matches!(
                                            r["error"]["code"].as_str(),
                                            Some("enclave.unavailable" | "storage.unavailable")
                                        )
                                    }) {
                                        break results;
                                    }
                                }
                            }
                            assert!(
                                std::time::Instant::now() < deadline,
                                "batch {i} never answered"
                            );
                            std::thread::sleep(Duration::from_millis(50));
                        };
                        for (j, r) in results.into_iter().enumerate() {
                            got.push((i * 32 + j, r));
                        }
                    }
                    got
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn host_killed_under_load_catches_up_on_the_running_enclave() {
    let mut stack = Stack::start();
    let keys = stack.keys();
    let leads = sealed_corpus(&keys, 2_000);
    let chunks: Vec<Vec<SealedLead>> = leads.chunks(32).map(<[_]>::to_vec).collect();
    let start_size = stack.size();
    let clients = post_until_answered(stack.http.clone(), stack.gateway.clone(), chunks, 4);
    // Kill the host once it has stored part of the load, while batches are in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stack.size() < start_size + 300 {
        assert!(
            std::time::Instant::now() < deadline,
            "300 leads stored within 60 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    stack.kill_host();
    stack.start_host();
    let healed = stack.wait_healthy(Duration::from_secs(30));
    eprintln!("gateway served again {healed:?} after the host restart");
    let answers = clients.join().unwrap();
    assert_eq!(answers.len(), leads.len());
    let mut receipts = Vec::new();
    for (i, a) in &answers {
        match receipt_of(a) {
            Some(r) => receipts.push(r),
            // The corpus's own refusals (none of its leads is a bad submission) would show
            // here; a retry must never be refused as a replay of itself.
            None => panic!("lead {i} refused: {a}"),
        }
    }
    // One epoch throughout: the running enclave was caught up, not rebooted, so no receipt
    // was voided.
    assert!(receipts.iter().all(|r| r.epoch == receipts[0].epoch));
    let mut indexes: Vec<u64> = receipts.iter().map(|r| r.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), leads.len(), "each lead logged once");
    let note = stack.checkpoint();
    assert_all_included(&stack, &keys, &receipts, &note);
}

#[test]
fn a_tail_logged_while_the_host_was_down_is_caught_up_and_retries_get_the_original() {
    let mut stack = Stack::start();
    let keys = stack.keys();
    let leads = sealed_corpus(&keys, 40);
    let before = post_batch(&stack, &leads[..20]).unwrap();
    let size_before = stack.size();
    stack.kill_host();

    // With the host dead, a local process takes the session and logs 20 leads.
    let resp = stray_session(
        &stack,
        &Request::Submit {
            leads: leads[20..].to_vec(),
        },
    );
    let Response::Submitted { results, .. } = resp else {
        panic!("{resp:?}")
    };
    let stray: Vec<Receipt> = results
        .iter()
        .map(|r| match r {
            SubmitOutcome::Logged { appended, .. } => appended.receipt.clone(),
            SubmitOutcome::Refused(e) => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(stray[0].index, size_before);

    stack.start_host();
    let healed = stack.wait_healthy(Duration::from_secs(30));
    eprintln!("caught up and serving {healed:?} after the host started");
    assert_eq!(stack.size(), size_before + 20, "the tail was stored");
    // Same epoch: nothing was voided.
    assert!(stray.iter().all(|r| r.epoch == stray[0].epoch));
    let answers = post_batch(&stack, &leads).unwrap();
    for (i, a) in answers.iter().enumerate() {
        let r = receipt_of(a).unwrap_or_else(|| panic!("lead {i}: {a}"));
        let original = if i < 20 {
            receipt_of(&before[i]).unwrap()
        } else {
            stray[i - 20].clone()
        };
        assert_eq!(r, original, "a retry gets the original receipt (lead {i})");
    }
    // Same ciphertext under a new signature is not a retry.
    let mut forged = leads[25].clone();
    forged.issued_at_ms += 1;
    let (status, body) = stack.post(&forged);
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("submission.replayed")),
        "{body}"
    );
    let note = stack.checkpoint();
    let next_epoch = receipt_of(&answers[0]).unwrap().epoch;
    assert_eq!(next_epoch, stray[0].epoch);
    assert_all_included(&stack, &keys, &stray, &note);
}

#[test]
fn a_stray_connection_cannot_take_a_live_session() {
    let stack = Stack::start();
    let keys = stack.keys();
    let leads = sealed_corpus(&keys, 2);
    let size = stack.size();
    let mut s = TcpStream::connect(stack.enclave_addr()).unwrap();
    match link_call(
        &mut s,
        &Request::Submit {
            leads: leads[..1].to_vec(),
        },
    ) {
        Response::Error(e) => assert_eq!(e.code, "session.busy"),
        other => panic!("{other:?}"),
    }
    // Closed after the refusal.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap_or(0), 0);
    assert_eq!(stack.size(), size, "nothing was logged");
    let answers = post_batch(&stack, &leads).unwrap();
    assert_eq!(receipt_of(&answers[0]).unwrap().index, size);
}

/// The enclave never drops an entry the host has not confirmed: past its journal bound it
/// refuses appends (`journal.full`) instead, and a host that comes back catches up every
/// entry the enclave signed, with no new epoch.
#[test]
fn past_the_journal_bound_appends_are_refused_and_nothing_is_voided() {
    let mut stack = Stack::new_stopped(100_000, &[], tempfile::tempdir().unwrap());
    stack.enclave_args = vec!["--journal-max-entries".into(), "4".into()];
    stack.start_enclave();
    stack.start_host();
    stack.wait_attests();
    let keys = stack.keys();
    let leads = sealed_corpus(&keys, 40);
    post_batch(&stack, &leads[..10]).unwrap();
    stack.wait_healthy(Duration::from_secs(30));
    // The heartbeat (every 250 ms) confirms what is stored: the journal is then empty.
    std::thread::sleep(Duration::from_millis(800));
    let size_before = stack.size();
    stack.kill_host();
    // One request past the bound is taken whole, the next ones are refused.
    let mut logged = Vec::new();
    let mut refused = 0;
    for chunk in leads[10..].chunks(10) {
        let Response::Submitted { results, .. } = stray_session(
            &stack,
            &Request::Submit {
                leads: chunk.to_vec(),
            },
        ) else {
            panic!("not submitted")
        };
        for r in results {
            match r {
                SubmitOutcome::Logged { appended, .. } => logged.push(appended.receipt),
                SubmitOutcome::Refused(e) => {
                    assert_eq!(e.code, ErrorCode::JournalFull, "{e:?}");
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(logged.len(), 10, "one request past the bound is taken");
    assert_eq!(refused, 20);
    stack.start_host();
    stack.wait_healthy(Duration::from_secs(30));
    // Every entry the enclave signed is in the log, in this epoch.
    assert!(stack.size() >= size_before + 10);
    assert!(logged.iter().all(|r| r.epoch == 1));
    let note = stack.checkpoint();
    assert_all_included(&stack, &keys, &logged, &note);
    // Once the host confirms them, appends go on.
    let answers = post_batch(&stack, &leads[20..]).unwrap();
    assert!(
        answers.iter().all(|a| a["receipt"]["epoch"] == 1),
        "{answers:?}"
    );
}

/// `seller submit` killed midway keeps every answer it got; `--resume` sends only the rest,
/// with the sealed bytes kept from the first run, so no lead is refused as a duplicate of
/// itself and every verdict matches the corpus label.
#[test]
fn a_killed_seller_resumes_without_losing_or_duplicating_a_lead() {
    let stack = Stack::start();
    let dir = stack.dir.path();
    let leadgate = leadgate_e2e::bin("leadgate");
    let root = stack.root_pem();
    let key = dir.join("seller.key");
    let ok = std::process::Command::new(&leadgate)
        .args(["seller", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let corpus_path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/leads.jsonl");
    let receipts = dir.join("receipts.jsonl");
    let submit = |resume: bool| {
        let mut c = std::process::Command::new(&leadgate);
        c.args([
            "seller",
            "submit",
            "--gateway",
            &stack.gateway,
            "--allow-debug",
            "--root",
        ])
        .arg(&root)
        .arg("--key")
        .arg(&key)
        .arg("--receipts")
        .arg(&receipts)
        .args(["--concurrency", "2", "--batch", "8"])
        .arg(corpus_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        if resume {
            c.arg("--resume");
        }
        c
    };
    let mut first = submit(false).spawn().unwrap();
    // Kill it once some answers are on disk.
    let lines = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lines(&receipts) < 300 {
        assert!(
            first.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "300 receipts within 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let kept = lines(&receipts);
    assert!((300..2_000).contains(&kept), "{kept}");
    assert!(receipts.with_extension("jsonl.sealed").exists());
    let status = submit(true).status().unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&receipts).unwrap();
    let answers: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 2_000);
    for (i, (a, c)) in answers.iter().zip(corpus()).enumerate() {
        assert_eq!(a["line"], i + 1);
        let verdict = a["verdict"]
            .as_str()
            .unwrap_or_else(|| panic!("line {}: {a}", i + 1));
        let want = if c["expect"] == "accept" {
            "accepted"
        } else {
            "rejected"
        };
        assert_eq!(verdict, want, "line {}: {a} ({})", i + 1, c["why"]);
    }
    assert!(
        !receipts.with_extension("jsonl.sealed").exists(),
        "sidecar removed when done"
    );
    let mut indexes: Vec<u64> = answers
        .iter()
        .map(|a| a["index"].as_u64().unwrap())
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 2_000, "each lead logged once");
}

/// Two logs with one origin (two dev stacks) are remembered apart by `verify receipts`.
#[test]
fn verifier_state_keys_logs_by_origin_and_log_key() {
    let leadgate = leadgate_e2e::bin("leadgate");
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("seen.json");
    let stacks = [Stack::start(), Stack::start()];
    for round in 0..2 {
        for stack in &stacks {
            let keys = stack.keys();
            let leads = sealed_corpus(&keys, 3 + round);
            let answers = post_batch(stack, &leads).unwrap();
            let receipts = stack.dir.path().join("r.jsonl");
            std::fs::write(
                &receipts,
                answers.iter().map(|a| format!("{a}\n")).collect::<String>(),
            )
            .unwrap();
            stack.checkpoint();
            let out = std::process::Command::new(&leadgate)
                .args(["verify", "receipts"])
                .arg(&receipts)
                .args(["--gateway", &stack.gateway, "--allow-debug", "--root"])
                .arg(stack.root_pem())
                .arg("--state")
                .arg(&state_file)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "round {round}: {err}");
            assert!(!err.contains("FORK"), "{err}");
        }
    }
    let seen: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(seen["logs"].as_array().unwrap().len(), 2, "{seen}");
}
