//! Enclave time to close an auction: the decision alone (winner, price, commitments root) with
//! 1, 100 and 10,000 bids, and a whole `Tick` through the enclave core with 10,000 bids (seed
//! signature, event, receipt); and the enclave time of one release (check, open the lead,
//! re-seal it to the winner, append, receipt). Run:
//! `cargo bench -p leadgate-enclave --bench auction`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::auctions::{AuctionBook, PlacedBid};
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::{BidOutcome, Request, Response, SubmitOutcome, MAX_BIDS};
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::bid::{seal_bid, SealedBid};
use leadgate_verifier::event::AuctionTerms;
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_790_000_000_000;
const ORIGIN: &str = "bench.example/log";

/// A started enclave on an empty log; `sealed` keeps the keys across enclaves.
fn enclave(dir: &std::path::Path, sealed: Option<ByteBuf>) -> (Enclave, EnclaveKeys, ByteBuf) {
    let mut e = Enclave::new(
        EnclaveConfig::new(ORIGIN),
        Box::new(DevFileSealer::open_or_create(dir).expect("sealer")),
        Box::new(DevAttestationProvider::open_or_create(dir, NOW).expect("attestor")),
    );
    let Response::Booted {
        keys,
        sealed_secrets,
        ..
    } = e.handle(
        Request::Boot {
            sealed_secrets: sealed,
            tip: None,
            aws_credentials: None,
        },
        NOW,
    )
    else {
        panic!("boot")
    };
    assert!(matches!(
        e.handle(Request::Start, NOW),
        Response::Started { .. }
    ));
    let keys = EnclaveKeys::from_attested(Some(&keys), None).expect("keys");
    (e, keys, sealed_secrets)
}

/// An enclave with one listed lead (auction closing at NOW + 1 s) and `bids` placed.
fn with_bids(
    dir: &std::path::Path,
    sealed: &ByteBuf,
    lead: &SealedLead,
    bids: &[SealedBid],
) -> Enclave {
    let (mut e, _, _) = enclave(dir, Some(sealed.clone()));
    let Response::Submitted { results } = e.handle(
        Request::Submit {
            leads: vec![lead.clone()],
        },
        NOW,
    ) else {
        panic!("submit")
    };
    assert!(matches!(
        results[0],
        SubmitOutcome::Logged { accepted: true, .. }
    ));
    for chunk in bids.chunks(MAX_BIDS) {
        let Response::Bids { results } = e.handle(
            Request::Bid {
                bids: chunk.to_vec(),
            },
            NOW + 1,
        ) else {
            panic!("bid")
        };
        assert!(results
            .iter()
            .all(|r| matches!(r, BidOutcome::Logged { .. })));
    }
    e
}

fn enclave_flows(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, keys, sealed) = enclave(dir.path(), None);
    let lead_json = br#"{"business":"Acme","full_name":"Jane Doe","first":"Jane","last":"Doe","email":"jane.doe@acme.io","role":"Owner","website":"https://acme.io","industry":"HVAC","sub_industry":"Heating","region":"Austin, TX","linkedin":"https://linkedin.com/in/janedoe","phone_numbers":["+1-512-555-0100"]}"#;
    let terms = AuctionRequest {
        reserve: Some(TokenAmount::new(1_000_000).expect("amount")),
        duration_ms: Some(1_000),
        pricing: None,
    };
    let seller = SigningKey::from_bytes(&[1u8; 32]);
    let lead = seal_lead_with_terms(
        &seller,
        &keys.intake_key,
        ORIGIN,
        lead_json,
        NOW,
        Some(terms),
    )
    .expect("seal");
    let auction = hex::encode(
        &leadgate_verifier::envelope::fingerprint(
            &base64_decode(&lead.enc),
            &base64_decode(&lead.ciphertext),
        )[..16],
    );
    let buyers: Vec<SigningKey> = (0..10_000u32)
        .map(|i| {
            let seed: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
            SigningKey::from_bytes(&seed)
        })
        .collect();
    let bids: Vec<SealedBid> = buyers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            seal_bid(
                b,
                &[9u8; 32],
                &keys.intake_key,
                ORIGIN,
                &auction,
                TokenAmount::new(1_000_000 + i as u64 % 1_000).expect("amount"),
                u128::try_from(i).expect("index").to_be_bytes(),
            )
            .expect("bid")
            .0
        })
        .collect();

    let mut g = c.benchmark_group("enclave");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    g.bench_function("tick_close_10000_bids", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut e = with_bids(dir.path(), &sealed, &lead, &bids);
                let t = Instant::now();
                let r = e.handle(Request::Tick, NOW + 1_000);
                total += t.elapsed();
                assert!(matches!(r, Response::Ticked { closed } if closed.len() == 1));
            }
            total
        })
    });
    // Release: the winner (the only bidder) asks for the lead after close.
    let (_, hpke_pk) = leadgate_verifier::envelope::keypair_from_seed(&[5u8; 32]);
    let winner = &buyers[0];
    let one = vec![
        seal_bid(
            winner,
            &hpke_pk,
            &keys.intake_key,
            ORIGIN,
            &auction,
            TokenAmount::new(2_000_000).expect("amount"),
            [0xff; 16],
        )
        .expect("bid")
        .0,
    ];
    let request = ReleaseRequest::sign(winner, ORIGIN, &auction, NOW + 1_000);
    g.bench_function("release_one_lead", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut e = with_bids(dir.path(), &sealed, &lead, &one);
                let _ = e.handle(Request::Tick, NOW + 1_000);
                let req = Request::Release {
                    request: request.clone(),
                    lead: lead.clone(),
                };
                let t = Instant::now();
                let r = e.handle(req, NOW + 1_001);
                total += t.elapsed();
                assert!(matches!(r, Response::Released { .. }), "{r:?}");
            }
            total
        })
    });
    g.finish();
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn book(bids: u32) -> AuctionBook {
    let mut book = AuctionBook::default();
    let terms = AuctionTerms {
        reserve: TokenAmount::new(1_000_000).expect("amount"),
        closes_at: 1,
        pricing: Pricing::SecondPrice,
    };
    book.open("a".into(), 0, [0; 32], terms);
    for i in 0..bids {
        let h: [u8; 32] = Sha256::digest(i.to_be_bytes()).into();
        let mut nonce = [0u8; 16];
        nonce[..4].copy_from_slice(&i.to_be_bytes());
        book.record_bid(
            "a",
            h,
            nonce,
            PlacedBid {
                commitment: h,
                // Many ties: amounts repeat every 1,000 bids.
                amount: TokenAmount::new(1_000_000 + u64::from(i % 1_000)).expect("amount"),
                buyer_hpke: [1; 32],
            },
        );
    }
    book
}

fn close(c: &mut Criterion) {
    let mut g = c.benchmark_group("auction_close_decide");
    for n in [1u32, 100, 10_000] {
        let b = book(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &b, |bench, b| {
            bench.iter(|| b.decide("a", &[7u8; 64]).expect("open"))
        });
    }
    g.finish();
}

criterion_group!(benches, close, enclave_flows);
criterion_main!(benches);
