//! End to end on a local anvil chain: checkpoints get anchored; the contract refuses a
//! rollback and a signature by an unregistered key; anchoring survives an RPC outage and an
//! anvil restart (anchored once the RPC is back, each checkpoint once); and a forked host (a
//! copy of the stack whose log diverges after the anchored prefix, same enclave keys) is
//! reported as a fork by `leadgate verify anchor`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, FixedBytes};
use alloy::providers::ProviderBuilder;
use alloy::sol_types::SolError as _;
use leadgate_e2e::{bin, corpus, ok_json, run, seal, Anvil, Stack, DEV_KEY};
use leadgate_host::anchor::CheckpointAnchor;
use leadgate_verifier::anchor::{parse_address, sign_digest, AnchorDomain};
use serde_json::Value;

fn submit(stack: &Stack, leads: &[Value]) {
    let keys = stack.keys();
    let seller = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    for l in leads {
        let (status, body) = stack.post(&seal(&seller, &keys, &l["lead"]));
        assert_eq!(status, 200, "{body}");
    }
}

fn anchors(stack: &Stack) -> Vec<Value> {
    stack.get_json("/v1/anchors")["anchors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the anchor of `size` reaches `anchored`.
fn wait_anchored(stack: &Stack, size: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(a) = anchors(stack)
            .into_iter()
            .find(|a| a["size"] == size && a["state"] == "anchored")
        {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "size {size} not anchored: {:?}",
            anchors(stack)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn checkpoint_size(stack: &Stack) -> u64 {
    let note = String::from_utf8(stack.checkpoint()).unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

fn verify_anchor(stack: &Stack, rpc: &str, contract: &str) -> Output {
    run(Command::new(bin("leadgate"))
        .args(["verify", "anchor", "--rpc", rpc, "--contract", contract])
        .args(["--gateway", &stack.gateway, "--allow-debug", "--root"])
        .arg(stack.root_pem()))
}

#[test]
fn checkpoints_are_anchored_and_forks_rollbacks_and_outages_are_handled() {
    let work = tempfile::tempdir().unwrap();
    let key_file = work.path().join("account.key");
    std::fs::write(&key_file, DEV_KEY).unwrap();
    let mut anvil = Anvil::start(None, &work.path().join("anvil-state.json"));
    let rpc = anvil.rpc();
    let tool = |args: &[&str]| {
        let mut c = Command::new(bin("leadgate-contract"));
        c.args(["--rpc", &rpc, "--account-key-file"])
            .arg(&key_file)
            .args(args);
        c
    };
    let deployed = ok_json(run(&mut tool(&["deploy", "--origin", "leadgate.dev/log"])));
    let contract = deployed["contract"].as_str().unwrap().to_owned();

    let host_args: Vec<String> = [
        "--anchor-rpc",
        &rpc,
        "--anchor-contract",
        &contract,
        "--anchor-chain-id",
        "31337",
        "--anchor-account-key-file",
        key_file.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let stack = Stack::start_with(100_000, &host_args, tempfile::tempdir().unwrap());
    let reg = ok_json(run(tool(&["register", "--contract", &contract])
        .args(["--gateway", &stack.gateway, "--allow-debug", "--root"])
        .arg(stack.root_pem())
        .arg("--save-attestation")
        .arg(work.path().join("registration.cose"))));
    assert_eq!(reg["debug"], true);

    let leads = corpus();
    let accepted: Vec<Value> = leads
        .iter()
        .filter(|l| l["expect"] == "accept")
        .cloned()
        .collect();

    // 1. Checkpoints are anchored, the second one with a consistency proof.
    submit(&stack, &accepted[0..5]);
    let s1 = checkpoint_size(&stack);
    wait_anchored(&stack, s1);
    submit(&stack, &accepted[5..12]);
    let s2 = checkpoint_size(&stack);
    let a2 = wait_anchored(&stack, s2);
    assert!(a2["gas_used"].as_u64().unwrap() > 21_000);
    let out = verify_anchor(&stack, &rpc, &contract);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is anchored"));
    // Offline: a saved checkpoint, its log key from the registered attestation document.
    let saved = work.path().join("checkpoint.txt");
    std::fs::write(&saved, stack.get_bytes("/v1/checkpoint")).unwrap();
    let offline = |file: &Path| {
        run(Command::new(bin("leadgate"))
            .args(["verify", "anchor", "--rpc", &rpc, "--contract", &contract])
            .arg(file)
            .arg("--registration")
            .arg(work.path().join("registration.cose"))
            .args(["--allow-debug", "--root"])
            .arg(stack.root_pem()))
    };
    let out = offline(&saved);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is anchored"));
    // No gateway API: the served checkpoint and any consistency proof from the log's tiles
    // (the host's own tile paths here; a bucket in `bucket.rs`), the log key from the
    // registered attestation document.
    submit(&stack, &accepted[60..62]);
    checkpoint_size(&stack);
    let out = run(Command::new(bin("leadgate"))
        .args(["verify", "anchor", "--rpc", &rpc, "--contract", &contract])
        .args(["--tiles", &stack.gateway, "--registration"])
        .arg(work.path().join("registration.cose"))
        .args(["--allow-debug", "--root"])
        .arg(stack.root_pem()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("is anchored") || stdout.contains("is consistent with the latest anchor"),
        "{stdout}"
    );

    // 2. The contract refuses a rollback (a genuine, older enclave signature) and a checkpoint
    //    signed by a key that is not registered.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let provider = ProviderBuilder::new().connect_http(rpc.parse().unwrap());
        let c = CheckpointAnchor::new(Address::from(parse_address(&contract).unwrap()), provider);
        let domain = AnchorDomain {
            chain_id: 31337,
            contract: parse_address(&contract).unwrap(),
        };
        let first = anchors(&stack)
            .into_iter()
            .find(|a| a["size"] == s1)
            .unwrap();
        let root1: [u8; 32] = hex::decode(first["root"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let enclave_sig = hex::decode(first["signature"].as_str().unwrap()).unwrap();
        let rollback = c
            .anchor(s1, FixedBytes(root1), vec![], Bytes::from(enclave_sig))
            .call()
            .await;
        let Err(err) = rollback else {
            panic!("rollback accepted")
        };
        let data = err.as_revert_data().expect("revert data");
        assert_eq!(
            &data[..4],
            &CheckpointAnchor::SizeNotIncreasing::SELECTOR[..],
            "rollback refused for another reason"
        );

        let stranger = k256::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap();
        let next = s2 + 1_000;
        let fake_root = [9u8; 32];
        let sig = sign_digest(
            &stranger,
            &domain.checkpoint_digest("leadgate.dev/log", next, &fake_root),
        )
        .unwrap();
        let unregistered = c
            .anchor(
                next,
                FixedBytes(fake_root),
                vec![],
                Bytes::from(sig.to_vec()),
            )
            .call()
            .await;
        let Err(err) = unregistered else {
            panic!("a stranger's signature anchored")
        };
        let data = err.as_revert_data().expect("revert data");
        assert_eq!(
            &data[..4],
            &CheckpointAnchor::UnregisteredSigner::SELECTOR[..]
        );
    });

    // 3. RPC outage and anvil restart: the checkpoint made while the chain is down is anchored
    //    once it is back, and only once.
    anvil.stop();
    submit(&stack, &accepted[12..16]);
    let s3 = checkpoint_size(&stack);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = anchors(&stack);
        let row = a.iter().find(|a| a["size"] == s3).unwrap();
        if row["attempts"].as_u64().unwrap() > 0 {
            assert_eq!(row["state"], "pending");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed attempt recorded: {a:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let state = anvil.state.clone();
    let port = anvil.port;
    drop(anvil);
    let anvil = Anvil::start(Some(port), &state);
    wait_anchored(&stack, s3);
    let out = verify_anchor(&stack, &anvil.rpc(), &contract);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // s1, s2, the one read from the tiles in part 1, and s3: each once.
    assert!(
        stdout.contains("anchored history: 4 checkpoints"),
        "each checkpoint once: {stdout}"
    );

    // 4. A forked host: a copy of this stack (same sealed enclave keys) whose log diverges
    //    after the anchored prefix. Its checkpoint is validly signed, and inconsistent with the
    //    chain: `verify anchor` reports a fork and exits non-zero.
    let fork_dir = tempfile::tempdir().unwrap();
    copy_dir(stack.dir.path(), fork_dir.path());
    let fork = Stack::start_with(100_000, &[], fork_dir);
    submit(&fork, &accepted[40..60]);
    submit(&stack, &accepted[16..18]);
    let s4 = checkpoint_size(&stack);
    wait_anchored(&stack, s4);
    let fs = checkpoint_size(&fork);
    assert!(
        fs > s4,
        "the fork must be longer than the anchored log ({fs} <= {s4})"
    );
    let out = verify_anchor(&fork, &anvil.rpc(), &contract);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a fork passed");
    assert!(stderr.contains("FORK"), "{stderr}");
    // The honest stack still verifies.
    let out = verify_anchor(&stack, &anvil.rpc(), &contract);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 5. `leadgate audit` with the chain: the honest stack passes both anchor checks; the fork
    //    passes everything it can fake (attestation, keys, its own signature) and fails
    //    `anchor.consistency`.
    let (code, report) = audit_with_chain(&stack, &anvil.rpc(), &contract);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(check(&report, "anchor.registration"), "pass", "{report}");
    assert_eq!(check(&report, "anchor.consistency"), "pass", "{report}");
    let (code, report) = audit_with_chain(&fork, &anvil.rpc(), &contract);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(check(&report, "keys.binding"), "pass", "{report}");
    assert_eq!(check(&report, "checkpoint.signature"), "pass", "{report}");
    assert_eq!(check(&report, "anchor.consistency"), "fail", "{report}");
}

fn audit_with_chain(stack: &Stack, rpc: &str, contract: &str) -> (Option<i32>, Value) {
    let out = run(Command::new(bin("leadgate"))
        .args([
            "audit",
            "--gateway",
            &stack.gateway,
            "--allow-debug",
            "--json",
        ])
        .args(["--rpc", rpc, "--contract", contract, "--root"])
        .arg(stack.root_pem())
        .arg("--state")
        .arg(stack.dir.path().join("audit-seen.json")));
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    });
    (out.status.code(), report)
}

fn check<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("missing")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&entry.path(), &dest);
        } else if !entry.file_name().to_string_lossy().ends_with(".log") {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}
