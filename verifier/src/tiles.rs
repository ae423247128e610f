//! The C2SP tlog-tiles layout (`c2sp.org/tlog-tiles`): resource paths, which tiles a tree
//! grows, entry bundles, and [`TileNodes`], the tree's node hashes read from its tiles (for
//! proofs computed from a bucket or any static copy of it). Pure: no I/O; the caller fetches.
//!
//! A tile at level `L`, index `N` holds the hashes of the tree nodes at height `8L` with
//! indexes `256N ..` (level 0: leaf hashes; level 1: the roots of full level-0 tiles; …), up
//! to 256 of them (8,192 bytes) when full. The rightmost tile of each level is partial for most
//! sizes (`.p/<W>`, `W` from 1 to 255). Entry bundles follow the level-0 tiles: each entry
//! is a big-endian uint16 length and the leaf's bytes.

use crate::merkle::{root_from_leaf_hashes, Hash, NodeStore};

/// Hashes in a full tile, and entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;
/// Bytes of a tile hash (SHA-256).
pub const HASH_BYTES: usize = 32;
/// The largest entry a bundle can hold (its uint16 length prefix): leaves are refused above
/// this where they are made.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// One tile (or the entry bundle beside a level-0 tile) of a tree of some size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TileRef {
    /// Tile level (tree height `8 * level`).
    pub level: u8,
    /// Index within the level.
    pub index: u64,
    /// Hashes (or entries) it holds, 1 to 256; 256 is a full tile.
    pub width: u64,
}

impl TileRef {
    /// Whether it is a full tile (immutable once written).
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The first node index (at height `8 * level`) it holds.
    pub fn first(&self) -> u64 {
        self.index * TILE_WIDTH
    }

    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, self.suffix())
    }

    /// `tile/entries/<N>[.p/<W>]` (level 0 only).
    pub fn entries_path(&self) -> String {
        format!("tile/entries/{}", self.suffix())
    }

    /// `leadgate/records/<N>[.p/<W>]`: the receipts and sealed records of the entries of a
    /// level-0 tile, which leadgate's host publishes beside the entry bundles (not part of
    /// tlog-tiles; `docs/PROTOCOL.md` §3).
    pub fn records_path(&self) -> String {
        format!("leadgate/records/{}", self.suffix())
    }

    fn suffix(&self) -> String {
        let n = index_path(self.index);
        if self.is_full() {
            n
        } else {
            format!("{n}.p/{}", self.width)
        }
    }
}

