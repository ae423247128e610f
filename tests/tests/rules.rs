//! Auto-bid rule sets end to end across real processes and the `leadgate` CLI: two buyers
//! seal rule sets; the enclave bids for each exactly on the leads its rules match, within its
//! daily budget; it is killed (`kill -9`) and restarts from the host's store with the rule
//! sets and budgets intact; a rule-made bid wins and its lead decrypts; a cancelled rule set
//! bids no more; each buyer checks every decision from the log (`verify auction
//! --my-rules`); and no rule reaches the host's disk or logs.

use leadgate_e2e::{corpus, leadgate as run, ok_stdout as ok, Stack};
use serde_json::{json, Value};

#[test]
fn rule_sets_bid_within_budget_survive_kill_9_and_every_decision_checks_out() {
    let mut stack = Stack::new_stopped(100_000, &[], tempfile::tempdir().unwrap());
    stack.enclave_args = vec!["--state-interval-entries".into(), "20".into()];
    stack.start_enclave();
    stack.start_host();
    stack.wait_attests();
    let dir = stack.dir.path().to_path_buf();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let gw = stack.gateway.clone();
    let root = stack.root_pem();
    let run_t = |args: &[&str]| {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--allow-debug", "--root", root.to_str().unwrap()]);
        run(&a)
    };

    // Buyer a: every HVAC lead, 2 USDC a bid, 4 USDC a day (two bids). Buyer b: Insurance
    // leads scored 60 or more outside DC with a role field filter it can never fail, 3 USDC a
    // bid, no budget worth mentioning. The filter's text is what the leak check looks for.
    for b in ["a", "b"] {
        ok(run(&[
            "buyer",
            "keygen",
            "--out",
            &p(&format!("buyer-{b}.key")),
        ]));
    }
    let secret = "Zq7-unguessable-filter";
    std::fs::write(
        p("rules-a.json"),
        json!({"verticals": ["HVAC/*"], "max_bid": 2_000_000, "daily_budget": 4_000_000})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        p("rules-b.json"),
        json!({
            "verticals": ["insurance"], "min_score": 60, "states_exclude": ["DC"],
            "fields": [{"field": "role", "contains": ""}],
            "max_bid": 3_000_000, "daily_budget": 1_000_000_000_000u64
        })
        .to_string(),
    )
    .unwrap();
    // A filter with an empty `contains` is out of range: the CLI refuses to seal it, and
    // nothing is logged (the enclave's own refusals: enclave/tests/autobid.rs).
    let size = stack.size();
    let out = run_t(&[
        "buyer",
        "rules",
        "set",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-b.key"),
        "--rules",
        &p("rules-b.json"),
        "--out",
        &p("my-rules-b.jsonl"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rules.invalid"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stack.size(), size);
    std::fs::write(
        p("rules-b.json"),
        json!({
            "verticals": ["insurance"], "min_score": 60, "states_exclude": ["DC"],
            "fields": [{"field": "role", "any_of": ["Founder", "Owner", "CEO", "COO", "CTO", "General Manager", "VP Sales", "Director of Operations", "Head of Marketing", "Procurement Manager", secret]}],
            "max_bid": 3_000_000, "daily_budget": 1_000_000_000_000u64
        })
        .to_string(),
    )
    .unwrap();
    for b in ["a", "b"] {
        let set = ok(run_t(&[
            "buyer",
            "rules",
            "set",
            "--gateway",
            &gw,
            "--key",
            &p(&format!("buyer-{b}.key")),
            "--rules",
            &p(&format!("rules-{b}.json")),
            "--out",
            &p(&format!("my-rules-{b}.jsonl")),
        ]));
        let kept: Value = serde_json::from_str(set.trim()).unwrap();
        assert_eq!(kept["commitment"].as_str().unwrap().len(), 64);
        let shown = ok(run(&[
            "buyer",
            "rules",
            "show",
            "--gateway",
            &gw,
            "--key",
            &p(&format!("buyer-{b}.key")),
            "--rules",
            &p(&format!("my-rules-{b}.jsonl")),
        ]));
        let line: Value = serde_json::from_str(shown.lines().next().unwrap()).unwrap();
        assert_eq!(line["kind"], "rules.set");
        assert_eq!(line["commitment"], kept["commitment"]);
    }

    // The seller lists 40 accepted corpus leads in 8-second auctions, in two rounds with a
    // kill -9 of the enclave between them.
    let leads: Vec<Value> = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept")
        .take(40)
        .collect();
    ok(run(&["seller", "keygen", "--out", &p("seller.key")]));
    let submit = |round: usize, leads: &[Value]| {
        let text: Vec<String> = leads
            .iter()
            .map(|l| json!({"lead": l["lead"]}).to_string())
            .collect();
        let file = p(&format!("leads-{round}.jsonl"));
        std::fs::write(&file, text.join("\n")).unwrap();
        ok(run_t(&[
            "seller",
            "submit",
            "--gateway",
            &gw,
            "--key",
            &p("seller.key"),
            "--receipts",
            &p("receipts.jsonl"),
            "--duration-ms",
            "8000",
            &file,
        ]));
    };
    submit(1, &leads[..20]);
    stack.wait_sealed_state(20);
    stack.kill_enclave();
    stack.start_enclave();
    stack.wait_attests();
    submit(2, &leads[20..]);

    // Each buyer's check of the whole log.
    let audit = |b: &str| -> Value {
        let out = ok(run_t(&[
            "verify",
            "auction",
            "--gateway",
            &gw,
            "--my-rules",
            &p(&format!("my-rules-{b}.jsonl")),
        ]));
        serde_json::from_str::<Value>(out.trim()).unwrap()["report"].clone()
    };
    let ra = audit("a");
    let rb = audit("b");
    for r in [&ra, &rb] {
        assert_eq!(r["violations"], json!([]), "{r}");
        assert_eq!(r["unexplained"], json!([]), "{r}");
        assert_eq!(r["leads"], 40, "{r}");
    }
    // Buyer a: two bids a day at most, the rest of its matches over budget (a run that spans
    // 00:00 UTC may have four). The budget's count survived the restart, or the audit would
    // have found a bid over it.
    let (a_bids, a_matched) = (
        ra["bids"].as_u64().unwrap(),
        ra["matched"].as_u64().unwrap(),
    );
    assert!(a_matched >= 5, "{ra}");
    assert!((2..=4).contains(&a_bids), "{ra}");
    assert_eq!(ra["skipped_budget"].as_u64().unwrap(), a_matched - a_bids);
    // Buyer b: a bid on every match, before and after the restart.
    assert!(rb["matched"].as_u64().unwrap() >= 2, "{rb}");
    assert_eq!(rb["bids"], rb["matched"], "{rb}");

    // The auctions close; a rule-made bid wins at its max bid, and its lead decrypts.
    stack.wait_all_closed(std::time::Duration::from_secs(60));
    let b_key: Value =
        serde_json::from_str(&std::fs::read_to_string(p("buyer-b.key")).unwrap()).unwrap();
    let won = stack.get_json(&format!(
        "/v1/auctions?status=sold&winner={}&limit=100",
        b_key["buyer"].as_str().unwrap()
    ));
    let won = won["auctions"].as_array().unwrap();
    assert_eq!(
        won.len() as u64,
        rb["bids"].as_u64().unwrap(),
        "b wins every auction it bid on alone"
    );
    assert!(won.iter().all(|a| a["price"] == 3_000_000), "{won:?}");
    std::fs::create_dir_all(p("won-b")).unwrap();
    ok(run_t(&[
        "buyer",
        "decrypt",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-b.key"),
        "--won",
        "--out-dir",
        &p("won-b"),
    ]));
    let first = won[0]["auction_id"].as_str().unwrap();
    let lead: Value =
        serde_json::from_str(&std::fs::read_to_string(p(&format!("won-b/{first}.json"))).unwrap())
            .unwrap();
    assert_eq!(lead["industry"], "Insurance");

    // Instant sales: buyer c bids 1 USDC on anything; each instant submission's own answer
    // carries its sale (to b at 3 USDC where b's rules match, else to c).
    ok(run(&["buyer", "keygen", "--out", &p("buyer-c.key")]));
    std::fs::write(
        p("rules-c.json"),
        json!({"verticals": ["*"], "max_bid": 1_000_000, "daily_budget": 1_000_000_000u64})
            .to_string(),
    )
    .unwrap();
    ok(run_t(&[
        "buyer",
        "rules",
        "set",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-c.key"),
        "--rules",
        &p("rules-c.json"),
        "--out",
        &p("my-rules-c.jsonl"),
    ]));
    let instant: Vec<Value> = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept" && l["lead"]["industry"] == "Insurance")
        .skip(10)
        .take(4)
        .map(|l| json!({"lead": l["lead"], "auction": {"instant": true}}))
        .collect();
    std::fs::write(
        p("instant.jsonl"),
        instant
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    ok(run_t(&[
        "seller",
        "submit",
        "--gateway",
        &gw,
        "--key",
        &p("seller.key"),
        "--receipts",
        &p("instant-receipts.jsonl"),
        &p("instant.jsonl"),
    ]));
    let b_id = b_key["buyer"].as_str().unwrap();
    for line in std::fs::read_to_string(p("instant-receipts.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let sale = &v["sale"];
        assert_eq!(sale["status"], "sold", "{v}");
        let price = if sale["winner"] == b_id {
            3_000_000
        } else {
            1_000_000
        };
        assert_eq!(sale["price"], price, "{v}");
        let auction = stack.get_json(&format!("/v1/auctions/{}", v["lead_id"].as_str().unwrap()));
        assert_eq!(auction["status"], "sold");
        assert_eq!(auction["close_index"], sale["index"]);
    }
    let rc = audit("c");
    assert_eq!(rc["bids"], 4, "{rc}");

    // Buyer b cancels; the next Insurance leads get no bid from it, and its check still holds.
    ok(run_t(&[
        "buyer",
        "rules",
        "cancel",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-b.key"),
    ]));
    let before = audit("b")["bids"].as_u64().unwrap();
    let more: Vec<Value> = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept" && l["lead"]["industry"] == "Insurance")
        .skip(20)
        .take(3)
        .collect();
    submit(3, &more);
    let rb = audit("b");
    assert_eq!(rb["bids"].as_u64().unwrap(), before, "{rb}");
    assert_eq!(rb["violations"], json!([]), "{rb}");

    // No rule reaches the host: not the filter's text in its database, nor in its log.
    for file in ["host.db", "host.log"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} holds a rule"
        );
    }
}
