//! Durable storage on SQLite (WAL, `synchronous=FULL`) through sqlx.
//!
//! Tables: `leaves` (event bytes by index), `nodes` (every complete subtree hash, as the enclave
//! returned them), `receipts`, `leads` (ciphertexts and verdicts; no plaintext exists here),
//! `checkpoints` (signed notes), `sealed` (the enclave's sealed secrets). Schema migrations are
//! numbered SQL scripts applied in order and recorded in `PRAGMA user_version`.

use std::collections::HashMap;
use std::str::FromStr as _;

use leadgate_protocol::{JournalRecord, SubmitOutcome, WireAppended};
use leadgate_verifier::event::Event;
use leadgate_verifier::merkle::{Frontier, Hash, NodeStore};
use leadgate_verifier::receipt::Receipt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};

/// Migrations, applied in order; `PRAGMA user_version` holds how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_auctions.sql"),
    include_str!("../migrations/0003_anchors.sql"),
];

/// A checkpoint still to anchor.
#[derive(Debug, Clone)]
pub struct AnchorRecord {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The enclave's 65-byte EIP-712 signature.
    pub signature: Vec<u8>,
    /// The transaction already sent for it, if any (32 bytes).
    pub tx_hash: Option<[u8; 32]>,
}

/// An anchor's public status, as `GET /v1/anchors` serves it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AnchorStatus {
    /// Tree size.
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
    /// `pending`, `sent`, `anchored`, `superseded` or `conflict`.
    pub state: String,
    /// `0x`-prefixed transaction hash, once sent.
    pub tx_hash: Option<String>,
    /// Block of the anchoring transaction.
    pub block_number: Option<u64>,
    /// Gas the anchoring transaction used.
    pub gas_used: Option<u64>,
    /// Failed attempts so far.
    pub attempts: u64,
    /// The last failure (RPC or revert text).
    pub last_error: Option<String>,
    /// The enclave's 65-byte EIP-712 signature, hex: anyone may submit the anchor with it.
    pub signature: String,
}

fn bad_column(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} has the wrong length").into())
}

/// The host database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// When a write last failed: connections opened before it are closed as they come back
    /// to the pool (see [`Store::open`]).
    write_failed_at: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// A stored lead's public record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeadRecord {
    /// Lead id.
    pub lead_id: String,
    /// Seller public key, hex.
    pub seller: String,
    /// `accepted` or `rejected`.
    pub verdict: String,
    /// Rejection reason.
    pub reason: Option<String>,
    /// Score, for accepted leads.
    pub score: Option<u8>,
    /// Leaf index.
    pub index: u64,
    /// The signed receipt.
    pub receipt: Receipt,
}

/// A sealed bid to store with its `bid.sealed` leaf index.
pub struct StoredBid<'a> {
    /// Leaf index of its `bid.sealed`.
    pub index: u64,
    /// Auction id.
    pub auction_id: &'a str,
    /// Buyer id, hex.
    pub buyer: &'a str,
    /// Commitment, hex.
    pub commitment: &'a str,
    /// The sealed bid JSON.
    pub sealed_json: &'a str,
}

/// Filters for [`Store::auctions`].
#[derive(Debug, Clone, Default)]
pub struct AuctionFilter {
    /// `open`, `sold` or `unsold`; all if `None`.
    pub status: Option<String>,
    /// Exact industry.
    pub industry: Option<String>,
    /// Exact region.
    pub region: Option<String>,
    /// Lowest score.
    pub min_score: Option<u8>,
    /// Winning buyer id.
    pub winner: Option<String>,
    /// Page size.
    pub limit: u32,
    /// Rows to skip.
    pub offset: u32,
}

/// An auction as served: every field comes from public log events.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuctionRecord {
    /// Auction (lead) id.
    pub auction_id: String,
    /// Leaf index of its `lead.accepted`.
    pub open_index: u64,
    /// The redacted listing.
    pub listing: serde_json::Value,
    /// Score 0–100.
    pub score: u8,
    /// Reserve, smallest token units.
    pub reserve: u64,
    /// Close time, Unix ms (enclave clock).
    pub closes_at: u64,
    /// `first_price` or `second_price`.
    pub pricing: String,
    /// `open`, `sold` or `unsold`.
    pub status: String,
    /// Leaf index of its `auction.closed` / `auction.unsold`.
    pub close_index: Option<u64>,
    /// Winning buyer id.
    pub winner: Option<String>,
    /// The winner's price, smallest token units.
    pub price: Option<u64>,
    /// Bids considered at close.
    pub bids: Option<u64>,
}

