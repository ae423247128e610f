//! Reads of the log by index range, for publishing it in the C2SP tlog-tiles layout and
//! serving the same paths: node hashes of one tree height, and journal entries (leaf,
//! receipt and the record beside it: a sealed lead, bid, release or rule set) as the
//! enclave's journal holds them.

use leadgate_protocol::{JournalEntry, JournalRecord};
use leadgate_verifier::merkle::Hash;
use serde_bytes::ByteBuf;
use sqlx::Row as _;

use super::{bad_column, Store, StoreError};

impl Store {
    /// Node hashes at tree height `level` with indexes `from .. from + count`, in order;
    /// fewer if the tree does not have them all.
    pub async fn node_range(
        &self,
        level: u8,
        from: u64,
        count: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT hash FROM nodes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(i64::from(level))
        .bind(from as i64)
        .bind((from + count) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|h| Hash::try_from(h.as_slice()).map_err(|_| bad_column("node hash").into()))
            .collect()
    }

    /// Entries `from .. to` as the enclave's journal held them: leaf, receipt, and the sealed
    /// lead, sealed bid or released envelope stored beside it.
    ///
    /// # Errors
    /// [`StoreError::Inconsistent`] if an entry is missing or a stored record does not parse.
    pub async fn journal_entries(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.idx, l.leaf, r.receipt, ld.sealed, b.sealed, rl.released, rs.sealed \
             FROM leaves l JOIN receipts r ON r.idx = l.idx \
             LEFT JOIN leads ld ON ld.idx = l.idx \
             LEFT JOIN bids b ON b.idx = l.idx \
             LEFT JOIN releases rl ON rl.idx = l.idx \
             LEFT JOIN rule_sets rs ON rs.idx = l.idx \
             WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx",
        )
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&self.pool)
        .await?;
        let bad = |i: i64, e: String| StoreError::Inconsistent(format!("entry {i}: {e}"));
        let mut out = Vec::with_capacity(rows.len());
        for (expect, row) in (from..).zip(rows) {
            let idx: i64 = row.try_get(0)?;
            if idx as u64 != expect {
                return Err(bad(expect as i64, "missing".into()));
            }
            let leaf: Vec<u8> = row.try_get(1)?;
            let receipt: String = row.try_get(2)?;
            let lead: Option<String> = row.try_get(3)?;
            let bid: Option<String> = row.try_get(4)?;
            let released: Option<String> = row.try_get(5)?;
            let rules: Option<String> = row.try_get(6)?;
            let receipt = serde_json::from_str(&receipt).map_err(|e| bad(idx, e.to_string()))?;
            let record = match (lead, bid, released, rules) {
                (Some(s), None, None, None) => JournalRecord::Lead(parse(idx, &s)?),
                (None, Some(s), None, None) => JournalRecord::Bid(parse(idx, &s)?),
                (None, None, Some(s), None) => JournalRecord::Release(parse(idx, &s)?),
                (None, None, None, Some(s)) => JournalRecord::Rules(parse(idx, &s)?),
                (None, None, None, None) => JournalRecord::None,
                _ => return Err(bad(idx, "more than one record".into())),
            };
            out.push(JournalEntry {
                leaf: ByteBuf::from(leaf),
                receipt,
                record,
            });
        }
        if (out.len() as u64) < to.saturating_sub(from) {
            return Err(bad((from + out.len() as u64) as i64, "missing".into()));
        }
        Ok(out)
    }

    /// Overwrites entry `index`'s leaf, receipt and level-0 node with a verified copy (the
    /// scrub's repair of a damaged row).
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn replace_entry(
        &self,
        index: u64,
        leaf: &[u8],
        receipt: &leadgate_verifier::receipt::Receipt,
        hash: &Hash,
    ) -> Result<(), StoreError> {
        let receipt =
            serde_json::to_string(receipt).map_err(|e| StoreError::Inconsistent(e.to_string()))?;
        let write = self.write();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE leaves SET leaf = ? WHERE idx = ?")
            .bind(leaf)
            .bind(index as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE receipts SET receipt = ? WHERE idx = ?")
            .bind(receipt)
            .bind(index as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT OR REPLACE INTO nodes (level, idx, hash) VALUES (0, ?, ?)")
            .bind(index as i64)
            .bind(hash.as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        write.done();
        Ok(())
    }
}

/// A stored record's JSON, parsed.
fn parse<T: serde::de::DeserializeOwned>(idx: i64, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Inconsistent(format!("entry {idx}: {e}")))
}
