//! The tail of the log the host has not yet confirmed durable, kept so that a host that lost
//! it (a crash between the enclave's append and the host's commit, a storage fault, an entry
//! appended through another connection) can fetch it again instead of voiding it.
//!
//! Every append goes in, with what the host stores beside the leaf (the sealed lead, sealed
//! bid or released envelope). The host confirms with `Request::Durable { size }` once its
//! copy of everything below `size` is durable (in object storage when the host publishes tiles), which drops
//! everything below `size`. An unconfirmed entry is never dropped: the journal and the
//! host's durable copy together hold every entry the enclave signed a receipt for, so a host
//! that lost its database can always be handed the tail back. The journal is bounded by
//! entries and bytes (configuration, not traffic): once either bound is reached
//! ([`Journal::is_full`]) the enclave refuses appends with `journal.full` (503, retry) until
//! the host confirms more, so it holds at most the bound plus one request's appends.

use std::collections::VecDeque;

use leadgate_protocol::JournalEntry;

/// Default bound on kept entries: four times what three pipelined batches of 256 leads hold.
pub const DEFAULT_MAX_ENTRIES: usize = 4_096;
/// Default bound on kept bytes (leaf, receipt and record sizes as counted by
/// [`JournalEntry::weight`]): three batches of 256 leads of the largest size are ~17 MiB.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;

/// A read that starts before the oldest kept entry (the host confirmed it durable, so it was
/// dropped) or after the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("journal holds entries {first}..{end}; asked from {from}")]
pub struct JournalGap {
    /// The first index asked for.
    pub from: u64,
    /// The oldest kept index.
    pub first: u64,
    /// One past the newest kept index (the log size).
    pub end: u64,
}

/// The unconfirmed tail: entries `first .. first + len`, in order.
#[derive(Debug)]
pub struct Journal {
    entries: VecDeque<JournalEntry>,
    first: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
}

impl Journal {
    /// An empty journal whose next entry has index `size`.
    pub fn new(size: u64, max_entries: usize, max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            first: size,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
        }
    }

    /// One past the newest entry: the log size as the journal knows it.
    pub fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// The oldest kept index.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Entries and bytes kept now.
    pub fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }

    /// Whether the unconfirmed tail has reached a bound: the enclave takes no appending
    /// request until the host confirms more (`journal.full`).
    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries || self.bytes >= self.max_bytes
    }

    /// Records the append at `index`, which must be [`Journal::end`] (appends are in order).
    /// Nothing is dropped: the caller refuses appends while [`Journal::is_full`]. An
    /// out-of-order index (a bug) restarts the journal at `index`, so reads before it report
    /// a gap instead of wrong entries.
    pub fn push(&mut self, index: u64, entry: JournalEntry) {
        if index != self.end() {
            tracing::error!(index, end = self.end(), "journal append out of order");
            self.entries.clear();
            self.bytes = 0;
            self.first = index;
        }
        self.bytes += entry.weight();
        self.entries.push_back(entry);
    }

    /// The host has stored everything below `size`: drop it.
    pub fn confirm(&mut self, size: u64) {
        while self.first < size && !self.entries.is_empty() {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.weight();
            self.first += 1;
        }
    }

    /// Entries from `from` on, at most `max_entries` of them and, past the first, at most
    /// `max_bytes` by weight.
    ///
    /// # Errors
    /// [`JournalGap`] if `from` is before [`Journal::first`] or after [`Journal::end`].
    pub fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<JournalEntry>, JournalGap> {
        if from < self.first || from > self.end() {
            return Err(JournalGap {
                from,
                first: self.first,
                end: self.end(),
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.iter().skip((from - self.first) as usize) {
            if out.len() >= max_entries || (!out.is_empty() && bytes + e.weight() > max_bytes) {
                break;
            }
            bytes += e.weight();
            out.push(e.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_protocol::JournalRecord;
    use leadgate_verifier::receipt::Receipt;
    use serde_bytes::ByteBuf;

    fn entry(index: u64, leaf_len: usize) -> JournalEntry {
        JournalEntry {
            leaf: ByteBuf::from(vec![b'x'; leaf_len]),
            receipt: Receipt {
                origin: "o".into(),
                epoch: 1,
                index,
                leaf_hash: String::new(),
                root: String::new(),
                time: 0,
                signature: String::new(),
            },
            record: JournalRecord::None,
        }
    }

    fn indexes(entries: &[JournalEntry]) -> Vec<u64> {
        entries.iter().map(|e| e.receipt.index).collect()
    }

    #[test]
    fn keeps_the_unconfirmed_tail_and_drops_what_is_confirmed() {
        let mut j = Journal::new(10, 100, 1 << 20);
        for i in 10..20 {
            j.push(i, entry(i, 10));
        }
        assert_eq!(
            indexes(&j.read(10, 100, 1 << 20).unwrap()),
            (10..20).collect::<Vec<_>>()
        );
        assert_eq!(indexes(&j.read(15, 3, 1 << 20).unwrap()), vec![15, 16, 17]);
        assert!(j.read(20, 10, 1 << 20).unwrap().is_empty());
        assert_eq!(
            j.read(21, 10, 1 << 20),
            Err(JournalGap {
                from: 21,
                first: 10,
                end: 20
            })
        );
        j.confirm(14);
        assert_eq!(j.first(), 14);
        assert_eq!(j.usage().0, 6);
        assert_eq!(j.read(13, 10, 1 << 20).unwrap_err().first, 14);
        // Confirming beyond the end empties it but keeps the end.
        j.confirm(25);
        assert_eq!((j.first(), j.end()), (20, 20));
        assert_eq!(j.usage(), (0, 0));
    }

    #[test]
    fn bounds_make_it_full_and_never_drop_an_unconfirmed_entry() {
        let mut j = Journal::new(0, 4, 1 << 20);
        for i in 0..3 {
            j.push(i, entry(i, 10));
            assert!(!j.is_full());
        }
        j.push(3, entry(3, 10));
        assert!(j.is_full());
        // Past the bound (the rest of one request) nothing goes.
        for i in 4..10 {
            j.push(i, entry(i, 10));
        }
        assert_eq!((j.first(), j.end()), (0, 10));
        j.confirm(7);
        assert!(!j.is_full());
        let w = entry(0, 1000).weight();
        let mut j = Journal::new(0, 100, 3 * w);
        for i in 0..3 {
            assert!(!j.is_full());
            j.push(i, entry(i, 1000));
        }
        assert!(j.is_full());
        assert_eq!((j.first(), j.end(), j.usage()), (0, 3, (3, 3 * w)));
        // A read is cut by bytes, but always returns at least one entry.
        assert_eq!(indexes(&j.read(0, 10, w + 1).unwrap()), vec![0]);
        assert_eq!(indexes(&j.read(0, 10, 1).unwrap()), vec![0]);
    }

    #[test]
    fn an_out_of_order_append_restarts_the_journal() {
        let mut j = Journal::new(0, 10, 1 << 20);
        j.push(0, entry(0, 1));
        j.push(5, entry(5, 1));
        assert_eq!((j.first(), j.end()), (5, 6));
        assert!(j.read(0, 10, 1 << 20).is_err());
    }
}
