//! Settlement in the enclave: on a gateway that settles on chain, submissions must name a
//! payout address and bids a deposit account, and every sale's `auction.closed` carries the
//! EIP-712 settlement the anchor key signed, paying exactly the logged price from the winner's
//! account to the seller's payout address under the configured fee terms. The enclave reads
//! the escrow through [`EscrowChain`]: here a [`Ledger`] the test sets (anvil and the real
//! contract in `tests/tests/settlement.rs`), to show what the enclave does with each answer:
//! it boots only on the escrow it signs for, takes a bid only if the deposit covers it with
//! the buyer's other commitments, and releases a lead only once its sale is paid.

mod common;

use common::{corpus, Host, ORIGIN, T0};
use ed25519_dalek::SigningKey;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use leadgate_enclave::chain::{DepositRead, EscrowChain, EscrowTerms};
use leadgate_enclave::core::{EnclaveConfig, EscrowReader, SettlementConfig};
use leadgate_protocol::{Request, Response, SubmitOutcome};
use leadgate_verifier::anchor::address_of_sec1;
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::bid::{seal_bid, seal_bid_from, SealedBid};
use leadgate_verifier::envelope::keypair_from_seed;
use leadgate_verifier::event::Event;
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;
use leadgate_verifier::settlement::{EscrowDomain, EthAddress, FeeTerms};

const PAYOUT: EthAddress = EthAddress([0x5e; 20]);

fn settling() -> SettlementConfig {
    SettlementConfig {
        domain: EscrowDomain {
            chain_id: 31337,
            escrow: [0xe5; 20],
        },
        fee: FeeTerms {
            fee_bps: 250,
            fee_recipient: [0xfe; 20],
        },
    }
}

/// The escrow as the test sets it: terms, each account's `(balance, requested)`, the paid
/// auctions, and whether the chain answers at all.
#[derive(Default)]
struct Chain {
    terms: Option<EscrowTerms>,
    accounts: HashMap<[u8; 20], (u128, u128)>,
    settled: HashSet<[u8; 16]>,
    down: bool,
    reads: usize,
}

#[derive(Clone, Default)]
struct Ledger(Arc<Mutex<Chain>>);

impl Ledger {
    fn new() -> Self {
        let l = Ledger::default();
        l.0.lock().unwrap().terms = Some(EscrowTerms {
            fee_bps: 250,
            fee_recipient: [0xfe; 20],
            withdrawal_delay_s: 8 * 86_400,
        });
        l
    }

    fn set_delay(&self, seconds: u64) {
        let mut c = self.0.lock().unwrap();
        c.terms.as_mut().unwrap().withdrawal_delay_s = seconds;
    }

    fn deposit(&self, account: EthAddress, balance: u128, requested: u128) {
        self.0
            .lock()
            .unwrap()
            .accounts
            .insert(account.0, (balance, requested));
    }

    /// `settle` on chain: the price leaves the buyer's balance, the auction is paid.
    fn settle(&self, id: &str, buyer: EthAddress, price: u64) {
        let mut c = self.0.lock().unwrap();
        let mut key = [0u8; 16];
        hex::decode_to_slice(id, &mut key).unwrap();
        assert!(c.settled.insert(key));
        let a = c.accounts.get_mut(&buyer.0).unwrap();
        a.0 -= u128::from(price);
    }
}

impl EscrowChain for Ledger {
    fn terms(&self) -> Result<EscrowTerms, String> {
        let c = self.0.lock().unwrap();
        if c.down {
            return Err("connection refused".into());
        }
        Ok(c.terms.unwrap())
    }

    fn deposits(&self, buyers: &[([u8; 20], Vec<[u8; 16]>)]) -> Result<Vec<DepositRead>, String> {
        let mut c = self.0.lock().unwrap();
        if c.down {
            return Err("connection refused".into());
        }
        c.reads += 1;
        Ok(buyers
            .iter()
            .map(|(a, ids)| {
                let (balance, requested) = c.accounts.get(a).copied().unwrap_or_default();
                DepositRead {
                    block: 1,
                    balance,
                    requested,
                    settled: ids.iter().map(|i| c.settled.contains(i)).collect(),
                }
            })
            .collect())
    }

