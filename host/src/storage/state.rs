//! The enclave's sealed state (`leadgate_enclave::state`): opaque parts, stored as the enclave
//! handed them out and handed back at its next boot.

use leadgate_protocol::StatePart;
use serde_bytes::ByteBuf;
use sqlx::Row as _;

use super::{Store, StoreError};

/// States kept: the newest and the one before it.
const KEEP: i64 = 2;

impl Store {
    /// Stores every part of one sealed state (all of the same size), then drops all but the
    /// newest two states.
    ///
    /// # Errors
    /// [`StoreError::Inconsistent`] if the parts are not one whole state in order; sqlx errors.
    pub async fn put_state(&self, parts: &[StatePart]) -> Result<(), StoreError> {
        let Some(first) = parts.first() else {
            return Ok(());
        };
        let whole = parts.len() == first.count as usize
            && parts.iter().enumerate().all(|(i, p)| {
                p.index as usize == i && p.size == first.size && p.count == first.count
            });
        if !whole {
            return Err(StoreError::Inconsistent(
                "sealed state parts are not one whole state".into(),
            ));
        }
        // One transaction per part, so that intake stores wait behind 4 MiB, not the whole
        // state: a state is read back only once all its parts are in.
        for p in parts {
            let write = self.write();
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT OR REPLACE INTO state_parts (size, part, parts, root, blob) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(p.size as i64)
            .bind(i64::from(p.index))
            .bind(i64::from(p.count))
            .bind(p.root.as_slice())
            .bind(p.blob.as_slice())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            write.done();
        }
        let write = self.write();
        sqlx::query(
            "DELETE FROM state_parts WHERE size NOT IN \
             (SELECT DISTINCT size FROM state_parts ORDER BY size DESC LIMIT ?)",
        )
        .bind(KEEP)
        .execute(&self.pool)
        .await?;
        write.done();
        Ok(())
    }

    /// The log size of the newest whole sealed state of at most `size` leaves.
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn latest_state_size(&self, size: u64) -> Result<Option<u64>, StoreError> {
        let best: Option<i64> = sqlx::query_scalar(
            "SELECT size FROM state_parts WHERE size <= ? GROUP BY size \
             HAVING COUNT(*) = MAX(parts) ORDER BY size DESC LIMIT 1",
        )
        .bind(size as i64)
        .fetch_optional(&self.pool)
        .await?;
        Ok(best.map(|b| b as u64))
    }

    /// The newest whole sealed state of at most `size` leaves, its parts in order.
    ///
    /// # Errors
    /// sqlx errors.
    pub async fn latest_state(&self, size: u64) -> Result<Option<Vec<StatePart>>, StoreError> {
        let Some(best) = self.latest_state_size(size).await? else {
            return Ok(None);
        };
        let best = best as i64;
        let rows = sqlx::query(
            "SELECT part, parts, root, blob FROM state_parts WHERE size = ? ORDER BY part",
        )
        .bind(best)
        .fetch_all(&self.pool)
        .await?;
        let parts = rows
            .into_iter()
            .map(|r| {
                Ok(StatePart {
                    size: best as u64,
                    index: r.try_get::<i64, _>(0)? as u32,
                    count: r.try_get::<i64, _>(1)? as u32,
                    root: ByteBuf::from(r.try_get::<Vec<u8>, _>(2)?),
                    blob: ByteBuf::from(r.try_get::<Vec<u8>, _>(3)?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(Some(parts))
    }
}
