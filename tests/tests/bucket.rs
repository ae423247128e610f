//! The bucket is the log's durable copy: real processes and a real S3-protocol server (moto,
//! `scripts/s3-server install`). A host whose database is deleted or replaced by an old copy
//! (with the enclave running, or killed at the same time), or one of whose stored leaves is
//! changed, repairs it from the bucket by itself (a buyer's sealed auto-bid rule set with it,
//! so a new enclave process bids for the buyer again)
//! and serves again with every acknowledged receipt included and every checkpoint it served
//! consistent with the later ones; where the entries are gone from the database and the
//! bucket, the gateway refuses to sign and says why, and never forks.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_e2e::{corpus, proof, seal, S3Server, Stack};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle;
use leadgate_verifier::receipt::Receipt;
use serde_json::{json, Value};

const BUCKET: &str = "leadgate-e2e";

/// A stack publishing to `s3://BUCKET/log`, its enclave started with `enclave_args`.
fn stack_with_bucket(s3: &S3Server, dir: tempfile::TempDir, enclave_args: &[String]) -> Stack {
    let mut stack = Stack::new_stopped(
        1_000_000,
        &["--bucket".into(), format!("s3://{BUCKET}/log")],
        dir,
    );
    stack.host_env = s3.host_env();
    stack.enclave_args = enclave_args.to_vec();
    stack.start_enclave();
    stack.start_host();
    stack.wait_attests();
    stack
}

/// Posts `n` corpus leads from lead `from` on, in batches of 100; returns every receipt.
fn post(stack: &Stack, keys: &EnclaveKeys, from: usize, n: usize) -> Vec<Receipt> {
    let seller = SigningKey::from_bytes(&[9; 32]);
    let leads: Vec<_> = corpus()
        .iter()
        .cycle()
        .skip(from)
        .take(n)
        .map(|l| seal(&seller, keys, &l["lead"]))
        .collect();
    let mut receipts = Vec::new();
    for chunk in leads.chunks(100) {
        let mut r = stack
            .http
            .post(&format!("{}/v1/leads/batch", stack.gateway))
            .header("content-type", "application/json")
            .send_json(json!({ "leads": chunk }))
            .expect("POST");
        assert_eq!(r.status(), 200);
        let v: Value = r.body_mut().read_json().unwrap();
        for a in v["results"].as_array().unwrap() {
            if let Some(receipt) = a.get("receipt") {
                receipts.push(serde_json::from_value(receipt.clone()).unwrap());
            }
        }
    }
    receipts
}

