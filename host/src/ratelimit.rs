//! Per-seller submission limits: a fixed number per seller per UTC day (default 1,000, sized
//! for a real marketplace's heaviest sellers). Counts live in memory and restart at zero with
//! the host; the enclave's duplicate detection and replay window do not depend on them.

use std::collections::HashMap;
use std::sync::Mutex;

/// Per-seller daily counter.
pub struct SellerLimiter {
    per_day: u32,
    counts: Mutex<HashMap<String, (u64, u32)>>,
}

impl SellerLimiter {
    /// `per_day` submissions per seller per UTC day.
    pub fn new(per_day: u32) -> Self {
        Self {
            per_day,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves one submission by `seller` at `now_ms`; false if the seller's count for that UTC
    /// day has reached the limit.
    pub fn reserve(&self, seller: &str, now_ms: u64) -> bool {
        let day = now_ms / 86_400_000;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() > 100_000 {
            counts.retain(|_, (d, _)| *d == day);
        }
        let entry = counts.entry(seller.to_owned()).or_insert((day, 0));
        if entry.0 != day {
            *entry = (day, 0);
        }
        if entry.1 >= self.per_day {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Gives back a reservation made at `reserved_ms` (the submission was refused). A
    /// reservation from an earlier UTC day is already forgotten.
    pub fn release(&self, seller: &str, reserved_ms: u64) {
        let day = reserved_ms / 86_400_000;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = counts.get_mut(seller) {
            if entry.0 == day {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }
}

/// Seconds from `now_ms` to the next UTC midnight, when every seller's count starts over:
/// the `Retry-After` of a `rate.limited` answer. 1 to 86,400 (rounded up).
pub fn secs_to_reset(now_ms: u64) -> u64 {
    let next_day_ms = (now_ms / 86_400_000 + 1) * 86_400_000;
    (next_day_ms - now_ms).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_is_the_time_to_the_next_utc_midnight() {
        use super::secs_to_reset;
        assert_eq!(secs_to_reset(0), 86_400);
        assert_eq!(secs_to_reset(86_400_000 - 1), 1);
        assert_eq!(secs_to_reset(86_400_000 - 1_000), 1);
        assert_eq!(secs_to_reset(86_400_000 - 1_001), 2);
        // 2026-12-05T18:00:00Z: six hours to go.
        assert_eq!(secs_to_reset(1_796_493_600_000), 6 * 3600);
    }

    #[test]
    fn limits_per_seller_per_day() {
        let l = super::SellerLimiter::new(2);
        assert!(l.reserve("a", 0) && l.reserve("a", 1));
        assert!(!l.reserve("a", 2));
        assert!(l.reserve("b", 2));
        // A refused submission gives its reservation back, on the same day only.
        l.release("a", 1);
        assert!(l.reserve("a", 3));
        assert!(!l.reserve("a", 4));
        assert!(l.reserve("a", 86_400_000));
        l.release("a", 5);
        assert!(l.reserve("a", 86_400_001));
        assert!(!l.reserve("a", 86_400_002));
    }
}
