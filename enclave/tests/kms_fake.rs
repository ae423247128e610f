//! The KMS sealer against a local fake KMS endpoint: TLS under a test CA, AWS JSON 1.1, a
//! SigV4 check written here from the AWS documentation (not with the signing library), the
//! attestation document verified as KMS does, the key policy's `ImageSha384` condition, and
//! `CiphertextForRecipient` built in the BER shape real KMS answers have (see
//! `tests/fixtures/kms/SOURCE.md`).

mod tls_server;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use leadgate_enclave::attest::DevAttestationProvider;
use leadgate_enclave::kms::{AwsCredentials, KmsClient, KmsKey};
use leadgate_enclave::sealing::{KmsSealer, SealError, Sealer, KMS_MAGIC};
use leadgate_protocol::{Request, Response};
use leadgate_verifier::attestation::{root_der_from_pem, verify_attestation, AttestationPolicy};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

const KEY_ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const HOST: &str = "kms.eu-west-1.amazonaws.com";
const ACCESS_KEY: &str = "ASIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";

/// What the fake KMS allows and has seen.
struct FakeKms {
    /// The PCR0 the key policy's `kms:RecipientAttestation:ImageSha384` condition names.
    policy_pcr0: Vec<u8>,
    /// The attestation root the fake trusts (the dev CA; real KMS trusts AWS's).
    root_der: Vec<u8>,
    /// Encrypt the content key to this key instead of the recipient's (a broken KMS).
    wrong_recipient: Option<rsa::RsaPublicKey>,
    /// CiphertextBlob → data key.
    keys: HashMap<Vec<u8>, [u8; 32]>,
    /// (operation, recipient public key) of each call that passed the checks.
    calls: Vec<(String, Vec<u8>)>,
}

type Shared = Arc<Mutex<FakeKms>>;

fn kms_error(kind: &str, message: &str) -> (u16, serde_json::Value) {
    (
        400,
        serde_json::json!({ "__type": kind, "message": message }),
    )
}

/// AWS Signature Version 4 (AWS General Reference, "Create a signed AWS API request"),
/// checked from scratch: canonical request, string to sign, derived key, HMAC.
fn sigv4_ok(parts: &http::request::Parts, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let auth = header("authorization").ok_or("no Authorization")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or("not AWS4-HMAC-SHA256")?;
    let (credential, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("no SignedHeaders")?;
    let (signed_headers, signature) = rest.split_once(", Signature=").ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("bad credential scope {credential}"));
    };
    if key_id != ACCESS_KEY || region != "eu-west-1" || service != "kms" {
        return Err("wrong key id, region or service".into());
    }
    let amz_date = header("x-amz-date").ok_or("no X-Amz-Date")?;
    if !amz_date.starts_with(date) {
        return Err("X-Amz-Date is not the scope's date".into());
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-target",
    ] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical = format!("{}\n/\n\n", parts.method);
    for name in &names {
        let value = header(name).ok_or_else(|| format!("signed header {name} missing"))?;
        canonical.push_str(&format!("{name}:{}\n", value.trim()));
    }
    canonical.push_str(&format!(
        "\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    ));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let hmac = |key: &[u8], data: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().to_vec()
    };
    let mut k = hmac(format!("AWS4{SECRET}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    if hex::encode(hmac(&k, to_sign.as_bytes())) != signature {
        return Err("signature does not match".into());
    }
    Ok(())
}

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    [vec![tag], der_len(body.len()), body.to_vec()].concat()
}

/// An indefinite-length constructed element, as KMS writes its outer structures.
fn indefinite(tag: u8, body: &[u8]) -> Vec<u8> {
    [vec![tag, 0x80], body.to_vec(), vec![0, 0]].concat()
}