const AUCTION_COLUMNS: &str = "auction_id, open_idx, listing, score, reserve, closes_at, pricing, \
    status, close_idx, winner, price, bids";

fn auction_record(r: &sqlx::sqlite::SqliteRow) -> Result<AuctionRecord, sqlx::Error> {
    let listing: String = r.try_get(2)?;
    Ok(AuctionRecord {
        auction_id: r.try_get(0)?,
        open_index: r.try_get::<i64, _>(1)? as u64,
        listing: serde_json::from_str(&listing).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        score: r.try_get::<i64, _>(3)? as u8,
        reserve: r.try_get::<i64, _>(4)? as u64,
        closes_at: r.try_get::<i64, _>(5)? as u64,
        pricing: r.try_get(6)?,
        status: r.try_get(7)?,
        close_index: r.try_get::<Option<i64>, _>(8)?.map(|v| v as u64),
        winner: r.try_get(9)?,
        price: r.try_get::<Option<i64>, _>(10)?.map(|v| v as u64),
        bids: r.try_get::<Option<i64>, _>(11)?.map(|v| v as u64),
    })
}

/// A submission to store with its outcome.
pub struct StoredSubmission<'a> {
    /// Seller public key, hex.
    pub seller: &'a str,
    /// SHA-256(enc || ciphertext), hex.
    pub ciphertext_sha256: &'a str,
    /// The full sealed request as posted (JSON): ciphertext, enc, signature.
    pub sealed_json: &'a str,
    /// The enclave's outcome.
    pub outcome: &'a SubmitOutcome,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// # Errors
    /// Any sqlx error.
    pub async fn open(path: &std::path::Path) -> Result<Self, sqlx::Error> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Inserts land on random pages of the hash-keyed indexes: a 32 MiB page cache per
            // connection and memory-mapped reads keep them from going through read(2). WAL
            // checkpoints every 64 MiB instead of 4 MiB write each hot page once per
            // checkpoint rather than ~16 times (host CPU per submission -18%).
            .pragma("cache_size", "-32768")
            .pragma("mmap_size", "1073741824")
            .pragma("wal_autocheckpoint", "16384");
        let write_failed_at: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>> =
            Default::default();
        let stale = {
            let failed = write_failed_at.clone();
            move |age: std::time::Duration| {
                failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some_and(|at| age > at.elapsed())
            }
        };
        let stale_too = stale.clone();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // Storage faults heal without a restart. A write that failed (disk full, read-only
            // files, I/O error) can leave its connection inside a transaction SQLite would not
            // roll back (reused, it would serve its own uncommitted rows as the log). Every
            // write records its failure (`WriteGuard`), and every connection opened before the
            // last failed write is closed instead of reused, checked both when it comes back
            // to the pool and when it is taken out (the failure may be recorded just after
            // its connection came back); the pool opens fresh ones. The check is a clock read:
            // nothing is asked of SQLite on the normal path.
            .after_release(move |_, meta| {
                let keep = !stale(meta.age);
                Box::pin(async move { Ok(keep) })
            })
            .before_acquire(move |_, meta| {
                let keep = !stale_too(meta.age);
                Box::pin(async move { Ok(keep) })
            })
            // SQLite opens a file it may not write read-only, silently; such a connection
            // would fail every write until closed. Refuse it at connect (a write lock it
            // cannot take), so the pool retries until the files are writable again.
            .after_connect(|conn, _| Box::pin(async move { writable(conn).await }))
            .connect_with(opts)
            .await?;
        let store = Self {
            pool,
            write_failed_at,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Starts a write: dropped without [`WriteGuard::done`], it records a failure.
    fn write(&self) -> WriteGuard<'_> {
        WriteGuard(Some(&self.write_failed_at))
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *conn)
            .await?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::raw_sql(&format!("PRAGMA user_version = {}", i + 1))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(migration = i + 1, "applied migration");
        }
        Ok(())
    }

    /// The enclave's sealed secrets, if stored.
    pub async fn sealed_secrets(&self) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT blob FROM sealed WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
    }

    /// Stores the sealed secrets (replacing any).
    pub async fn put_sealed_secrets(&self, blob: &[u8]) -> Result<(), sqlx::Error> {
        let write = self.write();
        sqlx::query("INSERT INTO sealed (id, blob) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET blob = excluded.blob")
            .bind(blob)
            .execute(&self.pool)
            .await?;
        write.done();
        Ok(())
    }

    /// Number of stored leaves.
    pub async fn size(&self) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM leaves")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// The receipt of the last stored leaf.
    pub async fn last_receipt(&self) -> Result<Option<Receipt>, sqlx::Error> {
        let row: Option<String> =
            sqlx::query_scalar("SELECT receipt FROM receipts ORDER BY idx DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        row.map(|s| serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    }

    /// Loads the given nodes into a map, in one query.
    pub async fn nodes(&self, keys: &[(u8, u64)]) -> Result<HashMap<(u8, u64), Hash>, sqlx::Error> {
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
    pub async fn with_nodes<T>(&self, f: impl Fn(&dyn NodeStore) -> T) -> Result<T, sqlx::Error> {
        let keys = record_accesses(|s| {
            let _ = f(s);
        });
        let map = MapStore(self.nodes(&keys).await?);
        Ok(f(&map))
    }

    /// The latest checkpoint note.
    pub async fn latest_checkpoint(&self) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT note FROM checkpoints ORDER BY size DESC, created_ms DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
    }

    /// When the latest checkpoint was stored (Unix ms), if any, and the largest anchored
    /// checkpoint size, if any (for `GET /metrics`).
    pub async fn checkpoint_and_anchor_marks(
        &self,
    ) -> Result<(Option<u64>, Option<u64>), sqlx::Error> {
        let (created, anchored): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MAX(created_ms) FROM checkpoints),
                    (SELECT MAX(size) FROM anchors WHERE state = 'anchored')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((created.map(|v| v as u64), anchored.map(|v| v as u64)))
    }

    /// Stores a checkpoint note of `size` leaves.
    pub async fn put_checkpoint(
        &self,
        size: u64,
        note: &[u8],
        now_ms: u64,
    ) -> Result<(), sqlx::Error> {
        let write = self.write();
        sqlx::query("INSERT OR IGNORE INTO checkpoints (size, note, created_ms) VALUES (?, ?, ?)")
            .bind(size as i64)
            .bind(note)
            .bind(now_ms as i64)
            .execute(&self.pool)
            .await?;
        write.done();
        Ok(())
    }

    /// Records a checkpoint to anchor: `root` 32 bytes, `signature` the enclave's 65-byte
    /// EIP-712 signature for (`chain_id`, `contract`). A size already recorded is kept as is.
    pub async fn put_anchor(
        &self,
        size: u64,
        root: &Hash,
        signature: &[u8],
        target: (u64, &[u8; 20]),
        now_ms: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT OR IGNORE INTO anchors (size, root, signature, chain_id, contract, created_ms)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(size as i64)
        .bind(&root[..])
        .bind(signature)
        .bind(target.0 as i64)
        .bind(&target.1[..])
        .bind(now_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Checkpoints still to anchor on (`chain_id`, `contract`) (`pending` or `sent`), oldest
    /// first.
    pub async fn unanchored(
        &self,
        chain_id: u64,
        contract: &[u8; 20],
    ) -> Result<Vec<AnchorRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT size, root, signature, tx_hash FROM anchors
             WHERE state IN ('pending', 'sent') AND chain_id = ? AND contract = ? ORDER BY size",
        )
        .bind(chain_id as i64)
        .bind(&contract[..])
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let root: Vec<u8> = r.try_get("root")?;
                let tx: Option<Vec<u8>> = r.try_get("tx_hash")?;
                Ok(AnchorRecord {
                    size: r.try_get::<i64, _>("size")? as u64,
                    root: root.try_into().map_err(|_| bad_column("anchors.root"))?,
                    signature: r.try_get("signature")?,
                    tx_hash: tx
                        .map(|t| t.try_into().map_err(|_| bad_column("anchors.tx_hash")))
                        .transpose()?,
                })
            })
            .collect()
    }

    /// Moves an anchor to `state` (`sent`, `anchored`, `superseded`, `conflict`, or back to
    /// `pending`), with its transaction hash, block and gas when known.
    pub async fn set_anchor_state(
        &self,
        size: u64,
        state: &str,
        tx: Option<&[u8; 32]>,
        mined: Option<(u64, u64)>,
        now_ms: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE anchors SET state = ?, tx_hash = ?, block_number = ?, gas_used = ?,
             anchored_ms = CASE WHEN ? = 'anchored' THEN ? ELSE anchored_ms END, last_error = NULL
             WHERE size = ?",
        )
        .bind(state)
        .bind(tx.map(|t| &t[..]))
        .bind(mined.map(|m| m.0 as i64))
        .bind(mined.map(|m| m.1 as i64))
        .bind(state)
        .bind(now_ms as i64)
        .bind(size as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a failed attempt on an anchor and keeps its error (no PII: RPC and revert text).
    pub async fn anchor_failed(&self, size: u64, error: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE anchors SET attempts = attempts + 1, last_error = ? WHERE size = ?")
            .bind(error)
            .bind(size as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every anchor row, oldest first, as JSON-ready records (`GET /v1/anchors`).
    pub async fn anchors(&self) -> Result<Vec<AnchorStatus>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT size, root, state, tx_hash, block_number, gas_used, attempts, last_error,
             signature FROM anchors ORDER BY size",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let root: Vec<u8> = r.try_get("root")?;
                let tx: Option<Vec<u8>> = r.try_get("tx_hash")?;
                Ok(AnchorStatus {
                    size: r.try_get::<i64, _>("size")? as u64,
                    root: hex::encode(root),
                    state: r.try_get("state")?,
                    tx_hash: tx.map(|t| format!("0x{}", hex::encode(t))),
                    block_number: r
                        .try_get::<Option<i64>, _>("block_number")?
                        .map(|b| b as u64),
                    gas_used: r.try_get::<Option<i64>, _>("gas_used")?.map(|g| g as u64),
                    attempts: r.try_get::<i64, _>("attempts")? as u64,
                    last_error: r.try_get("last_error")?,
                    signature: hex::encode(r.try_get::<Vec<u8>, _>("signature")?),
                })
            })
            .collect()
    }

    /// Email tags of all accepted leads, in log order (32 bytes each).
    pub async fn email_tags(&self) -> Result<Vec<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT email_tag FROM leads WHERE email_tag IS NOT NULL ORDER BY idx")
            .fetch_all(&self.pool)
            .await
    }

    /// Leaf bytes at `index`.
    pub async fn leaf(&self, index: u64) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT leaf FROM leaves WHERE idx = ?")
            .bind(index as i64)
            .fetch_optional(&self.pool)
            .await
    }

    /// The stored answers for these ciphertext hashes (hex), keyed by hash: the sealed request
    /// as stored and the lead's record. One query per batch; a retry of a stored submission is
    /// answered from here.
    pub async fn submission_answers(
        &self,
        hashes: &[&str],
    ) -> Result<HashMap<String, (String, LeadRecord)>, sqlx::Error> {
        if hashes.is_empty() {
            return Ok(Default::default());
        }
        let mut q = sqlx::QueryBuilder::new(
            "SELECT l.ciphertext_sha256, l.sealed, l.lead_id, l.seller, l.accepted, l.reason, \
             l.score, l.idx, r.receipt FROM leads l JOIN receipts r ON r.idx = l.idx \
             WHERE l.ciphertext_sha256 IN (",
        );
        let mut sep = q.separated(", ");
        for h in hashes {
            sep.push_bind(*h);
        }
        sep.push_unseparated(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, lead_record(row)?))))
            .collect()
    }

    /// The stored answers for these bid commitments (hex), keyed by commitment: the sealed bid
    /// JSON as stored, its `bid.sealed` index and receipt.
    pub async fn bid_answers(
        &self,
        commitments: &[&str],
    ) -> Result<HashMap<String, (String, u64, Receipt)>, sqlx::Error> {
        if commitments.is_empty() {
            return Ok(Default::default());
        }
        let mut q = sqlx::QueryBuilder::new(
            "SELECT b.commitment, b.sealed, b.idx, r.receipt FROM bids b \
             JOIN receipts r ON r.idx = b.idx WHERE b.commitment IN (",
        );
        let mut sep = q.separated(", ");
        for c in commitments {
            sep.push_bind(*c);
        }
        sep.push_unseparated(")");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let receipt: String = row.try_get(3)?;
                let receipt =
                    serde_json::from_str(&receipt).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((
                    row.try_get(0)?,
                    (row.try_get(1)?, row.try_get::<i64, _>(2)? as u64, receipt),
                ))
            })
            .collect()
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
        let mut tx = self.pool.begin().await?;
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
                (
                    Event::LogEpoch(_) | Event::AuctionClosed(_) | Event::AuctionUnsold(_),
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

    /// A lead's record.
    pub async fn lead(&self, lead_id: &str) -> Result<Option<LeadRecord>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT l.lead_id, l.seller, l.accepted, l.reason, l.score, l.idx, r.receipt \
             FROM leads l JOIN receipts r ON r.idx = l.idx WHERE l.lead_id = ?",
        )
        .bind(lead_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(lead_record).transpose()
    }

    /// Stores `bid.sealed` appends with their sealed bids (same order), in one transaction.
    ///
    /// # Errors
    /// As [`Store::store_appends`].
    pub async fn store_bids(
        &self,
        appends: &[&WireAppended],
        bids: &[StoredBid<'_>],
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.pool.begin().await?;
        insert_appends(&mut tx, appends).await?;
        if !bids.is_empty() {
            sqlx::QueryBuilder::new(
                "INSERT INTO bids (idx, auction_id, buyer, commitment, sealed) ",
            )
            .push_values(bids, |mut b, bid| {
                b.push_bind(bid.index as i64)
                    .push_bind(bid.auction_id)
                    .push_bind(bid.buyer)
                    .push_bind(bid.commitment)
                    .push_bind(bid.sealed_json);
            })
            .build()
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// Stores close events (the auctions table follows them).
    ///
    /// # Errors
    /// As [`Store::store_appends`].
    pub async fn store_closes(&self, appends: &[&WireAppended]) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.pool.begin().await?;
        insert_appends(&mut tx, appends).await?;
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// Stores a `lead.released` append with the envelope handed to the buyer.
    ///
    /// # Errors
    /// As [`Store::store_appends`].
    pub async fn store_release(
        &self,
        append: &WireAppended,
        lead_id: &str,
        buyer: &str,
        released_json: &str,
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.pool.begin().await?;
        insert_appends(&mut tx, &[append]).await?;
        sqlx::query("INSERT INTO releases (idx, lead_id, buyer, released) VALUES (?, ?, ?, ?)")
            .bind(append.index as i64)
            .bind(lead_id)
            .bind(buyer)
            .bind(released_json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// The sealed submission (JSON) of an accepted lead.
    pub async fn sealed_lead(&self, lead_id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT sealed FROM leads WHERE lead_id = ? AND accepted = 1")
            .bind(lead_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// `replay_from` of the last stored `log.epoch`.
    pub async fn last_replay_from(&self) -> Result<Option<u64>, sqlx::Error> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT replay_from FROM epochs ORDER BY idx DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.map(|v| v as u64))
    }

    /// The leaf index of every `log.epoch` entry, ascending (`GET /v1/epochs`).
    pub async fn epoch_indexes(&self) -> Result<Vec<u64>, sqlx::Error> {
        let v: Vec<i64> = sqlx::query_scalar("SELECT idx FROM epochs ORDER BY idx")
            .fetch_all(&self.pool)
            .await?;
        Ok(v.into_iter().map(|i| i as u64).collect())
    }

    /// The receipt of leaf `index`.
    pub async fn receipt(&self, index: u64) -> Result<Option<Receipt>, sqlx::Error> {
        let row: Option<String> = sqlx::query_scalar("SELECT receipt FROM receipts WHERE idx = ?")
            .bind(index as i64)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|s| serde_json::from_str(&s).map_err(|e| sqlx::Error::Decode(Box::new(e))))
            .transpose()
    }

    /// Up to `limit` leaves from `from`, each with the sealed bid JSON of a `bid.sealed`.
    pub async fn restore_entries(
        &self,
        from: u64,
        limit: u64,
    ) -> Result<Vec<(Vec<u8>, Option<String>)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT l.leaf, b.sealed FROM leaves l LEFT JOIN bids b ON b.idx = l.idx \
             WHERE l.idx >= ? ORDER BY l.idx LIMIT ?",
        )
        .bind(from as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Auctions matching `filter`, soonest close first.
    pub async fn auctions(
        &self,
        filter: &AuctionFilter,
    ) -> Result<Vec<AuctionRecord>, sqlx::Error> {
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {AUCTION_COLUMNS} FROM auctions WHERE 1 = 1"
        ));
        if let Some(st) = &filter.status {
            q.push(" AND status = ").push_bind(st.clone());
        }
        if let Some(v) = &filter.industry {
            q.push(" AND industry = ").push_bind(v.clone());
        }
        if let Some(v) = &filter.region {
            q.push(" AND region = ").push_bind(v.clone());
        }
        if let Some(v) = filter.min_score {
            q.push(" AND score >= ").push_bind(i64::from(v));
        }
        if let Some(v) = &filter.winner {
            q.push(" AND winner = ").push_bind(v.clone());
        }
        q.push(" ORDER BY closes_at, auction_id LIMIT ")
            .push_bind(filter.limit as i64)
            .push(" OFFSET ")
            .push_bind(filter.offset as i64);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(auction_record).collect()
    }

    /// One auction and its `bid.sealed` entries (index, buyer, commitment) in log order.
    pub async fn auction(
        &self,
        id: &str,
    ) -> Result<Option<(AuctionRecord, Vec<(u64, String, String)>)>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {AUCTION_COLUMNS} FROM auctions WHERE auction_id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let rec = auction_record(&row)?;
        let bids = sqlx::query(
            "SELECT idx, buyer, commitment FROM bids WHERE auction_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some((rec, bids)))
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
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        write.done();
        Ok(())
    }
}

/// Inserts appends (leaves, receipts, nodes) that must continue the stored log exactly, and
/// indexes the events the API serves from tables (auctions, epochs).
async fn insert_appends(
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
        Event::LeadRejected(_) | Event::BidSealed(_) | Event::LeadReleased(_) => {}
    }
    Ok(())
}