/// Waits until the bucket's checkpoint covers `size` entries, and the host's heartbeat (every
/// 250 ms) has confirmed them to the enclave, which then no longer holds them: a host that
/// loses them now can only have them back from the bucket.
fn wait_published(s3: &S3Server, size: u64) {
    let started = Instant::now();
    loop {
        if let Some(note) = s3.get(BUCKET, "log/checkpoint") {
            if leadgate_host::tiles::publish::checkpoint_size(&note).unwrap() >= size {
                std::thread::sleep(Duration::from_millis(800));
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the bucket's checkpoint never reached {size}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every receipt verifies against the served log's newest checkpoint, and every earlier
/// checkpoint is consistent with it.
fn assert_log_keeps(stack: &Stack, keys: &EnclaveKeys, receipts: &[Receipt], earlier: &[Vec<u8>]) {
    let note = stack.checkpoint();
    let vkey = keys.note_verifier().unwrap();
    let cp = verify_checkpoint(&note, &vkey, &keys.origin).unwrap();
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    for r in receipts {
        let r = r.verify(&keys.log_key, &keys.origin).unwrap();
        let p = stack.get_json(&format!(
            "/v1/proof/inclusion?index={}&size={size}",
            r.index
        ));
        merkle::verify_inclusion(&r.leaf_hash, r.index, size, &proof(&p), &root)
            .unwrap_or_else(|e| panic!("receipt {} not included: {e}", r.index));
    }
    for old in earlier {
        let old = verify_checkpoint(old, &vkey, &keys.origin).unwrap();
        let (m, old_root) = (old.checkpoint().size, old.checkpoint().root);
        assert!(
            m <= size,
            "a checkpoint of {m} was served, the log now has {size}"
        );
        if m == size {
            assert_eq!(old_root, root);
            continue;
        }
        let p = stack.get_json(&format!("/v1/proof/consistency?from={m}&to={size}"));
        merkle::verify_consistency(m, size, &proof(&p), &old_root, &root)
            .unwrap_or_else(|e| panic!("checkpoint {m} not consistent with {size}: {e}"));
    }
}

/// Points the host's next start at prefix `prefix` of the bucket.
fn set_bucket(stack: &mut Stack, prefix: &str) {
    let i = stack
        .host_args
        .iter()
        .position(|a| a == "--bucket")
        .unwrap();
    stack.host_args[i + 1] = format!("s3://{BUCKET}/{prefix}");
}

fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    leadgate_e2e::copy_db(from, to).unwrap();
}

/// Copies the database to `backup` (the host stopped for it, then restarted), then posts the
/// leads `(from, n)` of [`post`], adding their receipts and the checkpoint served after them,
/// and waits until the bucket holds them (the enclave no longer does). Returns the log's size.
fn backup_then_post(
    stack: &mut Stack,
    s3: &S3Server,
    keys: &EnclaveKeys,
    backup: &std::path::Path,
    (from, n): (usize, usize),
    receipts: &mut Vec<Receipt>,
    served: &mut Vec<Vec<u8>>,
) -> u64 {
    stack.kill_host();
    copy_db(stack.dir.path(), backup);
    restart_host(stack);
    receipts.extend(post(stack, keys, from, n));
    served.push(stack.checkpoint());
    wait_published(s3, stack.size());
    stack.size()
}

/// Restarts the host and returns how long until `/healthz` says ok.
fn restart_host(stack: &mut Stack) -> Duration {
    let started = Instant::now();
    stack.start_host();
    stack.wait_healthy(Duration::from_secs(60));
    started.elapsed()
}

/// How many times the host has logged a repair from the bucket.
fn repairs(stack: &Stack) -> usize {
    std::fs::read_to_string(stack.dir.path().join("host.log"))
        .unwrap_or_default()
        .matches("database repaired from the bucket")
        .count()
}

/// The size of the sealed state the enclave last booted from, from the host's log ("enclave
/// state restored state=N"); panics if it never booted from one.
fn restored_state(stack: &Stack) -> u64 {
    let raw = std::fs::read_to_string(stack.dir.path().join("host.log")).unwrap();
    // Without the terminal colour codes tracing writes.
    let mut log = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            log.push(c);
        }
    }
    let restored = log
        .lines()
        .rev()
        .find(|l| l.contains("enclave state restored"))
        .expect("the enclave booted from a sealed state");
    restored
        .split("state=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no state=N in {restored}"))
}

/// The newest sealed state's size in the host database at `db` (0 for none).
fn newest_state(db: &std::path::Path) -> u64 {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = leadgate_host::storage::Store::open(db).await.unwrap();
            store
                .latest_state_size(i64::MAX as u64)
                .await
                .unwrap()
                .unwrap_or(0)
        })
}

