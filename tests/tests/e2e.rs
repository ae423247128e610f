//! End-to-end tests across real processes: enclave, host and the `leadgate` CLI.

use std::process::Command;

use ed25519_dalek::SigningKey;
use leadgate_e2e::{bin, corpus, proof, seal, Stack};
use leadgate_verifier::checkpoint::verify_checkpoint;
use leadgate_verifier::event::Event;
use leadgate_verifier::intake::{sign_sealed, SealedLead};
use leadgate_verifier::merkle;
use leadgate_verifier::receipt::Receipt;
use serde_json::{json, Value};

/// Checks a receipt is included in the gateway's checkpoint, with proofs fetched over HTTP.
fn assert_included(
    stack: &Stack,
    keys: &leadgate_verifier::keys::EnclaveKeys,
    receipt: &Receipt,
    note: &[u8],
) {
    let cp = verify_checkpoint(note, &keys.note_verifier().unwrap(), &keys.origin).unwrap();
    let (size, root) = (cp.checkpoint().size, cp.checkpoint().root);
    let r = receipt.verify(&keys.log_key, &keys.origin).unwrap();
    assert!(
        r.index < size,
        "receipt {} beyond checkpoint {size}",
        r.index
    );
    let p = stack.get_json(&format!(
        "/v1/proof/inclusion?index={}&size={size}",
        r.index
    ));
    merkle::verify_inclusion(&r.leaf_hash, r.index, size, &proof(&p), &root).unwrap();
    let p = stack.get_json(&format!(
        "/v1/proof/consistency?from={}&to={size}",
        r.index + 1
    ));
    merkle::verify_consistency(r.index + 1, size, &proof(&p), &r.root, &root).unwrap();
}

