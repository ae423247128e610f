//! Property tests: our RFC 6962/9162 roots and proofs equal those of an independent
//! implementation (the `ct-merkle` crate) on random trees up to 3,000 leaves, and each
//! implementation accepts the other's proofs.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use leadgate_verifier::merkle::{self, Frontier, Hash};
use proptest::prelude::*;
use sha2::Sha256;

fn build(n: usize, seed: u64) -> (MemoryBackedTree<Sha256, Vec<u8>>, Vec<Hash>, Frontier) {
    let mut theirs = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut ours = Vec::with_capacity(n);
    let mut frontier = Frontier::new();
    for i in 0..n {
        let leaf = format!("leaf {seed} {i}").into_bytes();
        let h = merkle::leaf_hash(&leaf);
        ours.push(h);
        frontier.append(h);
        theirs.push(leaf);
    }
    (theirs, ours, frontier)
}

fn split(bytes: &[u8]) -> Vec<Hash> {
    bytes.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn roots_and_inclusion_proofs_match(n in 1usize..3000, seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (theirs, ours, frontier) = build(n, seed);
        let root: Hash = theirs.root().as_bytes().as_slice().try_into().unwrap();
        prop_assert_eq!(frontier.root(), root);
        let i = pick.index(n);
        let our_proof = merkle::inclusion_proof(ours.as_slice(), i as u64, n as u64).unwrap();
        let their_proof = theirs.prove_inclusion(i);
        prop_assert_eq!(split(their_proof.as_bytes()), our_proof.clone());
        merkle::verify_inclusion(&ours[i], i as u64, n as u64, &our_proof, &root).unwrap();
        // Their verifier accepts our proof.
        let theirs_from_ours = ct_merkle::InclusionProof::<Sha256>::from_digests(our_proof.iter().map(|h| h.into()));
        prop_assert!(theirs.root().verify_inclusion(&theirs.items()[i], i as u64, &theirs_from_ours).is_ok());
    }

    #[test]
    fn consistency_proofs_match(n in 2usize..3000, seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let (theirs, ours, _) = build(n, seed);
        let m = 1 + pick.index(n - 1); // 1..n-1
        let root_n: Hash = theirs.root().as_bytes().as_slice().try_into().unwrap();
        let root_m = merkle::root_from_leaf_hashes(&ours[..m]);
        let our_proof = merkle::consistency_proof(ours.as_slice(), m as u64, n as u64).unwrap();
        let their_proof = theirs.prove_consistency(n - m);
        prop_assert_eq!(split(their_proof.as_bytes()), our_proof.clone());
        merkle::verify_consistency(m as u64, n as u64, &our_proof, &root_m, &root_n).unwrap();
        let old = ct_merkle::RootHash::<Sha256>::new(root_m.into(), m as u64);
        let p = ct_merkle::ConsistencyProof::<Sha256>::from_digests(our_proof.iter().map(|h| h.into()));
        prop_assert!(theirs.root().verify_consistency(&old, &p).is_ok());
    }
}
