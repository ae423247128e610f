//! Record bundles, `leadgate/records/<N>[.p/<W>]` beside each entry bundle: for each entry of
//! level-0 tile `N`, its receipt and what the host keeps beside the leaf (the seller's sealed
//! submission, the sealed bid, the lead sealed to its winner, the buyer's sealed rule set, or
//! nothing). A CBOR array of
//! `{receipt, record}` maps (RFC 8949), in entry order. Everything in it is already public or
//! sealed to the enclave or a buyer; it is what a database rebuilt from the bucket needs to
//! answer retries, close auctions, release leads and hand a restarting enclave the buyers'
//! rule sets. Not part of tlog-tiles.

use leadgate_protocol::{JournalEntry, JournalRecord};
use leadgate_verifier::receipt::Receipt;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// One entry's receipt and record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    /// The enclave's receipt for the entry.
    pub receipt: Receipt,
    /// What goes beside the leaf.
    pub record: JournalRecord,
}

/// The record bundle of `entries`.
pub fn encode(entries: &[JournalEntry]) -> Vec<u8> {
    let records: Vec<RecordEntry> = entries
        .iter()
        .map(|e| RecordEntry {
            receipt: e.receipt.clone(),
            record: e.record.clone(),
        })
        .collect();
    leadgate_protocol::encode(&records)
}

/// Joins a record bundle with the leaves of its entry bundle into journal entries.
///
/// # Errors
/// A message if the bundle does not decode or has another number of entries.
pub fn join(bytes: &[u8], leaves: Vec<Vec<u8>>) -> Result<Vec<JournalEntry>, String> {
    let records: Vec<RecordEntry> =
        leadgate_protocol::decode(bytes).map_err(|e| format!("record bundle: {e}"))?;
    if records.len() != leaves.len() {
        return Err(format!(
            "record bundle has {} entries, the entry bundle {}",
            records.len(),
            leaves.len()
        ));
    }
    Ok(records
        .into_iter()
        .zip(leaves)
        .map(|(r, leaf)| JournalEntry {
            leaf: ByteBuf::from(leaf),
            receipt: r.receipt,
            record: r.record,
        })
        .collect())
}
