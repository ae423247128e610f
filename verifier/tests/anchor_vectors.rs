//! Test vectors for `contracts/`: consistency proofs and EIP-712 anchor signatures made by this
//! crate, which the Solidity tests replay against `CheckpointAnchor` (`forge test`).
//!
//! The committed file `contracts/test/vectors/anchor.json` must equal what this test builds;
//! `UPDATE_VECTORS=1 cargo test -p leadgate-verifier --test anchor_vectors` rewrites it.

use k256::ecdsa::SigningKey;
use leadgate_verifier::anchor::{address_hex, address_of, sign_digest, AnchorDomain};
use leadgate_verifier::merkle::{
    consistency_proof, leaf_hash, node_hash, subtree_root, verify_consistency, Hash, NodeStore,
};
use serde_json::{json, Value};

/// Origin, chain and contract of the vectors: anvil's chain id and the address anvil's first
/// account (0xf39F…2266) gets for its first deployment (nonce 0).
const ORIGIN: &str = "leadgate.dev/log";
const CHAIN_ID: u64 = 31337;
const CONTRACT: &str = "5fbdb2315678afecb367f032d93f642f64180aa3";

/// A tree of `size` leaves that all equal `leaf_hash("leadgate")`: every complete subtree of a
/// level has the same root, so a 1-billion-leaf tree's nodes cost O(log n) to compute. Its
/// proofs have the same shape and length as any tree's; only the hash values repeat.
struct UniformTree {
    size: u64,
    levels: Vec<Hash>,
}

impl UniformTree {
    fn new(size: u64) -> Self {
        let mut levels = vec![leaf_hash(b"leadgate")];
        for _ in 0..63 {
            let h = *levels.last().unwrap();
            levels.push(node_hash(&h, &h));
        }
        UniformTree { size, levels }
    }
}

impl NodeStore for UniformTree {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let end = index.checked_add(1)?.checked_shl(u32::from(level))?;
        (end <= self.size).then(|| self.levels[usize::from(level)])
    }
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
    // Gas, for logs of 1k, 1M and 1B entries: the median and the longest proof from an earlier
    // size in [n - 1000, n) (an anchor after up to 1,000 new entries), then the longest from any
    // earlier size we try (sizes near n - 2^k and the first 1,000: the long proofs).
    let mut gas = Vec::new();
    for n in [1_000u64, 1_000_000, 1_000_000_000] {
        let tree = UniformTree::new(n);
        let longest = |sizes: &mut dyn Iterator<Item = u64>| {
            sizes
                .max_by_key(|&m| (consistency_proof(&tree, m, n).unwrap().len(), m))
                .unwrap()
        };
        let mut by_len: Vec<(usize, u64)> = (n.saturating_sub(1000).max(1)..n)
            .map(|m| (consistency_proof(&tree, m, n).unwrap().len(), m))
            .collect();
        by_len.sort();
        let median = by_len[by_len.len() / 2].1;
        let recent = longest(&mut (n.saturating_sub(1000).max(1)..n));
        let near_powers = (0..40u32)
            .filter_map(|k| n.checked_sub(1u64 << k))
            .flat_map(|m| m.saturating_sub(3)..m + 4)
            .filter(|&m| m >= 1 && m < n);
        let worst = longest(&mut near_powers.chain(1..n.min(1000)));
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
            "signature": hx(&sign_digest(&key, &digest).unwrap()),
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
fn uniform_tree_matches_a_real_tree_of_equal_leaves() {
    let n = 77u64;
    let leaves = vec![leaf_hash(b"leadgate"); n as usize];
    let tree = UniformTree::new(n);
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