    fn settled(&self, id: &[u8; 16]) -> Result<bool, String> {
        let c = self.0.lock().unwrap();
        if c.down {
            return Err("connection refused".into());
        }
        Ok(c.settled.contains(id))
    }
}

fn settling_config(ledger: &Ledger) -> EnclaveConfig {
    let mut config = EnclaveConfig::new(ORIGIN);
    config.settlement = Some(settling());
    config.escrow_chain = Some(EscrowReader(Arc::new(ledger.clone())));
    config
}

fn release(
    host: &mut Host,
    e: &mut leadgate_enclave::core::Enclave,
    buyer: u8,
    id: &str,
    now: u64,
) -> String {
    let request = ReleaseRequest::sign(&SigningKey::from_bytes(&[buyer; 32]), ORIGIN, id, now);
    let proof = host.sale_proof(id);
    let lead = host.leads[id].clone();
    match e.handle(
        Request::Release {
            request,
            lead,
            proof,
        },
        now,
    ) {
        Response::Released { appended, .. } => {
            host.store(&appended);
            "released".into()
        }
        Response::Error(e) => e.code.to_string(),
        other => panic!("{other:?}"),
    }
}

fn lead(keys: &EnclaveKeys, n: usize, payout: Option<EthAddress>, pricing: Pricing) -> SealedLead {
    let seller = SigningKey::from_bytes(&[1u8; 32]);
    let l = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept")
        .nth(n)
        .unwrap();
    let terms = AuctionRequest {
        duration_ms: Some(60_000),
        pricing: Some(pricing),
        payout,
        off_site: false,
        instant: false,
        ..Default::default()
    };
    let json = serde_json::to_vec(&l["lead"]).unwrap();
    seal_lead_with_terms(&seller, &keys.intake_key, ORIGIN, &json, T0, Some(terms)).unwrap()
}

fn bid(
    keys: &EnclaveKeys,
    buyer: u8,
    auction: &str,
    amount: u64,
    account: Option<EthAddress>,
) -> SealedBid {
    let (_, hpke) = keypair_from_seed(&[buyer + 100; 32]);
    seal_bid_from(
        &SigningKey::from_bytes(&[buyer; 32]),
        &hpke,
        &keys.intake_key,
        ORIGIN,
        auction,
        TokenAmount::new(amount).unwrap(),
        [buyer; 16],
        account,
    )
    .unwrap()
    .0
}

/// Corpus lead `n`, paying [`PAYOUT`], listed at `now` (first price); its auction id.
fn list(
    host: &mut Host,
    e: &mut leadgate_enclave::core::Enclave,
    keys: &EnclaveKeys,
    n: usize,
    now: u64,
) -> String {
    let got = host.submit(
        e,
        vec![lead(keys, n, Some(PAYOUT), Pricing::FirstPrice)],
        now,
    );
    match &got[0] {
        SubmitOutcome::Logged { lead_id, .. } => lead_id.clone(),
        other => panic!("{other:?}"),
    }
}

fn code(o: &SubmitOutcome) -> String {
    match o {
        SubmitOutcome::Logged { accepted: true, .. } => "accepted".into(),
        SubmitOutcome::Logged { .. } => "rejected".into(),
        SubmitOutcome::Refused(e) => e.code.to_string(),
    }
}

