//! Settlements the enclave signed at close (copied from the logged `auction.closed` by
//! `log.rs`) and where the payment of each stands.

use leadgate_verifier::api::{SettlementState, SettlementStatus};
use leadgate_verifier::auction::TokenAmount;

use super::{Store, StoreError};

fn out_of_range(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} is out of range").into())
}

/// The `state` column.
fn settlement_state(s: &str) -> Result<SettlementState, sqlx::Error> {
    Ok(match s {
        "pending" => SettlementState::Pending,
        "sent" => SettlementState::Sent,
        "settled" => SettlementState::Settled,
        "failed" => SettlementState::Failed,
        other => {
            return Err(sqlx::Error::Decode(
                format!("settlement state {other:?}").into(),
            ))
        }
    })
}

/// The `state` column's value for `state`.
pub fn state_name(state: SettlementState) -> &'static str {
    match state {
        SettlementState::Pending => "pending",
        SettlementState::Sent => "sent",
        SettlementState::Settled => "settled",
        SettlementState::Failed => "failed",
    }
}

/// A settlement row as stored.
#[derive(sqlx::FromRow)]
struct SettlementRow {
    auction_id: String,
    close_idx: i64,
    closed_ms: i64,
    chain_id: i64,
    escrow: String,
    buyer: String,
    seller: String,
    price: i64,
    fee_bps: i64,
    fee_recipient: String,
    signature: String,
    state: String,
    tx_hash: Option<Vec<u8>>,
    block_number: Option<i64>,
    gas_used: Option<i64>,
    attempts: i64,
    last_error: Option<String>,
    settled_ms: Option<i64>,
}

const COLUMNS: &str = "auction_id, close_idx, closed_ms, chain_id, escrow, buyer, seller, price, \
     fee_bps, fee_recipient, signature, state, tx_hash, block_number, gas_used, attempts, \
     last_error, settled_ms";

impl TryFrom<SettlementRow> for SettlementStatus {
    type Error = sqlx::Error;
    fn try_from(r: SettlementRow) -> Result<Self, sqlx::Error> {
        Ok(SettlementStatus {
            auction_id: r.auction_id,
            close_index: r.close_idx as u64,
            closed_ms: r.closed_ms as u64,
            chain_id: r.chain_id as u64,
            escrow: r.escrow,
            buyer: r.buyer,
            seller: r.seller,
            price: TokenAmount::new(r.price as u64)
                .map_err(|_| out_of_range("settlements.price"))?,
            fee_bps: u16::try_from(r.fee_bps).map_err(|_| out_of_range("settlements.fee_bps"))?,
            fee_recipient: r.fee_recipient,
            signature: r.signature,
            state: settlement_state(&r.state)?,
            tx_hash: r.tx_hash.map(|t| format!("0x{}", hex::encode(t))),
            block_number: r.block_number.map(|b| b as u64),
            gas_used: r.gas_used.map(|g| g as u64),
            attempts: r.attempts as u64,
            last_error: r.last_error,
            settled_ms: r.settled_ms.map(|t| t as u64),
        })
    }
}

impl Store {
    /// Settlements for (`chain_id`, `escrow`) still to pay (`pending` or `sent`), in log
    /// order, at most `limit`. `escrow` is `0x` + 40 lowercase hex digits.
    ///
    /// # Errors
    /// sqlx errors, or a row that does not decode.
    pub async fn unsettled(
        &self,
        chain_id: u64,
        escrow: &str,
        limit: u32,
    ) -> Result<Vec<SettlementStatus>, StoreError> {
        let rows: Vec<SettlementRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM settlements WHERE state IN ('pending', 'sent') \
             AND chain_id = ? AND escrow = ? ORDER BY close_idx LIMIT ?"
        ))
        .bind(chain_id as i64)
        .bind(escrow)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(SettlementStatus::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Settlements logged for another escrow or chain than (`chain_id`, `escrow`) and not yet
    /// marked: the host cannot pay them (`failed`). Returns how many.
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn fail_foreign_settlements(
        &self,
        chain_id: u64,
        escrow: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE settlements SET state = 'failed', last_error = 'signed for another escrow \
             or chain than this host settles on' WHERE state IN ('pending', 'sent') \
             AND (chain_id != ? OR escrow != ?)",
        )
        .bind(chain_id as i64)
        .bind(escrow)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Moves settlement `auction_id` to `state`, with the host's transaction hash (32 bytes),
    /// block and gas when known; `settled_ms` (Unix ms) is set on reaching `settled`. Clears
    /// the last error, except on reaching `failed`, where `error` says why.
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn set_settlement_state(
        &self,
        auction_id: &str,
        state: SettlementState,
        tx: Option<&[u8; 32]>,
        mined: Option<(u64, u64)>,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let name = state_name(state);
        sqlx::query(
            "UPDATE settlements SET state = ?, tx_hash = ?, block_number = ?, gas_used = ?,
             settled_ms = CASE WHEN ? = 'settled' THEN ? ELSE settled_ms END, last_error = ?
             WHERE auction_id = ?",
        )
        .bind(name)
        .bind(tx.map(|t| &t[..]))
        .bind(mined.map(|m| m.0 as i64))
        .bind(mined.map(|m| m.1 as i64))
        .bind(name)
        .bind(now_ms as i64)
        .bind(error)
        .bind(auction_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a failed attempt on a settlement and keeps its error (RPC or revert text; no
    /// PII exists here).
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn settlement_failed(&self, auction_id: &str, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE settlements SET attempts = attempts + 1, last_error = ? WHERE auction_id = ?",
        )
        .bind(error)
        .bind(auction_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Settlement `auction_id`, if its close carried one (`GET /v1/settlements/{id}`).
    ///
    /// # Errors
    /// sqlx errors, or a row that does not decode.
    pub async fn settlement(
        &self,
        auction_id: &str,
    ) -> Result<Option<SettlementStatus>, StoreError> {
        let row: Option<SettlementRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM settlements WHERE auction_id = ?"
        ))
        .bind(auction_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(SettlementStatus::try_from).transpose()?)
    }
}
