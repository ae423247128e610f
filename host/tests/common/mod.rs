//! Helpers for the host's in-process tests.
#![allow(dead_code)]

use std::time::Duration;

use leadgate_host::HostConfig;
use tokio::net::TcpListener;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 request to the host at `addr` (`host:port`), JSON content type, connection
/// closed after; returns the status and the body. Panics if no answer comes within 30 s.
pub async fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[split..].to_vec())
}

/// `leadgate_host::run` serving on a loopback port the OS chose, in this test's runtime.
pub struct RunningHost {
    /// The HTTP address, `127.0.0.1:PORT`.
    pub addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningHost {
    /// Starts the host with `config`; returns once its HTTP listener is bound.
    pub async fn start(config: HostConfig) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(leadgate_host::run(config, http, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    /// Resolves the host's shutdown future; panics unless `run` returns `Ok` within 10 s.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
}

/// Polls `check` every 50 ms for up to 30 s; panics naming `what` past that.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /healthz`, parsed.
pub async fn health(addr: &str) -> leadgate_verifier::api::Health {
    let (_, body) = http(addr, "GET", "/healthz", b"").await;
    serde_json::from_slice(&body).unwrap()
}

/// The host and the real enclave core (`leadgate_enclave::server::serve`, dev attestation
/// and sealing, as `leadgate-enclave` runs in dev mode) in this test's runtime, linked in
/// process; the host's database is `dir/host.db`.
pub struct InProcessStack {
    /// The host.
    pub host: RunningHost,
    /// The host's database file.
    pub db: std::path::PathBuf,
    /// The enclave's keys, read from its attestation document (chain checks are not these
    /// tests' business).
    pub keys: leadgate_verifier::keys::EnclaveKeys,
    enclave: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcessStack {
    /// Starts both with `host_config` applied to the host's defaults (its link and database
    /// set here); returns once `/healthz` is ok.
    pub async fn start(dir: &std::path::Path, host_config: impl FnOnce(&mut HostConfig)) -> Self {
        use leadgate_enclave::attest::DevAttestationProvider;
        use leadgate_enclave::core::{Enclave, EnclaveConfig};
        use leadgate_enclave::sealing::DevFileSealer;
        use leadgate_protocol::transport::{Endpoint, InProcess, Listener};

        let state = dir.join("enclave");
        std::fs::create_dir_all(&state).unwrap();
        let db = dir.join("host.db");
        let mut config = EnclaveConfig::new("leadgate.dev/log");
        let attestor =
            DevAttestationProvider::open_or_create(&state, leadgate_host::clock::now_ms()).unwrap();
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
        let enclave = tokio::spawn(leadgate_enclave::server::serve(
            listener,
            std::sync::Arc::new(tokio::sync::Mutex::new(enclave)),
        ));
        let mut config = HostConfig::new(enclave_addr, db.clone());
        config.tick_ms = 100;
        host_config(&mut config);
        let host = RunningHost::start(config).await;
        let addr = host.addr.clone();
        eventually("the host is up", || async {
            health(&addr).await.status == leadgate_verifier::api::HealthStatus::Ok
        })
        .await;

        let (_, body) = http(&addr, "GET", "/attest", b"").await;
        let attest: leadgate_verifier::api::AttestAnswer = serde_json::from_slice(&body).unwrap();
        use base64::Engine as _;
        let doc = base64::engine::general_purpose::STANDARD
            .decode(attest.document)
            .unwrap();
        let (_, doc) = leadgate_verifier::attestation::parse_attestation(&doc).unwrap();
        let keys = leadgate_verifier::keys::EnclaveKeys::from_attested(
            doc.user_data.as_deref(),
            doc.public_key.as_deref(),
        )
        .unwrap();
        Self {
            host,
            db,
            keys,
            enclave,
        }
    }

    /// The host's HTTP address.
    pub fn addr(&self) -> &str {
        &self.host.addr
    }

    /// Stops the host (which must shut down cleanly) and the enclave.
    pub async fn stop(self) {
        self.host.stop().await;
        self.enclave.abort();
    }
}
