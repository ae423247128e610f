//! The host (`leadgate_host::run`) and the real enclave core (`leadgate_enclave::server`) in
//! one process, over an in-process link (`transport::InProcess`), with a storage fault
//! injected into the host's own SQLite database: a trigger that aborts every insert into
//! `leaves`, so the write that stores a batch fails exactly as a full or failing disk makes it
//! fail.
//!
//! What must hold (the store-then-answer rule and the failed-batch discard):
//! - a lead whose batch could not be stored is never answered as logged;
//! - no checkpoint stored while the fault lasts covers an entry that is not stored;
//! - once the fault is gone the host heals by itself (drops the link, reconnects, catches up
//!   from the enclave's journal), and the same request then gets the entry the enclave
//!   logged, stored, with a receipt over the stored leaf.

mod common;

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_verifier::api::{ErrorBody, HealthStatus, SubmitAnswer};
use leadgate_verifier::merkle::leaf_hash;
use sqlx::{ConnectOptions as _, Executor as _};

use common::{health, http, InProcessStack};

fn now_ms() -> u64 {
    leadgate_host::clock::now_ms()
}

/// Leaves in the host's database, counted with a connection of the test's own.
async fn stored_leaves(db: &std::path::Path) -> i64 {
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM leaves")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

fn lead(i: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "business": format!("Acme Heating {i}"), "full_name": "Dana Smith", "first": "Dana",
        "last": "Smith", "email": format!("dana.smith{i}@acmeheating{i}.com"), "role": "Owner",
        "website": format!("https://acmeheating{i}.com"), "industry": "HVAC",
        "sub_industry": "Heating", "region": "Austin, TX",
        "linkedin": "https://linkedin.com/in/danasmith",
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_to_store_is_never_answered_and_the_host_heals() {
    let dir = tempfile::tempdir().unwrap();
    let stack = InProcessStack::start(dir.path(), |_| {}).await;
    let (addr, db, keys) = (
        stack.addr().to_owned(),
        stack.db.clone(),
        stack.keys.clone(),
    );
    let seller = SigningKey::from_bytes(&[7; 32]);
    let sealed = |i: u32| {
        let s = leadgate_verifier::intake::seal_lead(
            &seller,
            &keys.intake_key,
            &keys.origin,
            &lead(i),
            now_ms(),
        )
        .unwrap();
        serde_json::to_vec(&s).unwrap()
    };

    // A lead goes through.
    let (status, body) = http(&addr, "POST", "/v1/leads", &sealed(1)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let before = stored_leaves(&db).await;

    // The fault: every insert into `leaves` aborts.
    let mut c = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await
        .unwrap();
    c.execute(
        "CREATE TRIGGER injected_fault BEFORE INSERT ON leaves \
         BEGIN SELECT RAISE(ABORT, 'injected storage fault'); END",
    )
    .await
    .unwrap();

    // The second lead reaches the enclave (which logs it) but cannot be stored: it is
    // answered with an error, never as logged.
    let second = sealed(2);
    let (status, body) = http(&addr, "POST", "/v1/leads", &second).await;
    assert!(status >= 500, "{status} {}", String::from_utf8_lossy(&body));
    let err: ErrorBody = serde_json::from_slice(&body).unwrap();
    assert!(err.error.code.http_status() >= 500, "{err:?}");
    assert_eq!(
        stored_leaves(&db).await,
        before,
        "nothing of the failed batch is stored"
    );

    // Meanwhile no stored checkpoint covers more than what is stored.
    let _ = http(&addr, "POST", "/v1/checkpoint", b"").await;
    let (status, note) = http(&addr, "GET", "/v1/checkpoint", b"").await;
    if status == 200 {
        let note = leadgate_verifier::note::Note::parse(&note).unwrap();
        let cp = leadgate_verifier::checkpoint::Checkpoint::parse_text(&note.text).unwrap();
        assert!(
            cp.size as i64 <= stored_leaves(&db).await,
            "a checkpoint of size {} covers unstored entries",
            cp.size
        );
    }

    // The fault clears; the host heals by itself and the retried request gets the entry the
    // enclave logged, now stored.
    c.execute("DROP TRIGGER injected_fault").await.unwrap();
    let answer: SubmitAnswer = {
        let start = Instant::now();
        loop {
            let (status, body) = http(&addr, "POST", "/v1/leads", &second).await;
            if status == 200 {
                break serde_json::from_slice(&body).unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the host did not heal: {status} {}",
                String::from_utf8_lossy(&body)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (status, leaf) = http(&addr, "GET", &format!("/v1/entries/{}", answer.index), b"").await;
    assert_eq!(status, 200);
    assert_eq!(hex::encode(leaf_hash(&leaf)), answer.receipt.leaf_hash);
    answer
        .receipt
        .verify(&keys.log_key, &keys.origin)
        .expect("the receipt verifies");
    assert!(stored_leaves(&db).await > before);
    assert_eq!(health(&addr).await.status, HealthStatus::Ok);

    stack.stop().await;
}
