//! Durable storage on SQLite (WAL, `synchronous=FULL`) through sqlx.
//!
//! Tables: `leaves` (event bytes by index), `nodes` (every complete subtree hash, as the enclave
//! returned them), `receipts`, `leads` (ciphertexts and verdicts; no plaintext exists here),
//! `checkpoints` (the newest signed note), `sealed` (the enclave's sealed secrets), `auctions`, `bids`,
//! `releases`, `epochs`, `anchors`, `settlements`. Schema migrations are the numbered SQL scripts in
//! `host/migrations/`, run by sqlx's migrator ([`MIGRATOR`]).
//!
//! One [`Store`], its methods grouped by aggregate: `log.rs` (leaves, nodes, receipts,
//! checkpoints, epochs, and the one write path for appends), `leads.rs`, `auctions.rs`,
//! `anchors.rs`, `settlements.rs`, `secrets.rs`. Every method fails with [`StoreError`]; rows are read through
//! `sqlx::FromRow` row types.

mod anchors;
mod auctions;
mod leads;
mod log;
mod rules;
mod secrets;
mod settlements;
mod state;
mod tiles;

pub use anchors::{AnchorRecord, AnchorStatus};
pub use auctions::{AuctionFilter, AuctionRecord, StoredBid};
pub use leads::{LeadRecord, StoredSubmission};
pub use log::MapStore;
pub use rules::RuleChange;

use std::str::FromStr as _;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The schema migrations (`host/migrations/NNNN_name.sql`), embedded at build time and
/// recorded with their checksums in sqlx's `_sqlx_migrations` table.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// WAL size, in 4 KiB pages (64 MiB), past which a commit runs a checkpoint itself
/// (`PRAGMA wal_autocheckpoint`).
///
/// The background [`Store::checkpoint_wal`] copies frames without ever blocking a writer, but
/// while commits keep coming it cannot start the WAL over (SQLite restarts the WAL only at a
/// write that begins when every frame is already copied). So the WAL grows until this bound,
/// where the committing connection checkpoints: by then the background checkpoints have copied
/// all but the last [`crate::HostConfig::wal_checkpoint_ms`] of frames, so that commit copies
/// only those instead of all 64 MiB, and the WAL then starts over. 64 MiB rather than
/// SQLite's 4 MiB also writes each hot index page once per checkpoint rather than ~16 times.
pub const WAL_BACKSTOP_PAGES: u32 = 16_384;

/// What one [`Store::checkpoint_wal`] did (the three columns of `PRAGMA wal_checkpoint`,
/// <https://sqlite.org/pragma.html#pragma_wal_checkpoint>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCheckpoint {
    /// Whether the checkpoint could not complete (a reader still uses older frames).
    pub busy: bool,
    /// Frames (pages) in the WAL.
    pub wal_frames: i64,
    /// Frames copied into the database file so far.
    pub checkpointed_frames: i64,
}

/// The host database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// When a write last failed: connections opened before it are closed as they come back
    /// to the pool (see [`Store::open`]).
    write_failed_at: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
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

/// Whether a new connection can write: it writes (a table created in a transaction that is
/// rolled back, so nothing reaches the file). Taking the write lock is not enough: SQLite
/// opens a file it may not write read-only, silently, and such a connection still takes
/// `BEGIN IMMEDIATE` in WAL mode. Worse, while it is open every other connection of the
/// process to the same file shares its read-only WAL index (SQLite's unix VFS keeps one per
/// file per process), so one such connection kept in the pool would fail every write of every
/// connection, even after the files are writable again, until all of them were closed.
async fn writable(conn: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(
        conn,
        "BEGIN IMMEDIATE; CREATE TABLE leadgate_write_probe (x); ROLLBACK;",
    )
    .await?;
    Ok(())
}

/// JSON of a record to store.
fn json(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Inconsistent(e.to_string()))
}

