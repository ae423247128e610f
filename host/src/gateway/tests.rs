//! The two-stage submit pipeline against the real enclave core (over an in-process link),
//! with a storage fault injected into the host's own SQLite database: a trigger that aborts
//! every insert into `leaves`, so storing a batch fails as a full or failing disk makes it
//! fail.
//!
//! These run inside the crate because they watch the flush barrier itself (how many tasks
//! wait on it), which no public interface shows.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::core::{Enclave, EnclaveConfig};
use leadgate_enclave::sealing::DevFileSealer;
use leadgate_protocol::transport::{Endpoint, InProcess, Listener};
use leadgate_verifier::checkpoint::Checkpoint;
use leadgate_verifier::note::Note;
use sqlx::{ConnectOptions as _, Executor as _};

use super::{Gateway, Job, LinkError};
use crate::storage::Store;

/// The enclave core as `leadgate-enclave` runs it in dev mode, on an in-process link.
async fn start_enclave(state: &std::path::Path) -> Endpoint {
    let now = crate::clock::now_ms();
    let mut config = EnclaveConfig::new("leadgate.dev/log");
    let attestor = DevAttestationProvider::open_or_create(state, now).unwrap();
    config.dev_root_pem = Some(attestor.root_pem());
    config.workers = 1;
    let enclave = Enclave::new(
        config,
        Box::new(DevFileSealer::open_or_create(state).unwrap()),
        Box::new(attestor),
    );
    let listener = Listener::bind(&Endpoint::InProcess(InProcess::new()))
        .await
        .unwrap();
    let addr = listener.local_endpoint().unwrap();
    tokio::spawn(leadgate_enclave::server::serve(
        listener,
        Arc::new(tokio::sync::Mutex::new(enclave)),
    ));
    addr
}

/// Waits (up to 30 s, polling every 10 ms) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..3_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out: {what}");
}

fn job(gateway_keys: &leadgate_verifier::keys::EnclaveKeys, i: u32) -> Job {
    let lead = serde_json::to_vec(&serde_json::json!({
        "business": format!("Acme Heating {i}"), "full_name": "Dana Smith", "first": "Dana",
        "last": "Smith", "email": format!("dana.smith{i}@acmeheating{i}.com"), "role": "Owner",
        "website": format!("https://acmeheating{i}.com"), "industry": "HVAC",
        "sub_industry": "Heating", "region": "Austin, TX",
        "linkedin": "https://linkedin.com/in/danasmith",
    }))
    .unwrap();
    let sealed = leadgate_verifier::intake::seal_lead(
        &SigningKey::from_bytes(&[7; 32]),
        &gateway_keys.intake_key,
        &gateway_keys.origin,
        &lead,
        crate::clock::now_ms(),
    )
    .unwrap();
    let sub = sealed.decode().unwrap();
    Job {
        sealed_json: serde_json::to_string(&sealed).unwrap(),
        ciphertext_sha256: hex::encode(sub.ciphertext_sha256),
        lead: sealed,
    }
}

/// The size of the latest stored checkpoint, 0 if none.
async fn checkpoint_size(store: &Store) -> u64 {
    match store.latest_checkpoint().await.unwrap() {
        Some(note) => {
            Checkpoint::parse_text(&Note::parse(&note).unwrap().text)
                .unwrap()
                .size
        }
        None => 0,
    }
}

