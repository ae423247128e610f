//! Enclave time to close an auction: the decision alone (winner, price, commitments root) with
//! 1, 100 and 10,000 bids, and a whole `Close` through the enclave core with the most bids an
//! auction takes (4,096: the running-hash check, every sealed bid opened again, the decision,
//! seed signature, event, receipt); and the enclave time of one release (the sale's receipt
//! and two inclusion proofs checked, the lead opened and re-sealed to the winner, append,
//! receipt). Run: `cargo bench -p leadgate-enclave --bench auction`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::{
    BidOutcome, CloseInput, CloseOutcome, LoggedBid, Request, Response, SubmitOutcome,
    WireAppended, MAX_BIDS, MAX_BIDS_PER_AUCTION,
};
use leadgate_verifier::auction::{decide, OpenedBid, Pricing, TokenAmount};
use leadgate_verifier::bid::{seal_bid, SealedBid};
use leadgate_verifier::intake::{seal_lead_with_terms, AuctionRequest, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::release::ReleaseRequest;
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_790_000_000_000;
const ORIGIN: &str = "bench.example/log";

/// A started enclave on an empty log; `sealed` keeps the keys across enclaves.
fn enclave(
    dir: &std::path::Path,
    sealed: Option<ByteBuf>,
) -> (Enclave, EnclaveKeys, ByteBuf, WireAppended) {
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
    let Response::Started { appended } = e.handle(Request::Start, NOW) else {
        panic!("start")
    };
    let keys = EnclaveKeys::from_attested(Some(&keys), None).expect("keys");
    (e, keys, sealed_secrets, appended)
}

/// What the host stores: every append's nodes, and the last receipt.
#[derive(Default)]
struct Stored {
    nodes: std::collections::HashMap<(u8, u64), [u8; 32]>,
    leaves: Vec<Vec<u8>>,
    last: Option<leadgate_verifier::receipt::Receipt>,
}

impl Stored {
    fn store(&mut self, a: &WireAppended) {
        for n in &a.nodes {
            let h: [u8; 32] = n.hash.as_slice().try_into().expect("32 bytes");
            self.nodes.insert((n.level, n.index), h);
        }
        self.leaves.push(a.leaf.to_vec());
        self.last = Some(a.receipt.clone());
    }
}

impl leadgate_verifier::merkle::NodeStore for Stored {
    fn node(&self, level: u8, index: u64) -> Option<[u8; 32]> {
        self.nodes.get(&(level, index)).copied()
    }
}

/// An enclave with one listed lead (auction closing at NOW + 1 s) and `bids` placed, what
/// the host stored, and the auction's close input.
fn with_bids(
    dir: &std::path::Path,
    sealed: &ByteBuf,
    lead: &SealedLead,
    bids: &[SealedBid],
) -> (Enclave, Stored, CloseInput) {
    let (mut e, _, _, epoch) = enclave(dir, Some(sealed.clone()));
    let mut stored = Stored::default();
    stored.store(&epoch);
    let Response::Submitted { results, .. } = e.handle(
        Request::Submit {
            leads: vec![lead.clone()],
        },
        NOW,
    ) else {
        panic!("submit")
    };
    let SubmitOutcome::Logged {
        accepted: true,
        appended,
        ..
    } = &results[0]
    else {
        panic!("not accepted")
    };
    stored.store(appended);
    let mut input = CloseInput {
        accepted: appended.leaf.clone(),
        bids: Vec::new(),
    };
    for chunk in bids.chunks(MAX_BIDS) {
        let Response::Bids { results } = e.handle(
            Request::Bid {
                bids: chunk.to_vec(),
            },
            NOW + 1,
        ) else {
            panic!("bid")
        };
        for (r, b) in results.iter().zip(chunk) {
            let BidOutcome::Logged { appended, .. } = r else {
                panic!("bid refused: {r:?}")
            };
            stored.store(appended);
            input.bids.push(LoggedBid {
                leaf: appended.leaf.clone(),
                sealed: b.clone(),
            });
        }
    }
    (e, stored, input)
}

/// Ticks and closes the one auction; stores the close.
fn close_all(e: &mut Enclave, stored: &mut Stored, input: CloseInput, now: u64) {
    let Response::Due { auctions } = e.handle(Request::Tick, now) else {
        panic!("tick")
    };
    assert_eq!(auctions.len(), 1);
    let Response::Closed { results } = e.handle(
        Request::Close {
            auctions: vec![input],
        },
        now,
    ) else {
        panic!("close")
    };
    let [CloseOutcome::Logged(a)] = results.as_slice() else {
        panic!("close refused: {results:?}")
    };
    stored.store(a);
}

fn enclave_flows(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, keys, sealed, _) = enclave(dir.path(), None);
    let lead_json = br#"{"business":"Acme","full_name":"Jane Doe","first":"Jane","last":"Doe","email":"jane.doe@acme.io","role":"Owner","website":"https://acme.io","industry":"HVAC","sub_industry":"Heating","region":"Austin, TX","linkedin":"https://linkedin.com/in/janedoe","phone_numbers":["+1-512-555-0100"]}"#;
    let terms = AuctionRequest {
        reserve: Some(TokenAmount::new(1_000_000).expect("amount")),
        duration_ms: Some(1_000),
        pricing: None,
        payout: None,
        off_site: false,
        instant: false,
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
        .take(MAX_BIDS_PER_AUCTION as usize)
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
    g.bench_function("close_4096_bids", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (mut e, mut stored, input) = with_bids(dir.path(), &sealed, &lead, &bids);
                let t = Instant::now();
                close_all(&mut e, &mut stored, input, NOW + 1_000);
                total += t.elapsed();
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
                let (mut e, mut stored, input) = with_bids(dir.path(), &sealed, &lead, &one);
                close_all(&mut e, &mut stored, input, NOW + 1_000);
                let n = stored.leaves.len() as u64;
                let proof = leadgate_protocol::boot::sale_proof(
                    stored.last.clone().expect("a receipt"),
                    &stored,
                    (1, stored.leaves[1].clone()),
                    (n - 1, stored.leaves[n as usize - 1].clone()),
                )
                .expect("proof");
                let req = Request::Release {
                    request: request.clone(),
                    lead: lead.clone(),
                    proof,
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

/// `n` opened bids with many ties (amounts repeat every 1,000 bids).
fn opened(n: u32) -> Vec<OpenedBid> {
    (0..n)
        .map(|i| OpenedBid {
            commitment: Sha256::digest(i.to_be_bytes()).into(),
            amount: TokenAmount::new(1_000_000 + u64::from(i % 1_000)).expect("amount"),
        })
        .collect()
}

fn close(c: &mut Criterion) {
    let mut g = c.benchmark_group("auction_close_decide");
    let reserve = TokenAmount::new(1_000_000).expect("amount");
    for n in [1u32, 100, 10_000] {
        let b = opened(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &b, |bench, b| {
            bench.iter(|| decide(b, reserve, Pricing::SecondPrice, &[7u8; 64]))
        });
    }
    g.finish();
}

criterion_group!(benches, close, enclave_flows);
criterion_main!(benches);
