//! Harness for end-to-end tests: starts the real `leadgate-enclave` and `leadgate-host`
//! binaries (built by the harness itself on first use, see [`bin`]) in a temporary directory,
//! each on a port the OS chose (port 0, learned from the process's `--addr-file`), and talks
//! to them over HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use leadgate_verifier::attestation::{root_der_from_pem, verify_attestation, AttestationPolicy};
use leadgate_verifier::intake::{seal_lead, SealedLead};
use leadgate_verifier::keys::EnclaveKeys;
use serde_json::Value;

/// Path of a workspace binary (`target/<profile>/NAME`), built if needed.
///
/// The first call in a test process runs `cargo build --workspace --bins --tests` into this
/// test's own target directory and profile: the build `cargo test --workspace` (and
/// `scripts/test`) has just made, so after one it only checks that everything is fresh, and
/// after `cargo test -p leadgate-e2e` it builds the binaries the tests start. Panics if the
/// build fails.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_binaries).join(name)
}

/// Builds the workspace's binaries for this test's profile; returns `target/<profile>`.
fn build_binaries() -> PathBuf {
    // This test runs as target/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("test exe path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target/");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory in {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // Without the variables cargo set for this test (package, manifest, crate, binaries):
    // seen by a build, they would make it differ from an ordinary one, so the two would
    // rebuild each other's crates in turn.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || key.starts_with("CARGO_CRATE_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("__CARGO")
            || matches!(
                &*key,
                "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            build.env_remove(&*key);
        }
    }
    let status = build
        .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
        .args(["--profile", profile])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build of the binaries failed");
    profile_dir
}

/// Calls `check` every `every` until it holds (returns how long that took) or `limit` has
/// passed (`None`).
fn poll_until(
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(every);
    }
    None
}

