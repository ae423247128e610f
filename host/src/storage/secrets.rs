//! The enclave's sealed secrets (one blob; only the enclave can open it).

use super::{Store, StoreError};

impl Store {
    /// The enclave's sealed secrets, if stored.
    pub async fn sealed_secrets(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT blob FROM sealed WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stores the sealed secrets (replacing any).
    pub async fn put_sealed_secrets(&self, blob: &[u8]) -> Result<(), StoreError> {
        let write = self.write();
        sqlx::query("INSERT INTO sealed (id, blob) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET blob = excluded.blob")
            .bind(blob)
            .execute(&self.pool)
            .await?;
        write.done();
        Ok(())
    }
}
