//! The log: leaves, tree nodes, receipts, checkpoints and epochs, and the one write path
//! that stores an enclave's appends with what goes beside them (store-then-answer).

use std::collections::HashMap;

use leadgate_protocol::{JournalRecord, SubmitOutcome, WireAppended};
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::{Frontier, Hash, NodeStore};
use leadgate_verifier::receipt::Receipt;
use sqlx::Row as _;

use super::{json, Store, StoreError, StoredSubmission};

/// A [`NodeStore`] over a map of fetched nodes.
pub struct MapStore(pub HashMap<(u8, u64), Hash>);

impl NodeStore for MapStore {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        self.0.get(&(level, index)).copied()
    }
}

/// Runs `f` against a store that answers every node with zeros and records what was asked.
/// The proof algorithms' access pattern depends only on sizes and indexes, not on hashes.
fn record_accesses(f: impl FnOnce(&dyn NodeStore)) -> Vec<(u8, u64)> {
    struct Recorder(std::cell::RefCell<Vec<(u8, u64)>>);
    impl NodeStore for Recorder {
        fn node(&self, level: u8, index: u64) -> Option<Hash> {
            self.0.borrow_mut().push((level, index));
            Some([0u8; 32])
        }
    }
    let r = Recorder(Default::default());
    f(&r);
    r.0.into_inner()
}

/// Inserts appends (leaves, receipts, nodes) that must continue the stored log exactly, and
/// indexes the events the API serves from tables (auctions, epochs).
pub(super) async fn insert_appends(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    appends: &[&WireAppended],
) -> Result<(), StoreError> {
    let mut next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves")
        .fetch_one(&mut **tx)
        .await?;
    for a in appends {
        if a.index as i64 != next {
            return Err(StoreError::Inconsistent(format!(
                "append index {} but log size {next}",
                a.index
            )));
        }
        next += 1;
    }
    // One multi-row INSERT per table per batch (at most 256 appends: well under SQLite's
    // 32,766 bound variables).
    if !appends.is_empty() {
        let receipts = appends
            .iter()
            .map(|a| serde_json::to_string(&a.receipt))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
        sqlx::QueryBuilder::new("INSERT INTO leaves (idx, leaf) ")
            .push_values(appends, |mut b, a| {
                b.push_bind(a.index as i64).push_bind(a.leaf.as_slice());
            })
            .build()
            .execute(&mut **tx)
            .await?;
        sqlx::QueryBuilder::new("INSERT INTO receipts (idx, receipt) ")
            .push_values(appends.iter().zip(&receipts), |mut b, (a, r)| {
                b.push_bind(a.index as i64).push_bind(r.as_str());
            })
            .build()
            .execute(&mut **tx)
            .await?;
        sqlx::QueryBuilder::new("INSERT OR IGNORE INTO nodes (level, idx, hash) ")
            .push_values(appends.iter().flat_map(|a| a.nodes.iter()), |mut b, n| {
                b.push_bind(i64::from(n.level))
                    .push_bind(n.index as i64)
                    .push_bind(n.hash.as_slice());
            })
            .build()
            .execute(&mut **tx)
            .await?;
    }
    for a in appends {
        index_event(tx, a).await?;
    }
    Ok(())
}