/// Waits up to 30 s for `child` to write its bound address to `path` (`--addr-file`); returns
/// it without a `tcp://` prefix. Panics if the child exits first.
pub fn wait_addr_file(child: &mut Child, path: &Path, log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Some(line) = s.lines().next() {
                return line.trim_start_matches("tcp://").to_owned();
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} exited ({status}) before listening; see {}",
                path.display(),
                log.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no address in {} after 30 s; see {}",
            path.display(),
            log.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
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
    /// Gateway base URL (`http://127.0.0.1:PORT`), set once the host has started.
    pub gateway: String,
    /// The enclave's link address (`127.0.0.1:PORT`), set at its first start and kept, so
    /// the host finds a restarted enclave where it was.
    enclave_addr: Option<String>,
    /// The host's HTTP address, set at its first start and kept across restarts.
    host_addr: Option<String>,
    /// Extra arguments for every start of the host.
    pub host_args: Vec<String>,
    /// Extra environment variables for every start of the host (the bucket's credentials).
    pub host_env: Vec<(String, String)>,
    /// Extra arguments for every start of the enclave.
    pub enclave_args: Vec<String>,
    /// Extra environment variables for every start of the enclave (settings an enclave image
    /// bakes into its `env`, such as `LEADGATE_FLOOR_CHECKPOINT`).
    pub enclave_env: Vec<(String, String)>,
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
        s.start_enclave();
        s.start_host();
        s.wait_attests();
        s
    }

    /// A stack in `dir` with nothing started yet: set [`Stack::enclave_args`], then call
    /// [`Stack::start_enclave`] and [`Stack::start_host`] (in that order: the host is told
    /// where the enclave listens) and [`Stack::wait_attests`].
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
        Stack {
            dir,
            gateway: String::new(),
            enclave_addr: None,
            host_addr: None,
            host_args,
            host_env: Vec::new(),
            enclave_args: Vec::new(),
            enclave_env: Vec::new(),
            enclave: None,
            host: None,
            http,
        }
    }

    /// The enclave's link address (`127.0.0.1:PORT`); panics before its first start.
    pub fn enclave_addr(&self) -> String {
        self.enclave_addr
            .clone()
            .expect("the enclave has not been started yet")
    }

    /// Appends to the log file `name` in the stack's directory.
    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(name))
            .expect("log")
    }

    /// Spawns `bin` with `args` plus `--listen ADDR --addr-file FILE` (ADDR: `known`, or
    /// port 0 at the first start) and returns the child and the address it bound.
    fn spawn_listening(
        &self,
        bin_name: &str,
        known: Option<&str>,
        args: &[std::ffi::OsString],
        log: &str,
    ) -> (Child, String) {
        let addr_file = self.dir.path().join(format!("{bin_name}.addr"));
        let _ = std::fs::remove_file(&addr_file);
        let env: &[(String, String)] = if bin_name == "leadgate-host" {
            &self.host_env
        } else {
            &self.enclave_env
        };
        let mut child = Command::new(bin(bin_name))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["--listen", known.unwrap_or("127.0.0.1:0")])
            .arg("--addr-file")
            .arg(&addr_file)
            .args(args)
            .stdout(self.log(log))
            .stderr(self.log(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin_name}: {e}"));
        let addr = wait_addr_file(&mut child, &addr_file, &self.dir.path().join(log));
        (child, addr)
    }

    /// Starts (or restarts) the host process on the same address and database; returns once
    /// it listens (its enclave link may still be coming up). The enclave must have been
    /// started once before.
    pub fn start_host(&mut self) {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--enclave".into(),
            self.enclave_addr().into(),
            "--db".into(),
            self.dir.path().join("host.db").into(),
            "--tick-ms".into(),
            "500".into(),
        ];
        args.extend(self.host_args.iter().map(Into::into));
        let (child, addr) = self.spawn_listening(
            "leadgate-host",
            self.host_addr.as_deref(),
            &args,
            "host.log",
        );
        self.gateway = format!("http://{addr}");
        self.host_addr = Some(addr);
        self.host = Some(child);
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
        poll_until(limit, Duration::from_millis(20), || {
            let Ok(mut r) = self.http.get(&format!("{}/healthz", self.gateway)).call() else {
                return false;
            };
            r.body_mut()
                .read_json::<Value>()
                .is_ok_and(|v| v["status"] == "ok")
        })
        .unwrap_or_else(|| {
            panic!(
                "gateway not healthy after {limit:?}; see {}",
                self.dir.path().display()
            )
        })
    }

    /// Starts (or restarts) the enclave process on the same address; if the host is running,
    /// waits until it has booted the enclave.
    pub fn start_enclave(&mut self) {
        let mut args: Vec<std::ffi::OsString> =
            vec!["--state-dir".into(), self.dir.path().join("enclave").into()];
        args.extend(self.enclave_args.iter().map(Into::into));
        let (child, addr) = self.spawn_listening(
            "leadgate-enclave",
            self.enclave_addr.as_deref(),
            &args,
            "enclave.log",
        );
        self.enclave_addr = Some(addr);
        self.enclave = Some(child);
        if self.host.is_some() {
            self.wait_attests();
        }
    }

    /// Waits up to 30 s until the gateway answers `/attest` (the host has booted the enclave).
    pub fn wait_attests(&self) {
        poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            self.http
                .get(&format!("{}/attest", self.gateway))
                .call()
                .is_ok_and(|mut r| r.status().is_success() && r.body_mut().read_to_string().is_ok())
        })
        .unwrap_or_else(|| panic!("gateway did not come up; see {}", self.dir.path().display()));
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

    /// Waits up to 30 s until the host holds a sealed state of at least `size` entries
    /// (`leadgate_sealed_state_size` in `/metrics`).
    pub fn wait_sealed_state(&self, size: i64) {
        let sealed = || -> i64 {
            let text = String::from_utf8(self.get_bytes("/metrics")).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("leadgate_sealed_state_size "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(-1)
        };
        poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            sealed() >= size
        })
        .unwrap_or_else(|| panic!("no state of {size} entries sealed"));
    }

    /// Waits up to `limit` until no auction is open.
    pub fn wait_all_closed(&self, limit: Duration) {
        poll_until(limit, Duration::from_millis(300), || {
            self.get_json("/v1/auctions?status=open&limit=1")["auctions"]
                .as_array()
                .is_some_and(|a| a.is_empty())
        })
        .unwrap_or_else(|| panic!("auctions did not close within {limit:?}"));
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

/// A real S3-protocol server (moto in server mode, installed by `scripts/s3-server install`)
/// on a free loopback port, killed on drop.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    http: ureq::Agent,
}

