//! The log published to the local-directory backend (`--bucket DIR`): tiles before the
//! checkpoint, the partial tiles of a filled tile deleted, the tiles equal to what the host
//! serves itself, a damaged stored leaf found by the scrub and repaired from the directory
//! (or, without a bucket, proofs refused), and a database rebuilt from the directory alone
//! equal to the original.

mod common;

use ed25519_dalek::SigningKey;
use leadgate_host::storage::Store;
use leadgate_host::tiles::bucket::Bucket;
use leadgate_verifier::intake::seal_lead;
use leadgate_verifier::tiles::TileRef;

use common::{eventually, http, InProcessStack};

fn lead(i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": format!("Dana Example{i}"), "email": format!("dana{i}@northwind-hvac.com"),
        "phone": "+1 512 555 0100", "company": "Northwind HVAC",
        "website": "https://northwind-hvac.com", "industry": "HVAC", "sub_industry": "Heating",
        "region": "Austin, TX", "role": "Owner", "company_size": "11-50",
    }))
    .unwrap()
}

/// Seals leads `range` (of [`lead`]) for the stack's enclave and posts them as one batch.
async fn post_leads(stack: &InProcessStack, seller: &SigningKey, range: std::ops::Range<usize>) {
    let leads: Vec<_> = range
        .map(|n| {
            seal_lead(
                seller,
                &stack.keys.intake_key,
                &stack.keys.origin,
                &lead(n),
                leadgate_host::clock::now_ms(),
            )
            .unwrap()
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "leads": leads })).unwrap();
    assert_eq!(
        http(stack.addr(), "POST", "/v1/leads/batch", &body).await.0,
        200
    );
}

/// Changes one byte of stored leaf `index`, with a connection of the test's own.
async fn corrupt_leaf(db: &std::path::Path, index: i64) {
    use sqlx::ConnectOptions as _;
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    let mut leaf: Vec<u8> = sqlx::query_scalar("SELECT leaf FROM leaves WHERE idx = ?")
        .bind(index)
        .fetch_one(&mut c)
        .await
        .unwrap();
    leaf[3] ^= 1;
    sqlx::query("UPDATE leaves SET leaf = ? WHERE idx = ?")
        .bind(leaf)
        .bind(index)
        .execute(&mut c)
        .await
        .unwrap();
}

