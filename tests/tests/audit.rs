//! `leadgate audit` against real dev stacks: a dev gateway is flagged for debug mode and passes
//! with `--allow-debug` (receipts included, consistency remembered between runs); a gateway
//! whose attestation binds another log key than the one signing its checkpoints fails on the
//! key binding; a remembered checkpoint the gateway contradicts is a fork; a forged receipt
//! fails the receipts check.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};

use leadgate_e2e::{bin, corpus, Stack};
use serde_json::Value;

fn leadgate(args: &[&str]) -> Output {
    Command::new(bin("leadgate")).args(args).output().unwrap()
}

/// Runs `leadgate audit --json …`; returns the exit code and the report.
fn audit(gateway: &str, root: &Path, state: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "audit",
        "--gateway",
        gateway,
        "--root",
        root.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--json",
    ];
    args.extend(extra);
    let out = leadgate(&args);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn status<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report}"))["status"]
        .as_str()
        .unwrap()
}

fn detail<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["detail"]
        .as_str()
        .unwrap()
}

const ZERO_PCR0: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

/// Submits the first `n` corpus leads through `leadgate seller submit`; returns the receipts file.
fn submit(stack: &Stack, n: usize) -> std::path::PathBuf {
    let dir = stack.dir.path();
    let leads = dir.join("leads.jsonl");
    let lines: Vec<String> = corpus()
        .iter()
        .take(n)
        .map(|l| l["lead"].to_string())
        .collect();
    std::fs::write(&leads, lines.join("\n")).unwrap();
    let key = dir.join("seller.key");
    assert!(
        leadgate(&["seller", "keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let receipts = dir.join("receipts.jsonl");
    let out = leadgate(&[
        "seller",
        "submit",
        "--gateway",
        &stack.gateway,
        "--key",
        key.to_str().unwrap(),
        "--receipts",
        receipts.to_str().unwrap(),
        "--allow-debug",
        "--root",
        stack.root_pem().to_str().unwrap(),
        leads.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receipts
}

#[test]
fn dev_gateway_is_flagged_for_debug_mode_and_passes_with_allow_debug() {
    let stack = Stack::start();
    let receipts = submit(&stack, 12);
    let state = stack.dir.path().join("seen.json");
    let root = stack.root_pem();
    let r = receipts.to_str().unwrap();

    // Without --allow-debug: only the debug check fails.
    let (code, report) = audit(
        &stack.gateway,
        &root,
        &state,
        &["--pcr0", ZERO_PCR0, "--receipts", r],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["passed"], false);
    assert_eq!(status(&report, "attestation.debug"), "fail");
    for name in [
        "attestation.signature",
        "attestation.chain",
        "attestation.nonce",
        "attestation.pcr0",
        "keys.binding",
        "checkpoint.signature",
        "receipts",
    ] {
        assert_eq!(status(&report, name), "pass", "{name}: {report}");
    }
    assert!(
        detail(&report, "receipts").starts_with("12 receipt(s) included"),
        "{report}"
    );
    // The log's one epoch ran a dev (all-zero PCR0) enclave: a red flag without --allow-debug.
    assert_eq!(status(&report, "log.epochs"), "fail", "{report}");
    assert!(
        detail(&report, "log.epochs").contains(&format!("epoch 1 (entry 0) ran PCR0 {ZERO_PCR0}")),
        "{report}"
    );
    // First audit: nothing seen before; no chain given.
    assert_eq!(status(&report, "checkpoint.consistency"), "skip");
    assert_eq!(status(&report, "anchor.consistency"), "skip");

    // With --allow-debug the audit passes, and this time the checkpoint is compared with the
    // one remembered from the first run.
    stack.checkpoint();
    let (code, report) = audit(
        &stack.gateway,
        &root,
        &state,
        &["--allow-debug", "--receipts", r],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(status(&report, "attestation.debug"), "pass");
    assert_eq!(status(&report, "attestation.pcr0"), "skip");
    assert_eq!(status(&report, "log.epochs"), "pass", "{report}");
    assert_eq!(status(&report, "log.epoch_keys"), "pass", "{report}");
    assert_eq!(
        status(&report, "checkpoint.consistency"),
        "pass",
        "{report}"
    );

    // The text report: one line per check, then the verdict.
    let out = leadgate(&[
        "audit",
        "--gateway",
        &stack.gateway,
        "--root",
        root.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--allow-debug",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        report["checks"].as_array().unwrap().len() + 1,
        "{text}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("PASS attestation.chain")));
    assert_eq!(lines.last(), Some(&"audit passed"));

    // A remembered checkpoint the gateway contradicts (same size, another root): a fork.
    let mut seen: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    seen["logs"][0]["root"] = serde_json::json!("ab".repeat(32));
    std::fs::write(&state, seen.to_string()).unwrap();
    let (code, report) = audit(&stack.gateway, &root, &state, &["--allow-debug"]);
    assert_eq!(code, 1);
    assert_eq!(status(&report, "checkpoint.consistency"), "fail");
    assert!(
        detail(&report, "checkpoint.consistency").starts_with("FORK"),
        "{report}"
    );

    // A receipt whose leaf hash was altered: its signature fails, so the receipts check fails.
    let mut text = std::fs::read_to_string(&receipts).unwrap();
    let mut first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["receipt"]["leaf_hash"] = Value::String("00".repeat(32));
    text.push_str(&format!("{first}\n"));
    let forged = stack.dir.path().join("forged.jsonl");
    std::fs::write(&forged, text).unwrap();
    std::fs::remove_file(&state).unwrap();
    let (code, report) = audit(
        &stack.gateway,
        &root,
        &state,
        &["--allow-debug", "--receipts", forged.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&report, "receipts"), "fail", "{report}");
    assert!(
        detail(&report, "receipts").contains("receipt.bad_signature"),
        "{report}"
    );
}

/// Every restart of the enclave writes a `log.epoch` with the PCRs it attests with; the audit
/// proves each listed epoch included, finds them numbered without a gap, and checks each one's
/// PCR0 against the allowed images. A pcr.json (`--pcr-manifest`) names the expected image.
#[test]
fn every_epoch_records_the_image_that_ran_it() {
    let mut stack = Stack::start();
    submit(&stack, 3);
    stack.kill_enclave();
    stack.start_enclave();
    stack.wait_healthy(std::time::Duration::from_secs(30));
    // A second seller after the restart.
    std::fs::remove_file(stack.dir.path().join("seller.key")).unwrap();
    submit(&stack, 2);
    stack.checkpoint();

    let listed = stack.get_json("/v1/epochs");
    let indexes: Vec<u64> = listed["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(indexes.len(), 2, "{listed}");
    assert_eq!(indexes[0], 0);
    for (n, i) in indexes.iter().enumerate() {
        let entry: Value =
            serde_json::from_slice(&stack.get_bytes(&format!("/v1/entries/{i}"))).unwrap();
        assert_eq!(entry["kind"], "log.epoch");
        assert_eq!(entry["epoch"], n as u64 + 1);
        for pcr in ["pcr0", "pcr1", "pcr2"] {
            assert_eq!(
                entry["pcrs"][pcr], ZERO_PCR0,
                "dev mode attests all-zero PCRs: {entry}"
            );
        }
    }

    let root = stack.root_pem();
    let state = stack.dir.path().join("seen.json");
    let manifest = stack.dir.path().join("pcr.json");
    std::fs::write(
        &manifest,
        serde_json::json!({"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": ZERO_PCR0, "PCR1": ZERO_PCR0, "PCR2": ZERO_PCR0}}).to_string(),
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let (code, report) = audit(
        &stack.gateway,
        &root,
        &state,
        &["--allow-debug", "--pcr-manifest", m],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(status(&report, "attestation.pcr0"), "pass");
    assert!(
        detail(&report, "log.epochs")
            .starts_with("2 epoch(s), numbered without a gap, each ran an allowed image"),
        "{report}"
    );

    // An auditor who allows only another image: the current attestation and both epochs fail.
    let other = "ab".repeat(48);
    let (code, report) = audit(
        &stack.gateway,
        &root,
        &state,
        &["--allow-debug", "--pcr0", &other],
    );
    assert_eq!(code, 1);
    assert_eq!(status(&report, "attestation.pcr0"), "fail");
    assert_eq!(
        status(&report, "log.epochs"),
        "pass",
        "all-zero epochs pass with --allow-debug: {report}"
    );
    let (code, report) = audit(&stack.gateway, &root, &state, &["--pcr0", &other]);
    assert_eq!(code, 1);
    let d = detail(&report, "log.epochs");
    assert!(
        d.contains("epoch 1 (entry 0)") && d.contains(&format!("epoch 2 (entry {})", indexes[1])),
        "{report}"
    );
}

/// An HTTP proxy in front of gateway `a` that answers `/attest` from gateway `b`: a host that
/// serves one enclave's attestation and another's log.
fn mixing_proxy(a: String, b: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = proxy_one(&http, conn, &a, &b);
        }
    });
    format!("http://{addr}")
}

fn proxy_one(http: &ureq::Agent, conn: TcpStream, a: &str, b: &str) -> std::io::Result<()> {
    let mut rd = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    rd.read_line(&mut request_line)?;
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        rd.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; content_length];
    rd.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let upstream = if path.starts_with("/attest") { b } else { a };
    let url = format!("{upstream}{path}");
    let resp = if method == "POST" {
        http.post(&url)
            .header("content-type", "application/json")
            .send(&body[..])
    } else {
        http.get(&url).call()
    };
    let (code, bytes) = match resp {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_vec().unwrap_or_default(),
        ),
        Err(_) => (502, Vec::new()),
    };
    let mut w = conn;
    write!(
        w,
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    )?;
    w.write_all(&bytes)
}

#[test]
fn a_gateway_attesting_another_log_key_fails_the_key_binding() {
    let a = Stack::start();
    let b = Stack::start();
    a.checkpoint();
    let proxy = mixing_proxy(a.gateway.clone(), b.gateway.clone());
    let state = a.dir.path().join("seen-mixed.json");
    // B's attestation is genuine (B's dev root), but A's log signed the checkpoint.
    let (code, report) = audit(&proxy, &b.root_pem(), &state, &["--allow-debug"]);
    assert_eq!(code, 1, "{report}");
    for name in [
        "attestation.signature",
        "attestation.chain",
        "attestation.nonce",
    ] {
        assert_eq!(status(&report, name), "pass", "{name}: {report}");
    }
    assert_eq!(status(&report, "keys.binding"), "fail", "{report}");
    assert!(
        detail(&report, "keys.binding").contains("did not sign the checkpoint"),
        "{report}"
    );
    assert_eq!(status(&report, "checkpoint.signature"), "fail");
    // Against A directly, the same audit passes.
    let (code, report) = audit(&a.gateway, &a.root_pem(), &state, &["--allow-debug"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(status(&report, "keys.binding"), "pass");
    assert_eq!(status(&report, "log.epoch_keys"), "pass", "{report}");
}
