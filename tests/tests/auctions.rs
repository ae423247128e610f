//! Auctions end to end across real processes and the `leadgate` CLI: sellers list, buyers bid
//! (a tie, a bid under the reserve), the enclave is killed mid-auction and restarts from the
//! sealed state the host stored plus the leaves after it, auctions close on the enclave clock, winners decrypt exactly the seller's lead, a loser is refused, every bidder
//! verifies its auction, and no bid amount or lead PII reaches the host's disk, logs or answers.

use leadgate_e2e::{corpus, leadgate as run, ok_stdout as ok, Stack};
use serde_json::{json, Value};

#[test]
fn buyers_bid_winners_decrypt_losers_are_refused_and_nothing_leaks() {
    // A sealed state every 20 appends, so that the restart below starts from one.
    let mut stack = Stack::new_stopped(100_000, &[], tempfile::tempdir().unwrap());
    stack.enclave_args = vec!["--state-interval-entries".into(), "20".into()];
    stack.start_enclave();
    stack.start_host();
    stack.wait_attests();
    let dir = stack.dir.path().to_path_buf();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let gw = stack.gateway.clone();
    let root = stack.root_pem();
    let trust = ["--allow-debug", "--root", root.to_str().unwrap()];
    let with_trust = |args: &[&str]| -> Vec<String> {
        args.iter()
            .chain(trust.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run_t = |args: &[&str]| {
        let a = with_trust(args);
        run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // The seller lists 12 accepted corpus leads in 6-second auctions (reserve 1 USDC).
    let lines: Vec<Value> = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept")
        .take(12)
        .collect();
    let text: Vec<String> = lines
        .iter()
        .map(|l| json!({"lead": l["lead"]}).to_string())
        .collect();
    std::fs::write(p("leads.jsonl"), text.join("\n")).unwrap();
    ok(run(&["seller", "keygen", "--out", &p("seller.key")]));
    ok(run_t(&[
        "seller",
        "submit",
        "--gateway",
        &gw,
        "--key",
        &p("seller.key"),
        "--receipts",
        &p("receipts.jsonl"),
        "--reserve",
        "1000000",
        "--duration-ms",
        "6000",
        &p("leads.jsonl"),
    ]));
    let receipts: Vec<Value> = std::fs::read_to_string(p("receipts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<String> = receipts
        .iter()
        .map(|r| r["lead_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 12);
    let listed = ok(run_t(&["buyer", "auctions", "--gateway", &gw]));
    assert_eq!(listed.lines().count(), 12, "{listed}");

    // Three buyers. Auction 0: a tie between a and b; auction 1: every bid under the reserve;
    // the rest: distinctive amounts so the leak check below can look for each.
    for b in ["a", "b", "c"] {
        ok(run(&[
            "buyer",
            "keygen",
            "--out",
            &p(&format!("buyer-{b}.key")),
        ]));
    }
    let mut amounts: Vec<u64> = Vec::new();
    let mut plans: [Vec<String>; 3] = Default::default();
    for (i, id) in ids.iter().enumerate() {
        for (k, plan) in plans.iter_mut().enumerate() {
            let amount = match i {
                0 if k < 2 => 2_345_678,
                0 => 1_111_111,
                1 => 912_345 + k as u64,
                _ => 1_000_000 + 7_654_321 * (k as u64 + 1) + 1_013 * i as u64,
            };
            amounts.push(amount);
            plan.push(json!({"auction": id, "amount": amount}).to_string());
        }
    }
    for (k, b) in ["a", "b", "c"].iter().enumerate() {
        std::fs::write(p(&format!("plan-{b}.jsonl")), plans[k].join("\n")).unwrap();
        ok(run_t(&[
            "buyer",
            "bid",
            "--gateway",
            &gw,
            "--key",
            &p(&format!("buyer-{b}.key")),
            "--plan",
            &p(&format!("plan-{b}.jsonl")),
            "--out",
            &p(&format!("bids-{b}.jsonl")),
        ]));
    }
    // An unknown auction is refused.
    let out = run_t(&[
        "buyer",
        "bid",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-a.key"),
        "--auction",
        &"ab".repeat(16),
        "--amount",
        "5000000",
        "--out",
        &p("unknown.jsonl"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auction.unknown"));

    // kill -9 the enclave mid-auction and restart it: no bid may be lost. The host gets a
    // sealed state on its tick (every 20 appends here); the restart starts from it.
    stack.wait_sealed_state(20);
    stack.kill_enclave();
    stack.start_enclave();
    stack.wait_attests();
    let epochs = stack.get_json("/v1/epochs");
    let last = epochs["epochs"].as_array().unwrap().last().unwrap().clone();
    let epoch = stack.get_json(&format!("/v1/entries/{last}"));
    assert_eq!(epoch["kind"], "log.epoch");
    assert_eq!(epoch["epoch"], 2);
    assert!(
        epoch["replay_from"].as_u64().unwrap() >= 20,
        "restored from a sealed state: {epoch}"
    );
    stack.wait_all_closed(std::time::Duration::from_secs(60));
    let all = stack.get_json("/v1/auctions?status=all&limit=100");
    let by_id = |id: &str| {
        all["auctions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["auction_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id(&ids[1])["status"], "unsold");
    for id in ids.iter().filter(|i| **i != ids[1]) {
        let a = by_id(id);
        assert_eq!(a["status"], "sold", "{a}");
        assert_eq!(a["bids"], 3, "every bid survived the restart: {a}");
    }
    // Buyer c bid highest everywhere but auction 0 (a tie between a and b) and 1 (unsold).
    let buyer_id = |b: &str| -> String {
        let v: Value =
            serde_json::from_slice(&std::fs::read(p(&format!("buyer-{b}.key"))).unwrap()).unwrap();
        v["buyer"].as_str().unwrap().to_owned()
    };
    let tie_winner = by_id(&ids[0])["winner"].as_str().unwrap().to_owned();
    assert!(tie_winner == buyer_id("a") || tie_winner == buyer_id("b"));
    assert_eq!(by_id(&ids[5])["winner"], buyer_id("c"));

    // Bidding after close is refused with a stable code.
    let out = run_t(&[
        "buyer",
        "bid",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-a.key"),
        "--auction",
        &ids[5],
        "--amount",
        "99000000",
        "--out",
        &p("late.jsonl"),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("auction.closed"));

    // Winners decrypt: exactly the seller's leads.
    let mut decrypted = 0;
    for b in ["a", "b", "c"] {
        ok(run_t(&[
            "buyer",
            "decrypt",
            "--gateway",
            &gw,
            "--key",
            &p(&format!("buyer-{b}.key")),
            "--won",
            "--out-dir",
            &p(&format!("won-{b}")),
        ]));
        for entry in std::fs::read_dir(p(&format!("won-{b}"))).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().replace(".json", "");
            let i = ids.iter().position(|x| *x == name).unwrap();
            let got: Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
            assert_eq!(got, lines[i]["lead"]);
            decrypted += 1;
        }
    }
    assert_eq!(decrypted, 11);
    // A loser (also one that won other leads) is refused, and so is anyone for the unsold lead.
    let out = run_t(&[
        "buyer",
        "decrypt",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-c.key"),
        "--lead",
        &ids[0],
        "--out",
        &p("stolen.json"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("release.not_winner"));
    assert!(!dir.join("stolen.json").exists());
    let out = run_t(&[
        "buyer",
        "decrypt",
        "--gateway",
        &gw,
        "--key",
        &p("buyer-a.key"),
        "--lead",
        &ids[1],
        "--out",
        &p("unsold.json"),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("release.not_sold"));

    // Every bidder verifies every auction it bid in.
    for b in ["a", "b", "c"] {
        let out = ok(run_t(&[
            "verify",
            "auction",
            "--gateway",
            &gw,
            "--my-bid",
            &p(&format!("bids-{b}.jsonl")),
        ]));
        assert_eq!(out.lines().count(), 12, "{out}");
    }
    // The same from the log's tiles alone (the host's own tile paths here; any static copy of
    // them would do), the log key given: the bid sets come from reading the log itself.
    let vkey = stack.keys().note_verifier().unwrap().to_vkey_string();
    for b in ["a", "b", "c"] {
        let bids = p(&format!("bids-{b}.jsonl"));
        let args = ["verify", "auction", "--tiles", &gw, "--log-key", &vkey];
        let out = ok(run_t(&[&args[..], &["--my-bid", &bids]].concat()));
        assert_eq!(out.lines().count(), 12, "{out}");
        assert!(out.contains("my bid"), "{out}");
    }
    // A tampered record of one's own bid (a higher amount than the loser really bid) is caught.
    let bids_b = std::fs::read_to_string(p("bids-b.jsonl")).unwrap();
    let mut forged: Vec<Value> = bids_b
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let target = forged
        .iter_mut()
        .find(|v| v["auction_id"] == ids[5])
        .unwrap();
    target["amount"] = json!(999_000_000);
    let one = target.to_string();
    std::fs::write(p("forged-bid.jsonl"), one).unwrap();
    let out = run_t(&[
        "verify",
        "auction",
        "--gateway",
        &gw,
        "--my-bid",
        &p("forged-bid.jsonl"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auction.outcome_inconsistent"));
    let args = ["verify", "auction", "--tiles", &gw, "--log-key", &vkey];
    let out = run_t(&[&args[..], &["--my-bid", &p("forged-bid.jsonl")]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auction.outcome_inconsistent"));

    // No losing amount and no lead PII in the host's database, logs or answers.
    let winners_prices: Vec<u64> = all["auctions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["price"].as_u64())
        .collect();
    let mut haystacks: Vec<(String, Vec<u8>)> = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("host.") {
            haystacks.push((name, std::fs::read(&f).unwrap()));
        }
    }
    for path in ["/v1/auctions?status=all&limit=100", "/healthz"] {
        haystacks.push((path.into(), stack.get_bytes(path)));
    }
    for id in &ids {
        let path = format!("/v1/auctions/{id}");
        haystacks.push((path.clone(), stack.get_bytes(&path)));
    }
    let size = stack.size();
    for i in 0..size {
        let path = format!("/v1/entries/{i}");
        haystacks.push((path.clone(), stack.get_bytes(&path)));
    }
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for amount in amounts.iter().filter(|a| !winners_prices.contains(a)) {
        // Amounts would reach the host as JSON or log text (the only integer amount columns
        // are the public reserve and the winner's price).
        let text = amount.to_string();
        for (name, hay) in &haystacks {
            assert!(!find(hay, text.as_bytes()), "amount {amount} in {name}");
        }
    }
    for l in &lines {
        for field in ["email", "phone_numbers", "full_name"] {
            let v = &l["lead"][field];
            let texts: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => vec![],
            };
            for t in texts.iter().filter(|t| t.len() > 5) {
                for (name, hay) in &haystacks {
                    assert!(!find(hay, t.as_bytes()), "{field} {t} in {name}");
                }
            }
        }
    }
}