/// Without a bucket to repair from, a damaged leaf makes the host degraded and refuse proofs
/// and entries (`storage.damaged`) instead of serving them over bad data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_leaf_without_a_bucket_stops_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let stack = InProcessStack::start(dir.path(), |_| {}).await;
    let seller = SigningKey::from_bytes(&[6u8; 32]);
    post_leads(&stack, &seller, 0..20).await;
    let (status, _) = http(stack.addr(), "POST", "/v1/checkpoint", b"").await;
    assert_eq!(status, 200);
    corrupt_leaf(&stack.db, 3).await;
    eventually("the scrub reports the damage", || async {
        common::health(stack.addr())
            .await
            .reason
            .is_some_and(|r| r.contains("damaged"))
    })
    .await;
    for path in [
        "/v1/entries/3",
        "/v1/proof/inclusion?index=3&size=5",
        "/tile/0/000.p/5",
    ] {
        let (status, body) = http(stack.addr(), "GET", path, b"").await;
        assert_eq!(status, 503, "{path}");
        assert!(
            String::from_utf8_lossy(&body).contains("storage.damaged"),
            "{path}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_in_a_directory_and_a_database_rebuilt_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    let url = bucket_dir.to_str().unwrap().to_owned();
    let stack = InProcessStack::start(dir.path(), |c| c.bucket = Some(url.clone())).await;
    let seller = SigningKey::from_bytes(&[5u8; 32]);
    let mut sent = 0;
    for round in 0..3 {
        post_leads(&stack, &seller, round * 120..round * 120 + 120).await;
        sent += 120;
        // Let a publishing round pass between batches, so partial tiles are written.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    let bucket = Bucket::open(&url).unwrap();
    let store = Store::open(&stack.db).await.unwrap();
    let size = store.size().await.unwrap();
    assert!(size > sent as u64);
    eventually("the bucket's checkpoint covers the log", || async {
        bucket
            .get("checkpoint")
            .await
            .unwrap()
            .is_some_and(|n| leadgate_host::tiles::publish::checkpoint_size(&n).unwrap() >= size)
    })
    .await;
    let note = bucket.get("checkpoint").await.unwrap().unwrap();
    let published = leadgate_host::tiles::publish::checkpoint_size(&note).unwrap();
    // Every tile of the published tree is there, equal to what the host serves; tile 0 is
    // full, and its partials are gone.
    for t in leadgate_verifier::tiles::grown_tiles(0, published) {
        let stored = bucket.get(&t.path()).await.unwrap().expect("tile");
        let (status, served) = http(stack.addr(), "GET", &format!("/{}", t.path()), b"").await;
        assert_eq!((status, served), (200, stored.to_vec()), "{}", t.path());
        if t.level == 0 {
            let bundle = bucket
                .get(&t.entries_path())
                .await
                .unwrap()
                .expect("bundle");
            let (_, served) =
                http(stack.addr(), "GET", &format!("/{}", t.entries_path()), b"").await;
            assert_eq!(served, bundle.to_vec());
        }
    }
    let full = TileRef {
        level: 0,
        index: 0,
        width: 256,
    };
    assert!(bucket.get(&full.path()).await.unwrap().is_some());
    for prefix in [
        "tile/0/000.p",
        "tile/entries/000.p",
        "leadgate/records/000.p",
    ] {
        let dir = bucket_dir.join(prefix);
        eventually(&format!("{prefix} holds no partial tiles"), || {
            let dir = dir.clone();
            async move { !dir.exists() || std::fs::read_dir(&dir).unwrap().next().is_none() }
        })
        .await;
    }
    // One stored leaf with a changed byte: the scrub finds it and repairs it from the bucket.
    let original = store.leaf(5).await.unwrap().unwrap();
    corrupt_leaf(&stack.db, 5).await;
    assert_ne!(store.leaf(5).await.unwrap().unwrap(), original);
    // Never served changed: the entry and its bundle are refused until repaired.
    for path in ["/v1/entries/5", "/tile/entries/000"] {
        let (status, body) = http(stack.addr(), "GET", path, b"").await;
        let leaf = if path == "/v1/entries/5" {
            body.clone()
        } else {
            leadgate_verifier::tiles::decode_bundle(&body)
                .map(|b| b[5].clone())
                .unwrap_or_default()
        };
        let repaired_already = status == 200 && leaf == original;
        assert!(
            repaired_already
                || (status == 503 && String::from_utf8_lossy(&body).contains("storage.damaged")),
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    eventually(
        "the scrub repairs the damaged leaf from the bucket",
        || async { store.leaf(5).await.unwrap().unwrap() == original },
    )
    .await;
    stack.stop().await;

    // A database rebuilt from the directory alone.
    let fresh = Store::open(&dir.path().join("rebuilt.db")).await.unwrap();
    let repaired = leadgate_host::tiles::repair::repair(&fresh, &bucket, None)
        .await
        .unwrap();
    assert_eq!((repaired.from, repaired.to), (0, published));
    assert_eq!(
        fresh.frontier(published).await.unwrap().root(),
        store.frontier(published).await.unwrap().root()
    );
    assert_eq!(
        fresh.journal_entries(0, published).await.unwrap(),
        store.journal_entries(0, published).await.unwrap()
    );
    assert_eq!(
        fresh.sealed_secrets().await.unwrap(),
        store.sealed_secrets().await.unwrap()
    );
    // A bucket with one changed byte in an entry bundle is refused, naming the object.
    let bad = TileRef {
        level: 0,
        index: 1,
        width: published.min(512) - 256,
    };
    let path = bucket_dir.join(bad.entries_path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let other = Store::open(&dir.path().join("other.db")).await.unwrap();
    let err = leadgate_host::tiles::repair::repair(&other, &bucket, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&bad.entries_path()), "{err}");
    // What was stored before the bad tile stays (each tile was checked), nothing after it.
    assert_eq!(other.size().await.unwrap(), 256);
}