/// Two batches in flight when the first fails to store:
/// - the first is answered with the storage error, the second is discarded unstored (storing
///   it would leave a gap in the log);
/// - a checkpoint asked for while both are in flight waits at the flush barrier until both are
///   settled, and is then refused rather than signed over entries that are not stored;
/// - once the fault is gone the link heals by catching up from the enclave's journal, so
///   both batches' entries end up stored, and the next checkpoint covers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_discards_the_next_and_no_checkpoint_passes_the_flush_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("enclave");
    std::fs::create_dir_all(&state).unwrap();
    let db = dir.path().join("host.db");
    let enclave = start_enclave(&state).await;
    let gateway = Arc::new(Gateway::new(Store::open(&db).await.unwrap(), enclave));
    tokio::spawn(gateway.clone().maintain());
    until("the link is up", || gateway.health().0).await;
    let keys = gateway.info().await.unwrap().keys;
    let before = gateway.store.size().await.unwrap();

    let mut fault = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .connect()
        .await
        .unwrap();
    fault
        .execute(
            "CREATE TRIGGER injected_fault BEFORE INSERT ON leaves \
             BEGIN SELECT RAISE(ABORT, 'injected storage fault'); END",
        )
        .await
        .unwrap();

    let (first, second) = (vec![job(&keys, 1)], vec![job(&keys, 2)]);
    let sent_first = gateway.send_batch(&first).await.unwrap();
    let sent_second = gateway.send_batch(&second).await.unwrap();

    // A checkpoint asked for now parks at the flush barrier (holding the link).
    let checkpoint = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.checkpoint(true).await }
    });
    until("the checkpoint waits at the flush barrier", || {
        gateway.stored.receiver_count() == 1
    })
    .await;

    let stored = gateway.store_batch(&first, sent_first).await;
    assert!(matches!(stored, Err(LinkError::Store(_))), "{stored:?}");
    assert!(!checkpoint.is_finished(), "one batch is still in flight");
    let stored = gateway.store_batch(&second, sent_second).await;
    assert!(matches!(stored, Err(LinkError::Unavailable)), "{stored:?}");

    let signed = checkpoint.await.unwrap();
    assert!(
        matches!(signed, Err(LinkError::Unavailable)),
        "{:?}",
        signed.map(|note| note.map(|n| String::from_utf8_lossy(&n).into_owned()))
    );
    assert!(
        !gateway.health().0,
        "the link was dropped, so the gateway is degraded"
    );
    assert_eq!(gateway.store.size().await.unwrap(), before);
    assert!(checkpoint_size(&gateway.store).await <= before);
    let hashes: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|j| j.ciphertext_sha256.as_str())
        .collect();
    let stored = gateway.store.submission_answers(&hashes).await.unwrap();
    assert!(
        stored.is_empty(),
        "a submission of a failed batch is stored"
    );

    // Healing: the enclave logged both batches; the host catches them up from its journal.
    fault.execute("DROP TRIGGER injected_fault").await.unwrap();
    until("the link is back up with both batches stored", || {
        gateway.health().0 && gateway.stored_size() >= before + 2
    })
    .await;
    assert_eq!(gateway.store.size().await.unwrap(), gateway.stored_size());
    let stored = gateway.store.submission_answers(&hashes).await.unwrap();
    assert_eq!(stored.len(), 2, "both caught-up submissions are stored");
    let note = gateway.checkpoint(true).await.unwrap().unwrap();
    let cp = Checkpoint::parse_text(&Note::parse(&note).unwrap().text).unwrap();
    assert_eq!(cp.size, gateway.store.size().await.unwrap());
}

/// A gateway in `dir` linked to the enclave core, its keys, and an empty directory for a
/// bucket.
async fn linked_gateway(
    dir: &std::path::Path,
) -> (
    Arc<Gateway>,
    leadgate_verifier::keys::EnclaveKeys,
    std::path::PathBuf,
) {
    let state = dir.join("enclave");
    std::fs::create_dir_all(&state).unwrap();
    let enclave = start_enclave(&state).await;
    let store = Store::open(&dir.join("host.db")).await.unwrap();
    let gateway = Arc::new(Gateway::new(store, enclave));
    tokio::spawn(gateway.clone().maintain());
    until("the link is up", || gateway.health().0).await;
    let keys = gateway.info().await.unwrap().keys;
    let bucket_dir = dir.join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    (gateway, keys, bucket_dir)
}

