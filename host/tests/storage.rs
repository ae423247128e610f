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
