//! Settlement end to end on a local anvil chain, across real processes and the `leadgate` CLI:
//! a test token, a `CheckpointAnchor` and a `LeadEscrow` (2.5 % fee) are deployed; three
//! buyers deposit (`buyer deposit`); two sellers list leads with their payout addresses; buyers
//! bid with their deposit accounts; and every sale is paid on chain exactly once, for its
//! logged price (`verify settlement`, `seller earnings`, `buyer balance`, `seller claim`).
//!
//! - While the host runs without `--escrow` (a host that withholds settlements), nothing is
//!   paid, yet each settlement is in the log: a seller takes one from its logged
//!   `auction.closed` and submits it alone, and is paid.
//! - The enclave reads every bidder's deposit from the chain: a bid that the deposit, less the
//!   buyer's other open bids, does not cover is refused (`bid.over_deposit`) and not logged.
//! - A lead is released only once its sale is paid on chain (`release.unpaid` before).
//! - Once the host settles, it pays the rest; the one the seller paid is `settled` with no
//!   transaction of the host's.
//! - A winner that withdrew its deposit while the host withheld settlements past the
//!   settlement window stays `pending` with the escrow's reason and is retried, without its
//!   lead; it is paid once the buyer tops up.
//! - Every seller's on-chain earnings equal its logged prices less the fee, the fee
//!   recipient's equal the fees, every buyer's balance its deposit less what it won, and the
//!   tokens the escrow holds equal balances plus earnings.
//! - A replayed settlement reverts `AlreadySettled` and changes no balance; a settlement
//!   altered in any field (another seller, a higher price, another buyer) is refused.
//! - A withdrawal waits for the escrow's delay (`buyer withdraw`), and a seller claims its
//!   earnings as tokens.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolError as _;
use leadgate_e2e::{bin, corpus, ok_json, run, Anvil, Stack, DEV_KEY};
use leadgate_host::settle::{LeadEscrow, TestUsdc};
use leadgate_verifier::event::Event;
use leadgate_verifier::settlement::EthAddress;
use serde_json::{json, Value};

/// anvil's dev accounts 1 to 3 (published test keys): the buyers' deposit accounts.
const BUYER_KEYS: [&str; 3] = [
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];
/// anvil's dev account 4: seller 0's payout account, which claims its earnings.
const SELLER_KEY: &str = "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a";
/// Seller 1's payout address (no key needed: earnings are credited to it).
const PAYOUT_1: &str = "0x5e11e70000000000000000000000000000000002";
const FEE_RECIPIENT: &str = "0xfee0000000000000000000000000000000000001";
const FEE_BPS: u64 = 250;
const USDC: u64 = 1_000_000;