#[test]
fn a_settling_gateway_signs_what_the_log_says_and_refuses_what_cannot_be_paid() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let ledger = Ledger::new();
    let (mut e, keys) = host.boot_with(dir.path(), T0, settling_config(&ledger));
    let anchor = address_of_sec1(&keys.anchor_key).unwrap();

    // A submission naming no payout address cannot be paid: refused, nothing logged.
    let size = host.leaves.len();
    let got = host.submit(&mut e, vec![lead(&keys, 0, None, Pricing::FirstPrice)], T0);
    assert_eq!(
        got.iter().map(code).collect::<Vec<_>>(),
        ["submission.bad_terms"]
    );
    assert_eq!(host.leaves.len(), size);

    let got = host.submit(
        &mut e,
        vec![
            lead(&keys, 1, Some(PAYOUT), Pricing::FirstPrice),
            lead(&keys, 2, Some(PAYOUT), Pricing::SecondPrice),
        ],
        T0,
    );
    assert_eq!(
        got.iter().map(code).collect::<Vec<_>>(),
        ["accepted", "accepted"]
    );
    let ids: Vec<String> = got
        .iter()
        .map(|o| match o {
            SubmitOutcome::Logged { lead_id, .. } => lead_id.clone(),
            SubmitOutcome::Refused(_) => unreachable!(),
        })
        .collect();
    // The payout address is public in lead.accepted: anyone can check the settlement pays it.
    let accepted =
        Event::from_leaf(&host.leaves[host.accepted_index(&ids[0]).unwrap() as usize]).unwrap();
    let Event::LeadAccepted(accepted) = accepted else {
        panic!()
    };
    assert_eq!(accepted.auction.payout, Some(PAYOUT));

    // A bid naming no deposit account cannot pay: refused, nothing logged.
    let size = host.leaves.len();
    let (_, hpke) = keypair_from_seed(&[111; 32]);
    let no_account = seal_bid(
        &SigningKey::from_bytes(&[11; 32]),
        &hpke,
        &keys.intake_key,
        ORIGIN,
        &ids[0],
        TokenAmount::new(5_000_000).unwrap(),
        [1; 16],
    )
    .unwrap()
    .0;
    assert_eq!(
        host.bid(&mut e, vec![no_account], T0 + 10),
        ["bid.mismatch"]
    );
    assert_eq!(host.leaves.len(), size);

    let (acct1, acct2) = (EthAddress([0xa1; 20]), EthAddress([0xa2; 20]));
    // acct1 has 10 USDC deposited, 1 of them asked back; acct2 has 10.
    ledger.deposit(acct1, 10_000_000, 1_000_000);
    ledger.deposit(acct2, 10_000_000, 0);
    let got = host.bid(
        &mut e,
        vec![
            bid(&keys, 11, &ids[0], 4_000_000, Some(acct1)),
            bid(&keys, 12, &ids[0], 2_000_000, Some(acct2)),
            bid(&keys, 11, &ids[1], 2_000_000, Some(acct1)),
            bid(&keys, 12, &ids[1], 7_000_000, Some(acct2)),
        ],
        T0 + 10,
    );
    assert_eq!(got, ["ok"; 4]);
    // Each deposit is read once for the batch, at one block.
    assert_eq!(ledger.0.lock().unwrap().reads, 1);

    // Covered together with its other open bids, or refused before anything is logged:
    // acct2 has committed 9 of its 10 USDC; acct1 6 of its 9 available (10 less the 1 asked
    // back); acct3 has deposited nothing.
    let size = host.leaves.len();
    let got = host.bid(
        &mut e,
        vec![
            bid(&keys, 12, &ids[0], 1_000_001, Some(acct2)),
            bid(&keys, 11, &ids[0], 3_000_001, Some(acct1)),
            bid(&keys, 13, &ids[0], 1, Some(EthAddress([0xa3; 20]))),
        ],
        T0 + 20,
    );
    assert_eq!(got, ["bid.over_deposit"; 3]);
    assert_eq!(host.leaves.len(), size);
    // A chain that does not answer refuses the bid too (the deposit read is stale by now).
    ledger.0.lock().unwrap().down = true;
    let got = host.bid(
        &mut e,
        vec![bid(&keys, 11, &ids[0], 1, Some(acct1))],
        T0 + 5_000,
    );
    assert_eq!(got, ["chain.unavailable"]);
    ledger.0.lock().unwrap().down = false;
    assert_eq!(
        host.bid(
            &mut e,
            vec![bid(&keys, 11, &ids[0], 3_000_000, Some(acct1))],
            T0 + 5_000
        ),
        ["ok"]
    );

    let events = host.tick(&mut e, T0 + 60_000);
    let closed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::AuctionClosed(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2);
    // Both close at the same time, in an order of their ids: pair each with its auction.
    let close_of = |id: &str| closed.iter().find(|c| c.auction_id == id).unwrap();
    // First price: acct1's last bid, 3 USDC. Second price: acct2 pays acct1's 2 USDC.
    for (c, buyer, price) in [
        (close_of(&ids[0]), acct1, 3_000_000),
        (close_of(&ids[1]), acct2, 2_000_000),
    ] {
        let s = c
            .settlement
            .as_ref()
            .expect("a sale on a settling gateway is signed");
        assert_eq!(c.price.units(), price);
        assert_eq!((s.buyer, s.seller), (buyer, PAYOUT));
        assert_eq!((s.chain_id, s.escrow), (31337, EthAddress([0xe5; 20])));
        assert_eq!((s.fee_bps, s.fee_recipient), (250, EthAddress([0xfe; 20])));
        let mut id = [0u8; 16];
        hex::decode_to_slice(&c.auction_id, &mut id).unwrap();
        // Signed by the anchor key of this epoch, for exactly the logged price and auction.
        assert_eq!(s.signer(id, price).unwrap(), anchor);
        assert_ne!(s.signer(id, price + 1).ok(), Some(anchor));
        let mut other = id;
        other[0] ^= 1;
        assert_ne!(s.signer(other, price).ok(), Some(anchor));
    }

    // The lead goes to its winner only once the sale is paid on chain.
    let now = T0 + 61_000;
    assert_eq!(
        release(&mut host, &mut e, 12, &ids[1], now),
        "release.unpaid"
    );
    ledger.0.lock().unwrap().down = true;
    assert_eq!(
        release(&mut host, &mut e, 12, &ids[1], now),
        "chain.unavailable"
    );
    ledger.0.lock().unwrap().down = false;
    ledger.settle(&ids[1], acct2, 2_000_000);
    assert_eq!(release(&mut host, &mut e, 12, &ids[1], now), "released");
    assert_eq!(
        release(&mut host, &mut e, 11, &ids[0], now),
        "release.unpaid"
    );

    // The bids are free once their auctions close; the unpaid win still counts. acct1: 10
    // less 1 asked back, less its unpaid 3: a bid of 6 fits, one of 6 and 1 unit does not.
    let lead_id = &list(&mut host, &mut e, &keys, 3, now);
    let got = host.bid(
        &mut e,
        vec![
            bid(&keys, 11, lead_id, 6_000_001, Some(acct1)),
            bid(&keys, 11, lead_id, 6_000_000, Some(acct1)),
        ],
        now,
    );
    assert_eq!(got, ["bid.over_deposit", "ok"]);
    // Paid: the price left the balance and the win no longer counts (read at one block),
    // so nothing is counted twice.
    ledger.settle(&ids[0], acct1, 3_000_000);
    let got = host.bid(
        &mut e,
        vec![
            bid(&keys, 11, lead_id, 1, Some(acct1)),
            bid(&keys, 12, lead_id, 8_000_000, Some(acct2)),
            bid(&keys, 12, lead_id, 1, Some(acct2)),
        ],
        now + 5_000,
    );
    // acct1: 7 − 1 − 6 = 0 left. acct2: 8 after paying 2, all of it bid.
    assert_eq!(got, ["bid.over_deposit", "ok", "bid.over_deposit"]);
}

