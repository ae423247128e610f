//! Settlement in the enclave: on a gateway that settles on chain, submissions must name a
//! payout address and bids a deposit account, and every sale's `auction.closed` carries the
//! EIP-712 settlement the anchor key signed, paying exactly the logged price from the winner's
//! account to the seller's payout address under the configured fee terms.

mod common;

use common::{corpus, Host, ORIGIN, T0};
use ed25519_dalek::SigningKey;
use leadgate_enclave::core::{EnclaveConfig, SettlementConfig};
use leadgate_protocol::SubmitOutcome;
use leadgate_verifier::anchor::address_of_sec1;
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::bid::{seal_bid, seal_bid_from, SealedBid};
use leadgate_verifier::envelope::keypair_from_seed;
use leadgate_verifier::event::Event;
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
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
    let mut config = EnclaveConfig::new(ORIGIN);
    config.settlement = Some(settling());
    let (mut e, keys) = host.boot_with(dir.path(), T0, config);
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
    let got = host.bid(
        &mut e,
        vec![
            bid(&keys, 11, &ids[0], 4_000_000, Some(acct1)),
            bid(&keys, 12, &ids[0], 3_000_000, Some(acct2)),
            bid(&keys, 11, &ids[1], 2_000_000, Some(acct1)),
            bid(&keys, 12, &ids[1], 7_000_000, Some(acct2)),
        ],
        T0 + 10,
    );
    assert_eq!(got, ["ok"; 4]);

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
    // First price: acct1 pays its 4 USDC. Second price: acct2 pays acct1's 2 USDC.
    for (c, buyer, price) in [
        (close_of(&ids[0]), acct1, 4_000_000),
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
}

#[test]
fn a_gateway_that_does_not_settle_logs_no_settlement() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::default();
    let (mut e, keys) = host.boot(dir.path(), T0);
    // It takes the payout address and logs it, but signs nothing.
    let got = host.submit(
        &mut e,
        vec![lead(&keys, 1, Some(PAYOUT), Pricing::FirstPrice)],
        T0,
    );
    let SubmitOutcome::Logged { lead_id, .. } = &got[0] else {
        panic!("{got:?}")
    };
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
        let mut config = EnclaveConfig::new(ORIGIN);
        config.settlement = Some(SettlementConfig { fee, ..settling() });
        assert_eq!(config.validate().unwrap_err().option, "settlement");
    }
    let mut config = EnclaveConfig::new(ORIGIN);
    config.settlement = Some(SettlementConfig {
        domain: EscrowDomain {
            chain_id: 1,
            escrow: [0; 20],
        },
        ..settling()
    });
    assert_eq!(config.validate().unwrap_err().option, "settlement");
}