fn cli(args: &[&str]) -> String {
    let out = run(Command::new(bin("leadgate")).args(args));
    assert!(
        out.status.success(),
        "leadgate {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `leadgate ARGS`, which must fail; its stderr.
fn cli_fails(args: &[&str]) -> String {
    let out = run(Command::new(bin("leadgate")).args(args));
    assert!(!out.status.success(), "leadgate {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn cli_json(args: &[&str]) -> Value {
    serde_json::from_str(&cli(args)).unwrap()
}

fn addr(text: &str) -> Address {
    Address::from(text.parse::<EthAddress>().unwrap().0)
}

fn wallet(rpc: &str, key: &str) -> DynProvider {
    let signer: PrivateKeySigner = key.parse().unwrap();
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(rpc.parse().unwrap())
        .erased()
}

/// Polls `GET /v1/settlements/{id}` until it is logged and `done` holds for it.
fn wait_settlement(stack: &Stack, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, s) = get(stack, &format!("/v1/settlements/{id}"));
        if status == 200 && done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "settlement {id}: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_sale_is_paid_once_for_its_logged_price_even_when_the_host_withholds_it() {
    let work = tempfile::tempdir().unwrap();
    let p = |name: &str| work.path().join(name).to_str().unwrap().to_owned();
    let key_file = p("operator.key");
    std::fs::write(&key_file, DEV_KEY).unwrap();
    let anvil = Anvil::start(None, &work.path().join("anvil-state.json"));
    let rpc = anvil.rpc();
    let tool = |args: &[&str]| {
        ok_json(run(Command::new(bin("leadgate-contract"))
            .args(["--rpc", &rpc, "--account-key-file", &key_file])
            .args(args)))
    };
    let anchor = tool(&["deploy", "--origin", "leadgate.dev/log"])["contract"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = tool(&["deploy-test-token"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let deployed = tool(&[
        "deploy-escrow",
        "--token",
        &token,
        "--anchor",
        &anchor,
        "--fee-bps",
        &FEE_BPS.to_string(),
        "--fee-recipient",
        FEE_RECIPIENT,
        "--withdrawal-delay-secs",
        "3600",
    ]);
    let escrow = deployed["escrow"].as_str().unwrap().to_owned();
    assert_eq!(deployed["fee_bps"], FEE_BPS);

    // The enclave settles on this escrow; the host anchors, but does not settle yet.
    let anchoring: Vec<String> = [
        "--anchor-rpc",
        &rpc,
        "--anchor-contract",
        &anchor,
        "--anchor-chain-id",
        "31337",
        "--anchor-account-key-file",
        &key_file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut stack = Stack::new_stopped(100_000, &anchoring, tempfile::tempdir().unwrap());
    stack.enclave_args = [
        "--escrow",
        &escrow,
        "--escrow-chain-id",
        "31337",
        "--fee-bps",
        &FEE_BPS.to_string(),
        "--fee-recipient",
        FEE_RECIPIENT,
        "--escrow-rpc",
        &rpc,
        // The escrow's 3,600 s withdrawal delay exceeds a 1-minute auction plus a 10-minute
        // settlement window (plus the 2 s deposit read age): the enclave boots on it.
        "--max-auction-duration",
        "1m",
        "--default-auction-duration",
        "30s",
        "--settlement-window",
        "10m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    stack.start_enclave();
    stack.start_host();
    stack.wait_attests();
    let gw = stack.gateway.clone();
    let root = stack.root_pem();
    let root = root.to_str().unwrap();
    tool(&[
        "register",
        "--contract",
        &anchor,
        "--gateway",
        &gw,
        "--allow-debug",
        "--root",
        root,
        "--save-attestation",
        &p("registration.cose"),
    ]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let reader = ProviderBuilder::new()
        .connect_http(rpc.parse().unwrap())
        .erased();
    let escrow_r = LeadEscrow::new(addr(&escrow), reader.clone());
    let token_r = TestUsdc::new(addr(&token), reader.clone());
    // Buyers 0 and 1 deposit 1,000 USDC; buyer 2 only 20 USDC, short of all it will bid.
    let deposits = [1_000 * USDC, 1_000 * USDC, 20 * USDC];
    let accounts: Vec<Address> = BUYER_KEYS
        .iter()
        .map(|k| k.parse::<PrivateKeySigner>().unwrap().address())
        .collect();
    let account_text = |k: usize| EthAddress(accounts[k].0 .0).to_string();
    let money = ["--rpc", rpc.as_str(), "--escrow", escrow.as_str()];
    let with_money = |args: &[&str]| -> Vec<String> {
        args.iter().chain(&money).map(|s| s.to_string()).collect()
    };
    let money_json = |args: &[&str]| {
        let a = with_money(args);
        cli_json(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // The chain's clock past the escrow's 3,600 s withdrawal delay.
    let pass_delay = || {
        rt.block_on(async {
            let _: Value = reader
                .raw_request("evm_increaseTime".into(), (3_601u64,))
                .await
                .unwrap();
            let _: Value = reader.raw_request("evm_mine".into(), ()).await.unwrap();
        })
    };
    for (k, key) in BUYER_KEYS.iter().enumerate() {
        std::fs::write(p(&format!("account-{k}.key")), key).unwrap();
        tool(&[
            "mint",
            "--token",
            &token,
            "--to",
            &account_text(k),
            "--amount",
            &(200 * USDC).max(deposits[k]).to_string(),
        ]);
        let d = money_json(&[
            "buyer",
            "deposit",
            "--account-key",
            &p(&format!("account-{k}.key")),
            "--amount",
            &deposits[k].to_string(),
        ]);
        assert_eq!(d["account"]["balance"], deposits[k].to_string(), "{d}");
        assert!(d["approve"]["gas_used"].as_u64().unwrap() > 21_000, "{d}");
    }
    let payouts = [
        EthAddress(
            SELLER_KEY
                .parse::<PrivateKeySigner>()
                .unwrap()
                .address()
                .0
                 .0,
        )
        .to_string(),
        PAYOUT_1.to_string(),
    ];

    // Two sellers list 3 accepted corpus leads each, in 20-second auctions (time for the
    // bids and an enclave restart).
    let leads: Vec<Value> = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept")
        .take(6)
        .collect();
    let mut ids: Vec<(String, usize)> = Vec::new();
    for (s, payout) in payouts.iter().enumerate() {
        let text: Vec<String> = leads[s * 3..s * 3 + 3]
            .iter()
            .map(|l| json!({"lead": l["lead"]}).to_string())
            .collect();
        std::fs::write(p(&format!("leads-{s}.jsonl")), text.join("\n")).unwrap();
        cli(&["seller", "keygen", "--out", &p(&format!("seller-{s}.key"))]);
        cli(&[
            "seller",
            "submit",
            "--gateway",
            &gw,
            "--allow-debug",
            "--root",
            root,
            "--key",
            &p(&format!("seller-{s}.key")),
            "--receipts",
            &p(&format!("receipts-{s}.jsonl")),
            "--reserve",
            "1000000",
            "--duration-ms",
            "20000",
            "--payout",
            payout,
            &p(&format!("leads-{s}.jsonl")),
        ]);
        for line in std::fs::read_to_string(p(&format!("receipts-{s}.jsonl")))
            .unwrap()
            .lines()
        {
            let r: Value = serde_json::from_str(line).unwrap();
            ids.push((r["lead_id"].as_str().unwrap().to_owned(), s));
        }
    }
    assert_eq!(ids.len(), 6);

    // Buyer k bids on every auction, in order, highest on auction i when k = i % 3. Buyer 2's
    // bids add up to 25.03 USDC: its last, on auction 5, is over what its 20 USDC still cover
    // and is refused, so buyer 1 wins auction 5. First price: a winner pays its own amount.
    // The enclave is killed (`kill -9`) before that last bid: the restarted one counts the
    // five open bids again from the ones the host gives back, and still refuses it.
    let winner = |i: usize| if i == 5 { 1 } else { i % 3 };
    let amount = |i: usize, k: usize| {
        if k == i % 3 {
            (5 + i as u64) * USDC + 12_345
        } else {
            2 * USDC + (k as u64) * 1_000
        }
    };
    for (k, _) in BUYER_KEYS.iter().enumerate() {
        let plan: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, (id, _))| json!({"auction": id, "amount": amount(i, k)}).to_string())
            .collect();
        cli(&["buyer", "keygen", "--out", &p(&format!("buyer-{k}.key"))]);
        let plans = if k < 2 {
            vec![plan.join("\n")]
        } else {
            vec![plan[..5].join("\n"), plan[5].clone()]
        };
        for (part, plan) in plans.iter().enumerate() {
            let plan_file = p(&format!("plan-{k}-{part}.jsonl"));
            std::fs::write(&plan_file, plan).unwrap();
            let args = [
                "buyer",
                "bid",
                "--gateway",
                &gw,
                "--allow-debug",
                "--root",
                root,
                "--key",
                &p(&format!("buyer-{k}.key")),
                "--plan",
                &plan_file,
                "--account",
                &account_text(k),
                "--out",
                &p(&format!("bids-{k}.jsonl")),
                "--concurrency",
                "1",
            ];
            if part == 0 {
                cli(&args);
                continue;
            }
            stack.kill_enclave();
            stack.start_enclave();
            let why = cli_fails(&args);
            assert!(
                why.contains(&format!("bid on {} refused", ids[5].0))
                    && why.contains("bid.over_deposit"),
                "{why}"
            );
            assert!(why.contains("0 bids placed, 1 refused"), "{why}");
        }
    }
    let host_log = std::fs::read_to_string(stack.dir.path().join("host.log")).unwrap();
    assert!(
        host_log.contains("open auctions' bids given back to the enclave"),
        "the host gave the open auctions' bids back"
    );

    // Every auction closes with a logged settlement, and the host (not settling) pays none.
    let mut closes: Vec<Value> = Vec::new();
    for (id, _) in &ids {
        let s = wait_settlement(&stack, id, |s| s["state"] == "pending");
        assert_eq!(s["attempts"], 0, "{s}");
        assert!(s["tx_hash"].is_null());
        closes.push(s);
    }
    for (i, s) in closes.iter().enumerate() {
        assert_eq!(s["price"], amount(i, winner(i)), "{s}");
        assert_eq!(s["buyer"], EthAddress(accounts[winner(i)].0 .0).to_string());
        assert_eq!(s["seller"], payouts[ids[i].1]);
        assert_eq!(s["escrow"], escrow);
        assert_eq!(s["fee_bps"], FEE_BPS);
    }
    rt.block_on(async {
        for (id, _) in &ids {
            let paid = escrow_r.settled(FixedBytes(id16(id))).call().await.unwrap();
            assert!(!paid, "{id} paid while the host withholds settlements");
        }
    });
    let verify = |id: &str| -> Vec<String> {
        ["verify", "settlement", id, "--gateway", &gw, "--rpc", &rpc]
            .iter()
            .chain(&["--allow-debug", "--root", root])
            .map(|s| s.to_string())
            .collect()
    };
    let v = verify(&ids[0].0);
    let why = cli_fails(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(why.contains("not paid on chain yet"), "{why}");

    // Seller 0 takes auction 0's settlement from the log (its auction.closed entry) and
    // submits it alone, from an account of its own.
    let close0: Event = serde_json::from_slice(
        &stack.get_bytes(&format!("/v1/entries/{}", closes[0]["close_index"])),
    )
    .unwrap();
    let Event::AuctionClosed(close0) = close0 else {
        panic!("entry {} is not auction.closed", closes[0]["close_index"])
    };
    let logged = close0.settlement.clone().expect("a logged settlement");
    let args = |price: u64, buyer: Address, seller: Address| {
        (
            FixedBytes(id16(&close0.auction_id)),
            buyer,
            seller,
            U256::from(price),
            Bytes::from(hex::decode(&logged.signature).unwrap()),
        )
    };
    let logged_args = args(
        close0.price.units(),
        Address::from(logged.buyer.0),
        Address::from(logged.seller.0),
    );
    rt.block_on(async {
        let own = wallet(&rpc, BUYER_KEYS[1]);
        let escrow_w = LeadEscrow::new(addr(&escrow), own);
        // Altered in any field, the signature pays nothing.
        for (price, buyer, seller) in [
            (close0.price.units() + 1, logged_args.1, logged_args.2),
            (close0.price.units(), accounts[1], logged_args.2),
            (close0.price.units(), logged_args.1, addr(PAYOUT_1)),
        ] {
            let a = args(price, buyer, seller);
            let Err(e) = escrow_w.settle(a.0, a.1, a.2, a.3, a.4).call().await else {
                panic!("an altered settlement would pay");
            };
            assert!(
                matches!(
                    e.as_decoded_interface_error::<LeadEscrow::LeadEscrowErrors>(),
                    Some(LeadEscrow::LeadEscrowErrors::UnregisteredSigner(_))
                ),
                "{e}"
            );
        }
        let a = logged_args.clone();
        let receipt = escrow_w
            .settle(a.0, a.1, a.2, a.3, a.4)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
    });

    // No lead before its payment: buyer 1's win is unpaid while the host withholds.
    let decrypt = |k: usize, i: usize| -> Vec<String> {
        [
            "buyer",
            "decrypt",
            "--gateway",
            &gw,
            "--allow-debug",
            "--root",
            root,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "--key".into(),
            p(&format!("buyer-{k}.key")),
            "--lead".into(),
            ids[i].0.clone(),
            "--out".into(),
            p(&format!("won-{i}.json")),
        ])
        .collect()
    };
    let d = decrypt(1, 1);
    let why = cli_fails(&d.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(why.contains("release.unpaid"), "{why}");
    // Paid by its seller, auction 0's lead goes to its winner.
    let d = decrypt(0, 0);
    cli(&d.iter().map(String::as_str).collect::<Vec<_>>());
    let got: Value = serde_json::from_slice(&std::fs::read(p("won-0.json")).unwrap()).unwrap();
    assert_eq!(got, leads[0]["lead"]);

    // Buyer 2 takes its deposit back while the host withholds its settlement past the
    // settlement window and the withdrawal delay (a host's fault the escrow's delay cannot
    // cover): the sale stays unpaid, and its lead with the enclave.
    money_json(&[
        "buyer",
        "withdraw",
        "--account-key",
        &p("account-2.key"),
        "--amount",
        &(20 * USDC).to_string(),
    ]);
    pass_delay();
    let w = money_json(&[
        "buyer",
        "withdraw",
        "--account-key",
        &p("account-2.key"),
        "--complete",
    ]);
    assert_eq!(w["account"]["balance"], "0", "{w}");

    // The host settles from now on: it pays the rest, and finds auction 0 paid already.
    stack.kill_host();
    stack
        .host_args
        .extend(["--escrow".to_string(), escrow.clone()]);
    stack.start_host();
    let s0 = wait_settlement(&stack, &ids[0].0, |s| s["state"] == "settled");
    assert!(
        s0["tx_hash"].is_null(),
        "paid by the seller, not the host: {s0}"
    );
    for i in [1, 3, 4, 5] {
        let s = wait_settlement(&stack, &ids[i].0, |s| s["state"] == "settled");
        assert!(s["tx_hash"].is_string(), "{s}");
        assert!(s["gas_used"].as_u64().unwrap() > 21_000, "{s}");
    }
    // Paid: buyer 1's lead is released now.
    let d = decrypt(1, 1);
    cli(&d.iter().map(String::as_str).collect::<Vec<_>>());
    // Buyer 2's win waits for its deposit, with the escrow's reason, and is retried; no lead.
    let s = wait_settlement(&stack, &ids[2].0, |s| {
        s["state"] == "pending" && s["attempts"].as_u64().unwrap_or(0) >= 1
    });
    let why = s["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("short of the price"), "{s}");
    let d = decrypt(2, 2);
    let why = cli_fails(&d.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(why.contains("release.unpaid"), "{why}");
    money_json(&[
        "buyer",
        "deposit",
        "--account-key",
        &p("account-2.key"),
        "--amount",
        &(100 * USDC).to_string(),
    ]);
    wait_settlement(&stack, &ids[2].0, |s| s["state"] == "settled");
    let d = decrypt(2, 2);
    cli(&d.iter().map(String::as_str).collect::<Vec<_>>());

    // The books: every seller is paid its logged prices less the fee, once.
    let fee = |price: u64| price * FEE_BPS / 10_000;
    let mut earned: BTreeMap<&str, u64> = BTreeMap::new();
    let mut spent = [0u64; 3];
    let mut fees = 0;
    for (i, (_, s)) in ids.iter().enumerate() {
        let price = amount(i, winner(i));
        *earned.entry(payouts[*s].as_str()).or_default() += price - fee(price);
        spent[winner(i)] += price;
        fees += fee(price);
    }
    rt.block_on(async {
        for (payout, total) in &earned {
            let got = escrow_r.earnings(addr(payout)).call().await.unwrap();
            assert_eq!(got, U256::from(*total), "seller {payout}");
        }
        let got = escrow_r.earnings(addr(FEE_RECIPIENT)).call().await.unwrap();
        assert_eq!(got, U256::from(fees), "fee recipient");
        let mut balances = U256::ZERO;
        for (k, account) in accounts.iter().enumerate() {
            let a = escrow_r.accountOf(*account).call().await.unwrap();
            // Buyer 2 withdrew its 20 USDC and deposited 100.
            let deposited = if k == 2 { 100 * USDC } else { deposits[k] };
            assert_eq!(a.balance, U256::from(deposited - spent[k]), "buyer {k}");
            balances += a.balance;
        }
        let held = token_r.balanceOf(addr(&escrow)).call().await.unwrap();
        let owed: u64 = earned.values().sum::<u64>() + fees;
        assert_eq!(held, balances + U256::from(owed), "tokens held");

        // A replay of a paid settlement reverts and moves nothing.
        let before = escrow_r
            .accountOf(accounts[0])
            .call()
            .await
            .unwrap()
            .balance;
        let a = logged_args.clone();
        let e = LeadEscrow::new(addr(&escrow), wallet(&rpc, BUYER_KEYS[0]))
            .settle(a.0, a.1, a.2, a.3, a.4)
            .send()
            .await
            .unwrap_err();
        let data = e.as_revert_data().expect("a revert");
        assert!(
            data.starts_with(&LeadEscrow::AlreadySettled::SELECTOR),
            "{e}"
        );
        let after = escrow_r
            .accountOf(accounts[0])
            .call()
            .await
            .unwrap()
            .balance;
        assert_eq!(before, after);
    });
    // Every payment verifies from the log to the chain; the CLI's books agree.
    for (id, _) in &ids {
        let s = stack.get_json(&format!("/v1/settlements/{id}"));
        assert_eq!(s["state"], "settled", "{s}");
        let v = verify(id);
        let out = cli(&v.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.contains("paid on chain 31337"), "{out}");
    }
    for (payout, total) in &earned {
        let e = money_json(&["seller", "earnings", "--payout", payout]);
        assert_eq!(e["earnings"], total.to_string(), "{e}");
        assert_eq!(e["settled_total"], total.to_string(), "{e}");
        assert_eq!(e["settlements"], 3, "{e}");
    }
    // Seller 0 claims its earnings as tokens.
    std::fs::write(p("seller-0-account.key"), SELLER_KEY).unwrap();
    let c = money_json(&[
        "seller",
        "claim",
        "--account-key",
        &p("seller-0-account.key"),
    ]);
    assert_eq!(c["claimed"], earned[payouts[0].as_str()].to_string(), "{c}");
    rt.block_on(async {
        let held = token_r.balanceOf(addr(&payouts[0])).call().await.unwrap();
        assert_eq!(held, U256::from(earned[payouts[0].as_str()]));
    });
    let e = money_json(&["seller", "earnings", "--payout", &payouts[0]]);
    assert_eq!(e["earnings"], "0", "{e}");
    // A withdrawal waits for the escrow's delay (3,600 s), then pays.
    let b0 = money_json(&["buyer", "balance", "--account", &account_text(0)]);
    let balance0: u64 = b0["balance"].as_str().unwrap().parse().unwrap();
    let r = money_json(&[
        "buyer",
        "withdraw",
        "--account-key",
        &p("account-0.key"),
        "--amount",
        &(10 * USDC).to_string(),
    ]);
    assert_eq!(r["account"]["requested"], (10 * USDC).to_string(), "{r}");
    assert_eq!(
        r["account"]["available"],
        (balance0 - 10 * USDC).to_string(),
        "{r}"
    );
    let a = with_money(&[
        "buyer",
        "withdraw",
        "--account-key",
        &p("account-0.key"),
        "--complete",
    ]);
    let why = cli_fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(why.contains("unlocks at"), "{why}");
    pass_delay();
    let w = money_json(&[
        "buyer",
        "withdraw",
        "--account-key",
        &p("account-0.key"),
        "--complete",
    ]);
    assert_eq!(
        w["account"]["balance"],
        (balance0 - 10 * USDC).to_string(),
        "{w}"
    );
    assert_eq!(w["account"]["requested"], "0", "{w}");
    // An auction with no settlement, and a malformed id.
    let (status, body) = get(&stack, "/v1/settlements/00000000000000000000000000000000");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("settlement.unknown"))
    );
    let (status, body) = get(&stack, "/v1/settlements/nothex");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("request.bad_id"))
    );
}

fn get(stack: &Stack, path: &str) -> (u16, Value) {
    let mut r = stack
        .http
        .get(&format!("{}{path}", stack.gateway))
        .call()
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_json().unwrap())
}

fn id16(id: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    hex::decode_to_slice(id, &mut out).unwrap();
    out
}
