//! Enclave-side costs: append + receipt signature per event, checkpoint signing at 1M entries,
//! one sealed submission end to end inside the enclave core (signature check, HPKE open,
//! rules, append, receipt), and one sealed bid (signature check, HPKE open, the auction's
//! checks, append, receipt). Run: `cargo bench -p leadgate-enclave --bench log`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::log::Log;
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::{BidOutcome, Request, Response, SubmitOutcome};
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::bid::seal_bid;
use leadgate_verifier::event::{AuctionTerms, Event, LeadAccepted, Listing};
use leadgate_verifier::intake::seal_lead;
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::{leaf_hash, Frontier};

fn event(i: u64) -> Event {
    Event::LeadAccepted(LeadAccepted {
        time: 1_790_000_000_000 + i,
        lead_id: format!("{i:032x}"),
        seller: "ab".repeat(32),
        ciphertext_sha256: "cd".repeat(32),
        score: 85,
        reasons: vec![
            "email_domain_matches_website".into(),
            "phone_present".into(),
        ],
        listing: Listing {
            industry: "HVAC".into(),
            sub_industry: "Heating Services".into(),
            region: "Austin, TX".into(),
            role: "General Manager".into(),
            company_type: Some("LLC".into()),
            ownership_type: Some("Private".into()),
            number_of_locations: Some(4),
            founded_year: Some(1990),
        },
        email_tag: "ef".repeat(32),
        auction: AuctionTerms {
            reserve: TokenAmount::new(1_000_000).expect("amount"),
            closes_at: 1_790_003_600_000 + i,
            pricing: Pricing::FirstPrice,
            payout: None,
            off_site: false,
            instant: false,
        },
    })
}

/// A lead that passes intake, with its own email `{local}{n}@{domain}{n}.io`.
fn lead_json(local: &str, domain: &str, n: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "business": "Acme", "full_name": "Jane Doe", "first": "Jane", "last": "Doe",
        "email": format!("{local}{n}@{domain}{n}.io"), "role": "Owner",
        "website": format!("https://{domain}{n}.io"), "industry": "HVAC",
        "sub_industry": "Heating", "region": "Austin, TX",
        "linkedin": "https://linkedin.com/in/janedoe", "phone_numbers": ["+1-512-555-0100"]
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[1u8; 32]);
    let mut log = Log::new("bench.example/log", 1, Frontier::new(), 0);
    let mut i = 0u64;
    c.bench_function("append_with_receipt", |b| {
        b.iter(|| {
            i += 1;
            log.append(&key, &event(i)).unwrap()
        })
    });

    let mut f = Frontier::new();
    for i in 0..1_000_000u64 {
        f.append(leaf_hash(&i.to_be_bytes()));
    }
    let mut big = Log::new("bench.example/log", 1, f, 0);
    c.bench_function("checkpoint_sign_at_1M", |b| {
        b.iter(|| big.checkpoint(&key, 1, true))
    });

    // One sealed lead through the enclave core.
    let dir = tempfile::tempdir().unwrap();
    let now = 1_790_000_000_000u64;
    let mut e = Enclave::new(
        EnclaveConfig::new("bench.example/log"),
        Box::new(DevFileSealer::open_or_create(dir.path()).unwrap()),
        Box::new(DevAttestationProvider::open_or_create(dir.path(), now).unwrap()),
    );
    let Response::Booted { keys, .. } = e.handle(
        Request::Boot {
            sealed_secrets: None,
            tip: None,
            aws_credentials: None,
        },
        now,
    ) else {
        panic!()
    };
    let keys = EnclaveKeys::from_attested(Some(&keys), None).unwrap();
    assert!(matches!(
        e.handle(Request::Start, now),
        Response::Started { .. }
    ));
    let seller = SigningKey::from_bytes(&[2u8; 32]);
    let mut n = 0u64;
    c.bench_function("enclave_submit_one_lead", |b| {
        b.iter_batched(
            || {
                n += 1;
                let lead = lead_json("jane.doe", "acme", n);
                seal_lead(&seller, &keys.intake_key, &keys.origin, &lead, now).unwrap()
            },
            |sealed| {
                e.handle(
                    Request::Submit {
                        leads: vec![sealed],
                    },
                    now + 1,
                )
            },
            BatchSize::SmallInput,
        )
    });

    // One sealed bid through the enclave core, on 128 open auctions in turn.
    let leads = (0..128u64)
        .map(|i| {
            let lead = lead_json("jane.doe", "bidco", i);
            seal_lead(&seller, &keys.intake_key, &keys.origin, &lead, now).unwrap()
        })
        .collect();
    let Response::Submitted { results, .. } = e.handle(Request::Submit { leads }, now + 2) else {
        panic!()
    };
    let auctions: Vec<String> = results
        .into_iter()
        .map(|r| match r {
            SubmitOutcome::Logged {
                lead_id,
                accepted: true,
                ..
            } => lead_id,
            other => panic!("{other:?}"),
        })
        .collect();
    let buyer = SigningKey::from_bytes(&[3u8; 32]);
    let mut n = 0u64;
    c.bench_function("enclave_bid_one", |b| {
        b.iter_batched(
            || {
                n += 1;
                seal_bid(
                    &buyer,
                    &[4u8; 32],
                    &keys.intake_key,
                    &keys.origin,
                    &auctions[(n % 128) as usize],
                    TokenAmount::new(1_000 + n).unwrap(),
                    u128::from(n).to_be_bytes(),
                )
                .unwrap()
                .0
            },
            |bid| {
                let r = e.handle(Request::Bid { bids: vec![bid] }, now + 3);
                assert!(
                    matches!(&r, Response::Bids { results } if matches!(results[0], BidOutcome::Logged { .. })),
                    "{r:?}"
                );
                r
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
