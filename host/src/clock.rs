//! The host's clock. It stamps what the host itself records (stored rows, anchor attempts,
//! rate limits); the enclave never takes time from it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, Unix ms (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
