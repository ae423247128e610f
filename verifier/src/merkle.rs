//! RFC 6962 Merkle tree hashing over SHA-256, and the inclusion and consistency proofs of
//! RFC 9162 §2.1.3 and §2.1.4.
//!
//! * Leaf hash: `SHA-256(0x00 || leaf)`; interior node: `SHA-256(0x01 || left || right)`;
//!   the empty tree's root is `SHA-256("")` (RFC 6962 §2.1).
//! * Proof *generation* works over any [`NodeStore`] that can return the hash of a complete,
//!   aligned subtree (level `L`, index `i` covers leaves `[i·2^L, (i+1)·2^L)`), so a store that
//!   keeps every such node answers a proof with O(log n) look-ups.
//! * Proof *verification* takes only hashes and sizes: it trusts nothing it is given.
//! * [`Frontier`] is the compact range `[0, n)`: at most 64 peak hashes, enough to append and to
//!   compute the root. It is all the state an appender needs (Tessera's "integrate" step), and
//!   [`Frontier::append`] returns the new nodes to persist.

use crate::ErrorCode;
use sha2::{Digest, Sha256};

/// A SHA-256 digest: 32 bytes.
pub type Hash = [u8; 32];

/// Size of a [`Hash`](type@Hash) in bytes.
pub const HASH_LEN: usize = 32;

/// Longest proof accepted: a tree of at most 2^64 leaves has proofs of at most 64 hashes
/// (inclusion) or 64 + 1 (consistency; RFC 9162 §2.1.4.2 prepends one).
pub const MAX_PROOF_LEN: usize = 65;

/// Errors from proof verification and generation. Codes are stable (`proof.*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree is larger than the second.
    #[error("consistency from size {from} to smaller size {to}")]
    SizesOutOfOrder {
        /// First (older) tree size.
        from: u64,
        /// Second (newer) tree size.
        to: u64,
    },
    /// The proof has the wrong number of hashes for the sizes given.
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    /// The proof does not lead to the expected root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// A store used for proof generation lacks a node it should hold.
    #[error("node store is missing level {level} index {index}")]
    MissingNode {
        /// Level of the missing node (0 = leaf).
        level: u8,
        /// Index of the missing node within its level.
        index: u64,
    },
}

impl ProofError {
    /// Stable machine-readable code, e.g. `proof.root_mismatch`.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProofError::IndexOutOfRange { .. } => ErrorCode::ProofIndexOutOfRange,
            ProofError::SizesOutOfOrder { .. } => ErrorCode::ProofSizesOutOfOrder,
            ProofError::WrongLength => ErrorCode::ProofWrongLength,
            ProofError::RootMismatch => ErrorCode::ProofRootMismatch,
            ProofError::MissingNode { .. } => ErrorCode::ProofMissingNode,
        }
    }
}

