//! Duplicate-email detection without keeping emails outside the enclave, in memory that does
//! not grow with the log.
//!
//! Each accepted lead's `email_tag` (HMAC-SHA-256 of the lowercased email under an
//! enclave-only key) is written into its public `lead.accepted` event. The enclave keeps a
//! fixed-size Bloom filter of the tags; after a restart the host replays the tags of all
//! accepted events and the enclave rebuilds the filter. Because tags are in the public log, a
//! host that withholds tags at rebuild to let a duplicate through is caught by anyone who
//! scans the log for a repeated `email_tag`.
//!
//! Size and false positives: the default 2^27 bits (16 MiB) with 7 hash functions gives a
//! false-positive rate of about 1e-9 at 1 million accepted emails and 2e-3 at 10 million
//! (`(1 - e^(-k·n/m))^k`). Hash functions are derived from the (already pseudorandom) tag by
//! double hashing (Kirsch–Mitzenmacher).

/// Default filter size in bits: 2^27 (16 MiB).
pub const DEFAULT_BITS_LOG2: u32 = 27;
/// Number of hash functions.
pub const HASHES: u64 = 7;

/// A fixed-size Bloom filter of 32-byte tags.
pub struct TagFilter {
    bits: Vec<u64>,
    mask: u64,
    len: u64,
}

impl TagFilter {
    /// A filter of `2^bits_log2` bits (`bits_log2` between 10 and 34).
    ///
    /// # Panics
    /// If `bits_log2` is out of that range (a configuration error caught at start-up).
    pub fn new(bits_log2: u32) -> Self {
        assert!((10..=34).contains(&bits_log2), "filter size out of range");
        let bits = 1u64 << bits_log2;
        Self {
            bits: vec![0u64; (bits / 64) as usize],
            mask: bits - 1,
            len: 0,
        }
    }

    fn positions(&self, tag: &[u8; 32]) -> impl Iterator<Item = u64> + '_ {
        let h1 = u64::from_le_bytes(tag[0..8].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(tag[8..16].try_into().expect("8 bytes")) | 1;
        (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    /// Whether `tag` may have been inserted (false positives possible, false negatives not).
    pub fn contains(&self, tag: &[u8; 32]) -> bool {
        self.positions(tag)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    /// Inserts `tag`.
    pub fn insert(&mut self, tag: &[u8; 32]) {
        let ps: Vec<u64> = self.positions(tag).collect();
        for p in ps {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.len += 1;
    }

    /// Number of insertions.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = TagFilter::new(20);
        let tag = |i: u32| -> [u8; 32] { Sha256::digest(i.to_le_bytes()).into() };
        for i in 0..10_000 {
            f.insert(&tag(i));
        }
        assert!((0..10_000).all(|i| f.contains(&tag(i))));
        let fp = (10_000..110_000).filter(|i| f.contains(&tag(*i))).count();
        // Expected rate at n=10k, m=2^20, k=7: ~1.3e-5; allow 10x.
        assert!(fp < 15, "{fp} false positives in 100k");
    }
}
