//! Test vectors for `contracts/`: consistency proofs and EIP-712 anchor signatures made by this
//! crate, which the Solidity tests replay against `CheckpointAnchor` (`forge test`).
//!
//! The committed file `contracts/test/vectors/anchor.json` must equal what this test builds;
//! `UPDATE_VECTORS=1 cargo test -p leadgate-verifier --test anchor_vectors` rewrites it.

use k256::ecdsa::SigningKey;
use leadgate_verifier::anchor::{
    address_hex, address_of, compact_signature, sign_digest, AnchorDomain,
};
use leadgate_verifier::merkle::{
    consistency_proof, leaf_hash, node_hash, subtree_root, verify_consistency, Hash, NodeStore,
};
use serde_json::{json, Value};

/// Origin, chain and contract of the vectors: anvil's chain id and the address anvil's first
/// account (0xf39F…2266) gets for its first deployment (nonce 0).
const ORIGIN: &str = "leadgate.dev/log";
const CHAIN_ID: u64 = 31337;
const CONTRACT: &str = "5fbdb2315678afecb367f032d93f642f64180aa3";

/// A tree of `size` leaves (any size up to 2^64 − 1) that all equal `leaf_hash("leadgate")`
/// except the few at `distinct`, whose leaves are `leaf_hash(index)`. A subtree without a
/// distinct leaf has its level's uniform root, so any node costs O(|distinct| · 64) hashes and a
/// 2^64-leaf tree is as cheap as a small one. With no distinct leaves, every complete subtree
/// of a level has the same root; the proofs have the same shape and length as any tree's.
struct SparseTree {
    size: u64,
    levels: Vec<Hash>,
    distinct: Vec<u64>,
}

impl SparseTree {
    fn new(size: u64, distinct: &[u64]) -> Self {
        let mut levels = vec![leaf_hash(b"leadgate")];
        for _ in 0..63 {
            let h = *levels.last().unwrap();
            levels.push(node_hash(&h, &h));
        }
        let mut distinct: Vec<u64> = distinct.iter().copied().filter(|&i| i < size).collect();
        distinct.sort_unstable();
        distinct.dedup();
        SparseTree {
            size,
            levels,
            distinct,
        }
    }

    fn uniform(size: u64) -> Self {
        Self::new(size, &[])
    }

    /// The root of leaves [start, start + 2^level).
    fn subtree(&self, level: u8, start: u64) -> Hash {
        let end = u128::from(start) + (1u128 << level);
        let touched = self
            .distinct
            .iter()
            .any(|&i| u128::from(i) >= u128::from(start) && u128::from(i) < end);
        if !touched {
            return self.levels[usize::from(level)];
        }
        if level == 0 {
            return leaf_hash(&start.to_be_bytes());
        }
        let half = 1u64 << (level - 1);
        node_hash(
            &self.subtree(level - 1, start),
            &self.subtree(level - 1, start + half),
        )
    }
}

impl NodeStore for SparseTree {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        if level > 63 {
            return None;
        }
        let start = u128::from(index) << level;
        let end = start + (1u128 << level);
        (end <= u128::from(self.size)).then(|| self.subtree(level, start as u64))
    }
}

/// The SHA-256 compressions `CheckpointAnchor` makes to check a consistency proof from `first`
/// to `second` (0 < first < second), and how many of the proof's hashes its inner loop takes:
/// one compression per inner hash whose bit of the old tree's edge is 0 (a right sibling: the
/// new path only), two per other hash (a left sibling: both paths). After the proof's length,
/// this is what an anchor's gas grows with; an inner step costs a little more than a border one.
fn compressions(first: u64, second: u64) -> (usize, usize) {
    let low = first & first.wrapping_neg();
    let mut mask = (first / low) - 1;
    let mut inner = ((first - 1) ^ (second - 1)) / low;
    let (mut n, mut steps) = (0, 0);
    while inner != 0 {
        n += if mask & 1 == 1 { 2 } else { 1 };
        steps += 1;
        mask >>= 1;
        inner >>= 1;
    }
    (n + 2 * mask.count_ones() as usize, steps)
}

