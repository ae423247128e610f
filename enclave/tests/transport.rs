//! One test suite for every link transport: the same frames through the same
//! `server::serve` over TCP, in process and over vsock. The vsock run needs a kernel with `AF_VSOCK`
//! loopback (`vsock_loopback`, CID 1); where there is none it says so and is skipped.

mod common;

use std::sync::Arc;

use leadgate_enclave::server::serve;
use leadgate_protocol::transport::{connect, Endpoint, InProcess, Listener};
use leadgate_protocol::{decode, encode, read_frame, Request, Response, MAX_FRAME_LEN};
use leadgate_verifier::attestation::parse_attestation;
use serde_bytes::ByteBuf;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `VMADDR_CID_LOCAL`: the local machine, through the `vsock_loopback` transport.
const VSOCK_CID_LOCAL: u32 = 1;

async fn call(s: &mut leadgate_protocol::transport::BoxStream, body: &[u8]) -> Option<Response> {
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(body).await.unwrap();
    let body = read_frame(s).await.unwrap()?;
    Some(decode::<Response>(&body).unwrap())
}

/// The suite: attest round trip, a bad frame answered without closing, pipelined requests in
/// order, an oversized length prefix answered and closed.
async fn suite(bind: Endpoint) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (enclave, _) = common::Host::default().boot(dir.path(), common::T0);
    let listener = Listener::bind(&bind)
        .await
        .map_err(|e| format!("bind {bind}: {e}"))?;
    let at = listener.local_endpoint().unwrap();
    let server = tokio::spawn(serve(listener, Arc::new(tokio::sync::Mutex::new(enclave))));
    let mut s = connect(&at)
        .await
        .map_err(|e| format!("connect {at}: {e}"))?;

    // A fresh attestation carries our nonce.
    let req = encode(&Request::Attest {
        nonce: Some(ByteBuf::from(b"transport nonce".to_vec())),
    });
    match call(&mut s, &req).await {
        Some(Response::Attestation { document }) => {
            let (_, doc) = parse_attestation(&document).unwrap();
            assert_eq!(doc.nonce.as_deref(), Some(&b"transport nonce"[..]));
        }
        other => panic!("{other:?}"),
    }
    // Not CBOR: an error frame, and the connection stays usable.
    match call(&mut s, b"\xff\x00not cbor").await {
        Some(Response::Error(e)) => assert!(e.code.as_str().starts_with("protocol."), "{}", e.code),
        other => panic!("{other:?}"),
    }
    // Pipelined: three requests written before any answer; answers come in order.
    let status = encode(&Request::Status);
    for _ in 0..3 {
        s.write_all(&(status.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&status).await.unwrap();
    }
    for _ in 0..3 {
        let body = read_frame(&mut s).await.unwrap().unwrap();
        assert!(matches!(
            decode::<Response>(&body).unwrap(),
            Response::Status(_)
        ));
    }
    // An oversized length prefix: an error frame, then the enclave closes the stream.
    s.write_all(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes())
        .await
        .unwrap();
    match read_frame(&mut s).await.unwrap() {
        Some(body) => match decode::<Response>(&body).unwrap() {
            Response::Error(e) => assert_eq!(e.code, "protocol.frame_too_large"),
            other => panic!("{other:?}"),
        },
        None => panic!("no error frame"),
    }
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).await.unwrap(),
        0,
        "closed after a bad prefix"
    );
    // The listener still serves new connections.
    let mut again = connect(&at).await.unwrap();
    assert!(matches!(
        call(&mut again, &status).await,
        Some(Response::Status(_))
    ));
    server.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_link() {
    suite(Endpoint::Tcp("127.0.0.1:0".into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_link() {
    suite(Endpoint::InProcess(InProcess::new())).await.unwrap();
}

/// The same suite over vsock loopback (CID 1). Needs a kernel with `vsock_loopback`, which
/// CI machines and most containers lack, so it is ignored by default and runs where asked:
/// `LEADGATE_TEST_VSOCK=1 cargo test -p leadgate-enclave --test transport -- --ignored vsock`.
/// Where it runs, it fails if vsock does not work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs vsock loopback; run with LEADGATE_TEST_VSOCK=1 and --ignored"]
async fn vsock_link() {
    assert_eq!(
        std::env::var("LEADGATE_TEST_VSOCK").as_deref(),
        Ok("1"),
        "set LEADGATE_TEST_VSOCK=1 on a machine with vsock loopback (modprobe vsock_loopback)"
    );
    // Port 0 is not "any" for vsock; pick one from the process id.
    let port = 20_000 + std::process::id() % 10_000;
    let bind = Endpoint::Vsock {
        cid: VSOCK_CID_LOCAL,
        port,
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), suite(bind))
        .await
        .expect("vsock connect timed out")
        .expect("vsock suite");
}

/// A sealer that holds each call until released, to catch the link server sealing under
/// the enclave's lock.
struct GatedSealer {
    inner: leadgate_enclave::sealing::DevFileSealer,
    entered: std::sync::mpsc::SyncSender<()>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl GatedSealer {
    fn wait(&self) {
        self.entered.send(()).unwrap();
        self.release.lock().unwrap().recv().unwrap();
    }
}

impl leadgate_enclave::sealing::Sealer for GatedSealer {
    fn seal(
        &self,
        plaintext: &[u8],
        credentials: Option<&leadgate_protocol::AwsCredentials>,
    ) -> Result<Vec<u8>, leadgate_enclave::sealing::SealError> {
        self.wait();
        self.inner.seal(plaintext, credentials)
    }

    fn unseal(
        &self,
        blob: &[u8],
        credentials: Option<&leadgate_protocol::AwsCredentials>,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, leadgate_enclave::sealing::SealError> {
        self.wait();
        self.inner.unseal(blob, credentials)
    }
}

/// `Boot` seals (with KMS: a network call of up to 20 s) without holding the enclave's lock,
/// and the boot completes once the sealer answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_seals_without_the_enclave_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let sealer = GatedSealer {
        inner: leadgate_enclave::sealing::DevFileSealer::open_or_create(dir.path()).unwrap(),
        entered: entered_tx,
        release: std::sync::Mutex::new(release_rx),
    };
    let attestor =
        leadgate_enclave::attest::DevAttestationProvider::open_or_create(dir.path(), common::T0)
            .unwrap();
    let enclave = Arc::new(tokio::sync::Mutex::new(
        leadgate_enclave::core::Enclave::new(
            leadgate_enclave::core::EnclaveConfig::new("leadgate.test/log"),
            Box::new(sealer),
            Box::new(attestor),
        ),
    ));
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let at = listener.local_endpoint().unwrap();
    let server = tokio::spawn(serve(listener, enclave.clone()));
    let mut s = connect(&at).await.unwrap();
    let boot = encode(&Request::Boot {
        sealed_secrets: None,
        tip: None,
        aws_credentials: None,
    });
    let client = tokio::spawn(async move { call(&mut s, &boot).await });
    // The sealer is called, and while it works the lock is free.
    tokio::task::spawn_blocking(move || entered_rx.recv().unwrap())
        .await
        .unwrap();
    {
        let e = enclave
            .try_lock()
            .expect("the enclave's lock is free while sealing");
        assert!(!e.is_booted());
    }
    release_tx.send(()).unwrap();
    match client.await.unwrap() {
        Some(Response::Booted { sealed_secrets, .. }) => assert!(!sealed_secrets.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(enclave.lock().await.is_booted());
    server.abort();
}
