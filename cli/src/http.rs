//! Blocking HTTP to a gateway (ureq) and the attestation check every command starts with.

use leadgate_verifier::api::{AttestAnswer, ErrorBody};
use serde::Deserialize as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use leadgate_verifier::attestation::{
    root_der_from_pem, verify_attestation, AttestationPolicy, VerifiedAttestation,
};
use leadgate_verifier::keys::EnclaveKeys;
use rand_core::RngCore as _;
use serde_json::Value;

/// Trust options shared by every command that talks to a gateway.
#[derive(clap::Args, Clone, Debug)]
pub struct TrustArgs {
    /// Expected PCR0 (hex, 48 bytes): the measurement of the enclave image you trust.
    #[arg(long)]
    pub pcr0: Option<String>,
    /// The expected PCR0 from a pcr.json (`scripts/build-eif` or `nitro-cli build-enclave`
    /// output: {"Measurements": {"PCR0": hex, …}}) instead of --pcr0.
    #[arg(long, conflicts_with = "pcr0")]
    pub pcr_manifest: Option<std::path::PathBuf>,
    /// Accept debug-mode / dev enclaves (all-zero PCRs). Their memory is readable by the host.
    #[arg(long)]
    pub allow_debug: bool,
    /// Trusted root certificate (PEM) instead of the AWS Nitro root G1 (e.g. the dev CA).
    #[arg(long)]
    pub root: Option<std::path::PathBuf>,
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A ureq agent that returns 4xx/5xx responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        // ureq keeps 10 idle connections by default: more parallel requests than that would
        // reconnect (and zero two 128 KiB buffers) on most requests.
        .max_idle_connections(256)
        .max_idle_connections_per_host(256)
        .build()
        .into()
}

/// GET `url`: the HTTP status and the JSON body (the gateway's error body for non-2xx).
pub fn get_json_status(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Value)> {
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    let v: Value = resp
        .body_mut()
        .read_json()
        .with_context(|| format!("GET {url}: not JSON"))?;
    Ok((status, v))
}

/// GET `url` and parse JSON; a non-2xx answer becomes an error with the gateway's code.
pub fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<Value> {
    let (status, v) = get_json_status(agent, url)?;
    if !(200..300).contains(&status) {
        bail!("GET {url}: {status} {}", error_code(&v));
    }
    Ok(v)
}

/// GET `url` and read the answer as the API contract type `T` ([`leadgate_verifier::api`]).
///
/// # Errors
/// Fetch failures, a non-2xx status, or an answer that is not a `T`.
pub fn get_typed<T: serde::de::DeserializeOwned>(
    agent: &ureq::Agent,
    url: &str,
) -> anyhow::Result<T> {
    serde_json::from_value(get_json(agent, url)?)
        .with_context(|| format!("GET {url}: the answer does not match the API contract"))
}

/// GET `url` as bytes.
pub fn get_bytes(agent: &ureq::Agent, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut resp = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    if !resp.status().is_success() {
        bail!("GET {url}: {}", resp.status().as_u16());
    }
    Ok(resp.body_mut().with_config().limit(1 << 20).read_to_vec()?)
}

/// `code: message` of a gateway error body ([`ErrorBody`]), or the body itself if it is not
/// one (another server, or a code this build does not know).
pub fn error_code(v: &Value) -> String {
    match ErrorBody::deserialize(v) {
        Ok(ErrorBody { error }) => format!("{}: {}", error.code.as_str(), error.message),
        Err(_) => format!("unexpected answer {v}"),
    }
}

/// Creates a secret key file (must not exist), mode 0600, holding `body` as one JSON line.
pub fn write_key_file(out: &std::path::Path, body: &Value) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
    writeln!(f, "{body}")?;
    Ok(())
}

