//! A fixed-size Bloom filter of 32-byte hashes: the enclave's memory for "seen before?"
//! questions (duplicate emails in [`crate::dedup`], replayed submissions in [`crate::replay`])
//! that must not grow with the log.
//!
//! Keys are already pseudorandom (HMAC or SHA-256 outputs), so the k bit positions come from
//! the key itself by double hashing (Kirsch–Mitzenmacher). False-positive rate after n
//! insertions into m bits: `(1 - e^(-k·n/m))^k`. False negatives cannot happen.

/// Number of hash functions.
pub const HASHES: u64 = 7;
/// Smallest filter, log2 bits (1 Kib).
pub const MIN_BITS_LOG2: u32 = 10;
/// Largest filter, log2 bits (2 GiB).
pub const MAX_BITS_LOG2: u32 = 34;

/// A fixed-size Bloom filter of 32-byte hashes.
pub struct HashFilter {
    bits: Vec<u64>,
    mask: u64,
    len: u64,
}

impl HashFilter {
    /// A filter of `2^bits_log2` bits (`bits_log2` between 10 and 34).
    ///
    /// # Panics
    /// If `bits_log2` is out of that range (a configuration error caught at start-up).
    pub fn new(bits_log2: u32) -> Self {
        assert!(
            (MIN_BITS_LOG2..=MAX_BITS_LOG2).contains(&bits_log2),
            "filter size out of range"
        );
        let bits = 1u64 << bits_log2;
        // Write every word now (not `vec![0; n]`, which maps lazily-zeroed pages): the filter's
        // memory is resident from the start, so the enclave's footprint does not grow later.
        #[allow(clippy::slow_vector_initialization)] // deliberate: see above
        let mut words = Vec::with_capacity((bits / 64) as usize);
        words.resize((bits / 64) as usize, 0u64);
        Self {
            bits: words,
            mask: bits - 1,
            len: 0,
        }
    }

    /// A filter of `2^bits_log2` bits from its words (as [`Self::words`] gave them) and its
    /// insertion count; missing words are zero, extra ones ignored.
    ///
    /// # Panics
    /// If `bits_log2` is out of range, as [`Self::new`].
    pub fn from_words(bits_log2: u32, words: impl Iterator<Item = u64>, len: u64) -> Self {
        let mut f = Self::new(bits_log2);
        for (slot, w) in f.bits.iter_mut().zip(words) {
            *slot = w;
        }
        f.len = len;
        f
    }

    /// The filter's bits, 64 per word.
    pub fn words(&self) -> &[u64] {
        &self.bits
    }

    /// The filter's size, log2 bits.
    pub fn bits_log2(&self) -> u32 {
        (self.mask + 1).trailing_zeros()
    }

    fn positions(&self, key: &[u8; 32]) -> impl Iterator<Item = u64> + '_ {
        let h1 = u64::from_le_bytes(key[0..8].try_into().expect("8 bytes"));
        let h2 = u64::from_le_bytes(key[8..16].try_into().expect("8 bytes")) | 1;
        (0..HASHES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    /// Whether `key` may have been inserted (false positives possible, false negatives not).
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.positions(key)
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    /// Inserts `key`.
    pub fn insert(&mut self, key: &[u8; 32]) {
        let ps: Vec<u64> = self.positions(key).collect();
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

    /// Forgets everything (keeps the allocation).
    pub fn clear(&mut self) {
        self.bits.fill(0);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut f = HashFilter::new(20);
        let key = |i: u32| -> [u8; 32] { Sha256::digest(i.to_le_bytes()).into() };
        for i in 0..10_000 {
            f.insert(&key(i));
        }
        assert!((0..10_000).all(|i| f.contains(&key(i))));
        let fp = (10_000..110_000).filter(|i| f.contains(&key(*i))).count();
        // Expected rate at n=10k, m=2^20, k=7: ~1.3e-5; allow 10x.
        assert!(fp < 15, "{fp} false positives in 100k");
    }
}