#[test]
fn the_enclave_boots_only_on_the_escrow_it_signs_for() {
    let boot = |_: &Ledger, config: EnclaveConfig| -> String {
        let dir = tempfile::tempdir().unwrap();
        let sealer = leadgate_enclave::sealing::DevFileSealer::open_or_create(dir.path()).unwrap();
        let attestor =
            leadgate_enclave::attest::DevAttestationProvider::open_or_create(dir.path(), T0)
                .unwrap();
        let mut e =
            leadgate_enclave::core::Enclave::new(config, Box::new(sealer), Box::new(attestor));
        match e.handle(
            Request::Boot {
                sealed_secrets: None,
                tip: None,
                aws_credentials: None,
            },
            T0,
        ) {
            Response::Booted { .. } => "booted".into(),
            Response::Error(e) => e.code.to_string(),
            other => panic!("{other:?}"),
        }
    };
    let ledger = Ledger::new();
    assert_eq!(boot(&ledger, settling_config(&ledger)), "booted");
    // Another fee, another recipient: every settlement it signed would be refused.
    for terms in [
        EscrowTerms {
            fee_bps: 100,
            fee_recipient: [0xfe; 20],
            withdrawal_delay_s: 8 * 86_400,
        },
        EscrowTerms {
            fee_bps: 250,
            fee_recipient: [0xff; 20],
            withdrawal_delay_s: 8 * 86_400,
        },
        // A delay no longer than the longest auction (7 days) plus the settlement window (1
        // hour) plus the read age (2 s): a buyer could withdraw what backs a bid.
        EscrowTerms {
            fee_bps: 250,
            fee_recipient: [0xfe; 20],
            withdrawal_delay_s: 7 * 86_400 + 3_600 + 2,
        },
    ] {
        let ledger = Ledger::new();
        ledger.0.lock().unwrap().terms = Some(terms);
        assert_eq!(
            boot(&ledger, settling_config(&ledger)),
            "settlement.escrow_mismatch"
        );
    }
    // One second more is enough; a shorter longest auction needs less.
    let ledger = Ledger::new();
    ledger.set_delay(7 * 86_400 + 3_600 + 3);
    assert_eq!(boot(&ledger, settling_config(&ledger)), "booted");
    ledger.set_delay(2 * 3_600);
    let mut config = settling_config(&ledger);
    config.max_duration_ms = 3_600_000 - 2_001;
    config.default_duration_ms = 60_000;
    assert_eq!(boot(&ledger, config), "booted");
    // A chain it cannot read: no boot.
    ledger.0.lock().unwrap().down = true;
    assert_eq!(boot(&ledger, settling_config(&ledger)), "chain.unavailable");
    // And a settling configuration without a chain to read does not start.
    let mut config = EnclaveConfig::new(ORIGIN);
    config.settlement = Some(settling());
    assert_eq!(config.validate().unwrap_err().option, "escrow_chain");
}