/// `CiphertextForRecipient` for `plaintext`, to `to`: CMS EnvelopedData in KMS's BER shape
/// (RSAES-OAEP-SHA-256 key transport, AES-256-CBC content in two OCTET STRING chunks).
fn envelope(to: &rsa::RsaPublicKey, plaintext: &[u8]) -> Vec<u8> {
    use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 16];
    OsRng.fill_bytes(&mut cek);
    OsRng.fill_bytes(&mut iv);
    let encrypted_key = to
        .encrypt(&mut OsRng, rsa::Oaep::new::<Sha256>(), &cek)
        .unwrap();
    let ct = cbc::Encryptor::<aes::Aes256>::new_from_slices(&cek, &iv)
        .unwrap()
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let oid = |der: &[u8]| tlv(0x06, der);
    let sha256 = tlv(
        0x30,
        &[oid(&hex::decode("608648016503040201").unwrap()), vec![5, 0]].concat(),
    );
    let oaep_params = tlv(
        0x30,
        &[
            tlv(0xa0, &sha256),
            tlv(
                0xa1,
                &tlv(
                    0x30,
                    &[
                        oid(&hex::decode("2a864886f70d010108").unwrap()),
                        sha256.clone(),
                    ]
                    .concat(),
                ),
            ),
        ]
        .concat(),
    );
    let ktri = tlv(
        0x30,
        &[
            tlv(0x02, &[2]),
            tlv(
                0x80,
                &Sha256::digest(rsa::traits::PublicKeyParts::n(to).to_bytes_be()),
            ),
            tlv(
                0x30,
                &[
                    oid(&hex::decode("2a864886f70d010107").unwrap()),
                    oaep_params,
                ]
                .concat(),
            ),
            tlv(0x04, &encrypted_key),
        ]
        .concat(),
    );
    let (first, second) = ct.split_at(16);
    let eci = indefinite(
        0x30,
        &[
            oid(&hex::decode("2a864886f70d010701").unwrap()),
            tlv(
                0x30,
                &[
                    oid(&hex::decode("60864801650304012a").unwrap()),
                    tlv(0x04, &iv),
                ]
                .concat(),
            ),
            indefinite(0xa0, &[tlv(0x04, first), tlv(0x04, second)].concat()),
        ]
        .concat(),
    );
    let enveloped = indefinite(0x30, &[tlv(0x02, &[2]), tlv(0x31, &ktri), eci].concat());
    indefinite(
        0x30,
        &[
            oid(&hex::decode("2a864886f70d010703").unwrap()),
            indefinite(0xa0, &enveloped),
        ]
        .concat(),
    )
}

