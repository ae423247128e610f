//! Replay detection for submissions and sealed bids, in fixed memory.
//!
//! A submission is accepted only if its `issued_at_ms` lies in `[now − window, now + skew]`
//! (enclave clock). Its `ciphertext_sha256` is remembered in two rotating Bloom generations,
//! each spanning `window + skew`: an entry inserted at time t stays in memory until at least
//! `t + window + skew`, and a replay of it arriving later is refused as stale anyway. So
//! memory is fixed (2 × 8 MiB by default) whatever the submission rate, unlike a map of recent
//! hashes, which grows with rate × window.
//!
//! False positives (a fresh submission reported as replayed) have probability about 3e-4 with
//! 3.6 million submissions in one generation (6,000/s for 10 minutes) and about 1e-12 at 100/s;
//! the seller re-seals (new ciphertext) and retries. The host also refuses exact replays from
//! its unique index on `ciphertext_sha256`.

use crate::bloom::HashFilter;

/// Default replay window (how old a submission may be): 10 minutes.
pub const DEFAULT_WINDOW_MS: u64 = 600_000;
/// How far in the future `issued_at_ms` may be (clock skew): 60 seconds.
pub const MAX_SKEW_MS: u64 = 60_000;
/// Bits per generation, log2: 2^26 = 8 MiB.
pub const GENERATION_BITS_LOG2: u32 = 26;

/// Why a submission is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Fresh: recorded now.
    Fresh,
    /// `issued_at_ms` outside the window.
    Stale,
    /// Seen before (or a Bloom false positive).
    Replayed,
}

/// Two rotating generations of submission hashes.
pub struct ReplayGuard {
    window_ms: u64,
    current: HashFilter,
    previous: HashFilter,
    current_start_ms: u64,
}

impl ReplayGuard {
    /// A guard with the given window, starting at `now_ms`.
    pub fn new(window_ms: u64, bits_log2: u32, now_ms: u64) -> Self {
        Self {
            window_ms,
            current: HashFilter::new(bits_log2),
            previous: HashFilter::new(bits_log2),
            current_start_ms: now_ms,
        }
    }

    fn generation_ms(&self) -> u64 {
        self.window_ms + MAX_SKEW_MS
    }

    fn rotate(&mut self, now_ms: u64) {
        let g = self.generation_ms();
        if now_ms >= self.current_start_ms.saturating_add(2 * g) {
            self.current.clear();
            self.previous.clear();
            self.current_start_ms = now_ms;
        } else if now_ms >= self.current_start_ms.saturating_add(g) {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
            self.current_start_ms += g;
        }
    }

    /// Checks the window and the memory of `hash` without recording it.
    pub fn check(&mut self, hash: &[u8; 32], issued_at_ms: u64, now_ms: u64) -> ReplayVerdict {
        self.rotate(now_ms);
        if issued_at_ms.saturating_add(self.window_ms) < now_ms
            || issued_at_ms > now_ms.saturating_add(MAX_SKEW_MS)
        {
            return ReplayVerdict::Stale;
        }
        if self.current.contains(hash) || self.previous.contains(hash) {
            return ReplayVerdict::Replayed;
        }
        ReplayVerdict::Fresh
    }

    /// Records `hash` as received.
    pub fn record(&mut self, hash: &[u8; 32]) {
        self.current.insert(hash);
    }
}

/// Default sealed-bid filter size per generation, log2 bits: 2^24 bits = 2 MiB.
pub const BID_FILTER_BITS_LOG2: u32 = 24;