#[test]
fn seller_cli_submits_and_auditor_cli_verifies() {
    let stack = Stack::start();
    let dir = stack.dir.path();
    let leadgate = bin("leadgate");
    let gw = stack.gateway.clone();
    let root = stack.root_pem();
    let run = |args: &[&str]| Command::new(&leadgate).args(args).output().unwrap();

    // Without --allow-debug a dev gateway is refused: nothing is sent.
    let out = run(&[
        "verify",
        "attestation",
        "--gateway",
        &gw,
        "--root",
        root.to_str().unwrap(),
        "--pcr0",
        &"00".repeat(48),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("attestation.debug_mode"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["verify", "attestation", "--gateway", &gw, "--allow-debug"]);
    assert!(
        !out.status.success(),
        "the AWS root must not accept a dev document"
    );

    let leads = dir.join("leads.jsonl");
    let lines: Vec<String> = corpus().iter().take(150).map(|l| l.to_string()).collect();
    std::fs::write(&leads, lines.join("\n")).unwrap();
    let key = dir.join("seller.key");
    assert!(run(&["seller", "keygen", "--out", key.to_str().unwrap()])
        .status
        .success());
    let receipts = dir.join("receipts.jsonl");
    let trust = ["--allow-debug", "--root", root.to_str().unwrap()];
    let mut args = vec![
        "seller",
        "submit",
        "--gateway",
        &gw,
        "--key",
        key.to_str().unwrap(),
        "--receipts",
        receipts.to_str().unwrap(),
    ];
    args.extend(trust);
    args.push(leads.to_str().unwrap());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = std::fs::read_to_string(&receipts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), 150);
    for (line, want) in got.iter().zip(corpus()) {
        let expect = if want["expect"] == "accept" {
            "accepted"
        } else {
            "rejected"
        };
        assert_eq!(line["verdict"], expect, "{line}");
        if expect == "rejected" {
            assert_eq!(line["reason"], want["why"]);
        }
    }
    stack.checkpoint();
    let state = dir.join("seen.json");
    let mut args = vec![
        "verify",
        "receipts",
        receipts.to_str().unwrap(),
        "--gateway",
        &gw,
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend(trust);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("150 receipts verified"));

    // A receipt whose claim was altered fails, and the exit status says so.
    let mut tampered = got.clone();
    tampered[7]["receipt"]["index"] = json!(tampered[7]["receipt"]["index"].as_u64().unwrap() + 1);
    let bad = dir.join("tampered.jsonl");
    std::fs::write(
        &bad,
        tampered
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let mut args = vec![
        "verify",
        "receipts",
        bad.to_str().unwrap(),
        "--gateway",
        &gw,
        "--state",
        state.to_str().unwrap(),
    ];
    args.extend(trust);
    let out = run(&args);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("receipt.bad_signature"));

    // The checkpoint verifies offline with the log key from the attestation.
    let note = dir.join("checkpoint.txt");
    std::fs::write(&note, stack.get_bytes("/v1/checkpoint")).unwrap();
    let vkey = stack.keys().note_verifier().unwrap().to_vkey_string();
    let out = run(&[
        "verify",
        "checkpoint",
        note.to_str().unwrap(),
        "--log-key",
        &vkey,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_input_gets_its_error_code_and_changes_nothing() {
    let stack = Stack::start();
    let keys = stack.keys();
    let seller = SigningKey::from_bytes(&[5u8; 32]);
    let lead = corpus()[0]["lead"].clone();
    let good = seal(&seller, &keys, &lead);
    let (status, body) = stack.post(&good);
    assert_eq!(status, 200, "{body}");
    let size = stack.size();

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let enc: [u8; 32] = b64.decode(&good.enc).unwrap().try_into().unwrap();
    let ct = b64.decode(&good.ciphertext).unwrap();
    // Garbled ciphertext, correctly signed: only HPKE can notice.
    let mut garbled_ct = ct.clone();
    garbled_ct[10] ^= 0x40;
    let garbled = sign_sealed(
        &seller,
        &keys.origin,
        &enc,
        &garbled_ct,
        leadgate_e2e::now_ms(),
        None,
    );
    // Truncated ciphertext.
    let truncated = sign_sealed(
        &seller,
        &keys.origin,
        &enc,
        &ct[..ct.len() - 20],
        leadgate_e2e::now_ms(),
        None,
    );
    // Wrong AAD: another seller signs the first seller's ciphertext.
    let thief = SigningKey::from_bytes(&[6u8; 32]);
    let fresh = seal(&seller, &keys, &lead);
    let fresh_enc: [u8; 32] = b64.decode(&fresh.enc).unwrap().try_into().unwrap();
    let wrong_aad = sign_sealed(
        &thief,
        &keys.origin,
        &fresh_enc,
        &b64.decode(&fresh.ciphertext).unwrap(),
        leadgate_e2e::now_ms(),
        None,
    );
    // Bad signature.
    let mut bad_sig = seal(&seller, &keys, &lead);
    bad_sig.signature = good.signature.clone();
    // Lead plaintext that is not JSON.
    let not_json = leadgate_verifier::intake::seal_lead(
        &seller,
        &keys.intake_key,
        &keys.origin,
        b"{\"email\": \"x@",
        leadgate_e2e::now_ms(),
    )
    .unwrap();

    let sealed = |lead: &SealedLead, status: u16, code: &'static str| {
        (serde_json::to_vec(lead).unwrap(), status, code)
    };
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        sealed(&garbled, 422, "submission.decrypt_failed"),
        sealed(&truncated, 422, "submission.decrypt_failed"),
        sealed(&wrong_aad, 422, "submission.decrypt_failed"),
        sealed(&bad_sig, 422, "submission.bad_signature"),
        sealed(&not_json, 422, "lead.malformed_json"),
        (b"{\"seller\": ".to_vec(), 400, "request.malformed_json"),
        (b"[1,2,3]".to_vec(), 400, "request.malformed_json"),
        (
            {
                let mut v = serde_json::to_value(seal(&seller, &keys, &lead)).unwrap();
                v["extra"] = json!(1);
                serde_json::to_vec(&v).unwrap()
            },
            400,
            "request.unknown_field",
        ),
        (vec![b' '; 70 * 1024], 413, "request.too_large"),
        // The same ciphertext under another signature is a replay; the exact same request is
        // a retry, answered below with the original.
        {
            let mut copy = good.clone();
            copy.issued_at_ms += 1;
            sealed(&copy, 409, "submission.replayed")
        },
    ];
    for (body, want_status, want_code) in cases {
        let (status, v) = stack.post_raw(&body);
        assert_eq!(
            (status, v["error"]["code"].as_str().unwrap_or("")),
            (want_status, want_code),
            "{v}"
        );
        assert!(v["error"]["message"].is_string());
    }
    assert_eq!(stack.size(), size, "bad input appended nothing");
    let (status, retry) = stack.post(&good);
    assert_eq!(
        (status, &retry["index"]),
        (200, &json!(size - 1)),
        "{retry}"
    );
    assert_eq!(stack.size(), size, "a retry appends nothing");

    // Bad query parameters and unknown paths get JSON errors too.
    for (path, code) in [
        ("/v1/proof/inclusion?index=01&size=2", "request.bad_number"),
        (
            "/v1/proof/inclusion?index=0&size=99999",
            "proof.size_beyond_log",
        ),
        (
            "/v1/proof/consistency?from=3&to=1",
            "proof.sizes_out_of_order",
        ),
        ("/v1/entries/x", "request.bad_number"),
        ("/v1/leads/nothex", "request.bad_id"),
        ("/attest?nonce=zz", "attestation.bad_nonce"),
        ("/nope", "request.not_found"),
    ] {
        let mut r = stack
            .http
            .get(&format!("{}{path}", stack.gateway))
            .call()
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(v["error"]["code"], code, "{path}: {v}");
    }
    // The accepted lead's record.
    let rec = stack.get_json(&format!("/v1/leads/{}", body["lead_id"].as_str().unwrap()));
    assert_eq!(rec["verdict"], "accepted");

    // The operator's metrics count each of those under its route, status and code.
    let metrics = String::from_utf8(stack.get_bytes("/metrics")).unwrap();
    for line in [
        "leadgate_http_requests_total{endpoint=\"/v1/entries/{index}\",method=\"GET\",status=\"400\",code=\"request.bad_number\"} 1",
        "leadgate_http_requests_total{endpoint=\"/v1/leads/{lead_id}\",method=\"GET\",status=\"200\",code=\"ok\"} 1",
        "leadgate_http_requests_total{endpoint=\"/attest\",method=\"GET\",status=\"400\",code=\"attestation.bad_nonce\"} 1",
        "leadgate_enclave_up 1",
        "leadgate_anchor_lag_leaves -1",
        &format!("leadgate_log_size {}", stack.size()),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    assert!(metrics.contains("leadgate_http_request_duration_seconds_bucket{le=\""));
    assert!(metrics.contains("leadgate_submit_batch_leads_count "));
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_event() {
    let mut stack = Stack::start();
    let keys = stack.keys();
    let leads: Vec<Value> = corpus().into_iter().map(|l| l["lead"].clone()).collect();
    let acked = std::sync::Mutex::new(Vec::<Receipt>::new());
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (stack, keys, leads, acked, refused) = (&stack, &keys, &leads, &acked, &refused);
            s.spawn(move || {
                let seller = SigningKey::from_bytes(&[10 + t; 32]);
                for lead in leads.iter().skip(usize::from(t)).step_by(4).take(300) {
                    let (status, v) = stack.post(&seal(&seller, keys, lead));
                    if status == 200 {
                        acked
                            .lock()
                            .unwrap()
                            .push(serde_json::from_value(v["receipt"].clone()).unwrap());
                    } else {
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
        // Kill once the load is under way: some acknowledged, most still to send (each
        // client has 300), so the kill lands under load whatever the machine's speed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while acked.lock().unwrap().len() < 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "50 acknowledgements within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        stack_kill(&stack);
    });
    let acked = acked.into_inner().unwrap();
    assert!(
        !acked.is_empty(),
        "some submissions were acknowledged before the kill"
    );
    assert!(refused.into_inner() > 0, "the kill happened under load");
    stack.kill_enclave();
    stack.start_enclave();
    let note = stack.checkpoint();
    for r in &acked {
        assert_included(&stack, &keys, r, &note);
    }
    // The restart is in the log: a log.epoch of epoch 2 right after the last stored event.
    let size = stack.size();
    let epochs: Vec<_> = (0..size)
        .filter_map(|i| {
            match Event::from_leaf(&stack.get_bytes(&format!("/v1/entries/{i}"))).unwrap() {
                Event::LogEpoch(e) => Some(e),
                _ => None,
            }
        })
        .collect();
    assert_eq!(epochs.len(), 2);
    assert_eq!(epochs[1].epoch, 2);
    assert_eq!(keys.log_key, stack.keys().log_key, "keys survive the kill");
}

/// Kills the enclave process of a stack shared with running threads (by pid, SIGKILL).
fn stack_kill(stack: &Stack) {
    let pid_dir = std::fs::read_dir("/proc").unwrap();
    let port_arg = stack.dir.path().join("enclave");
    for entry in pid_dir.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("leadgate-enclave") && cmdline.contains(port_arg.to_str().unwrap()) {
            let pid = entry.file_name().to_string_lossy().to_string();
            assert!(Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap()
                .success());
        }
    }
}

#[test]
fn no_pii_in_host_database_logs_or_responses() {
    let stack = Stack::start();
    let keys = stack.keys();
    let seller = SigningKey::from_bytes(&[20u8; 32]);
    let sample: Vec<Value> = corpus()
        .into_iter()
        .take(300)
        .map(|l| l["lead"].clone())
        .collect();
    let mut responses = Vec::new();
    for lead in &sample {
        let (_, v) = stack.post(&seal(&seller, &keys, lead));
        responses.push(v.to_string());
        if let Some(id) = v["lead_id"].as_str() {
            responses.push(stack.get_json(&format!("/v1/leads/{id}")).to_string());
        }
    }
    stack.checkpoint();
    let size = stack.size();
    for i in 0..size {
        responses.push(String::from_utf8(stack.get_bytes(&format!("/v1/entries/{i}"))).unwrap());
    }
    // Everything the host keeps: the database (and its WAL) and its log.
    let mut haystack = responses.join("\n").into_bytes();
    for f in ["host.db", "host.db-wal", "host.log"] {
        haystack.extend(std::fs::read(stack.dir.path().join(f)).unwrap_or_default());
    }
    let hay = String::from_utf8_lossy(&haystack).to_lowercase();
    let mut needles = Vec::new();
    for lead in &sample {
        for k in ["email", "full_name"] {
            if let Some(s) = lead[k].as_str().filter(|s| s.len() >= 5) {
                needles.push(s.to_lowercase());
            }
        }
        for p in lead["phone_numbers"].as_array().into_iter().flatten() {
            needles.push(p.as_str().unwrap().to_lowercase());
        }
    }
    assert!(needles.len() > 500);
    let found: Vec<&String> = needles
        .iter()
        .filter(|n| hay.contains(n.as_str()))
        .collect();
    assert!(found.is_empty(), "PII found: {found:?}");
    // And the sweep can see: the sealed ciphertexts and events are there.
    assert!(hay.contains("lead.accepted") && hay.contains("ciphertext"));
}

#[test]
fn batch_endpoint_answers_each_lead_in_order() {
    let stack = Stack::start();
    let keys = stack.keys();
    let seller = SigningKey::from_bytes(&[30u8; 32]);
    let corpus = corpus();
    let good: Vec<_> = corpus
        .iter()
        .filter(|l| l["expect"] == "accept")
        .take(4)
        .map(|l| seal(&seller, &keys, &l["lead"]))
        .collect();
    let mut bad_sig = seal(&seller, &keys, &corpus[5]["lead"]);
    bad_sig.signature = good[0].signature.clone();
    // An unsigned copy of good[3] (anyone who saw its ciphertext could send one) goes first:
    // it must be refused without shadowing the genuine submission behind it.
    let mut shadow = good[3].clone();
    shadow.signature = good[0].signature.clone();
    let leads = vec![
        serde_json::to_value(&good[0]).unwrap(),
        serde_json::to_value(&bad_sig).unwrap(),
        serde_json::to_value(&good[1]).unwrap(),
        serde_json::to_value(&good[0]).unwrap(), // retried within the batch: the original answer
        serde_json::to_value(&good[2]).unwrap(),
        serde_json::to_value(&shadow).unwrap(),
        serde_json::to_value(&good[3]).unwrap(),
    ];
    let body = serde_json::to_vec(&json!({ "leads": leads })).unwrap();
    let mut r = stack
        .http
        .post(&format!("{}/v1/leads/batch", stack.gateway))
        .header("content-type", "application/json")
        .send(&body[..])
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.body_mut().read_json().unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    let codes: Vec<&str> = results
        .iter()
        .map(|r| {
            r["verdict"]
                .as_str()
                .or(r["error"]["code"].as_str())
                .unwrap()
        })
        .collect();
    assert_eq!(
        codes,
        [
            "accepted",
            "submission.bad_signature",
            "accepted",
            "accepted",
            "accepted",
            "submission.bad_signature",
            "accepted"
        ]
    );
    assert_eq!(results[3]["receipt"], results[0]["receipt"]);
    // Receipts come back in log order, matching request order.
    let idx: Vec<u64> = [0, 2, 4, 6]
        .iter()
        .map(|&i| results[i]["index"].as_u64().unwrap())
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]));
    let note = stack.checkpoint();
    for i in [0, 2, 4, 6] {
        let receipt: Receipt = serde_json::from_value(results[i]["receipt"].clone()).unwrap();
        assert_included(&stack, &keys, &receipt, &note);
    }
    // Empty and unknown-field batches are refused as a whole.
    for (body, code) in [
        (json!({ "leads": [] }), "request.batch_size"),
        (json!({ "leads": [], "x": 1 }), "request.unknown_field"),
    ] {
        let mut r = stack
            .http
            .post(&format!("{}/v1/leads/batch", stack.gateway))
            .header("content-type", "application/json")
            .send(&serde_json::to_vec(&body).unwrap()[..])
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(v["error"]["code"], code);
    }
}

#[test]
fn forged_submissions_do_not_spend_a_sellers_daily_limit() {
    let stack = Stack::start_with_limit(2);
    let keys = stack.keys();
    let victim = SigningKey::from_bytes(&[40u8; 32]);
    let corpus = corpus();
    let accepted: Vec<&Value> = corpus
        .iter()
        .filter(|l| l["expect"] == "accept")
        .map(|l| &l["lead"])
        .collect();
    let donor = seal(&victim, &keys, accepted[0]);
    // Five submissions in the victim's name with signatures the victim never made.
    for lead in &accepted[1..6] {
        let mut forged = seal(&victim, &keys, lead);
        forged.signature = donor.signature.clone();
        let (status, v) = stack.post(&forged);
        assert_eq!(
            (status, &v["error"]["code"]),
            (422, &json!("submission.bad_signature"))
        );
    }
    // The victim's own two submissions still fit in its limit; the third does not.
    for lead in &accepted[6..8] {
        let (status, v) = stack.post(&seal(&victim, &keys, lead));
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = stack.post(&seal(&victim, &keys, accepted[8]));
    assert_eq!((status, &v["error"]["code"]), (429, &json!("rate.limited")));
    // Another seller is unaffected.
    let other = SigningKey::from_bytes(&[41u8; 32]);
    let (status, v) = stack.post(&seal(&other, &keys, accepted[9]));
    assert_eq!(status, 200, "{v}");
}