/// What an anchor from `first` to `second` costs, for ranking: (proof hashes, compressions,
/// inner steps).
fn cost<S: NodeStore + ?Sized>(tree: &S, first: u64, second: u64) -> (usize, usize, usize) {
    let (n, inner) = compressions(first, second);
    (
        consistency_proof(tree, first, second).unwrap().len(),
        n,
        inner,
    )
}

/// The costliest earlier size for the uniform `tree` of n entries: exhaustive up to 1M entries,
/// else the sizes the costliest anchors come from (2^a − 1, 2^a ± 2^b − 1, n − 2^k and its
/// neighbours, the first 1,000).
/// At 1M the two searches agree (`costliest_candidates_find_the_exhaustive_maximum`).
fn costliest(tree: &SparseTree, exhaustive: bool) -> u64 {
    let n = tree.size;
    let pick = |sizes: &mut dyn Iterator<Item = u64>| {
        sizes
            .filter(|&m| m >= 1 && m < n)
            .max_by_key(|&m| (cost(tree, m, n), m))
            .unwrap()
    };
    if exhaustive {
        return pick(&mut (1..n));
    }
    let mut sizes = Vec::new();
    for a in 1..64u32 {
        for b in 0..a {
            let top = 1u64 << a;
            sizes.extend([top - 1, top - (1 << b) - 1, top + (1 << b) - 1]);
        }
        if let Some(m) = n.checked_sub(1 << a) {
            sizes.extend(m.saturating_sub(3)..m + 4);
        }
    }
    sizes.extend(1..n.min(1000));
    pick(&mut sizes.into_iter())
}

fn hx(h: &[u8]) -> String {
    format!("0x{}", hex::encode(h))
}

fn case<S: NodeStore + ?Sized>(store: &S, first: u64, second: u64) -> Value {
    let r1 = subtree_root(store, 0, first).unwrap();
    let r2 = subtree_root(store, 0, second).unwrap();
    let proof = consistency_proof(store, first, second).unwrap();
    verify_consistency(first, second, &proof, &r1, &r2).unwrap();
    json!({
        "first": first,
        "firstRoot": hx(&r1),
        "proof": proof.iter().map(|h| hx(h)).collect::<Vec<_>>(),
        "second": second,
        "secondRoot": hx(&r2),
    })
}

fn build() -> Value {
    // Every pair 1 ≤ m < n ≤ 20 of a tree with distinct leaves.
    let leaves: Vec<Hash> = (0u64..20).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut consistency = Vec::new();
    for n in 2..=20u64 {
        for m in 1..n {
            consistency.push(case(&leaves[..n as usize], m, n));
        }
    }
    // Large sizes, up to 2^64 − 1, where the contract's bit arithmetic on the sizes matters:
    // sparse trees with distinct leaves at the edges the proofs touch.
    let mut large = Vec::new();
    for (m, n) in [
        (1u64, u64::MAX),
        (1 << 63, u64::MAX),
        ((1 << 63) - 1, (1 << 63) + 1),
        (u64::MAX - 1, u64::MAX),
        ((1 << 32) + 1, (1 << 33) + 5),
        (3 * (1 << 40) + 7, (1 << 42) + 1),
        (0x5555_5555_5555_5555, 0xaaaa_aaaa_aaaa_aaaa),
        ((1 << 63) + (1 << 31) - 1, u64::MAX - (1 << 20)),
    ] {
        let tree = SparseTree::new(n, &[0, m / 3, m - 1, m, m + (n - m) / 2, n - 1]);
        large.push(case(&tree, m, n));
    }
    // Gas, for logs of 1k, 1M and 1B entries: the median and the costliest proof from an
    // earlier size in [n − 1000, n) (an anchor after up to 1,000 new entries), then the
    // costliest from any earlier size. Costliest: most proof hashes, then most compressions.
    let mut gas = Vec::new();
    for n in [1_000u64, 1_000_000, 1_000_000_000] {
        let tree = SparseTree::uniform(n);
        let window = || n.saturating_sub(1000).max(1)..n;
        let mut by_len: Vec<(usize, u64)> = window()
            .map(|m| (consistency_proof(&tree, m, n).unwrap().len(), m))
            .collect();
        by_len.sort();
        let median = by_len[by_len.len() / 2].1;
        let recent = window().max_by_key(|&m| (cost(&tree, m, n), m)).unwrap();
        let worst = costliest(&tree, n <= 1_000_000);
        gas.push(case(&tree, median, n));
        gas.push(case(&tree, recent, n));
        gas.push(case(&tree, worst, n));
    }
    // EIP-712 anchor signatures by a fixed test key, for a growing sequence of checkpoints.
    let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
    let mut contract = [0u8; 20];
    hex::decode_to_slice(CONTRACT, &mut contract).unwrap();
    let domain = AnchorDomain {
        chain_id: CHAIN_ID,
        contract,
    };
    let mut signed = Vec::new();
    for n in [3u64, 8, 13, 20] {
        let root = subtree_root(&leaves[..], 0, n).unwrap();
        let digest = domain.checkpoint_digest(ORIGIN, n, &root);
        let signature = sign_digest(&key, &digest).unwrap();
        let proof_from_prev = signed
            .last()
            .map(|prev: &Value| {
                let m = prev["size"].as_u64().unwrap();
                consistency_proof(&leaves[..], m, n).unwrap()
            })
            .unwrap_or_default();
        signed.push(json!({
            "digest": hx(&digest),
            "proof": proof_from_prev.iter().map(|h| hx(h)).collect::<Vec<_>>(),
            "root": hx(&root),
            "signature": hx(&signature),
            "compactSignature": hx(&compact_signature(&signature).unwrap()),
            "size": n,
        }));
    }
    json!({
        "origin": ORIGIN,
        "chainId": CHAIN_ID,
        "contract": format!("0x{CONTRACT}"),
        "domainSeparator": hx(&domain.separator()),
        "signerKey": hx(&key.to_bytes()),
        "signer": address_hex(&address_of(key.verifying_key())),
        "signed": signed,
        "consistency": consistency,
        "consistencyLarge": large,
        "gas": gas,
    })
}

