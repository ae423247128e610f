//! The host's store on a real SQLite file: the schema migrations (sqlx's migrator, embedded
//! from `host/migrations/`), including a database whose schema the first releases recorded in
//! `PRAGMA user_version`.

use leadgate_host::storage::{Store, MIGRATOR};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

async fn applied(path: &std::path::Path) -> Vec<(i64, Vec<u8>)> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    let rows = sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    rows
}

fn expected() -> Vec<(i64, Vec<u8>)> {
    MIGRATOR
        .iter()
        .map(|m| (m.version, m.checksum.to_vec()))
        .collect()
}

#[tokio::test]
async fn a_new_database_gets_every_migration_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.size().await.unwrap(), 0);
    drop(store);
    assert_eq!(applied(&path).await, expected());
    assert_eq!(
        expected().len(),
        3,
        "host/migrations holds three migrations"
    );
    // Opening again applies nothing new.
    Store::open(&path).await.unwrap();
    assert_eq!(applied(&path).await, expected());
}

/// A database migrated by `PRAGMA user_version` keeps its data and is not migrated twice
/// (running `0001_init.sql` again would fail: its tables exist).
#[tokio::test]
async fn a_user_version_database_is_adopted_without_rerunning_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    {
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        for m in MIGRATOR.iter() {
            sqlx::raw_sql(&m.sql).execute(&mut conn).await.unwrap();
        }
        sqlx::raw_sql(
            "PRAGMA user_version = 3; INSERT INTO sealed (id, blob) VALUES (1, x'0102');",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.sealed_secrets().await.unwrap(), Some(vec![1, 2]));
    drop(store);
    assert_eq!(applied(&path).await, expected());
}

/// The background WAL checkpoint copies every committed frame into the database file without
/// blocking anyone: after a write, the WAL holds frames, one checkpoint copies them all, and
/// a second connection opened on the file alone (WAL removed) still reads the write.
#[tokio::test]
async fn a_wal_checkpoint_copies_every_committed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let store = Store::open(&path).await.unwrap();
    let blob = vec![0x5a; 64 * 1024];
    store.put_sealed_secrets(&blob).await.unwrap();
    let c = store.checkpoint_wal().await.unwrap();
    assert!(!c.busy);
    assert!(
        c.wal_frames >= 16,
        "a 64 KiB write is at least 16 pages: {c:?}"
    );
    assert_eq!(c.checkpointed_frames, c.wal_frames);
    // Nothing new was committed: a second checkpoint finds every frame already copied.
    let again = store.checkpoint_wal().await.unwrap();
    assert_eq!(again.checkpointed_frames, again.wal_frames);
    // The database file alone holds the write: copy it without its WAL while the store is
    // still open (closing the last connection would checkpoint too) and read it back.
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    drop(store);
    let reopened = Store::open(&copy).await.unwrap();
    assert_eq!(reopened.sealed_secrets().await.unwrap(), Some(blob));
}