/// Reads the trusted root, if any.
pub fn root_der(t: &TrustArgs) -> anyhow::Result<Option<Vec<u8>>> {
    t.root
        .as_ref()
        .map(|p| {
            let pem =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            root_der_from_pem(&pem).map_err(|e| anyhow!("{}: {e}", p.display()))
        })
        .transpose()
}

/// The expected PCR0 (48 bytes) from `--pcr0 HEX` or `--pcr-manifest pcr.json`, if given.
pub fn expected_pcr0(t: &TrustArgs) -> anyhow::Result<Option<Vec<u8>>> {
    let hex_text = match (&t.pcr0, &t.pcr_manifest) {
        (Some(h), _) => h.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", path.display()))?;
            let m = v.get("Measurements").unwrap_or(&v);
            m["PCR0"]
                .as_str()
                .with_context(|| format!("{}: no Measurements.PCR0", path.display()))?
                .to_owned()
        }
        (None, None) => return Ok(None),
    };
    parse_pcr0(&hex_text).map(Some)
}

/// A PCR0 given as text: 48 bytes, 96 hex digits (surrounding whitespace ignored).
pub fn parse_pcr0(hex_text: &str) -> anyhow::Result<Vec<u8>> {
    let pcr0 =
        hex::decode(hex_text.trim()).with_context(|| format!("PCR0 {hex_text:?} is not hex"))?;
    if pcr0.len() != 48 {
        bail!("PCR0 must be 48 bytes (96 hex digits), not {}", pcr0.len());
    }
    Ok(pcr0)
}

/// Checks trust options are coherent: a PCR0 or an explicit debug opt-in.
pub fn check_trust(t: &TrustArgs) -> anyhow::Result<Option<Vec<u8>>> {
    if t.allow_debug {
        eprintln!("warning: --allow-debug accepts enclaves whose memory the host can read");
    }
    let pcr0 = expected_pcr0(t)?;
    if pcr0.is_none() && !t.allow_debug {
        bail!("give --pcr0 HEX or --pcr-manifest pcr.json (the enclave image you trust), or --allow-debug for a dev gateway");
    }
    Ok(pcr0)
}

/// `GET {gateway}/attest?nonce=HEX`: the document (raw COSE_Sign1 bytes) the gateway's
/// enclave made for `nonce`. A gateway whose enclave is restarting answers 503: retried for up
/// to ~30 s.
pub fn fetch_attestation(
    agent: &ureq::Agent,
    gateway: &str,
    nonce: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let url = format!("{gateway}/attest?nonce={}", hex::encode(nonce));
    let mut attempt = 0;
    let v = loop {
        match get_json_status(agent, &url)? {
            (200..=299, v) => break v,
            (503, _) if attempt < 30 => {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            (status, v) => bail!("GET {url}: {status} {}", error_code(&v)),
        }
    };
    let answer = AttestAnswer::deserialize(&v).context("attest: not an attestation answer")?;
    base64::engine::general_purpose::STANDARD
        .decode(answer.document)
        .context("attest: document is not base64")
}

/// Fetches a fresh attestation with a random nonce from `gateway` and verifies it now.
pub fn attest_gateway(
    agent: &ureq::Agent,
    gateway: &str,
    t: &TrustArgs,
) -> anyhow::Result<(VerifiedAttestation, EnclaveKeys)> {
    let pcr0 = check_trust(t)?;
    let root = root_der(t)?;
    let mut nonce = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let doc = fetch_attestation(agent, gateway, &nonce)?;
    let policy = AttestationPolicy {
        now_unix_ms: now_ms(),
        root_der: root.as_deref(),
        expected_pcr0: pcr0.as_deref(),
        allow_debug: t.allow_debug,
        expected_nonce: Some(&nonce),
    };
    let verified = verify_attestation(&doc, &policy)
        .map_err(|e| anyhow!("attestation rejected: {} ({e})", e.code()))?;
    let keys = verified
        .enclave_keys()
        .map_err(|e| anyhow!("attestation rejected: {} ({e})", e.code()))?;
    Ok((verified, keys))
}