#[test]
fn a_gateway_that_does_not_settle_logs_no_settlement() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    // It takes the payout address and logs it, but signs nothing.
    let lead_id = &list(&mut host, &mut e, &keys, 1, T0);
    let got = host.bid(
        &mut e,
        vec![bid(
            &keys,
            11,
            lead_id,
            4_000_000,
            Some(EthAddress([0xa1; 20])),
        )],
        T0 + 10,
    );
    assert_eq!(got, ["ok"]);
    let events = host.tick(&mut e, T0 + 60_000);
    let Some(Event::AuctionClosed(c)) = events.first() else {
        panic!("{events:?}")
    };
    assert_eq!(c.settlement, None);
}

#[test]
fn settlement_terms_the_contract_would_refuse_stop_the_enclave_at_start() {
    for fee in [
        FeeTerms {
            fee_bps: 250,
            fee_recipient: [0; 20],
        },
        FeeTerms {
            fee_bps: 0,
            fee_recipient: [1; 20],
        },
        FeeTerms {
            fee_bps: 10_001,
            fee_recipient: [1; 20],
        },
    ] {
        let mut config = settling_config(&Ledger::new());
        config.settlement = Some(SettlementConfig { fee, ..settling() });
        assert_eq!(config.validate().unwrap_err().option, "settlement");
    }
    let mut config = settling_config(&Ledger::new());
    config.settlement = Some(SettlementConfig {
        domain: EscrowDomain {
            chain_id: 1,
            escrow: [0; 20],
        },
        ..settling()
    });
    assert_eq!(config.validate().unwrap_err().option, "settlement");
}

