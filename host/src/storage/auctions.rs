//! Auctions, sealed bids, closes and releases (copied from public events, or sealed).

use std::collections::HashMap;

use leadgate_protocol::{CloseInput, LoggedBid, WireAppended};
use leadgate_verifier::api::AuctionStatus;
use leadgate_verifier::auction::TokenAmount;
use leadgate_verifier::receipt::Receipt;
use serde_bytes::ByteBuf;
use sqlx::{FromRow as _, Row as _};

use super::log::insert_appends;
use super::{Store, StoreError};

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

pub use leadgate_verifier::api::Auction as AuctionRecord;

const AUCTION_COLUMNS: &str = "auction_id, open_idx, listing, score, reserve, closes_at, pricing, \
    status, close_idx, winner, price, bids";

/// An auction row as stored ([`AUCTION_COLUMNS`]).
#[derive(sqlx::FromRow)]
struct AuctionRow {
    auction_id: String,
    open_idx: i64,
    #[sqlx(json)]
    listing: serde_json::Value,
    score: i64,
    reserve: i64,
    closes_at: i64,
    pricing: String,
    status: String,
    close_idx: Option<i64>,
    winner: Option<String>,
    price: Option<i64>,
    bids: Option<i64>,
}

fn auction_record(row: &sqlx::sqlite::SqliteRow) -> Result<AuctionRecord, sqlx::Error> {
    let r = AuctionRow::from_row(row)?;
    let decode = |what: &str| sqlx::Error::Decode(format!("auction {what}").into());
    let amount = |v: i64| TokenAmount::new(v as u64).map_err(|_| decode("amount"));
    Ok(AuctionRecord {
        auction_id: r.auction_id,
        open_index: r.open_idx as u64,
        listing: serde_json::from_value(r.listing).map_err(|_| decode("listing"))?,
        score: r.score as u8,
        reserve: amount(r.reserve)?,
        closes_at: r.closes_at as u64,
        pricing: serde_json::from_value(serde_json::Value::String(r.pricing))
            .map_err(|_| decode("pricing"))?,
        status: AuctionStatus::from_name(&r.status).ok_or_else(|| decode("status"))?,
        close_index: r.close_idx.map(|v| v as u64),
        winner: r.winner,
        price: r.price.map(amount).transpose()?,
        bids: r.bids.map(|v| v as u64),
    })
}

impl Store {
    /// The stored answers for these bid commitments (hex), keyed by commitment: the sealed bid
    /// JSON as stored, its `bid.sealed` index and receipt.
    pub async fn bid_answers(
        &self,
        commitments: &[&str],
    ) -> Result<HashMap<String, (String, u64, Receipt)>, StoreError> {
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
        let mut tx = self.begin_write().await?;
        insert_appends(&mut tx, appends).await?;
        if !bids.is_empty() {
            insert_bids(&mut tx, bids).await?;
        }
        tx.commit().await?;
        write.done();
        Ok(())
    }

    /// What closing each of `ids` takes: its `lead.accepted` leaf and every `bid.sealed` leaf
    /// of it in log order, each with its sealed bid. An id with no stored auction is left out.
    ///
    /// # Errors
    /// [`StoreError::Inconsistent`] if a stored sealed bid does not parse; sqlx errors.
    pub async fn close_inputs(&self, ids: &[String]) -> Result<Vec<CloseInput>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.pool.acquire().await?;
        for id in ids {
            let accepted: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT l.leaf FROM auctions a JOIN leaves l ON l.idx = a.open_idx \
                 WHERE a.auction_id = ?",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(accepted) = accepted else { continue };
            let rows = sqlx::query(
                "SELECT l.leaf, b.sealed FROM bids b JOIN leaves l ON l.idx = b.idx \
                 WHERE b.auction_id = ? ORDER BY b.idx",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            let bids = rows
                .into_iter()
                .map(|r| {
                    let sealed: String = r.try_get(1)?;
                    Ok(LoggedBid {
                        leaf: ByteBuf::from(r.try_get::<Vec<u8>, _>(0)?),
                        sealed: serde_json::from_str(&sealed)
                            .map_err(|e| StoreError::Inconsistent(format!("sealed bid: {e}")))?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            out.push(CloseInput {
                accepted: ByteBuf::from(accepted),
                bids,
            });
        }
        Ok(out)
    }

    /// The open auctions with at least one stored bid, in log order of their
    /// `lead.accepted`: what a settling enclave needs back at start-up (`LoadBids`).
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn open_auctions_with_bids(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT a.auction_id FROM auctions a WHERE a.status = 'open' \
             AND EXISTS (SELECT 1 FROM bids b WHERE b.auction_id = a.auction_id) \
             ORDER BY a.open_idx",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Where auction `id` stands for a release: its status (`open`, `sold`, `unsold`) and the
    /// leaf indexes of its `lead.accepted` and close.
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn sale_entries(
        &self,
        id: &str,
    ) -> Result<Option<(String, u64, Option<u64>)>, StoreError> {
        let row =
            sqlx::query("SELECT status, open_idx, close_idx FROM auctions WHERE auction_id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row
            .map(|r| -> Result<_, sqlx::Error> {
                Ok((
                    r.try_get::<String, _>(0)?,
                    r.try_get::<i64, _>(1)? as u64,
                    r.try_get::<Option<i64>, _>(2)?.map(|i| i as u64),
                ))
            })
            .transpose()?)
    }

    /// Stores close events (the auctions table follows them).
    ///
    /// # Errors
    /// As [`Store::store_appends`].
    pub async fn store_closes(&self, appends: &[&WireAppended]) -> Result<(), StoreError> {
        let write = self.write();
        let mut tx = self.begin_write().await?;
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
        let mut tx = self.begin_write().await?;
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

    /// Auctions matching `filter`, soonest close first.
    pub async fn auctions(&self, filter: &AuctionFilter) -> Result<Vec<AuctionRecord>, StoreError> {
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
        Ok(rows
            .iter()
            .map(auction_record)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// One auction and its `bid.sealed` entries (index, buyer, commitment) in log order.
    pub async fn auction(
        &self,
        id: &str,
    ) -> Result<Option<(AuctionRecord, Vec<(u64, String, String)>)>, StoreError> {
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
}

/// Inserts bid rows (one multi-row INSERT; at most a few thousand rows of five bound values).
pub(super) async fn insert_bids(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    bids: &[StoredBid<'_>],
) -> Result<(), StoreError> {
    for chunk in bids.chunks(4_096) {
        sqlx::QueryBuilder::new("INSERT INTO bids (idx, auction_id, buyer, commitment, sealed) ")
            .push_values(chunk, |mut b, bid| {
                b.push_bind(bid.index as i64)
                    .push_bind(bid.auction_id)
                    .push_bind(bid.buyer)
                    .push_bind(bid.commitment)
                    .push_bind(bid.sealed_json);
            })
            .build()
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
