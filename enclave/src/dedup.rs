//! Duplicate-email detection without keeping emails outside the enclave, in memory that does
//! not grow with the log.
//!
//! Each accepted lead's `email_tag` (HMAC-SHA-256 of the lowercased email under an
//! enclave-only key) is written into its public `lead.accepted` event. The enclave keeps the
//! tags in a fixed-size [`HashFilter`]; after a restart the host replays the tags of all
//! accepted events and the enclave rebuilds it. Because tags are in the public log, a host that
//! withholds tags at rebuild to let a duplicate through is caught by anyone who scans the log
//! for a repeated `email_tag`.
//!
//! Size: 2^27 bits (16 MiB), 7 hash functions: a false positive (a new email reported as a
//! duplicate) has probability about 1e-9 at 1 million accepted emails and 2e-3 at 10 million.

use crate::bloom::HashFilter;

/// Default filter size, log2 bits: 2^27 bits = 16 MiB.
pub const DEFAULT_BITS_LOG2: u32 = 27;

/// The set of email tags of accepted leads.
pub struct EmailTags {
    filter: HashFilter,
}

impl EmailTags {
    /// An empty set of `2^bits_log2` bits.
    pub fn new(bits_log2: u32) -> Self {
        Self {
            filter: HashFilter::new(bits_log2),
        }
    }

    /// Whether an accepted lead already had this tag (false positives as documented above).
    pub fn seen(&self, tag: &[u8; 32]) -> bool {
        self.filter.contains(tag)
    }

    /// Records the tag of an accepted lead.
    pub fn record(&mut self, tag: &[u8; 32]) {
        self.filter.insert(tag);
    }
}
