//! Harness for end-to-end tests: starts the real `leadgate-enclave` and `leadgate-host`
//! binaries (built by `cargo build --bins`, which `scripts/test` runs first) on free loopback
//! ports, in a temporary directory, and talks to them over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_verifier::attestation::{root_der_from_pem, verify_attestation, AttestationPolicy};
use leadgate_verifier::intake::{seal_lead, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use serde_json::Value;

/// Path of a workspace binary next to the test executable (`target/<profile>/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build --bins` first (scripts/test does)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The corpus shipped in `tests/data/leads.jsonl`.
pub fn corpus() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/leads.jsonl"))
        .expect("corpus");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .collect()
}

/// A running dev stack.
pub struct Stack {
    /// Working directory (state, database, logs).
    pub dir: tempfile::TempDir,
    /// Gateway base URL.
    pub gateway: String,
    enclave_port: u16,
    host_port: u16,
    host_args: Vec<String>,
    /// Extra arguments for every start of the enclave.
    pub enclave_args: Vec<String>,
    enclave: Option<Child>,
    host: Option<Child>,
    /// HTTP agent that returns error statuses as responses.
    pub http: ureq::Agent,
}

impl Stack {
    /// Starts enclave and host and waits until the gateway attests.
    pub fn start() -> Self {
        Self::start_with_limit(100_000)
    }

    /// [`Stack::start`] with the host's per-seller daily limit set to `seller_daily_limit`.
    pub fn start_with_limit(seller_daily_limit: u32) -> Self {
        Self::start_with(
            seller_daily_limit,
            &[],
            tempfile::tempdir().expect("tempdir"),
        )
    }

    /// Starts a stack in `dir` (which may hold an earlier stack's state: a copy forks it),
    /// with extra host arguments.
    pub fn start_with(
        seller_daily_limit: u32,
        host_args: &[String],
        dir: tempfile::TempDir,
    ) -> Self {
        let mut s = Self::new_stopped(seller_daily_limit, host_args, dir);
        s.start_host();
        s.start_enclave();
        s
    }

    /// A stack in `dir` with nothing started yet: set [`Stack::enclave_args`], then call
    /// [`Stack::start_host`] and [`Stack::start_enclave`].
    pub fn new_stopped(
        seller_daily_limit: u32,
        host_args: &[String],
        dir: tempfile::TempDir,
    ) -> Self {
        std::fs::create_dir_all(dir.path().join("enclave")).expect("mkdir");
        let mut host_args = host_args.to_vec();
        host_args.extend([
            "--seller-daily-limit".into(),
            seller_daily_limit.to_string(),
        ]);
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let host_port = free_port();
        Stack {
            dir,
            gateway: format!("http://127.0.0.1:{host_port}"),
            enclave_port: free_port(),
            host_port,
            host_args,
            enclave_args: Vec::new(),
            enclave: None,
            host: None,
            http,
        }
    }

    /// The enclave's link address (`127.0.0.1:PORT`).
    pub fn enclave_addr(&self) -> String {
        format!("127.0.0.1:{}", self.enclave_port)
    }

    /// Starts (or restarts) the host process on the same port and database; does not wait.
    pub fn start_host(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("host.log"))
            .expect("log");
        let host = Command::new(bin("leadgate-host"))
            .args([
                "--listen",
                &format!("127.0.0.1:{}", self.host_port),
                "--enclave",
                &self.enclave_addr(),
            ])
            .arg("--db")
            .arg(self.dir.path().join("host.db"))
            .args(["--tick-ms", "500"])
            .args(&self.host_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn host");
        self.host = Some(host);
    }

