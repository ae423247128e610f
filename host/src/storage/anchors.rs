//! On-chain anchoring of checkpoints: each one's state and transaction.

use leadgate_verifier::merkle::Hash;
use sqlx::Row as _;

use leadgate_verifier::api::AnchorState;

use super::{bad_column, Store, StoreError};

/// The `state` column.
fn anchor_state(s: &str) -> Result<AnchorState, sqlx::Error> {
    Ok(match s {
        "pending" => AnchorState::Pending,
        "sent" => AnchorState::Sent,
        "anchored" => AnchorState::Anchored,
        "superseded" => AnchorState::Superseded,
        "conflict" => AnchorState::Conflict,
        other => {
            return Err(sqlx::Error::Decode(
                format!("anchor state {other:?}").into(),
            ))
        }
    })
}

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

pub use leadgate_verifier::api::AnchorStatus;

/// An anchor row as stored.
#[derive(sqlx::FromRow)]
struct AnchorRow {
    size: i64,
    root: Vec<u8>,
    state: String,
    tx_hash: Option<Vec<u8>>,
    block_number: Option<i64>,
    gas_used: Option<i64>,
    attempts: i64,
    last_error: Option<String>,
    signature: Vec<u8>,
}

impl Store {
    /// Records a checkpoint to anchor: `root` 32 bytes, `signature` the enclave's 65-byte
    /// EIP-712 signature for (`chain_id`, `contract`). A size already recorded is kept as is.
    pub async fn put_anchor(
        &self,
        size: u64,
        root: &Hash,
        signature: &[u8],
        target: (u64, &[u8; 20]),
        now_ms: u64,
    ) -> Result<(), StoreError> {
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
    ) -> Result<Vec<AnchorRecord>, StoreError> {
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
    ) -> Result<(), StoreError> {
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
    pub async fn anchor_failed(&self, size: u64, error: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE anchors SET attempts = attempts + 1, last_error = ? WHERE size = ?")
            .bind(error)
            .bind(size as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every anchor row, oldest first, as JSON-ready records (`GET /v1/anchors`).
    pub async fn anchors(&self) -> Result<Vec<AnchorStatus>, StoreError> {
        let rows: Vec<AnchorRow> = sqlx::query_as(
            "SELECT size, root, state, tx_hash, block_number, gas_used, attempts, last_error,
             signature FROM anchors ORDER BY size",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                Ok(AnchorStatus {
                    size: r.size as u64,
                    root: hex::encode(r.root),
                    state: anchor_state(&r.state)?,
                    tx_hash: r.tx_hash.map(|t| format!("0x{}", hex::encode(t))),
                    block_number: r.block_number.map(|b| b as u64),
                    gas_used: r.gas_used.map(|g| g as u64),
                    attempts: r.attempts as u64,
                    last_error: r.last_error,
                    signature: hex::encode(r.signature),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// When the latest checkpoint was stored (Unix ms), if any, and the largest anchored
    /// checkpoint size, if any (for `GET /metrics`).
    pub async fn checkpoint_and_anchor_marks(
        &self,
    ) -> Result<(Option<u64>, Option<u64>), StoreError> {
        let (created, anchored): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT MAX(created_ms) FROM checkpoints),
                    (SELECT MAX(size) FROM anchors WHERE state = 'anchored')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((created.map(|v| v as u64), anchored.map(|v| v as u64)))
    }
}
