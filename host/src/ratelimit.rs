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

    /// Counts one submission by `seller` at `now_ms`; false if over the limit.
    pub fn allow(&self, seller: &str, now_ms: u64) -> bool {
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
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_per_seller_per_day() {
        let l = super::SellerLimiter::new(2);
        assert!(l.allow("a", 0) && l.allow("a", 1));
        assert!(!l.allow("a", 2));
        assert!(l.allow("b", 2));
        assert!(l.allow("a", 86_400_000));
    }
}