#[test]
fn a_deleted_or_rolled_back_database_is_repaired_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3.log"));
    s3.create_bucket(BUCKET);
    let floor = format!("{}/{BUCKET}/log/checkpoint", s3.endpoint);
    let mut stack = stack_with_bucket(
        &s3,
        tempfile::tempdir().unwrap(),
        &[
            "--floor-checkpoint".into(),
            floor,
            "--state-interval-entries".into(),
            "400".into(),
        ],
    );
    let keys = stack.keys();
    let mut receipts = post(&stack, &keys, 0, 500);
    let mut served = vec![stack.checkpoint()];
    wait_published(&s3, stack.size());

    // A backup of the database, taken now.
    let backup = dir.path().join("backup");
    let size = backup_then_post(
        &mut stack,
        &s3,
        &keys,
        &backup,
        (500, 1_000),
        &mut receipts,
        &mut served,
    );

    // 1. The database replaced by the backup, 1,000 entries old, the enclave running.
    stack.kill_host();
    copy_db(&backup, stack.dir.path());
    let took = restart_host(&mut stack);
    eprintln!("rolled back 1,000 entries: serving again after {took:?}");
    assert_eq!(repairs(&stack), 1);
    assert!(stack.size() >= size);
    assert_log_keeps(&stack, &keys, &receipts, &served);
    receipts.extend(post(&stack, &keys, 1_500, 200));
    served.push(stack.checkpoint());
    wait_published(&s3, stack.size());

    // 2. The database deleted, the enclave running.
    stack.kill_host();
    leadgate_e2e::delete_db(stack.dir.path());
    let took = restart_host(&mut stack);
    eprintln!("database deleted: serving again after {took:?}");
    assert_eq!(repairs(&stack), 2);
    assert_log_keeps(&stack, &keys, &receipts, &served);
    receipts.extend(post(&stack, &keys, 1_700, 200));
    served.push(stack.checkpoint());
    wait_published(&s3, stack.size());

    // 3. The database deleted and the enclave killed at the same time: the host repairs
    // from the bucket and boots the new enclave process from it (a new epoch that voids
    // nothing acknowledged: everything was published). A buyer's rule set, set before, comes
    // back from the bucket's record bundles: the new enclave starts only with it, and bids.
    let buyer = SigningKey::from_bytes(&[44; 32]);
    let buyer_id = hex::encode(buyer.verifying_key().to_bytes());
    let rules = leadgate_verifier::autobid::RuleSet::open(
        &buyer.verifying_key().to_bytes(),
        &[0xcd; 32],
        leadgate_e2e::now_ms(),
        &["*"],
        leadgate_verifier::auction::TokenAmount::new(1).unwrap(),
        leadgate_verifier::auction::TokenAmount::new(1_000_000).unwrap(),
    );
    let (sealed, commitment) =
        leadgate_verifier::autobid::seal_rules(&buyer, &keys.intake_key, &keys.origin, &rules)
            .unwrap();
    let r = stack
        .http
        .post(&format!("{}/v1/rules", stack.gateway))
        .send_json(&sealed)
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    wait_published(&s3, stack.size());
    stack.kill_host();
    stack.kill_enclave();
    leadgate_e2e::delete_db(stack.dir.path());
    stack.start_enclave();
    let took = restart_host(&mut stack);
    eprintln!("database deleted and enclave killed: serving again after {took:?}");
    assert_eq!(repairs(&stack), 3);
    // The new enclave process booted from the sealed state the bucket holds, not from 0.
    let state = restored_state(&stack);
    assert!(state >= 400, "booted from the state of {state} entries");
    assert!(s3.get(BUCKET, "log/leadgate/state").is_some());
    assert_log_keeps(&stack, &keys, &receipts, &served);
    assert_eq!(
        stack.get_json(&format!("/v1/rules/{buyer_id}"))["active"],
        hex::encode(commitment)
    );
    let after = post(&stack, &keys, 1_900, 50);
    let accepted: Vec<String> = after
        .iter()
        .filter_map(|r| {
            let e = stack.get_json(&format!("/v1/entries/{}", r.index));
            (e["kind"] == "lead.accepted").then(|| e["lead_id"].as_str().unwrap().to_owned())
        })
        .collect();
    let bid_on = accepted
        .iter()
        .filter(|id| {
            stack.get_json(&format!("/v1/auctions/{id}"))["bid_entries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["buyer"] == buyer_id.as_str())
        })
        .count();
    assert!(!accepted.is_empty());
    assert_eq!(
        bid_on,
        accepted.len(),
        "the restored rule set bids on every lead"
    );
    receipts.extend(after);
    served.push(stack.checkpoint());
    wait_published(&s3, stack.size());

    // 4. The database replaced by a copy 1,000 entries old and the enclave killed at the same
    // time: the new enclave process reads its floor from the bucket's checkpoint, the host
    // repairs its database from the bucket and boots it at the full size.
    let backup = dir.path().join("backup-2");
    let size = backup_then_post(
        &mut stack,
        &s3,
        &keys,
        &backup,
        (1_950, 1_000),
        &mut receipts,
        &mut served,
    );
    stack.kill_host();
    stack.kill_enclave();
    copy_db(&backup, stack.dir.path());
    stack.start_enclave();
    let took = restart_host(&mut stack);
    eprintln!("rolled back 1,000 entries and enclave killed: serving again after {took:?}");
    assert_eq!(repairs(&stack), 4);
    assert!(stack.size() >= size);
    // It booted from the bucket's sealed state, newer than the copy's own.
    let copy_state = newest_state(&backup.join("host.db"));
    let state = restored_state(&stack);
    assert!(
        state > copy_state,
        "booted from the state of {state} entries; the copy had one of {copy_state}"
    );
    assert_log_keeps(&stack, &keys, &receipts, &served);
    receipts.extend(post(&stack, &keys, 2_950, 50));
    wait_published(&s3, stack.size());

    // Every receipt verifies from the bucket's tiles alone (no host), and from the host's own
    // tile paths, with the log key the bucket publishes; a verifier that saw a larger
    // checkpoint, or another tree of the same size, exits with status 3.
    let file = write_receipts(dir.path(), &receipts);
    let vkey = String::from_utf8(s3.get(BUCKET, "log/leadgate/log-key").unwrap()).unwrap();
    let state = dir.path().join("seen.json");
    let verify = |tiles: &str| verify_receipts(&file, tiles, vkey.trim(), &state);
    let bucket_url = format!("{}/{BUCKET}/log", s3.endpoint);
    for tiles in [bucket_url.as_str(), stack.gateway.as_str()] {
        assert_receipts_verified(&verify(tiles), tiles, receipts.len());
    }
    // A reader written from the C2SP specs alone, not from our code, accepts the same tiles.
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/s3-server/venv/bin/python");
    for tiles in [bucket_url.as_str(), stack.gateway.as_str()] {
        let out = std::process::Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/c2sp_tiles_reader.py"))
            .args([tiles, vkey.trim()])
            .output()
            .unwrap();
        let stdout = succeeded(&out, tiles);
        assert!(stdout.starts_with("ok: "), "{stdout}");
    }
    let mut seen: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let size = seen["logs"][0]["size"].as_u64().unwrap();
    seen["logs"][0]["size"] = json!(size + 100);
    std::fs::write(&state, seen.to_string()).unwrap();
    let out = verify(&bucket_url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "has {size} entries, fewer than the checkpoint of {}",
            size + 100
        )),
        "{stderr}"
    );
    seen["logs"][0]["size"] = json!(size);
    seen["logs"][0]["root"] = json!(hex::encode([7u8; 32]));
    std::fs::write(&state, seen.to_string()).unwrap();
    let out = verify(&bucket_url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("FORK"), "{stderr}");
    // `verify checkpoint --tiles` names the same fork, with the same status.
    let out = leadgate(
        &[
            "verify",
            "checkpoint",
            "--tiles",
            &bucket_url,
            "--log-key",
            vkey.trim(),
        ],
        &state,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("FORK"), "{stderr}");

    let epochs = stack.get_json("/v1/epochs")["epochs"]
        .as_array()
        .unwrap()
        .len();
    audit_from_the_tiles(
        &s3,
        &bucket_url,
        vkey.trim(),
        &file,
        (receipts.len(), epochs),
        dir.path(),
    );
}