#[test]
fn rule_bids_are_backed_by_the_deposit_and_instant_sales_carry_their_settlement() {
    use leadgate_verifier::autobid::seal_rules;
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let ledger = Ledger::new();
    let (mut e, keys) = host.boot_with(dir.path(), T0, settling_config(&ledger));
    let anchor = address_of_sec1(&keys.anchor_key).unwrap();
    let account = EthAddress([0xb1; 20]);
    let buyer = common::buyer(10);
    let mut rules = common::rule_set(10, &["*"], 4_000_000, 1_000_000_000, T0);
    // A settling gateway needs the account that pays the rule set's bids.
    let (no_account, _) = seal_rules(&buyer, &keys.intake_key, ORIGIN, &rules).unwrap();
    assert_eq!(
        host.set_rules(&mut e, no_account, T0).unwrap_err(),
        "rules.invalid"
    );
    rules.account = Some(account);
    rules.issued_at_ms = T0 + 1;
    let (sealed, _) = seal_rules(&buyer, &keys.intake_key, ORIGIN, &rules).unwrap();
    host.set_rules(&mut e, sealed, T0 + 1).unwrap();
    // 10 USDC deposited: two open 4 USDC bids fit, a third does not.
    ledger.deposit(account, 10_000_000, 0);
    let ids: Vec<String> = (0..3)
        .map(|n| list(&mut host, &mut e, &keys, n, T0 + 2))
        .collect();
    let bid_on = |host: &Host, id: &str| {
        host.leaves.iter().any(|l| {
            matches!(Event::from_leaf(l).unwrap(), Event::BidSealed(b) if b.auction_id == id && b.rules.is_some())
        })
    };
    assert!(bid_on(&host, &ids[0]) && bid_on(&host, &ids[1]));
    assert!(
        !bid_on(&host, &ids[2]),
        "the deposit does not cover a third bid"
    );

    // An instant sale: its own answer carries the signed settlement, from the buyer's
    // account to the seller's payout; then its bid counts as an unpaid win.
    ledger.deposit(account, 14_000_000, 0);
    let seller = SigningKey::from_bytes(&[1u8; 32]);
    let l = corpus()
        .into_iter()
        .filter(|l| l["expect"] == "accept")
        .nth(5)
        .unwrap();
    let sub = seal_lead_with_terms(
        &seller,
        &keys.intake_key,
        ORIGIN,
        &serde_json::to_vec(&l["lead"]).unwrap(),
        T0 + 3,
        Some(AuctionRequest {
            payout: Some(PAYOUT),
            instant: true,
            ..Default::default()
        }),
    )
    .unwrap();
    let got = host.submit(&mut e, vec![sub], T0 + 2_100);
    let closed = match &got[0] {
        SubmitOutcome::Logged { sale: Some(a), .. } => match Event::from_leaf(&a.leaf).unwrap() {
            Event::AuctionClosed(c) => c,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert_eq!(closed.price.units(), 4_000_000);
    let s = closed.settlement.expect("a settlement");
    assert_eq!((s.buyer, s.seller), (account, PAYOUT));
    let id = leadgate_enclave::auctions::auction_key(&closed.auction_id).unwrap();
    assert_eq!(
        s.signer(id, 4_000_000).unwrap(),
        anchor,
        "signed by the anchor key"
    );
}

/// What a settling enclave counts against deposits survives a restart: the unpaid wins (in
/// the sealed state, or from the replayed closes) and the open bids (given back by the host,
/// checked against the log). A host that withholds or alters the open bids cannot start it.
/// The restarted epoch signs with the same anchor key, so earlier settlements still pay.
#[test]
fn open_bids_and_unpaid_wins_are_counted_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new();
    let account = EthAddress([0xa1; 20]);
    ledger.deposit(account, 12, 0);
    let mut host = Host::default();
    let (mut e, keys) = host.boot_with(dir.path(), T0, settling_config(&ledger));
    let x = list(&mut host, &mut e, &keys, 0, T0);
    let y = list(&mut host, &mut e, &keys, 1, T0 + 30_000);
    let z = list(&mut host, &mut e, &keys, 2, T0 + 45_000);
    let one = |auction: &str, amount: u64| vec![bid(&keys, 1, auction, amount, Some(account))];
    assert_eq!(host.bid(&mut e, one(&x, 6), T0 + 31_000), ["ok"]);
    assert_eq!(host.bid(&mut e, one(&y, 4), T0 + 31_000), ["ok"]);
    // X sells at 6, unpaid; Y's 4 is open: 2 of the 12 are free.
    let closed = host.tick(&mut e, T0 + 61_000);
    assert!(matches!(&closed[..], [Event::AuctionClosed(c)] if c.auction_id == x));
    assert!(host.seal_state(&mut e, true, T0 + 61_000).is_some());
    let at_kill = host.clone();
    drop(e);

    let now = T0 + 65_000;
    let over = "bid.over_deposit";
    // From the sealed state (the unpaid win) plus the open bids given back.
    let mut h = at_kill.clone();
    let (mut e, restarted) = h.boot_with(dir.path(), now, settling_config(&ledger));
    assert_eq!(h.bid(&mut e, one(&z, 3), now), [over]);
    assert_eq!(h.bid(&mut e, one(&z, 2), now), ["ok"]);
    // The new epoch signs with the same anchor key, so X's settlement, signed before the
    // kill, still pays: no re-signing is ever needed within a log.
    let anchor = address_of_sec1(&keys.anchor_key).unwrap();
    assert_eq!(restarted.anchor_key, keys.anchor_key);
    let epoch = h
        .leaves
        .iter()
        .rev()
        .find_map(|l| match Event::from_leaf(l).unwrap() {
            Event::LogEpoch(ep) => Some(ep),
            _ => None,
        });
    assert_eq!(
        epoch.map(|ep| (ep.epoch, ep.anchor_key)),
        Some((2, hex::encode(keys.anchor_key)))
    );
    let Event::AuctionClosed(sold) = &closed[0] else {
        unreachable!()
    };
    let id = leadgate_enclave::auctions::auction_key(&x).unwrap();
    let settlement = sold.settlement.clone().expect("a settlement");
    assert_eq!(settlement.signer(id, 6).unwrap(), anchor);
    // From leaf 0: the replayed close is the unpaid win.
    let mut h = at_kill.clone();
    h.state = None;
    let (mut e, _) = h.boot_with(dir.path(), now, settling_config(&ledger));
    assert_eq!(h.bid(&mut e, one(&z, 3), now), [over]);
    // Once X is paid (the price leaves the balance) a read drops it: still 2 free.
    ledger.settle(&x, account, 6);
    assert_eq!(h.bid(&mut e, one(&z, 3), now + 3_000), [over]);
    assert_eq!(h.bid(&mut e, one(&z, 2), now + 3_000), ["ok"]);
    // Y closes: its loaded bid is freed once and its win counted: 12 − 6 − 4 − 2 = 0.
    let closed = h.tick(&mut e, T0 + 91_000);
    assert!(closed
        .iter()
        .any(|c| matches!(c, Event::AuctionClosed(c) if c.auction_id == y)));
    assert_eq!(h.bid(&mut e, one(&z, 1), T0 + 91_000), [over]);
    drop(e);

    // A host that withholds the open bids cannot start a settling enclave, nor one that gives
    // them altered, twice, or for an auction that is closed.
    let mut h = at_kill.clone();
    h.withhold_bids = true;
    let (mut e, _) = h.boot_unstarted(dir.path(), now, settling_config(&ledger));
    let refused = |resp: Response| match resp {
        Response::Error(e) => e.code.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(refused(e.handle(Request::Start, now)), "boot.bids_missing");
    let mut short = h.close_input(&y);
    short.bids.clear();
    let load = |inputs: Vec<leadgate_protocol::CloseInput>| Request::LoadBids { auctions: inputs };
    assert_eq!(
        refused(e.handle(load(vec![short]), now)),
        "boot.bids_missing"
    );
    assert_eq!(
        refused(e.handle(load(vec![h.close_input(&x)]), now)),
        "boot.bids_missing",
        "X is closed"
    );
    assert_eq!(e.handle(load(vec![h.close_input(&y)]), now), Response::Ok);
    assert_eq!(
        refused(e.handle(load(vec![h.close_input(&y)]), now)),
        "boot.bids_missing",
        "given twice"
    );
    let Response::Started { appended } = e.handle(Request::Start, now) else {
        panic!("every open auction's bids are back")
    };
    h.store(&appended);
    assert_eq!(h.bid(&mut e, one(&z, 3), now), [over]);
}