/// Records a failed write unless [`WriteGuard::done`] is called (see [`Store::open`]).
struct WriteGuard<'a>(Option<&'a std::sync::Mutex<Option<std::time::Instant>>>);

impl WriteGuard<'_> {
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(at) = self.0 {
            *at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        }
    }
}

/// Whether a new connection can write: it takes and gives back the write lock.
async fn writable(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, "BEGIN IMMEDIATE; ROLLBACK;").await?;
    Ok(())
}

/// JSON of a record to store.
fn json(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Inconsistent(e.to_string()))
}

/// A [`LeadRecord`] from a row with `lead_id, seller, accepted, reason, score, idx, receipt`.
fn lead_record(row: &sqlx::sqlite::SqliteRow) -> Result<LeadRecord, sqlx::Error> {
    let receipt: String = row.try_get("receipt")?;
    Ok(LeadRecord {
        lead_id: row.try_get("lead_id")?,
        seller: row.try_get("seller")?,
        verdict: if row.try_get::<i64, _>("accepted")? != 0 {
            "accepted"
        } else {
            "rejected"
        }
        .into(),
        reason: row.try_get("reason")?,
        score: row.try_get::<Option<i64>, _>("score")?.map(|s| s as u8),
        index: row.try_get::<i64, _>("idx")? as u64,
        receipt: serde_json::from_str(&receipt).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// What the enclave returned does not continue what is stored.
    #[error("storage inconsistent: {0}")]
    Inconsistent(String),
}

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