/// Recently taken sealed bids (by commitment, the SHA-256 of the sealed bid), in two rotating
/// generations of a fixed size. A generation turns over after `2^bits / 128` insertions, where
/// a fresh bid is mistaken for a replay with probability under 1.2e-9 (Bloom filter, k = 7;
/// at `2^bits / 32` it would be 1.2e-5, one spurious refusal in about 100,000 bids, which a
/// run of a million bids met); the filter remembers at least the last `2^bits / 128` bids
/// (131,072 by default), far more than a retry racing its original needs.
///
/// It refuses a retry racing its original, and any replay within that memory, before it is
/// logged. It is not what makes a replay harmless: a sealed bid counts once per auction at
/// close (its first `bid.sealed`; a later `bid.sealed` with the same commitment is void), a
/// rule the log lets anyone check, so a replay the filter no longer remembers (or one after a
/// restart, which empties it) is logged and changes nothing.
pub struct SealedBidFilter {
    current: HashFilter,
    previous: HashFilter,
    per_generation: u64,
}

impl SealedBidFilter {
    /// An empty filter of two generations of `2^bits_log2` bits.
    pub fn new(bits_log2: u32) -> Self {
        Self {
            current: HashFilter::new(bits_log2),
            previous: HashFilter::new(bits_log2),
            per_generation: (1u64 << bits_log2) / 128,
        }
    }

    /// Whether `commitment` was recorded recently (false positives as documented above).
    pub fn seen(&self, commitment: &[u8; 32]) -> bool {
        self.current.contains(commitment) || self.previous.contains(commitment)
    }

    /// Records a taken bid's commitment.
    pub fn record(&mut self, commitment: &[u8; 32]) {
        if self.current.len() >= self.per_generation {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.current.insert(commitment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_skew_and_memory_across_rotations() {
        let w = 1_000;
        let mut g = ReplayGuard::new(w, 12, 0);
        let h = [7u8; 32];
        assert_eq!(g.check(&h, 0, 0), ReplayVerdict::Fresh);
        g.record(&h);
        // Remembered for as long as the submission is inside the window, across a rotation.
        for now in [1, 500, 1_000] {
            assert_eq!(g.check(&h, 0, now), ReplayVerdict::Replayed, "at {now}");
        }
        // After that it is stale by its own timestamp.
        assert_eq!(g.check(&h, 0, 1_001), ReplayVerdict::Stale);
        // A submission issued in the future (within skew) is remembered until it goes stale.
        let f = [8u8; 32];
        assert_eq!(
            g.check(&f, 1_000 + MAX_SKEW_MS, 1_000),
            ReplayVerdict::Fresh
        );
        g.record(&f);
        for now in [1_000, 1_000 + MAX_SKEW_MS, 2_000 + MAX_SKEW_MS] {
            assert_eq!(
                g.check(&f, 1_000 + MAX_SKEW_MS, now),
                ReplayVerdict::Replayed,
                "at {now}"
            );
        }
        assert_eq!(
            g.check(&[9u8; 32], 2_000 + MAX_SKEW_MS, 1_000),
            ReplayVerdict::Stale,
            "too far ahead"
        );
        // A long gap clears everything.
        assert_eq!(g.check(&h, 100_000_000, 100_000_000), ReplayVerdict::Fresh);
    }

    #[test]
    fn sealed_bids_are_remembered_for_at_least_one_generation() {
        use sha2::{Digest, Sha256};
        let key = |i: u32| -> [u8; 32] { Sha256::digest(i.to_le_bytes()).into() };
        // 2^14 bits: 128 bids per generation.
        let mut f = SealedBidFilter::new(14);
        for i in 0..128 {
            assert!(!f.seen(&key(i)), "fresh bid {i} taken for a replay");
            f.record(&key(i));
        }
        // The next generation keeps the first one.
        for i in 128..256 {
            assert!(!f.seen(&key(i)), "fresh bid {i} taken for a replay");
            f.record(&key(i));
        }
        assert!((0..256).all(|i| f.seen(&key(i))));
        // One more turn forgets the first generation.
        f.record(&key(256));
        assert!(f.seen(&key(256)) && f.seen(&key(200)));
        assert!((0..128).filter(|i| f.seen(&key(*i))).count() < 2);
    }
}
