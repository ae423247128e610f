//! The enclave's clock. The enclave never takes time from the host.

use std::time::{SystemTime, UNIX_EPOCH};

/// The enclave's clock, Unix ms. The enclave never takes time from the host.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
