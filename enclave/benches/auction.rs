//! Enclave time to decide an auction at close (winner, price, commitments root) with 1, 100
//! and 10,000 bids. Close also signs the seed and the event's receipt (two Ed25519 signatures,
//! ~40 µs, independent of the bid count). Run: `cargo bench -p leadgate-enclave --bench auction`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use leadgate_enclave::auctions::{AuctionBook, PlacedBid};
use leadgate_verifier::auction::{Pricing, TokenAmount};
use leadgate_verifier::event::AuctionTerms;
use sha2::{Digest, Sha256};

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

criterion_group!(benches, close);
criterion_main!(benches);