/// Runs the `leadgate` CLI with `args` and `--state STATE`.
fn leadgate(args: &[&str], state: &std::path::Path) -> std::process::Output {
    std::process::Command::new(leadgate_e2e::bin("leadgate"))
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap()
}

/// The read-only checks from the bucket alone, with no host: `verify checkpoint --tiles`
/// remembers the checkpoint, and `audit --tiles` reads every entry, rebuilds the tree to the
/// checkpoint's root, takes the keys from the newest `log.epoch`, and finds every receipt
/// included or voided. One changed byte in an entry bundle fails the audit, naming the entry.
fn audit_from_the_tiles(
    s3: &S3Server,
    bucket_url: &str,
    vkey: &str,
    receipts: &std::path::Path,
    (count, epochs): (usize, usize),
    dir: &std::path::Path,
) {
    let state = dir.join("auditor-seen.json");
    let out = leadgate(
        &[
            "verify",
            "checkpoint",
            "--tiles",
            bucket_url,
            "--log-key",
            vkey,
        ],
        &state,
    );
    let stdout = succeeded(&out, bucket_url);
    assert!(stdout.contains("checkpoint valid"), "{stdout}");
    let audit = || {
        let r = receipts.to_str().unwrap();
        let args = [
            "audit",
            "--tiles",
            bucket_url,
            "--log-key",
            vkey,
            "--receipts",
            r,
            "--json",
        ];
        leadgate(&args, &state)
    };
    let out = audit();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report:#}");
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {report:#}"))
            .clone()
    };
    for name in [
        "checkpoint.signature",
        "checkpoint.consistency",
        "log.entries",
        "keys.binding",
        "log.epochs",
        "log.epoch_keys",
        "receipts",
    ] {
        assert_eq!(check(name)["status"], "pass", "{name}: {report:#}");
    }
    assert_eq!(
        check("attestation.signature")["status"],
        "skip",
        "{report:#}"
    );
    let receipts_detail = check("receipts")["detail"].as_str().unwrap().to_owned();
    assert!(
        receipts_detail.starts_with(&format!("{count} receipt(s) included")),
        "{receipts_detail}"
    );
    // Every log.epoch the gateway lists was found in the entries.
    let detail = check("log.epoch_keys")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(epochs > 1, "the enclave restarted in this test");
    assert!(
        detail.starts_with(&format!("{epochs} epoch(s)")),
        "{detail}"
    );

    // One byte of the first entry bundle changed in the bucket.
    let path = "log/tile/entries/000";
    let original = s3.get(BUCKET, path).unwrap();
    let mut changed = original.clone();
    *changed.last_mut().unwrap() ^= 1;
    s3.put(BUCKET, path, &changed);
    let out = audit();
    s3.put(BUCKET, path, &original);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "log.entries")
        .unwrap();
    assert_eq!(entries["status"], "fail", "{report:#}");
    assert!(
        entries["detail"]
            .as_str()
            .unwrap()
            .contains("entry 255: its leaf in tile/entries/000 does not hash"),
        "{entries}"
    );
}