/// `SHA-256(0x00 || leaf)` (RFC 6962 §2.1).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)` (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// MTH over a list of leaf hashes (RFC 6962 §2.1), by the recursive definition. O(n); meant for
/// tests and small trees.
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// The largest power of two strictly smaller than `n` (`n >= 2`).
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Verifies an inclusion proof per RFC 9162 §2.1.3.2: that `leaf_hash` is leaf `index` of the
/// tree of `tree_size` leaves whose root is `root`.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`], [`ProofError::WrongLength`], [`ProofError::RootMismatch`].
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::WrongLength);
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof per RFC 9162 §2.1.4.2: that the tree of `size1` leaves with
/// root `root1` is a prefix of the tree of `size2` leaves with root `root2`.
///
/// Equal sizes need an empty proof and equal roots. Size 0 is a prefix of every tree and needs
/// an empty proof.
///
/// # Errors
/// [`ProofError::SizesOutOfOrder`], [`ProofError::WrongLength`], [`ProofError::RootMismatch`].
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder {
            from: size1,
            to: size2,
        });
    }
    if proof.len() > MAX_PROOF_LEN {
        return Err(ProofError::WrongLength);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if size1 == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    // Step 2: if size1 is an exact power of two, prepend root1 to the path.
    let mut path: Vec<&Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1);
    }
    path.extend(proof.iter());
    let Some((first, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut fn_, mut sn) = (size1 - 1, size2 - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (**first, **first);
    for c in rest {
        if sn == 0 {
            return Err(ProofError::WrongLength);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != root1 || &sr != root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Read access to the hashes of complete, aligned subtrees.
///
/// `node(level, index)` is the root of leaves `[index·2^level, (index+1)·2^level)`; level 0 is
/// the leaf hashes. A store must hold every complete subtree of the tree it serves.
pub trait NodeStore {
    /// The node hash, or `None` if the store does not hold it.
    fn node(&self, level: u8, index: u64) -> Option<Hash>;
}

/// A [`NodeStore`] over an in-memory list of leaf hashes; computes interior nodes on demand.
/// O(2^level) per look-up: for tests and small trees.
impl NodeStore for [Hash] {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let width = 1usize.checked_shl(u32::from(level))?;
        let start = usize::try_from(index).ok()?.checked_mul(width)?;
        let end = start.checked_add(width)?;
        (end <= self.len()).then(|| root_from_leaf_hashes(&self[start..end]))
    }
}

/// MTH of leaves `[start, end)` from complete-subtree nodes; O(log n) look-ups.
///
/// # Errors
/// [`ProofError::MissingNode`] if the store lacks a node.
pub fn subtree_root<S: NodeStore + ?Sized>(
    store: &S,
    start: u64,
    end: u64,
) -> Result<Hash, ProofError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start % n == 0 {
        let level = n.trailing_zeros() as u8;
        let index = start >> level;
        return store
            .node(level, index)
            .ok_or(ProofError::MissingNode { level, index });
    }
    let k = largest_power_of_two_below(n);
    Ok(node_hash(
        &subtree_root(store, start, start + k)?,
        &subtree_root(store, start + k, end)?,
    ))
}

/// Generates the inclusion proof for leaf `index` in the tree of `tree_size` leaves
/// (RFC 9162 §2.1.3.1), ordered from the leaf up.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`], [`ProofError::MissingNode`].
pub fn inclusion_proof<S: NodeStore + ?Sized>(
    store: &S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    // Walk down from the root, collecting siblings, then reverse (PATH is leaf-first).
    let mut path = Vec::new();
    let (mut start, mut end, mut m) = (0u64, tree_size, index);
    while end - start > 1 {
        let k = largest_power_of_two_below(end - start);
        if m < k {
            path.push(subtree_root(store, start + k, end)?);
            end = start + k;
        } else {
            path.push(subtree_root(store, start, start + k)?);
            start += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// Generates the consistency proof from tree size `size1` to `size2` (RFC 9162 §2.1.4.1).
/// Empty when the sizes are equal or `size1` is 0.
///
/// # Errors
/// [`ProofError::SizesOutOfOrder`], [`ProofError::MissingNode`].
pub fn consistency_proof<S: NodeStore + ?Sized>(
    store: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesOutOfOrder {
            from: size1,
            to: size2,
        });
    }
    if size1 == 0 || size1 == size2 {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], b), unrolled; pushed root-first, reversed at the end.
    let mut proof = Vec::new();
    let (mut start, mut end, mut m, mut b) = (0u64, size2, size1, true);
    loop {
        let n = end - start;
        if m == n {
            if !b {
                proof.push(subtree_root(store, start, end)?);
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            proof.push(subtree_root(store, start + k, end)?);
            end = start + k;
        } else {
            proof.push(subtree_root(store, start, start + k)?);
            start += k;
            m -= k;
            b = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// A node created by an append: `hash` is the root of leaves
/// `[index·2^level, (index+1)·2^level)`. Level 0 is the leaf hash itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// 0 for a leaf, up to 63.
    pub level: u8,
    /// Index of the node within its level.
    pub index: u64,
    /// The node's hash.
    pub hash: Hash,
}

/// The compact range `[0, size)`: one peak hash per set bit of `size`, largest subtree first.
///
/// This is the whole state an appender keeps: O(log n) hashes, whatever the log size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from its size and peak hashes (largest subtree first), e.g. as
    /// stored by the host.
    ///
    /// # Errors
    /// [`ProofError::WrongLength`] if the number of peaks is not the number of set bits of `size`.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Result<Self, ProofError> {
        if peaks.len() != size.count_ones() as usize {
            return Err(ProofError::WrongLength);
        }
        Ok(Self { size, peaks })
    }

    /// Reads the frontier of a tree of `size` leaves from a store.
    ///
    /// # Errors
    /// [`ProofError::MissingNode`].
    pub fn from_store<S: NodeStore + ?Sized>(store: &S, size: u64) -> Result<Self, ProofError> {
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                let index = start >> level;
                peaks.push(
                    store
                        .node(level, index)
                        .ok_or(ProofError::MissingNode { level, index })?,
                );
                start += 1u64 << level;
            }
        }
        Ok(Self { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Peak hashes, largest subtree first.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// The tree root (RFC 6962 MTH): peaks folded right to left.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, peak| node_hash(peak, &acc))
    }

    /// Appends a leaf hash; returns the nodes this creates (the leaf first, then each merged
    /// parent), which a store must persist to serve proofs.
    ///
    /// # Panics
    /// Never in practice: only if the tree already holds 2^64 − 1 leaves.
    pub fn append(&mut self, leaf_hash: Hash) -> Vec<NewNode> {
        let index = self.size;
        let mut created = vec![NewNode {
            level: 0,
            index,
            hash: leaf_hash,
        }];
        let mut hash = leaf_hash;
        let mut level = 0u8;
        // Each trailing 1 bit of the old size is a peak of equal level to merge with.
        while (index >> level) & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                unreachable!("a set bit of size always has its peak")
            };
            hash = node_hash(&left, &hash);
            level += 1;
            created.push(NewNode {
                level,
                index: index >> level,
                hash,
            });
        }
        self.peaks.push(hash);
        self.size = self.size.checked_add(1).expect("tree size overflow");
        created
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    /// RFC 6962 test vectors as used by Certificate Transparency's reference implementations
    /// (the eight leaves of `merkle_tree_test.cc`).
    #[test]
    fn known_roots_of_the_rfc6962_reference_leaves() {
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let hashes: Vec<Hash> = inputs.iter().map(|l| leaf_hash(l)).collect();
        let mut frontier = Frontier::new();
        for (i, h) in hashes.iter().enumerate() {
            frontier.append(*h);
            assert_eq!(hex::encode(frontier.root()), expected[i], "size {}", i + 1);
            assert_eq!(root_from_leaf_hashes(&hashes[..=i]), frontier.root());
        }
    }

    #[test]
    fn inclusion_round_trip_and_tampering() {
        for n in 1..=40u64 {
            let l = leaves(n);
            let root = root_from_leaf_hashes(&l);
            for i in 0..n {
                let proof = inclusion_proof(l.as_slice(), i, n).unwrap();
                verify_inclusion(&l[i as usize], i, n, &proof, &root).unwrap();
                // Wrong leaf, wrong index and a flipped proof hash all fail.
                let other = leaf_hash(b"other");
                assert!(verify_inclusion(&other, i, n, &proof, &root).is_err());
                if n > 1 {
                    assert!(
                        verify_inclusion(&l[i as usize], (i + 1) % n, n, &proof, &root).is_err()
                    );
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert_eq!(
                        verify_inclusion(&l[i as usize], i, n, &bad, &root),
                        Err(ProofError::RootMismatch)
                    );
                    // Truncated and extended proofs fail.
                    assert!(verify_inclusion(&l[i as usize], i, n, &proof[1..], &root).is_err());
                }
                let mut long = proof.clone();
                long.push(root);
                assert!(verify_inclusion(&l[i as usize], i, n, &long, &root).is_err());
            }
            assert!(matches!(
                verify_inclusion(&l[0], n, n, &[], &root),
                Err(ProofError::IndexOutOfRange { .. })
            ));
        }
    }

    #[test]
    fn consistency_round_trip_and_edges() {
        for n in 0..=40u64 {
            let l = leaves(n);
            let root_n = root_from_leaf_hashes(&l);
            for m in 0..=n {
                let root_m = root_from_leaf_hashes(&l[..m as usize]);
                let proof = consistency_proof(l.as_slice(), m, n).unwrap();
                verify_consistency(m, n, &proof, &root_m, &root_n).unwrap();
                if m > 0 && m < n {
                    let mut bad = proof.clone();
                    let last = bad.len() - 1;
                    bad[last][5] ^= 0x80;
                    assert!(verify_consistency(m, n, &bad, &root_m, &root_n).is_err());
                    let mut wrong_old = root_m;
                    wrong_old[0] ^= 1;
                    assert!(verify_consistency(m, n, &proof, &wrong_old, &root_n).is_err());
                    assert!(verify_consistency(m, n, &proof[1..], &root_m, &root_n).is_err());
                }
            }
        }
        // Equal sizes: empty proof, roots must match.
        let r = leaf_hash(b"x");
        verify_consistency(1, 1, &[], &r, &r).unwrap();
        assert!(verify_consistency(1, 1, &[r], &r, &r).is_err());
        assert!(verify_consistency(2, 1, &[], &r, &r).is_err());
    }

    #[test]
    fn frontier_append_creates_every_complete_node() {
        let l = leaves(37);
        let mut frontier = Frontier::new();
        let mut store: std::collections::HashMap<(u8, u64), Hash> = Default::default();
        for h in &l {
            for node in frontier.append(*h) {
                assert!(store.insert((node.level, node.index), node.hash).is_none());
            }
        }
        for ((level, index), hash) in &store {
            assert_eq!(Some(*hash), l.as_slice().node(*level, *index));
        }
        // 37 leaves: 37 + 18 + 9 + 4 + 2 + 1 complete nodes.
        assert_eq!(store.len(), 37 + 18 + 9 + 4 + 2 + 1);
        let rebuilt = Frontier::from_store(l.as_slice(), 37).unwrap();
        assert_eq!(rebuilt, frontier);
        assert!(Frontier::from_parts(37, rebuilt.peaks()[1..].to_vec()).is_err());
    }
}