    /// `kill -9` the host.
    pub fn kill_host(&mut self) {
        if let Some(mut c) = self.host.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// Waits until `/healthz` says `ok`; returns how long that took.
    pub fn wait_healthy(&self, limit: Duration) -> Duration {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(mut r) = self.http.get(&format!("{}/healthz", self.gateway)).call() {
                if let Ok(v) = r.body_mut().read_json::<Value>() {
                    if v["status"] == "ok" {
                        return start.elapsed();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "gateway not healthy after {limit:?}; see {}",
            self.dir.path().display()
        );
    }

    /// Starts (or restarts) the enclave process and waits until the host has booted it.
    pub fn start_enclave(&mut self) {
        let child = Command::new(bin("leadgate-enclave"))
            .args(["--listen", &format!("127.0.0.1:{}", self.enclave_port)])
            .arg("--state-dir")
            .arg(self.dir.path().join("enclave"))
            .args(&self.enclave_args)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("enclave.log"))
                    .expect("log"),
            )
            .spawn()
            .expect("spawn enclave");
        self.enclave = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut r) = self.http.get(&format!("{}/attest", self.gateway)).call() {
                if r.status().is_success() && r.body_mut().read_to_string().is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("gateway did not come up; see {}", self.dir.path().display());
    }

    /// `kill -9` the enclave.
    pub fn kill_enclave(&mut self) {
        if let Some(mut c) = self.enclave.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// The dev root PEM path.
    pub fn root_pem(&self) -> PathBuf {
        self.dir.path().join("enclave/dev-root.pem")
    }

    /// Verifies a fresh attestation and returns the bound keys.
    pub fn keys(&self) -> EnclaveKeys {
        attested_keys(&self.http, &self.gateway, &self.root_pem())
    }

    /// GET a path; panics on transport errors and non-2xx answers.
    fn get(&self, path: &str) -> ureq::http::Response<ureq::Body> {
        let r = self
            .http
            .get(&format!("{}{path}", self.gateway))
            .call()
            .expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r
    }

    /// GET a JSON path; panics on non-2xx.
    pub fn get_json(&self, path: &str) -> Value {
        self.get(path).body_mut().read_json().expect("json")
    }

    /// GET raw bytes; panics on non-2xx.
    pub fn get_bytes(&self, path: &str) -> Vec<u8> {
        self.get(path).body_mut().read_to_vec().expect("body")
    }

    /// POST raw bytes to `/v1/leads`: (status, JSON body).
    pub fn post_raw(&self, body: &[u8]) -> (u16, Value) {
        let mut r = self
            .http
            .post(&format!("{}/v1/leads", self.gateway))
            .header("content-type", "application/json")
            .send(body)
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.body_mut().read_json().unwrap_or(Value::Null))
    }

    /// POST a sealed lead.
    pub fn post(&self, lead: &SealedLead) -> (u16, Value) {
        self.post_raw(&serde_json::to_vec(lead).expect("json"))
    }

    /// Signs a checkpoint now; returns the note.
    pub fn checkpoint(&self) -> Vec<u8> {
        let mut r = self
            .http
            .post(&format!("{}/v1/checkpoint", self.gateway))
            .send_empty()
            .expect("POST");
        assert!(r.status().is_success(), "checkpoint: {}", r.status());
        r.body_mut().read_to_vec().expect("note")
    }

    /// Log size as the host reports it.
    pub fn size(&self) -> u64 {
        self.get_json("/healthz")["size"].as_u64().expect("size")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_enclave();
        self.kill_host();
    }
}

/// Verifies a fresh dev-mode attestation from `gateway` (nonce, chain to the dev root at
/// `root_pem`) and returns the bound keys; panics if anything does not verify.
pub fn attested_keys(http: &ureq::Agent, gateway: &str, root_pem: &Path) -> EnclaveKeys {
    let nonce = b"e2e-nonce-0123456789";
    let v: Value = http
        .get(&format!("{gateway}/attest?nonce={}", hex::encode(nonce)))
        .call()
        .expect("GET /attest")
        .body_mut()
        .read_json()
        .expect("json");
    use base64::Engine as _;
    let doc = base64::engine::general_purpose::STANDARD
        .decode(v["document"].as_str().expect("document"))
        .expect("b64");
    let root = root_der_from_pem(&std::fs::read_to_string(root_pem).expect("root")).expect("pem");
    let policy = AttestationPolicy {
        now_unix_ms: now_ms(),
        root_der: Some(&root),
        expected_pcr0: None,
        allow_debug: true,
        expected_nonce: Some(nonce),
    };
    verify_attestation(&doc, &policy)
        .expect("attestation")
        .enclave_keys()
        .expect("keys")
}

/// The `proof` array of a proof answer (`/v1/proof/*`) as 32-byte hashes; panics if malformed.
pub fn proof(v: &Value) -> Vec<[u8; 32]> {
    v["proof"]
        .as_array()
        .expect("proof array")
        .iter()
        .map(|h| {
            hex::decode(h.as_str().expect("hex"))
                .expect("hex")
                .try_into()
                .expect("32 bytes")
        })
        .collect()
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Seals a lead JSON value for the stack's enclave.
pub fn seal(seller: &SigningKey, keys: &EnclaveKeys, lead: &Value) -> SealedLead {
    seal_lead(
        seller,
        &keys.intake_key,
        &keys.origin,
        &serde_json::to_vec(lead).expect("json"),
        now_ms(),
    )
    .expect("seal")
}