/// A database replaced by a copy 50,000 entries old, far past what the enclave keeps
/// unconfirmed (4,096 entries), so only the bucket has them: first with the enclave left
/// running, then with it killed (-9) at the same moment (the new enclave process reads its
/// floor from the bucket's checkpoint). Each time the host repairs itself from the bucket by
/// itself and serves again; afterwards every receipt verifies from the host's tiles and from
/// the bucket's, and every checkpoint served is consistent with the final one.
#[test]
fn a_database_50000_entries_old_is_repaired_from_the_bucket() {
    const BEHIND: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3.log"));
    s3.create_bucket(BUCKET);
    let floor = format!("{}/{BUCKET}/log/checkpoint", s3.endpoint);
    // A sealed state every 10,000 entries, so that each copy is several states behind.
    let enclave_args = [
        "--floor-checkpoint".into(),
        floor,
        "--state-interval-entries".into(),
        "10000".into(),
    ];
    let mut stack = stack_with_bucket(&s3, tempfile::tempdir().unwrap(), &enclave_args);
    let keys = stack.keys();
    let mut receipts = post(&stack, &keys, 0, 200);
    let mut served = vec![stack.checkpoint()];
    wait_published(&s3, stack.size());
    for (round, kill_enclave) in [false, true].into_iter().enumerate() {
        let backup = dir.path().join(format!("backup-{round}"));
        let from = 200 + round * BEHIND;
        let size = backup_then_post(
            &mut stack,
            &s3,
            &keys,
            &backup,
            (from, BEHIND),
            &mut receipts,
            &mut served,
        );
        let copy = newest_state(&backup.join("host.db"));
        stack.kill_host();
        if kill_enclave {
            stack.kill_enclave();
        }
        copy_db(&backup, stack.dir.path());
        if kill_enclave {
            stack.start_enclave();
        }
        let took = restart_host(&mut stack);
        eprintln!(
            "a copy {BEHIND} entries old, enclave {}: serving again after {took:?}",
            if kill_enclave { "killed" } else { "running" }
        );
        assert_eq!(repairs(&stack), round + 1);
        assert!(stack.size() >= size, "{} < {size}", stack.size());
        if kill_enclave {
            // It booted from the bucket's sealed state, newer than the copy's own.
            let state = restored_state(&stack);
            assert!(
                state > copy,
                "booted from the state of {state}; the copy had {copy}"
            );
        }
        served.push(stack.checkpoint());
    }
    assert_log_keeps(&stack, &keys, &[], &served);
    wait_published(&s3, stack.size());

    let file = write_receipts(dir.path(), &receipts);
    let vkey = keys.note_verifier().unwrap().to_vkey_string();
    let bucket_url = format!("{}/{BUCKET}/log", s3.endpoint);
    let state = dir.path().join("seen.json");
    for tiles in [stack.gateway.as_str(), bucket_url.as_str()] {
        let out = verify_receipts(&file, tiles, &vkey, &state);
        assert_receipts_verified(&out, tiles, receipts.len());
    }
}

