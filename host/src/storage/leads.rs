//! Sellers' submissions: the sealed request, its verdict and receipt.

use std::collections::HashMap;

use leadgate_protocol::SubmitOutcome;
use leadgate_verifier::api::Verdict;
use leadgate_verifier::receipt::Receipt;
use sqlx::{FromRow as _, Row as _};

use super::{Store, StoreError};

pub use leadgate_verifier::api::LeadRecord;

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

/// A lead row as stored (`leads` joined with `receipts`).
#[derive(sqlx::FromRow)]
struct LeadRow {
    lead_id: String,
    seller: String,
    accepted: bool,
    reason: Option<String>,
    score: Option<i64>,
    idx: i64,
    #[sqlx(json)]
    receipt: Receipt,
}

/// A [`LeadRecord`] from a row with `lead_id, seller, accepted, reason, score, idx, receipt`.
fn lead_record(row: &sqlx::sqlite::SqliteRow) -> Result<LeadRecord, sqlx::Error> {
    let r = LeadRow::from_row(row)?;
    Ok(LeadRecord {
        lead_id: r.lead_id,
        seller: r.seller,
        verdict: if r.accepted {
            Verdict::Accepted
        } else {
            Verdict::Rejected
        },
        reason: r.reason,
        score: r.score.map(|s| s as u8),
        index: r.idx as u64,
        receipt: r.receipt,
    })
}

impl Store {
    /// The stored answers for these ciphertext hashes (hex), keyed by hash: the sealed request
    /// as stored and the lead's record. One query per batch; a retry of a stored submission is
    /// answered from here.
    pub async fn submission_answers(
        &self,
        hashes: &[&str],
    ) -> Result<HashMap<String, (String, LeadRecord)>, StoreError> {
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

    /// A lead's record.
    pub async fn lead(&self, lead_id: &str) -> Result<Option<LeadRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT l.lead_id, l.seller, l.accepted, l.reason, l.score, l.idx, r.receipt \
             FROM leads l JOIN receipts r ON r.idx = l.idx WHERE l.lead_id = ?",
        )
        .bind(lead_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(lead_record).transpose()?)
    }

    /// The sealed submission (JSON) of an accepted lead.
    pub async fn sealed_lead(&self, lead_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM leads WHERE lead_id = ? AND accepted = 1")
                .bind(lead_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