/// One KMS call: the checks real KMS makes, in the order that matters here.
fn answer(kms: &Shared, parts: &http::request::Parts, body: &[u8]) -> (u16, serde_json::Value) {
    if let Err(e) = sigv4_ok(parts, body) {
        return kms_error("InvalidSignatureException", &e);
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("host") != HOST || header("content-type") != "application/x-amz-json-1.1" {
        return kms_error("SerializationException", "host or content type");
    }
    if header("x-amz-security-token") != TOKEN {
        return kms_error("UnrecognizedClientException", "security token");
    }
    let operation = header("x-amz-target")
        .strip_prefix("TrentService.")
        .unwrap_or("")
        .to_string();
    let Ok(req) = serde_json::from_slice::<serde_json::Value>(body) else {
        return kms_error("SerializationException", "JSON");
    };
    if req["KeyId"] != KEY_ARN {
        return kms_error("NotFoundException", "key");
    }
    let recipient = &req["Recipient"];
    if recipient["KeyEncryptionAlgorithm"] != "RSAES_OAEP_SHA_256" {
        return kms_error("ValidationException", "KeyEncryptionAlgorithm");
    }
    let Some(doc) = recipient["AttestationDocument"]
        .as_str()
        .and_then(|d| B64.decode(d).ok())
    else {
        return kms_error("ValidationException", "AttestationDocument");
    };
    let mut kms = kms.lock().unwrap();
    let policy = AttestationPolicy {
        now_unix_ms: leadgate_enclave::clock::now_ms(),
        root_der: Some(&kms.root_der),
        expected_pcr0: None,
        allow_debug: true,
        expected_nonce: None,
    };
    let verified = match verify_attestation(&doc, &policy) {
        Ok(v) => v,
        Err(e) => return kms_error("ValidationException", &format!("attestation: {e}")),
    };
    // The key policy: kms:RecipientAttestation:ImageSha384 must equal the named PCR0.
    if verified.pcr(0) != Some(&kms.policy_pcr0[..]) {
        return kms_error(
            "AccessDeniedException",
            "ImageSha384 does not match the key policy",
        );
    }
    use rsa::pkcs8::DecodePublicKey as _;
    let spki = verified.document().public_key.clone().unwrap_or_default();
    let Ok(public) = rsa::RsaPublicKey::from_public_key_der(&spki) else {
        return kms_error("ValidationException", "public_key is not an RSA key");
    };
    let to = kms.wrong_recipient.clone().unwrap_or(public);
    let reply = match operation.as_str() {
        "GenerateDataKey" => {
            if req["KeySpec"] != "AES_256" {
                return kms_error("ValidationException", "KeySpec");
            }
            let mut key = [0u8; 32];
            let mut blob = vec![0u8; 150];
            OsRng.fill_bytes(&mut key);
            OsRng.fill_bytes(&mut blob);
            kms.keys.insert(blob.clone(), key);
            serde_json::json!({
                "KeyId": KEY_ARN,
                "CiphertextBlob": B64.encode(&blob),
                "CiphertextForRecipient": B64.encode(envelope(&to, &key)),
            })
        }
        "Decrypt" => {
            let blob = req["CiphertextBlob"]
                .as_str()
                .and_then(|b| B64.decode(b).ok());
            let Some(key) = blob.and_then(|b| kms.keys.get(&b).copied()) else {
                return kms_error("InvalidCiphertextException", "unknown ciphertext");
            };
            serde_json::json!({
                "KeyId": KEY_ARN,
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                "CiphertextForRecipient": B64.encode(envelope(&to, &key)),
            })
        }
        _ => return kms_error("UnknownOperationException", &operation),
    };
    kms.calls.push((operation, spki));
    (200, reply)
}

struct Server {
    port: u16,
    ca: rustls::pki_types::CertificateDer<'static>,
    kms: Shared,
    _runtime: tokio::runtime::Runtime,
}

fn start(kms: FakeKms) -> Server {
    let (config, ca) = tls_server::server_config(HOST);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let runtime = tls_server::runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let kms = Arc::new(Mutex::new(kms));
    let shared = kms.clone();
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let kms = shared.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let kms = kms.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, json) = answer(&kms, &parts, &body);
                            let resp = http::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-amz-json-1.1")
                                .body(Full::new(Bytes::from(json.to_string())))
                                .unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Server {
        port,
        ca,
        kms,
        _runtime: runtime,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    server: Server,
    dev_dir: std::path::PathBuf,
}

fn setup(configure: impl FnOnce(&mut FakeKms)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevAttestationProvider::open_or_create(dir.path(), leadgate_enclave::clock::now_ms())
        .unwrap();
    let mut kms = FakeKms {
        policy_pcr0: vec![0; 48], // the dev enclave's PCR0
        root_der: root_der_from_pem(&dev.root_pem()).unwrap(),
        wrong_recipient: None,
        keys: HashMap::new(),
        calls: vec![],
    };
    configure(&mut kms);
    Setup {
        dev_dir: dir.path().to_path_buf(),
        _dir: dir,
        server: start(kms),
    }
}

impl Setup {
    fn client(&self, trust_test_ca: bool) -> KmsClient {
        let key = KmsKey::from_arn(KEY_ARN).unwrap();
        let proxy = format!("tcp://127.0.0.1:{}", self.server.port)
            .parse()
            .unwrap();
        if trust_test_ca {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.server.ca.clone()).unwrap();
            KmsClient::with_roots(key, proxy, roots)
        } else {
            KmsClient::new(key, proxy)
        }
    }

    fn sealer(&self) -> KmsSealer {
        let attestor = DevAttestationProvider::open_or_create(
            &self.dev_dir,
            leadgate_enclave::clock::now_ms(),
        )
        .unwrap();
        KmsSealer::new(self.client(true), Box::new(attestor))
    }

    fn calls(&self) -> Vec<(String, Vec<u8>)> {
        self.server.kms.lock().unwrap().calls.clone()
    }
}

fn credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET.into(),
        session_token: Some(TOKEN.into()),
    }
}

