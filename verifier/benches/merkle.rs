//! Proof generation and verification on a tree of 2^20 (≈1M) leaves.
//! Run: `cargo bench -p leadgate-verifier --bench merkle`.

use std::collections::HashMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use leadgate_verifier::merkle::{self, Frontier, Hash, NodeStore};

struct MapStore(HashMap<(u8, u64), Hash>);

impl NodeStore for MapStore {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        self.0.get(&(level, index)).copied()
    }
}

const N: u64 = 1 << 20;

fn tree() -> (MapStore, Frontier) {
    let mut f = Frontier::new();
    let mut m = HashMap::with_capacity(2 * N as usize);
    for i in 0..N {
        for n in f.append(merkle::leaf_hash(&i.to_be_bytes())) {
            m.insert((n.level, n.index), n.hash);
        }
    }
    (MapStore(m), f)
}

fn bench(c: &mut Criterion) {
    let (store, frontier) = tree();
    let root = frontier.root();
    let size = N - 3; // not a power of two: the general case
    let root_size = merkle::subtree_root(&store, 0, size).unwrap();
    let idx = 777_777u64;
    let leaf = merkle::leaf_hash(&idx.to_be_bytes());
    c.bench_function("inclusion_proof_generate_1M", |b| {
        b.iter(|| merkle::inclusion_proof(&store, black_box(idx), size).unwrap())
    });
    let proof = merkle::inclusion_proof(&store, idx, size).unwrap();
    c.bench_function("inclusion_proof_verify_1M", |b| {
        b.iter(|| {
            merkle::verify_inclusion(&leaf, black_box(idx), size, &proof, &root_size).unwrap()
        })
    });
    c.bench_function("consistency_proof_generate_1M", |b| {
        b.iter(|| merkle::consistency_proof(&store, black_box(500_001), N).unwrap())
    });
    let cproof = merkle::consistency_proof(&store, 500_001, N).unwrap();
    let old = merkle::subtree_root(&store, 0, 500_001).unwrap();
    c.bench_function("consistency_proof_verify_1M", |b| {
        b.iter(|| merkle::verify_consistency(500_001, N, &cproof, &old, &root).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
