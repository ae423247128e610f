//! Duplicate-email detection without keeping emails outside the enclave, in memory that does
//! not grow with the log.
//!
//! Each accepted lead's `email_tag` (HMAC-SHA-256 of the lowercased email under an
//! enclave-only key) is written into its public `lead.accepted` event. The enclave keeps the
//! tags in a fixed-size [`HashFilter`], which is part of its sealed state ([`crate::state`]);
//! after a restart it is restored from that state and the `lead.accepted` leaves replayed
//! since, both checked against the log's root. Because tags are in the public log, a
//! duplicate let through by any fault is also caught by anyone who scans the log for a
//! repeated `email_tag`.
//!
//! At the bound: the filter never grows; as it fills, the false-positive rate (a new email
//! taken for a duplicate, the lead rejected `duplicate_email`) rises as below. Size it
//! (`EnclaveConfig::tag_filter_bits_log2`) for the accepted leads expected over the log's life.
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

    /// The set held in `filter` (a restored state).
    pub fn from_filter(filter: HashFilter) -> Self {
        Self { filter }
    }

    /// The filter (for sealing the state).
    pub fn filter(&self) -> &HashFilter {
        &self.filter
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