/// A tile index as zero-padded 3-digit path elements, all but the last prefixed with `x`:
/// 1234067 is `x001/x234/067`.
pub fn index_path(mut n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// Parses `<N>[.p/<W>]` (the part of a tile path after the level) as a tile of `level`;
/// `None` unless it is a well-formed C2SP tile path.
pub fn parse_tile(level: u8, rest: &str) -> Option<TileRef> {
    let (n, width) = match rest.split_once(".p/") {
        Some((n, w)) => {
            if w.starts_with('0') || w.len() > 3 || !w.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let w: u64 = w.parse().ok()?;
            if !(1..TILE_WIDTH).contains(&w) {
                return None;
            }
            (n, w)
        }
        None => (rest, TILE_WIDTH),
    };
    let elements: Vec<&str> = n.split('/').collect();
    let mut index: u64 = 0;
    for (i, e) in elements.iter().enumerate() {
        let digits = if i + 1 < elements.len() {
            e.strip_prefix('x')?
        } else {
            e
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    // No leading all-zero element (the encoding is canonical).
    if elements.len() > 1 && elements[0] == "x000" {
        return None;
    }
    Some(TileRef {
        level,
        index,
        width,
    })
}

/// Node hashes at height `8 * level` in a tree of `size` entries.
fn count(size: u64, level: u8) -> u64 {
    let shift = 8 * u32::from(level);
    if shift >= 64 {
        0
    } else {
        size >> shift
    }
}

/// The tile of `level` holding node `index`, as a tree of `size` entries has it.
pub fn tile_for(size: u64, level: u8, index: u64) -> Option<TileRef> {
    let n = count(size, level);
    let tile = index / TILE_WIDTH;
    let width = n.checked_sub(tile * TILE_WIDTH)?.min(TILE_WIDTH);
    (width > 0).then_some(TileRef {
        level,
        index: tile,
        width,
    })
}

/// The tiles a tree of `new` entries has that a tree of `old` entries did not (new tiles, and
/// wider versions of partial ones), lowest level first. Entry bundles are the level-0 ones.
pub fn grown_tiles(old: u64, new: u64) -> Vec<TileRef> {
    let mut out = Vec::new();
    for level in 0u8..8 {
        let (had, has) = (count(old, level), count(new, level));
        if has == 0 {
            break;
        }
        if has <= had {
            continue;
        }
        for index in had / TILE_WIDTH..=(has - 1) / TILE_WIDTH {
            let width = (has - index * TILE_WIDTH).min(TILE_WIDTH);
            out.push(TileRef {
                level,
                index,
                width,
            });
        }
    }
    out
}

/// An entry over [`MAX_ENTRY_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// An entry too long for its uint16 length prefix.
    #[error("entry of {0} bytes is over the 65,535-byte limit of an entry bundle")]
    TooLarge(usize),
    /// A bundle that ends inside an entry.
    #[error("entry bundle is truncated")]
    Truncated,
}

/// An entry bundle: each entry as a big-endian uint16 length and its bytes.
///
/// # Errors
/// [`BundleError::TooLarge`] for an entry over 65,535 bytes.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| BundleError::TooLarge(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// The entries of a bundle.
///
/// # Errors
/// [`BundleError::Truncated`] if it ends inside an entry.
pub fn decode_bundle(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, BundleError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<2>()
            .ok_or(BundleError::Truncated)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return Err(BundleError::Truncated);
        }
        out.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    Ok(out)
}

/// The node hashes of a tree of `size` entries, read from its hash tiles through `fetch`
/// (given a tile, its bytes: `width` 32-byte hashes). A [`NodeStore`], so the RFC 9162
/// inclusion and consistency proofs of [`crate::merkle`] can be computed from tiles alone;
/// a node whose tile is missing or of the wrong length is `None` (`proof.missing_node`).
pub struct TileNodes<F> {
    size: u64,
    fetch: F,
}

impl<F: Fn(TileRef) -> Option<Vec<u8>>> TileNodes<F> {
    /// The nodes of the tree of `size` entries.
    pub fn new(size: u64, fetch: F) -> Self {
        Self { size, fetch }
    }
}

impl<F: Fn(TileRef) -> Option<Vec<u8>>> NodeStore for TileNodes<F> {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let (tile_level, within) = (level / 8, u32::from(level % 8));
        let first = index.checked_shl(within)?;
        let end = index.checked_add(1)?.checked_shl(within)?;
        let tile = tile_for(self.size, tile_level, first)?;
        if end > tile.first() + tile.width {
            return None;
        }
        let bytes = (self.fetch)(tile)?;
        if bytes.len() as u64 != tile.width * HASH_BYTES as u64 {
            return None;
        }
        let hashes: Vec<Hash> = bytes
            .chunks_exact(HASH_BYTES)
            .map(|c| c.try_into().expect("32-byte chunks"))
            .collect();
        let (a, b) = (
            (first - tile.first()) as usize,
            (end - tile.first()) as usize,
        );
        Some(root_from_leaf_hashes(&hashes[a..b]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_paths_as_the_spec_writes_them() {
        assert_eq!(index_path(1234067), "x001/x234/067");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(1000), "x001/000");
        for n in [0, 7, 999, 1000, 1234067, u64::MAX / 256] {
            let t = TileRef {
                level: 2,
                index: n,
                width: 17,
            };
            let rest = t.path().strip_prefix("tile/2/").unwrap().to_owned();
            assert_eq!(parse_tile(2, &rest), Some(t));
        }
        for bad in [
            "1",
            "0001",
            "x000/001",
            "001/002",
            "y001/002",
            "000.p/0",
            "000.p/256",
            "000.p/07",
            "000.p/",
        ] {
            assert_eq!(parse_tile(0, bad), None, "{bad}");
        }
    }

    /// The spec's example: a tree of 70,000 entries has 273 full level-0 tiles, a partial of
    /// width 112, a full level-1 tile, a partial level-1 tile of width 17 and a partial
    /// level-2 tile of width 1.
    #[test]
    fn the_tiles_of_a_tree_of_70000() {
        let tiles = grown_tiles(0, 70_000);
        let level0: Vec<_> = tiles.iter().filter(|t| t.level == 0).collect();
        assert_eq!(level0.len(), 274);
        assert_eq!(level0.iter().filter(|t| t.is_full()).count(), 273);
        assert_eq!(level0.last().unwrap().width, 112);
        let rest: Vec<_> = tiles.iter().filter(|t| t.level > 0).copied().collect();
        assert_eq!(
            rest,
            vec![
                TileRef {
                    level: 1,
                    index: 0,
                    width: 256
                },
                TileRef {
                    level: 1,
                    index: 1,
                    width: 17
                },
                TileRef {
                    level: 2,
                    index: 0,
                    width: 1
                },
            ]
        );
        // A tree of 256: one full level-0 tile and a level-1 tile of width 1.
        assert_eq!(
            grown_tiles(0, 256),
            vec![
                TileRef {
                    level: 0,
                    index: 0,
                    width: 256
                },
                TileRef {
                    level: 1,
                    index: 0,
                    width: 1
                },
            ]
        );
    }

    #[test]
    fn growing_writes_only_what_changed() {
        assert_eq!(grown_tiles(10, 10), vec![]);
        assert_eq!(
            grown_tiles(10, 20),
            vec![TileRef {
                level: 0,
                index: 0,
                width: 20
            }]
        );
        assert_eq!(
            grown_tiles(250, 300),
            vec![
                TileRef {
                    level: 0,
                    index: 0,
                    width: 256
                },
                TileRef {
                    level: 0,
                    index: 1,
                    width: 44
                },
                TileRef {
                    level: 1,
                    index: 0,
                    width: 1
                },
            ]
        );
        // Growing in steps writes, at each size, exactly the tiles of that size.
        let mut have = std::collections::BTreeSet::new();
        let mut size = 0;
        for step in [1, 255, 3, 700, 65_000, 1] {
            let new = size + step;
            for t in grown_tiles(size, new) {
                assert_eq!(tile_for(new, t.level, t.first()), Some(t));
                have.insert(t);
            }
            size = new;
        }
        for t in grown_tiles(0, size) {
            assert!(have.contains(&t), "{t:?}");
        }
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_does_not_fit() {
        let entries: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7; 65_535]];
        let bundle = encode_bundle(entries.iter().map(|e| e.as_slice())).unwrap();
        assert_eq!(&bundle[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(decode_bundle(&bundle).unwrap(), entries);
        assert_eq!(
            decode_bundle(&bundle[..bundle.len() - 1]),
            Err(BundleError::Truncated)
        );
        assert_eq!(decode_bundle(&[0]), Err(BundleError::Truncated));
        let big = vec![0u8; 65_536];
        assert_eq!(
            encode_bundle([big.as_slice()]),
            Err(BundleError::TooLarge(65_536))
        );
    }

    /// Proofs computed from tiles are the proofs computed from the leaves, at every size.
    #[test]
    fn proofs_from_tiles_are_the_proofs_from_the_leaves() {
        use crate::merkle::{self, leaf_hash, Frontier};
        let mut nodes = std::collections::HashMap::new();
        let mut leaves = Vec::new();
        let mut f = Frontier::new();
        for i in 0u32..70_000 {
            let h = leaf_hash(&i.to_be_bytes());
            leaves.push(h);
            for n in f.append(h) {
                nodes.insert((n.level, n.index), n.hash);
            }
        }
        for size in [1u64, 255, 256, 257, 65_536, 65_537, 70_000] {
            let tiles = TileNodes::new(size, |t: TileRef| {
                let bytes: Vec<u8> = (t.first()..t.first() + t.width)
                    .flat_map(|i| nodes[&(8 * t.level, i)])
                    .collect();
                Some(bytes)
            });
            let root = merkle::subtree_root(&tiles, 0, size).unwrap();
            assert_eq!(
                root,
                root_from_leaf_hashes(&leaves[..size as usize]),
                "{size}"
            );
            for index in [0, size / 2, size - 1] {
                let p = merkle::inclusion_proof(&tiles, index, size).unwrap();
                merkle::verify_inclusion(&leaves[index as usize], index, size, &p, &root).unwrap();
            }
            let m = size / 3 + 1;
            let p = merkle::consistency_proof(&tiles, m, size).unwrap();
            let old = root_from_leaf_hashes(&leaves[..m as usize]);
            merkle::verify_consistency(m, size, &p, &old, &root).unwrap();
        }
        // A tile of the wrong length is a missing node, never a wrong one.
        let short = TileNodes::new(300, |_: TileRef| Some(vec![0u8; 31]));
        assert!(merkle::inclusion_proof(&short, 0, 300).is_err());
    }
}