#[test]
fn seal_and_unseal_through_kms() {
    let s = setup(|_| {});
    let sealer = s.sealer();
    let creds = credentials();
    let blob = sealer.seal(b"the enclave's secrets", Some(&creds)).unwrap();
    assert!(blob.starts_with(KMS_MAGIC));
    // A second sealer (a restarted enclave) opens it through KMS Decrypt.
    let plain = s.sealer().unseal(&blob, Some(&creds)).unwrap();
    assert_eq!(&*plain, b"the enclave's secrets");
    let calls = s.calls();
    let ops: Vec<&str> = calls.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(ops, ["GenerateDataKey", "Decrypt"]);
    // Each call used a fresh recipient key.
    assert_ne!(calls[0].1, calls[1].1);
    assert_eq!(calls[0].1.len(), 294, "RSA-2048 SubjectPublicKeyInfo");

    // Tampering with the sealed ciphertext, the nonce or the header: refused.
    let (header_len, total) = (4 + 2 + 150, blob.len());
    for i in [
        0,
        5,
        header_len,
        header_len + 11,
        header_len + 12,
        total - 1,
    ] {
        let mut m = blob.clone();
        m[i] ^= 1;
        let e = sealer.unseal(&m, Some(&creds)).unwrap_err();
        // In the wrapped key or its length KMS refuses it; elsewhere AES-GCM does.
        let expected = if (5..header_len).contains(&i) {
            "sealing.kms_failed"
        } else {
            "sealing.unseal_failed"
        };
        assert_eq!(e.code(), expected, "flip at {i}: {e}");
    }
    assert!(matches!(
        sealer.unseal(&blob[..40], Some(&creds)),
        Err(SealError::Unseal)
    ));
    assert!(matches!(
        sealer.unseal(b"LGS1 a dev blob", Some(&creds)),
        Err(SealError::Unseal)
    ));
}

#[test]
fn key_policy_on_pcr0_refuses_other_images() {
    let s = setup(|kms| kms.policy_pcr0 = vec![0x11; 48]);
    let e = s.sealer().seal(b"x", Some(&credentials())).unwrap_err();
    assert_eq!(e.code(), "sealing.kms_denied", "{e}");
    assert!(e.to_string().contains("AccessDeniedException"), "{e}");
    assert!(s.calls().is_empty());
}

#[test]
fn bad_or_missing_credentials_are_refused() {
    let s = setup(|_| {});
    let mut wrong = credentials();
    wrong.secret_access_key = "not the secret".into();
    let e = s.sealer().seal(b"x", Some(&wrong)).unwrap_err();
    assert_eq!(e.code(), "sealing.kms_denied", "{e}");
    assert!(e.to_string().contains("InvalidSignatureException"), "{e}");
    let e = s.sealer().seal(b"x", None).unwrap_err();
    assert_eq!(e.code(), "sealing.no_credentials");
    assert!(s.calls().is_empty());
}

#[test]
fn a_server_outside_the_trusted_roots_is_refused() {
    // The host (or anyone on the path) answering for KMS with its own certificate.
    let s = setup(|_| {});
    let attestor =
        DevAttestationProvider::open_or_create(&s.dev_dir, leadgate_enclave::clock::now_ms())
            .unwrap();
    let sealer = KmsSealer::new(s.client(false), Box::new(attestor));
    let e = sealer.seal(b"x", Some(&credentials())).unwrap_err();
    assert_eq!(e.code(), "sealing.kms_unreachable", "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
    assert!(s.calls().is_empty());
}

#[test]
fn an_answer_for_another_recipient_does_not_open() {
    let other = rsa::RsaPrivateKey::new(&mut OsRng, 2048)
        .unwrap()
        .to_public_key();
    let s = setup(|kms| kms.wrong_recipient = Some(other));
    let e = s.sealer().seal(b"x", Some(&credentials())).unwrap_err();
    assert_eq!(e.code(), "sealing.kms_bad_response", "{e}");
    assert!(
        e.to_string().contains("does not decrypt with our key"),
        "{e}"
    );
}

#[test]
fn enclave_boots_seals_and_reboots_with_kms() {
    use leadgate_enclave::core::{Enclave, EnclaveConfig};
    let s = setup(|_| {});
    let boot = |sealed: Option<serde_bytes::ByteBuf>| {
        let attestor =
            DevAttestationProvider::open_or_create(&s.dev_dir, leadgate_enclave::clock::now_ms())
                .unwrap();
        let mut config = EnclaveConfig::new("leadgate.test/kms");
        config.dev_root_pem = Some(attestor.root_pem());
        let mut enclave = Enclave::new(config, Box::new(s.sealer()), Box::new(attestor));
        enclave.handle(
            Request::Boot {
                sealed_secrets: sealed,
                tip: None,
                aws_credentials: Some(credentials()),
            },
            leadgate_enclave::clock::now_ms(),
        )
    };
    let Response::Booted {
        sealed_secrets,
        keys,
        ..
    } = boot(None)
    else {
        panic!("first boot failed")
    };
    assert!(sealed_secrets.starts_with(KMS_MAGIC));
    let Response::Booted { keys: again, .. } = boot(Some(sealed_secrets)) else {
        panic!("reboot failed")
    };
    assert_eq!(keys, again, "the same keys after unsealing through KMS");
}