/// The standard output of a command that must have succeeded (reading `source`).
fn succeeded(out: &std::process::Output, source: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{source}: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Writes `receipts` as `seller submit` does (JSON lines with a `receipt` member) to
/// `receipts.jsonl` in `dir`; returns its path.
fn write_receipts(dir: &std::path::Path, receipts: &[Receipt]) -> std::path::PathBuf {
    let file = dir.join("receipts.jsonl");
    let lines: Vec<String> = receipts
        .iter()
        .map(|r| json!({ "receipt": r }).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    file
}

/// `leadgate verify receipts FILE --tiles TILES --log-key VKEY --state STATE`.
fn verify_receipts(
    file: &std::path::Path,
    tiles: &str,
    vkey: &str,
    state: &std::path::Path,
) -> std::process::Output {
    let file = file.to_str().unwrap();
    let args = [
        "verify",
        "receipts",
        file,
        "--tiles",
        tiles,
        "--log-key",
        vkey,
    ];
    leadgate(&args, state)
}

/// `leadgate verify receipts` succeeded and verified `count` receipts from `tiles`.
fn assert_receipts_verified(out: &std::process::Output, tiles: &str, count: usize) {
    let stdout = succeeded(out, tiles);
    assert!(
        stdout.contains(&format!("{count} receipts verified")),
        "{stdout}"
    );
}

/// Waits until the host serves entry `index` as `leaf`; returns how long that took.
fn wait_entry(stack: &Stack, index: u64, leaf: &[u8]) -> Duration {
    let started = Instant::now();
    loop {
        let mut r = stack
            .http
            .get(&format!("{}/v1/entries/{index}", stack.gateway))
            .call()
            .unwrap();
        if r.status() == 200 && r.body_mut().read_to_vec().unwrap() == leaf {
            return started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(stack.dir.path().join("host.log")).unwrap();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "entry {index} was not repaired within 60 s; host.log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One stored leaf with a changed byte, with the stack running and with host and enclave
/// killed at the same moment: the host's scrub finds it (in the background, or in the tail
/// at start) and repairs it from the bucket; the entry is served with its own bytes again and
/// every receipt and earlier checkpoint still verifies.
#[test]
fn a_changed_leaf_is_repaired_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3.log"));
    s3.create_bucket(BUCKET);
    let floor = format!("{}/{BUCKET}/log/checkpoint", s3.endpoint);
    let mut stack = stack_with_bucket(
        &s3,
        tempfile::tempdir().unwrap(),
        &["--floor-checkpoint".into(), floor],
    );
    let keys = stack.keys();
    let receipts = post(&stack, &keys, 0, 600);
    let served = vec![stack.checkpoint()];
    wait_published(&s3, stack.size());
    let db = stack.dir.path().join("host.db");

    let original = leadgate_e2e::corrupt_leaf(&db, 5);
    let took = wait_entry(&stack, 5, &original);
    eprintln!("leaf 5 changed under a running host: repaired after {took:?}");
    // The scrub logs the repair once its rows are committed, so the entry can be served
    // repaired a moment before the line is written.
    let logged = Instant::now();
    while !std::fs::read_to_string(stack.dir.path().join("host.log"))
        .unwrap()
        .contains("damaged entries repaired from the bucket")
    {
        assert!(
            logged.elapsed() < Duration::from_secs(5),
            "the entry is back but the scrub never logged repairing it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let index = stack.size() - 1;
    stack.kill_host();
    stack.kill_enclave();
    let original = leadgate_e2e::corrupt_leaf(&db, index);
    stack.start_enclave();
    let started = Instant::now();
    stack.start_host();
    wait_entry(&stack, index, &original);
    stack.wait_healthy(Duration::from_secs(60));
    eprintln!(
        "leaf {index} changed, host and enclave killed: serving it again after {:?}",
        started.elapsed()
    );
    assert_log_keeps(&stack, &keys, &receipts, &served);
}

#[test]
fn entries_gone_from_the_database_and_the_bucket_are_refused_never_forked() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3.log"));
    s3.create_bucket(BUCKET);
    let mut stack = stack_with_bucket(&s3, tempfile::tempdir().unwrap(), &[]);
    let keys = stack.keys();
    post(&stack, &keys, 0, 300);
    let backup = dir.path().join("backup");
    stack.kill_host();
    copy_db(stack.dir.path(), &backup);
    restart_host(&mut stack);
    let receipts = post(&stack, &keys, 300, 300);
    let served = stack.checkpoint();
    wait_published(&s3, stack.size());
    let size = stack.size();

    // The database rolled back and the bucket lost (the host now points at an empty one).
    stack.kill_host();
    copy_db(&backup, stack.dir.path());
    set_bucket(&mut stack, "empty");
    stack.start_host();
    // It never serves: `/healthz` names the missing range and the refusal, again and again.
    let started = Instant::now();
    let mut reason = String::new();
    while started.elapsed() < Duration::from_secs(5) {
        let v: Value = stack
            .http
            .get(&format!("{}/healthz", stack.gateway))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_ne!(v["status"], "ok", "served over missing entries: {v}");
        reason = v["reason"].as_str().unwrap_or_default().to_owned();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        reason.contains(&format!("..{size}")) || reason.contains("neither"),
        "{reason}"
    );
    assert!(reason.contains("never forked"), "{reason}");
    // Nothing was signed over the old copy: the enclave's log still has `size` entries and
    // the checkpoint served before; with the original database back, it all verifies.
    stack.kill_host();
    set_bucket(&mut stack, "log");
    let took = restart_host(&mut stack);
    eprintln!("entries back: serving again after {took:?}");
    assert_log_keeps(&stack, &keys, &receipts, &[served]);
}

/// A freshly started enclave reads the floor from the bucket's checkpoint itself: a host that
/// boots it from a database rolled back behind it (and hides the bucket) is refused, with the
/// reason in `/healthz`, and nothing is voided; with the entries back it serves. The floor
/// source comes from the enclave's environment, as an enclave image bakes it in
/// (`LEADGATE_FLOOR_CHECKPOINT`, `scripts/build-eif --floor-checkpoint`).
#[test]
fn a_restarted_enclave_will_not_boot_behind_the_published_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3.log"));
    s3.create_bucket(BUCKET);
    let floor = format!("{}/{BUCKET}/log/checkpoint", s3.endpoint);
    let mut stack = Stack::new_stopped(
        1_000_000,
        &["--bucket".into(), format!("s3://{BUCKET}/log")],
        tempfile::tempdir().unwrap(),
    );
    stack.host_env = s3.host_env();
    stack.enclave_env = vec![("LEADGATE_FLOOR_CHECKPOINT".into(), floor.clone())];
    stack.start_enclave();
    stack.start_host();
    stack.wait_attests();
    let keys = stack.keys();
    post(&stack, &keys, 0, 300);
    let backup = dir.path().join("backup");
    stack.kill_host();
    copy_db(stack.dir.path(), &backup);
    restart_host(&mut stack);
    let receipts = post(&stack, &keys, 300, 300);
    let served = stack.checkpoint();
    wait_published(&s3, stack.size());
    let size = stack.size();

    // Host and enclave die; the database comes back 300 entries old and the host is pointed at
    // an empty bucket; the new enclave process reads the real bucket's checkpoint.
    stack.kill_host();
    stack.kill_enclave();
    copy_db(&backup, stack.dir.path());
    set_bucket(&mut stack, "elsewhere");
    stack.start_enclave();
    stack.start_host();
    let started = Instant::now();
    let mut reason = String::new();
    while started.elapsed() < Duration::from_secs(5) {
        let v: Value = stack
            .http
            .get(&format!("{}/healthz", stack.gateway))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_ne!(
            v["status"], "ok",
            "booted behind the published checkpoint: {v}"
        );
        reason = v["reason"].as_str().unwrap_or_default().to_owned();
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(reason.contains("log.rollback"), "{reason}");
    assert!(reason.contains(&floor), "{reason}");
    assert!(reason.contains(&format!("..{size}")), "{reason}");
    // The bucket back: repaired, booted (a new epoch at the full size), nothing voided.
    stack.kill_host();
    set_bucket(&mut stack, "log");
    let took = restart_host(&mut stack);
    eprintln!("enclave restarted behind the bucket, entries back: serving again after {took:?}");
    assert_log_keeps(&stack, &keys, &receipts, &[served]);
}

/// The bucket unreachable for a minute under load (its server frozen): nothing more is confirmed to the
/// enclave, `/healthz` says the bucket lags, the gateway keeps answering until the enclave's
/// unconfirmed tail is full and then refuses appends with 503 `journal.full` (never an
/// acknowledged entry lost); once the bucket is back, it catches up and serves by itself.
#[test]
fn an_unreachable_bucket_slows_the_gateway_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3.log"));
    s3.create_bucket(BUCKET);
    let stack = stack_with_bucket(
        &s3,
        tempfile::tempdir().unwrap(),
        &["--journal-max-entries".into(), "1000".into()],
    );
    let keys = stack.keys();
    let mut receipts = post(&stack, &keys, 0, 200);
    wait_published(&s3, stack.size());

    s3.pause();
    let seller = SigningKey::from_bytes(&[11; 32]);
    let corpus = corpus();
    let mut next = corpus.iter().cycle().skip(200);
    let (mut refused, mut degraded) = (0, false);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let chunk: Vec<_> = next
            .by_ref()
            .take(100)
            .map(|l| seal(&seller, &keys, &l["lead"]))
            .collect();
        let mut r = stack
            .http
            .post(&format!("{}/v1/leads/batch", stack.gateway))
            .header("content-type", "application/json")
            .send_json(json!({ "leads": chunk }))
            .unwrap();
        let status = r.status();
        let v: Value = r.body_mut().read_json().unwrap();
        if status == 200 {
            for a in v["results"].as_array().unwrap() {
                match a.get("receipt") {
                    Some(receipt) => {
                        receipts.push(serde_json::from_value(receipt.clone()).unwrap())
                    }
                    None => {
                        assert_eq!(a["error"]["code"], "journal.full", "{a}");
                        refused += 1;
                    }
                }
            }
        } else {
            assert_eq!(status, 503, "{v}");
            refused += chunk.len();
        }
        let h: Value = stack
            .http
            .get(&format!("{}/healthz", stack.gateway))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        if h["status"] == "degraded" && h["reason"].as_str().unwrap_or("").contains("bucket") {
            degraded = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let outage = started.elapsed();
    assert!(refused > 0, "the journal bound was never reached");
    assert!(degraded, "/healthz never said the bucket lags");
    s3.resume();
    stack.wait_healthy(Duration::from_secs(120));
    eprintln!(
        "bucket frozen {outage:?}: {} leads acknowledged, {refused} refused with journal.full",
        receipts.len() - 200
    );
    // Everything acknowledged is published and in the log.
    wait_published(&s3, stack.size());
    assert_log_keeps(&stack, &keys, &receipts, &[]);
    post(&stack, &keys, 2_200, 100);
}