fn bad_column(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} has the wrong length").into())
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
    /// A schema migration failed (or the stored schema is not one this build knows).
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// # Errors
    /// Any sqlx error.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Inserts land on random pages of the hash-keyed indexes: a 32 MiB page cache per
            // connection and memory-mapped reads keep them from going through read(2).
            .pragma("cache_size", "-32768")
            .pragma("mmap_size", "1073741824")
            // WAL checkpoints mostly run beside the writes (`Store::checkpoint_wal`, called by
            // `run` every `HostConfig::wal_checkpoint_ms`): a checkpoint run by a commit holds
            // up the sequential store stage, and so every answer, while it copies the WAL into
            // the database file. See `WAL_BACKSTOP_PAGES` for what is left to commits.
            .pragma("wal_autocheckpoint", WAL_BACKSTOP_PAGES.to_string());
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

    /// Copies the WAL's committed pages into the database file and fsyncs it, beside the
    /// writers (`PRAGMA wal_checkpoint(PASSIVE)`: neither readers nor writers wait for it, and
    /// it stops short of frames a reader still needs). Once every frame is copied, the next
    /// write that begins before anything new is committed starts the WAL over (under steady
    /// writes that rarely happens here: [`WAL_BACKSTOP_PAGES`] bounds the WAL).
    ///
    /// # Errors
    /// [`StoreError::Db`] if SQLite fails (an I/O error, a full disk).
    pub async fn checkpoint_wal(&self) -> Result<WalCheckpoint, StoreError> {
        // A failed checkpoint is a failed write: the connections open now are closed as they
        // come back to the pool (see `Store::open`).
        let write = self.write();
        let (busy, wal_frames, checkpointed_frames): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&self.pool)
                .await?;
        write.done();
        Ok(WalCheckpoint {
            busy: busy != 0,
            wal_frames,
            checkpointed_frames,
        })
    }

    /// Starts a write: dropped without [`WriteGuard::done`], it records a failure.
    fn write(&self) -> WriteGuard<'_> {
        WriteGuard(Some(&self.write_failed_at))
    }

    /// Begins a write transaction with `BEGIN IMMEDIATE`: it takes the write lock first,
    /// waiting behind another writer (up to the busy timeout) instead of reading a snapshot
    /// that another writer's commit then makes stale. A deferred transaction that reads before
    /// it writes (every append checks the log size first) fails at once with `SQLITE_BUSY` if
    /// another connection commits in between, and a failed store drops the enclave link.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Applies the migrations not yet applied. A database that recorded its schema version
    /// in `PRAGMA user_version` (the first releases) has those migrations entered in sqlx's
    /// table first, with their checksums, so they are not run twice.
    async fn migrate(&self) -> Result<(), StoreError> {
        use sqlx::migrate::Migrate as _;
        let mut conn = self.pool.acquire().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *conn)
            .await?;
        let tracked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
        )
        .fetch_one(&mut *conn)
        .await?;
        if version > 0 && !tracked {
            conn.ensure_migrations_table().await?;
            for m in MIGRATOR.iter().take(version as usize) {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                     execution_time) VALUES (?, ?, TRUE, ?, 0)",
                )
                .bind(m.version)
                .bind(&*m.description)
                .bind(&*m.checksum)
                .execute(&mut *conn)
                .await?;
            }
            tracing::info!(
                migrations = version,
                "schema version adopted by sqlx's migrator"
            );
        }
        drop(conn);
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::ConnectOptions as _;

    /// A connection to a file it may only read is refused at connect, though it takes the
    /// write lock (`BEGIN IMMEDIATE`) in WAL mode; a writable one is taken. (Read-only file
    /// modes do not bind root, who runs the tests: the connection is opened read-only
    /// instead, as SQLite opens a file whose mode forbids writing.)
    #[tokio::test]
    async fn a_connection_that_cannot_write_is_refused_at_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.db");
        let store = super::Store::open(&path).await.unwrap();
        store.put_checkpoint(1, b"a checkpoint", 1).await.unwrap();
        let opts = SqliteConnectOptions::new().filename(&path);
        let mut read_only = opts.clone().read_only(true).connect().await.unwrap();
        sqlx::Executor::execute(&mut read_only, "BEGIN IMMEDIATE; ROLLBACK;")
            .await
            .expect("a read-only connection takes the write lock in WAL mode");
        let refused = super::writable(&mut read_only).await;
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.to_string().contains("readonly")),
            "{refused:?}"
        );
        let mut writable = opts.connect().await.unwrap();
        super::writable(&mut writable).await.unwrap();
        // The probe left nothing behind.
        let probes: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'leadgate_write_probe'",
        )
        .fetch_one(&mut writable)
        .await
        .unwrap();
        assert_eq!(probes, 0);
    }
}