impl S3Server {
    /// Starts the server; panics (with the command that installs it) if it is not installed.
    pub fn start(log: &Path) -> Self {
        let bin =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/s3-server/venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/s3-server install (scripts/test does)",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("s3 log"))
            .spawn()
            .expect("spawn moto_server");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let endpoint = format!("http://127.0.0.1:{port}");
        poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            http.get(&format!("{endpoint}/")).call().is_ok()
        })
        .unwrap_or_else(|| panic!("moto_server did not answer; see {}", log.display()));
        Self {
            endpoint,
            child,
            http,
        }
    }

    /// Creates bucket `name`, readable by anyone (as a log's bucket is: clients read the
    /// tiles without the operator's servers).
    pub fn create_bucket(&self, name: &str) {
        let r = self
            .http
            .put(&format!("{}/{name}", self.endpoint))
            .header("x-amz-acl", "public-read")
            .send_empty()
            .expect("PUT bucket");
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// The object at `path` in `bucket`, if any (up to 1 GiB).
    pub fn get(&self, bucket: &str, path: &str) -> Option<Vec<u8>> {
        let mut r = self
            .http
            .get(&format!("{}/{bucket}/{path}", self.endpoint))
            .call()
            .ok()?;
        r.status().is_success().then(|| {
            r.body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .expect("body")
        })
    }

    /// Writes `bytes` to `path` in `bucket` (as anyone who can write the bucket can: the
    /// tests damage a log's tiles this way).
    pub fn put(&self, bucket: &str, path: &str, bytes: &[u8]) {
        let r = self
            .http
            .put(&format!("{}/{bucket}/{path}", self.endpoint))
            .send(bytes)
            .expect("PUT object");
        assert!(r.status().is_success(), "put {path}: {}", r.status());
    }

    /// The environment a host needs to reach it (`--bucket s3://BUCKET`).
    pub fn host_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "leadgate-test"),
            ("AWS_SECRET_ACCESS_KEY", "leadgate-test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Freezes the server (SIGSTOP): requests to it hang, as to an unreachable bucket.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Thaws it (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The files of the host's SQLite database (the database, its WAL and shared-memory index).
const DB_FILES: [&str; 3] = ["host.db", "host.db-wal", "host.db-shm"];

/// Copies the host database in directory `from` to directory `to` (created if missing),
/// replacing what `to` held, as a backup is taken or restored with the host stopped.
///
/// # Errors
/// Creating `to` or copying a file.
pub fn copy_db(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for name in DB_FILES {
        let _ = std::fs::remove_file(to.join(name));
        if from.join(name).exists() {
            std::fs::copy(from.join(name), to.join(name))?;
        }
    }
    Ok(())
}

/// Deletes the host database in directory `dir`, as a lost disk does.
pub fn delete_db(dir: &Path) {
    for name in DB_FILES {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

/// Changes one byte (byte 3) of stored leaf `index` in the host database at `db`, as a bad
/// disk sector or a careless hand would: the leaves row only, not its node or receipt.
/// Returns the leaf's original bytes. Panics if the database has no such leaf.
pub fn corrupt_leaf(db: &Path, index: u64) -> Vec<u8> {
    use sqlx::ConnectOptions as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .connect()
            .await
            .expect("open the host database");
        let original: Vec<u8> = sqlx::query_scalar("SELECT leaf FROM leaves WHERE idx = ?")
            .bind(index as i64)
            .fetch_one(&mut c)
            .await
            .expect("the leaf");
        let mut leaf = original.clone();
        leaf[3] ^= 1;
        sqlx::query("UPDATE leaves SET leaf = ? WHERE idx = ?")
            .bind(leaf)
            .bind(index as i64)
            .execute(&mut c)
            .await
            .expect("update the leaf");
        original
    })
}

/// The number of leaves stored in the host database at `db` (one past the highest index; 0
/// for an empty or missing log). Reads beside a running host (SQLite's WAL allows it).
pub fn stored_size(db: &Path) -> u64 {
    use sqlx::ConnectOptions as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let Ok(mut c) = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .connect()
            .await
        else {
            return 0;
        };
        sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(idx) + 1 FROM leaves")
            .fetch_one(&mut c)
            .await
            .ok()
            .flatten()
            .unwrap_or(0) as u64
    })
}

/// anvil's first dev account (a published test key).
pub const DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// The anvil that `scripts/contracts install` puts in `contracts/node_modules`.
pub fn anvil_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contracts/node_modules/.bin/anvil")
}

/// A local anvil chain, stopped (SIGTERM) on drop.
pub struct Anvil {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The state file anvil loads at start and writes at SIGTERM.
    pub state: PathBuf,
}

impl Anvil {
    /// Starts anvil on `port`, or on a port the OS chooses (0) when `None`, read from the
    /// `Listening on HOST:PORT` line anvil prints.
    pub fn start(port: Option<u16>, state: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(anvil_bin())
            .args(["--port", &port.unwrap_or(0).to_string(), "--state"])
            .arg(state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("anvil (run scripts/contracts install)");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        // Reads until the listening line, then drains anvil's request log so it never blocks.
        std::thread::spawn(move || {
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("Listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("anvil did not start listening");
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("anvil's port");
        Anvil {
            child,
            port,
            state: state.to_owned(),
        }
    }

    /// Its JSON-RPC URL.
    pub fn rpc(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM: anvil writes its state file and exits. Nothing if it has exited already.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Anvil {
    /// SIGTERM, not SIGKILL: the npm package's `anvil` is a Node.js wrapper that forwards
    /// SIGTERM to the native binary; a SIGKILL would leave that binary running.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion, capturing its output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

/// Runs the `leadgate` CLI with `args`.
pub fn leadgate(args: &[&str]) -> Output {
    Command::new(bin("leadgate"))
        .args(args)
        .output()
        .expect("spawn leadgate")
}

/// What a successful command printed; panics with its stdout and stderr otherwise.
pub fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON a successful command printed; panics with its stderr otherwise.
pub fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}
