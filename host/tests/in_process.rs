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

use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_host::HostConfig;
use leadgate_protocol::transport::{Endpoint, InProcess, Listener};
use leadgate_verifier::api::{ErrorBody, Health, HealthStatus, SubmitAnswer};
use leadgate_verifier::keys::EnclaveKeys;
use leadgate_verifier::merkle::leaf_hash;
use sqlx::{ConnectOptions as _, Executor as _};

use common::{http, RunningHost};

fn now_ms() -> u64 {
    leadgate_host::clock::now_ms()
}

async fn health(addr: &str) -> Health {
    let (_, body) = http(addr, "GET", "/healthz", b"").await;
    serde_json::from_slice(&body).unwrap()
}

/// Polls `check` every 50 ms for up to 30 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let state = dir.path().join("enclave");
    std::fs::create_dir_all(&state).unwrap();
    let db = dir.path().join("host.db");

    // The enclave core, as `leadgate-enclave` runs it in dev mode.
    let mut config = EnclaveConfig::new("leadgate.dev/log");
    let attestor = DevAttestationProvider::open_or_create(&state, now_ms()).unwrap();
    config.dev_root_pem = Some(attestor.root_pem());
    config.workers = 1;
    let enclave = Enclave::new(
        config,
        Box::new(DevFileSealer::open_or_create(&state).unwrap()),
        Box::new(attestor),
    );
    let listener = Listener::bind(&Endpoint::InProcess(InProcess::new()))
        .await
        .unwrap();
    let enclave_addr = listener.local_endpoint().unwrap();
    let enclave_task = tokio::spawn(leadgate_enclave::server::serve(
        listener,
        Arc::new(tokio::sync::Mutex::new(enclave)),
    ));

    // The host.
    let mut host_config = HostConfig::new(enclave_addr, db.clone());
    host_config.tick_ms = 100;
    let host = RunningHost::start(host_config).await;
    let addr = host.addr.clone();
    eventually("the host is up", || async {
        health(&addr).await.status == HealthStatus::Ok
    })
    .await;

    // The enclave's keys, from its attestation document (chain checks are not this test's).
    let (_, body) = http(&addr, "GET", "/attest", b"").await;
    let attest: leadgate_verifier::api::AttestAnswer = serde_json::from_slice(&body).unwrap();
    use base64::Engine as _;
    let doc = base64::engine::general_purpose::STANDARD
        .decode(attest.document)
        .unwrap();
    let (_, doc) = leadgate_verifier::attestation::parse_attestation(&doc).unwrap();
    let keys =
        EnclaveKeys::from_attested(doc.user_data.as_deref(), doc.public_key.as_deref()).unwrap();
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

    host.stop().await;
    enclave_task.abort();
}
