//! The host's store on a real SQLite file: the schema migrations (sqlx's migrator, embedded
//! from `host/migrations/`), including a database whose schema the first releases recorded in
//! `PRAGMA user_version`; the WAL checkpoint; the enclave's sealed states; the checkpoints kept.

use leadgate_host::storage::{Store, MIGRATOR};
use leadgate_protocol::StatePart;
use serde_bytes::ByteBuf;
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
        7,
        "host/migrations holds seven migrations"
    );
    // Opening again applies nothing new.
    Store::open(&path).await.unwrap();
    assert_eq!(applied(&path).await, expected());
}

/// A database migrated by `PRAGMA user_version` (the first three migrations) keeps its data,
/// is not migrated twice (running `0001_init.sql` again would fail: its tables exist), and
/// gets the migrations after those.
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
        for m in MIGRATOR.iter().take(3) {
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

fn part(size: u64, index: u32, count: u32) -> StatePart {
    StatePart {
        size,
        root: ByteBuf::from(vec![size as u8; 32]),
        index,
        count,
        blob: ByteBuf::from(vec![index as u8; 40]),
    }
}

/// The enclave's sealed state: stored whole or not at all, the newest at or below the tip
/// handed back with its parts in order, and only the newest two kept.
#[tokio::test]
async fn sealed_states_are_kept_whole_and_the_newest_two() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("host.db")).await.unwrap();
    assert_eq!(store.latest_state(1_000).await.unwrap(), None);
    // Not one whole state: a part missing, out of order, or of another size.
    for bad in [
        vec![part(10, 0, 2)],
        vec![part(10, 1, 2), part(10, 0, 2)],
        vec![part(10, 0, 2), part(11, 1, 2)],
    ] {
        assert!(store.put_state(&bad).await.is_err());
    }
    assert_eq!(store.latest_state(1_000).await.unwrap(), None);
    store.put_state(&[part(10, 0, 1)]).await.unwrap();
    store
        .put_state(&[part(20, 0, 2), part(20, 1, 2)])
        .await
        .unwrap();
    let got = store.latest_state(1_000).await.unwrap().unwrap();
    assert_eq!(got, vec![part(20, 0, 2), part(20, 1, 2)]);
    // The newest at or below the stored tip.
    assert_eq!(
        store.latest_state(15).await.unwrap().unwrap(),
        vec![part(10, 0, 1)]
    );
    assert_eq!(store.latest_state(9).await.unwrap(), None);
    // A third state drops the oldest.
    store.put_state(&[part(30, 0, 1)]).await.unwrap();
    assert_eq!(store.latest_state(15).await.unwrap(), None);
    assert_eq!(store.latest_state(25).await.unwrap().unwrap()[0].size, 20);
}

/// Only the newest checkpoint is kept: with publishing on, one is signed every round, and the
/// table must not grow with time. One stored out of order (smaller than the newest) neither
/// replaces the newest nor stays.
#[tokio::test]
async fn only_the_newest_checkpoint_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("host.db");
    let store = Store::open(&path).await.unwrap();
    for size in [10u64, 20, 30] {
        let note = format!("checkpoint of {size}");
        store
            .put_checkpoint(size, note.as_bytes(), size)
            .await
            .unwrap();
    }
    store.put_checkpoint(25, b"late", 40).await.unwrap();
    assert_eq!(
        store.latest_checkpoint().await.unwrap().unwrap(),
        b"checkpoint of 30"
    );
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT size FROM checkpoints")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows, vec![(30,)]);
}
