//! Replay detection for submissions, in fixed memory.
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
}