#[test]
fn committed_vectors_match_this_implementation() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/test/vectors/anchor.json"
    );
    let built = serde_json::to_string_pretty(&build()).unwrap() + "\n";
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(path, &built).unwrap();
    }
    let committed = std::fs::read_to_string(path)
        .expect("contracts/test/vectors/anchor.json (UPDATE_VECTORS=1 writes it)");
    assert!(
        committed == built,
        "contracts/test/vectors/anchor.json is stale: rerun with UPDATE_VECTORS=1"
    );
}

#[test]
fn sparse_tree_matches_a_real_tree() {
    let n = 77u64;
    for distinct in [&[][..], &[0, 5, 40, 76][..]] {
        let tree = SparseTree::new(n, distinct);
        let leaves: Vec<Hash> = (0..n)
            .map(|i| {
                if distinct.contains(&i) {
                    leaf_hash(&i.to_be_bytes())
                } else {
                    leaf_hash(b"leadgate")
                }
            })
            .collect();
        for m in 1..n {
            assert_eq!(
                consistency_proof(&tree, m, n).unwrap(),
                consistency_proof(&leaves[..], m, n).unwrap()
            );
        }
        assert_eq!(
            subtree_root(&tree, 0, n).unwrap(),
            subtree_root(&leaves[..], 0, n).unwrap()
        );
    }
}

#[test]
fn compressions_count_what_rfc_9162_hashes() {
    // RFC 9162 §2.1.4.2's loop, counting its HASH calls (fr and sr each count).
    fn rfc(first: u64, second: u64, proof_len: usize) -> usize {
        let (mut fn_, mut sn) = (first - 1, second - 1);
        while fn_ & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
        }
        let steps = proof_len - usize::from(!first.is_power_of_two());
        let mut n = 0;
        for _ in 0..steps {
            if fn_ & 1 == 1 || fn_ == sn {
                n += 2;
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            } else {
                n += 1;
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        n
    }
    let tree = SparseTree::uniform(300);
    for second in 2..300u64 {
        for first in 1..second {
            let len = consistency_proof(&tree, first, second).unwrap().len();
            assert_eq!(
                compressions(first, second).0,
                rfc(first, second, len),
                "{first} → {second}"
            );
        }
    }
}

#[test]
fn costliest_candidates_find_the_exhaustive_maximum() {
    for n in [1_000u64, 65_537, 1_000_000] {
        let tree = SparseTree::uniform(n);
        assert_eq!(
            cost(&tree, costliest(&tree, false), n),
            cost(&tree, costliest(&tree, true), n),
            "n = {n}"
        );
    }
}