/// Copies the public facts of auction and epoch events into their tables.
async fn index_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    a: &WireAppended,
) -> Result<(), StoreError> {
    // lead.rejected and bid.sealed carry nothing to index here; skip parsing them.
    if a.leaf.starts_with(b"{\"ciphertext_sha256\"") {
        return Ok(());
    }
    let event: Event = serde_json::from_slice(&a.leaf)
        .map_err(|e| StoreError::Inconsistent(format!("leaf {}: {e}", a.index)))?;
    let idx = a.index as i64;
    match event {
        Event::LeadAccepted(e) => {
            let listing = serde_json::to_string(&e.listing)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
            sqlx::query(
                "INSERT INTO auctions (auction_id, open_idx, listing, industry, region, score, \
                 reserve, closes_at, pricing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&e.lead_id)
            .bind(idx)
            .bind(listing)
            .bind(&e.listing.industry)
            .bind(&e.listing.region)
            .bind(i64::from(e.score))
            .bind(e.auction.reserve.units() as i64)
            .bind(e.auction.closes_at as i64)
            .bind(e.auction.pricing.as_str())
            .execute(&mut **tx)
            .await?;
        }
        Event::LogEpoch(e) => {
            sqlx::query("INSERT INTO epochs (idx, replay_from) VALUES (?, ?)")
                .bind(idx)
                .bind(e.replay_from as i64)
                .execute(&mut **tx)
                .await?;
        }
        Event::AuctionClosed(e) => {
            sqlx::query(
                "UPDATE auctions SET status = 'sold', close_idx = ?, winner = ?, price = ?, \
                 bids = ? WHERE auction_id = ?",
            )
            .bind(idx)
            .bind(&e.winner)
            .bind(e.price.units() as i64)
            .bind(e.bids as i64)
            .bind(&e.auction_id)
            .execute(&mut **tx)
            .await?;
            if let Some(s) = &e.settlement {
                // Kept as logged; the settling worker submits it (`crate::settle`).
                sqlx::query(
                    "INSERT OR IGNORE INTO settlements (auction_id, close_idx, chain_id, escrow, \
                     buyer, seller, price, fee_bps, fee_recipient, signature, closed_ms) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&e.auction_id)
                .bind(idx)
                .bind(s.chain_id as i64)
                .bind(s.escrow.to_string())
                .bind(s.buyer.to_string())
                .bind(s.seller.to_string())
                .bind(e.price.units() as i64)
                .bind(i64::from(s.fee_bps))
                .bind(s.fee_recipient.to_string())
                .bind(&s.signature)
                .bind(e.time as i64)
                .execute(&mut **tx)
                .await?;
            }
        }
        Event::AuctionUnsold(e) => {
            sqlx::query(
                "UPDATE auctions SET status = 'unsold', close_idx = ?, bids = ? WHERE auction_id = ?",
            )
            .bind(idx)
            .bind(e.bids as i64)
            .bind(&e.auction_id)
            .execute(&mut **tx)
            .await?;
        }
        Event::RulesCancelled(e) => {
            sqlx::query("INSERT INTO rule_cancels (idx, buyer, commitment) VALUES (?, ?, ?)")
                .bind(idx)
                .bind(&e.buyer)
                .bind(&e.commitment)
                .execute(&mut **tx)
                .await?;
        }
        Event::LeadRejected(_)
        | Event::BidSealed(_)
        | Event::LeadReleased(_)
        | Event::RulesSet(_) => {}
    }
    Ok(())
}

impl Store {
    /// Number of stored leaves.
    pub async fn size(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// The receipt of the last stored leaf.
    pub async fn last_receipt(&self) -> Result<Option<Receipt>, StoreError> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT receipt FROM receipts ORDER BY idx DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .map(|s| serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()?)
    }

    /// Loads the given nodes into a map, in one query.
    pub async fn nodes(&self, keys: &[(u8, u64)]) -> Result<HashMap<(u8, u64), Hash>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let mut q = sqlx::QueryBuilder::new("WITH k(level, idx) AS (");
        q.push_values(keys, |mut b, &(level, idx)| {
            b.push_bind(i64::from(level)).push_bind(idx as i64);
        });
        q.push(") SELECT n.level, n.idx, n.hash FROM nodes n JOIN k ON n.level = k.level AND n.idx = k.idx");
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut out = HashMap::with_capacity(keys.len());
        for row in rows {
            let level: i64 = row.try_get(0)?;
            let idx: i64 = row.try_get(1)?;
            let hash: Vec<u8> = row.try_get(2)?;
            if let Ok(h) = <Hash>::try_from(hash.as_slice()) {
                out.insert((level as u8, idx as u64), h);
            }
        }
        Ok(out)
    }

    /// The frontier at `size`.
    pub async fn frontier(&self, size: u64) -> Result<Frontier, StoreError> {
        let keys = record_accesses(|s| {
            let _ = Frontier::from_store(s, size);
        });
        let map = MapStore(self.nodes(&keys).await?);
        Frontier::from_store(&map, size).map_err(|e| StoreError::Inconsistent(e.to_string()))
    }

    /// Runs a proof generator against stored nodes: first records which nodes it reads, then
    /// fetches exactly those and runs it for real.
    pub async fn with_nodes<T>(&self, f: impl Fn(&dyn NodeStore) -> T) -> Result<T, StoreError> {
        let keys = record_accesses(|s| {
            let _ = f(s);
        });
        let map = MapStore(self.nodes(&keys).await?);
        Ok(f(&map))
    }

    /// Leaf bytes at `index`.
    pub async fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT leaf FROM leaves WHERE idx = ?")
            .bind(index as i64)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The receipt of leaf `index`.
    pub async fn receipt(&self, index: u64) -> Result<Option<Receipt>, StoreError> {
        let row: Option<String> = sqlx::query_scalar("SELECT receipt FROM receipts WHERE idx = ?")
            .bind(index as i64)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|s| serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()?)
    }

    /// The latest checkpoint note.
    pub async fn latest_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT note FROM checkpoints ORDER BY size DESC, created_ms DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores a checkpoint note of `size` leaves, and drops every stored checkpoint of a
    /// smaller tree: only the newest is served (`GET /v1/checkpoint`, `GET /checkpoint`), and
    /// with publishing on the enclave signs one every round (4 a second under load), which
    /// kept for ever would grow the database with time rather than with the log. Verifiers
    /// keep the checkpoints they saw; any two are proved consistent from the tree.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub async fn put_checkpoint(
        &self,
        size: u64,
        note: &[u8],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT OR IGNORE INTO checkpoints (size, note, created_ms) VALUES (?, ?, ?)")
            .bind(size as i64)
            .bind(note)
            .bind(now_ms as i64)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM checkpoints WHERE size < (SELECT MAX(size) FROM checkpoints)")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// The leaf index of every `log.epoch` entry, ascending (`GET /v1/epochs`).
    pub async fn epoch_indexes(&self) -> Result<Vec<u64>, StoreError> {
        let v: Vec<i64> = sqlx::query_scalar("SELECT idx FROM epochs ORDER BY idx")
            .fetch_all(&self.pool)
            .await?;
        Ok(v.into_iter().map(|i| i as u64).collect())
    }

    /// Up to `limit` leaves from `from` (canonical event bytes), in order.
    pub async fn leaves(&self, from: u64, limit: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT leaf FROM leaves WHERE idx >= ? ORDER BY idx LIMIT ?")
                .bind(from as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Stores a tail fetched from the enclave's journal (see `crate::gateway`'s catch-up) in
    /// one transaction: each append with what goes beside its leaf, the lead, bid or release
    /// rows taken from the event and the record. Appends must continue the stored log exactly.
    ///
    /// # Errors
    /// [`StoreError::Inconsistent`] if an index does not follow on, or a record does not
    /// belong to its event; sqlx errors.
    pub async fn store_journal(
        &self,
        entries: &[(WireAppended, JournalRecord)],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.begin_write().await?;
        let appends: Vec<&WireAppended> = entries.iter().map(|(a, _)| a).collect();
        insert_appends(&mut tx, &appends).await?;
        for (a, record) in entries {
            let event: Event = serde_json::from_slice(&a.leaf)
                .map_err(|e| StoreError::Inconsistent(format!("leaf {}: {e}", a.index)))?;
            let idx = a.index as i64;
            match (&event, record) {
                (Event::LeadAccepted(_) | Event::LeadRejected(_), JournalRecord::Lead(lead)) => {
                    let (lead_id, seller, hash, accepted, reason, score, tag) = match &event {
                        Event::LeadAccepted(e) => (
                            &e.lead_id,
                            &e.seller,
                            &e.ciphertext_sha256,
                            1i64,
                            None,
                            Some(i64::from(e.score)),
                            hex::decode(&e.email_tag).ok(),
                        ),
                        Event::LeadRejected(e) => (
                            &e.lead_id,
                            &e.seller,
                            &e.ciphertext_sha256,
                            0i64,
                            Some(e.reason.as_str()),
                            None,
                            None,
                        ),
                        _ => unreachable!("matched above"),
                    };
                    sqlx::query(
                        "INSERT INTO leads (lead_id, seller, ciphertext_sha256, sealed, accepted, \
                         reason, score, idx, email_tag, created_ms) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(lead_id)
                    .bind(seller)
                    .bind(hash)
                    .bind(json(lead)?)
                    .bind(accepted)
                    .bind(reason)
                    .bind(score)
                    .bind(idx)
                    .bind(tag)
                    .bind(now_ms as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                (Event::BidSealed(e), JournalRecord::Bid(bid)) => {
                    sqlx::query(
                        "INSERT INTO bids (idx, auction_id, buyer, commitment, sealed) \
                         VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(idx)
                    .bind(&e.auction_id)
                    .bind(&e.buyer)
                    .bind(&e.commitment)
                    .bind(json(bid)?)
                    .execute(&mut *tx)
                    .await?;
                }
                (Event::LeadReleased(e), JournalRecord::Release(released)) => {
                    sqlx::query(
                        "INSERT INTO releases (idx, lead_id, buyer, released) VALUES (?, ?, ?, ?)",
                    )
                    .bind(idx)
                    .bind(&e.lead_id)
                    .bind(&e.buyer)
                    .bind(json(released)?)
                    .execute(&mut *tx)
                    .await?;
                }
                (Event::RulesSet(_), JournalRecord::Rules(sealed)) => {
                    super::rules::insert_rule_set(&mut tx, a.index, sealed).await?;
                }
                (
                    Event::LogEpoch(_)
                    | Event::AuctionClosed(_)
                    | Event::AuctionUnsold(_)
                    | Event::RulesCancelled(_),
                    JournalRecord::None,
                ) => {}
                _ => {
                    return Err(StoreError::Inconsistent(format!(
                        "journal entry {}: record does not match its event",
                        a.index
                    )))
                }
            }
        }
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// Stores appends (and the submissions they answer) in one transaction. Appends must
    /// continue the stored log exactly.
    ///
    /// # Errors
    /// [`StoreError::Inconsistent`] if an index does not follow on; sqlx errors.
    pub async fn store_appends(
        &self,
        appends: &[&WireAppended],
        submissions: &[StoredSubmission<'_>],
        ruled_bids: &[super::StoredBid<'_>],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.begin_write().await?;
        insert_appends(&mut tx, appends).await?;
        let logged: Vec<_> = submissions
            .iter()
            .filter_map(|s| match s.outcome {
                SubmitOutcome::Logged {
                    lead_id,
                    accepted,
                    reason,
                    score,
                    email_tag,
                    appended,
                    ..
                } => Some((
                    s,
                    lead_id,
                    accepted,
                    reason,
                    score,
                    email_tag,
                    appended.index,
                )),
                SubmitOutcome::Refused(_) => None,
            })
            .collect();
        if !logged.is_empty() {
            sqlx::QueryBuilder::new(
                "INSERT INTO leads (lead_id, seller, ciphertext_sha256, sealed, accepted, \
                 reason, score, idx, email_tag, created_ms) ",
            )
            .push_values(
                &logged,
                |mut b, (s, lead_id, accepted, reason, score, email_tag, idx)| {
                    b.push_bind(lead_id.as_str())
                        .push_bind(s.seller)
                        .push_bind(s.ciphertext_sha256)
                        .push_bind(s.sealed_json)
                        .push_bind(i64::from(**accepted))
                        .push_bind(reason.as_deref())
                        .push_bind(score.map(i64::from))
                        .push_bind(*idx as i64)
                        .push_bind(email_tag.as_ref().map(|t| t.to_vec()))
                        .push_bind(now_ms as i64);
                },
            )
            .build()
            .execute(&mut *tx)
            .await?;
        }
        if !ruled_bids.is_empty() {
            super::auctions::insert_bids(&mut tx, ruled_bids).await?;
        }
        tx.commit().await?;
        write.done();
        Ok(())
    }
}
