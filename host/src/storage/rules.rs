//! Buyers' auto-bid rule sets: the sealed rule set of each `rules.set` (the host cannot open
//! it), and the cancellations, from which the active ones are handed back to a restarting
//! enclave.

use leadgate_protocol::WireAppended;
use leadgate_verifier::autobid::SealedRuleSet;

use super::log::insert_appends;
use super::{Store, StoreError};

/// One logged rule change of a buyer, as `GET /v1/rules/{buyer}` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleChange {
    /// Leaf index of the `rules.set` or `rules.cancelled`.
    pub index: u64,
    /// `rules.set` or `rules.cancelled`.
    pub kind: &'static str,
    /// The rule set's commitment, hex.
    pub commitment: String,
}

impl Store {
    /// Stores a `rules.set` append with the sealed rule set, or a `rules.cancelled` append
    /// (`sealed` none), in one transaction.
    ///
    /// # Errors
    /// As [`Store::store_appends`].
    pub async fn store_rules(
        &self,
        appended: &WireAppended,
        sealed: Option<&SealedRuleSet>,
    ) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.begin_write().await?;
        insert_appends(&mut tx, &[appended]).await?;
        if let Some(s) = sealed {
            insert_rule_set(&mut tx, appended.index, s).await?;
        }
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// The sealed rule sets active at the stored tip: each buyer's last `rules.set`, unless
    /// a `rules.cancelled` of it followed.
    ///
    /// # Errors
    /// sqlx errors; [`StoreError::Inconsistent`] for a stored row that does not parse.
    pub async fn active_rule_sets(&self) -> Result<Vec<SealedRuleSet>, StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT r.sealed FROM rule_sets r \
             WHERE r.idx = (SELECT MAX(idx) FROM rule_sets WHERE buyer = r.buyer) \
             AND NOT EXISTS (SELECT 1 FROM rule_cancels c WHERE c.commitment = r.commitment) \
             ORDER BY r.idx",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(json,)| {
                serde_json::from_str(&json).map_err(|e| StoreError::Inconsistent(e.to_string()))
            })
            .collect()
    }

    /// Buyer `buyer`'s logged rule changes, oldest first.
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn rule_changes(&self, buyer: &str) -> Result<Vec<RuleChange>, StoreError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT idx, commitment, 1 FROM rule_sets WHERE buyer = ? \
             UNION ALL SELECT idx, commitment, 0 FROM rule_cancels WHERE buyer = ? \
             ORDER BY 1",
        )
        .bind(buyer)
        .bind(buyer)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(idx, commitment, set)| RuleChange {
                index: idx as u64,
                kind: if set == 1 {
                    "rules.set"
                } else {
                    "rules.cancelled"
                },
                commitment,
            })
            .collect())
    }
}

/// Inserts the sealed rule set of the `rules.set` at `index`.
pub(super) async fn insert_rule_set(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    index: u64,
    sealed: &SealedRuleSet,
) -> Result<(), StoreError> {
    let commitment = sealed
        .decode()
        .map(|d| hex::encode(d.commitment))
        .map_err(|e| StoreError::Inconsistent(format!("rules.set {index}: {e}")))?;
    let json =
        serde_json::to_string(sealed).map_err(|e| StoreError::Inconsistent(e.to_string()))?;
    sqlx::query(
        "INSERT INTO rule_sets (idx, buyer, commitment, issued_at, sealed) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(index as i64)
    .bind(&sealed.buyer)
    .bind(commitment)
    .bind(sealed.issued_at_ms as i64)
    .bind(json)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