/// Publishing keeps up under steady load: with a bucket whose writes take 50 ms, entries are
/// stored while every round runs, so the bucket rarely holds *everything* stored at the moment
/// a round ends, yet each round publishes all that was stored when it began. `/healthz` must
/// not report that as a lagging bucket: the lag is the wait of the oldest unpublished entry,
/// not the time since the bucket last held everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_under_steady_load_is_not_reported_as_lagging() {
    let dir = tempfile::tempdir().unwrap();
    let (gateway, keys, bucket_dir) = linked_gateway(dir.path()).await;
    // Each write takes 50 ms, as a round trip to a remote bucket does: entries are stored
    // while every round runs.
    let local = object_store::local::LocalFileSystem::new_with_prefix(&bucket_dir).unwrap();
    let throttled = object_store::throttle::ThrottledStore::new(
        local,
        object_store::throttle::ThrottleConfig {
            wait_put_per_call: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let bucket = crate::tiles::bucket::Bucket::from_store(Arc::new(throttled), "throttled");
    let publisher = crate::tiles::publish::Publisher::new(bucket, gateway.clone())
        .await
        .unwrap();

    let load = tokio::spawn({
        let gateway = gateway.clone();
        async move {
            for i in 0.. {
                let jobs: Vec<Job> = (0..10).map(|k| job(&keys, i * 10 + k)).collect();
                let sent = gateway.send_batch(&jobs).await.unwrap();
                gateway.store_batch(&jobs, sent).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    // Rounds every 100 ms for longer than the lag bound (5 s).
    let started = std::time::Instant::now();
    let (mut rounds, mut behind_seen) = (0, 0);
    while started.elapsed() < Duration::from_secs(7) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        publisher.publish_once().await.unwrap();
        rounds += 1;
        if gateway.stored_size() > gateway.published_size().unwrap() {
            behind_seen += 1;
        }
        assert_eq!(
            gateway.publish_error(),
            None,
            "after round {rounds}, {} stored, {:?} published",
            gateway.stored_size(),
            gateway.published_size()
        );
    }
    load.abort();
    assert!(
        behind_seen > rounds / 2,
        "entries arrived during only {behind_seen} of {rounds} rounds: not a steady load ({} stored)",
        gateway.stored_size()
    );
}

/// The bucket's sealed state only ever moves forward: none is taken before this process's
/// first round (a database restored from an old copy holds only old states until its repair
/// at boot), a state already there is not written again by a new process, and an older state
/// never replaces a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_sealed_state_is_only_replaced_by_a_newer_one() {
    use crate::tiles::publish::{Publisher, STATE};
    let dir = tempfile::tempdir().unwrap();
    let (gateway, keys, bucket_dir) = linked_gateway(dir.path()).await;
    let bucket = crate::tiles::bucket::Bucket::open(bucket_dir.to_str().unwrap()).unwrap();
    let append = |from: u32| {
        let gateway = gateway.clone();
        let keys = keys.clone();
        async move {
            let jobs: Vec<Job> = (from..from + 10).map(|i| job(&keys, i)).collect();
            let sent = gateway.send_batch(&jobs).await.unwrap();
            gateway.store_batch(&jobs, sent).await.unwrap();
            gateway.seal_state(true).await.unwrap().unwrap()
        }
    };
    let in_bucket = || {
        let bucket = bucket.clone();
        async move {
            let bytes = bucket.get(STATE).await.unwrap().unwrap();
            let parts: Vec<leadgate_protocol::StatePart> =
                ciborium::from_reader(bytes.as_ref()).unwrap();
            parts[0].size
        }
    };

    let first = append(0).await;
    let publisher = Publisher::new(bucket.clone(), gateway.clone())
        .await
        .unwrap();
    assert_eq!(
        publisher.publish_state().await.unwrap(),
        None,
        "before a round"
    );
    publisher.publish_once().await.unwrap();
    assert_eq!(publisher.publish_state().await.unwrap(), Some(first));
    assert_eq!(
        publisher.publish_state().await.unwrap(),
        None,
        "written once"
    );
    let second = append(10).await;
    assert!(second > first);
    publisher.publish_once().await.unwrap();
    assert_eq!(publisher.publish_state().await.unwrap(), Some(second));
    assert_eq!(in_bucket().await, second);

    // A new process does not write the state the bucket already holds.
    let restarted = Publisher::new(bucket.clone(), gateway.clone())
        .await
        .unwrap();
    restarted.publish_once().await.unwrap();
    assert_eq!(restarted.publish_state().await.unwrap(), None);

    // A state newer than any this database holds (as after a rollback of the database)
    // stays.
    let mut newer: Vec<leadgate_protocol::StatePart> = {
        let bytes = bucket.get(STATE).await.unwrap().unwrap();
        ciborium::from_reader(bytes.as_ref()).unwrap()
    };
    for p in &mut newer {
        p.size = second + 1_000;
    }
    let mut bytes = Vec::new();
    ciborium::into_writer(&newer, &mut bytes).unwrap();
    bucket.put(STATE, bytes).await.unwrap();
    append(20).await;
    let restarted = Publisher::new(bucket.clone(), gateway.clone())
        .await
        .unwrap();
    restarted.publish_once().await.unwrap();
    assert_eq!(restarted.publish_state().await.unwrap(), None);
    assert_eq!(in_bucket().await, second + 1_000);
}
