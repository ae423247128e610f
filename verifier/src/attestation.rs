//! AWS Nitro Enclaves attestation documents: COSE_Sign1 (RFC 9052) with ES384 over a CBOR
//! payload, certified by a chain to the AWS Nitro root G1.
//!
//! Verification follows AWS's "Verifying the root of trust" (Nitro Enclaves User Guide):
//! 1. decode the COSE_Sign1 (tagged or untagged) and its payload map (definite or indefinite
//!    lengths; null optional fields);
//! 2. check the payload fields' types and sizes (the NSM API's bounds);
//! 3. validate the path pinned root → `cabundle[1..]` → `certificate` with rustls-webpki
//!    ([`verify_chain`]: ECDSA P-384 / SHA-384 signatures, chaining, CA basic constraints,
//!    path lengths, unknown critical extensions, KeyUsage, and every certificate's validity at
//!    the caller's `now`, Unix ms);
//! 4. verify the COSE signature with the leaf certificate's key;
//! 5. apply the PCR policy (expected PCR0; all-zero PCR0/1/2 is debug mode and rejected
//!    unless allowed) and the nonce.
//!
//! Dev-mode documents made by `leadgate-enclave` have the same shape, signed by a local CA,
//! with all-zero PCRs: they verify only with that CA as root *and* `allow_debug`.

use crate::ErrorCode;
use std::collections::BTreeMap;

use ciborium::Value;
use coset::{CborSerializable, CoseSign1, TaggedCborSerializable};
use std::time::Duration;

use der::{oid::AssociatedOid, Decode, DecodePem, Encode};
use p384::ecdsa::{signature::Verifier as _, Signature, VerifyingKey};
use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
    UnixTime,
};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

/// The AWS Nitro Enclaves root certificate G1, PEM (from AWS's published
/// `AWS_NitroEnclaves_Root-G1.zip`).
pub const AWS_NITRO_ROOT_G1_PEM: &str = include_str!("data/aws-nitro-root-g1.pem");

/// SHA-256 of the DER of [`AWS_NITRO_ROOT_G1_PEM`], hex, as AWS publishes it.
pub const AWS_NITRO_ROOT_G1_SHA256: &str =
    "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b";

/// Largest document accepted, bytes. Real ones are 4–5 KiB (four CA certs of under 1 KiB each,
/// 16 PCRs of 48 bytes, up to 3 KiB of optional fields).
pub const MAX_DOCUMENT_LEN: usize = 16 * 1024;
/// Most certificates in `cabundle` (AWS uses 4; bounded so a document cannot demand much work).
pub const MAX_CABUNDLE_LEN: usize = 8;
/// Largest certificate, bytes (NSM API: 1..=1024).
pub const MAX_CERT_LEN: usize = 1024;
/// Largest `public_key`, `user_data` or `nonce`, bytes (NSM API: 0..=1024).
pub const MAX_OPTIONAL_FIELD_LEN: usize = 1024;
/// Most PCRs (NSM API: 1..=32).
pub const MAX_PCRS: usize = 32;

/// Errors verifying an attestation document. Codes: `attestation.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationError {
    /// Over [`MAX_DOCUMENT_LEN`].
    #[error("attestation document too large")]
    TooLarge,
    /// Not a COSE_Sign1, or the payload is not a well-formed NSM attestation map.
    #[error("malformed attestation document: {0}")]
    Malformed(String),
    /// The COSE algorithm is not ES384, or a certificate uses another algorithm or curve.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(&'static str),
    /// The chain starts at a root other than the pinned one.
    #[error("certificate chain does not start at the trusted root")]
    UntrustedRoot,
    /// A certificate in the chain is not signed by its issuer, or is not a CA where it must be.
    #[error("certificate chain is invalid: {0}")]
    ChainInvalid(&'static str),
    /// A certificate is not valid at the verification time.
    #[error("certificate not valid at {now_unix_ms} (valid {not_before_ms}..{not_after_ms})")]
    CertificateExpired {
        /// The verification time, Unix ms.
        now_unix_ms: u64,
        /// Start of validity, Unix ms.
        not_before_ms: u64,
        /// End of validity, Unix ms.
        not_after_ms: u64,
    },
    /// The COSE signature does not verify under the leaf certificate's key.
    #[error("COSE signature is invalid")]
    SignatureInvalid,
    /// PCR0, PCR1 and PCR2 are all zero (debug mode or a dev enclave) and debug was not allowed.
    #[error("document is from a debug-mode enclave (PCR0/1/2 all zero)")]
    DebugMode,
    /// PCR0 differs from the expected image measurement.
    #[error("PCR0 does not match the expected value")]
    PcrMismatch,
    /// The nonce is absent or differs from the caller's.
    #[error("nonce does not match")]
    NonceMismatch,
    /// The caller passed an unusable root certificate (a caller mistake, not untrusted input).
    #[error("invalid trusted root: {0}")]
    BadRoot(&'static str),
}

impl AttestationError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            AttestationError::TooLarge => ErrorCode::AttestationTooLarge,
            AttestationError::Malformed(_) => ErrorCode::AttestationMalformed,
            AttestationError::UnsupportedAlgorithm(_) => ErrorCode::AttestationUnsupportedAlgorithm,
            AttestationError::UntrustedRoot => ErrorCode::AttestationUntrustedRoot,
            AttestationError::ChainInvalid(_) => ErrorCode::AttestationChainInvalid,
            AttestationError::CertificateExpired { .. } => ErrorCode::AttestationExpired,
            AttestationError::SignatureInvalid => ErrorCode::AttestationSignatureInvalid,
            AttestationError::DebugMode => ErrorCode::AttestationDebugMode,
            AttestationError::PcrMismatch => ErrorCode::AttestationPcrMismatch,
            AttestationError::NonceMismatch => ErrorCode::AttestationNonceMismatch,
            AttestationError::BadRoot(_) => ErrorCode::AttestationBadRoot,
        }
    }
}

fn malformed(s: impl Into<String>) -> AttestationError {
    AttestationError::Malformed(s.into())
}

/// The NSM attestation payload (AWS Nitro Enclaves NSM API, "Attestation document").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Enclave id, e.g. `i-0123…-enc0123…`.
    pub module_id: String,
    /// Always `SHA384` today.
    pub digest: String,
    /// Unix ms when NSM produced the document.
    pub timestamp_ms: u64,
    /// PCR index → value (32, 48 or 64 bytes).
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// Leaf certificate, DER.
    pub certificate: Vec<u8>,
    /// CA certificates, DER, root first.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional public key chosen by the enclave (leadgate: X25519 intake key).
    pub public_key: Option<Vec<u8>>,
    /// Optional user data (leadgate: [`crate::keys::EnclaveKeys`] CBOR).
    pub user_data: Option<Vec<u8>>,
    /// Optional nonce from the requester.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// True when PCR0, PCR1 and PCR2 are all zero bytes (debug mode, or a dev enclave).
    pub fn is_debug(&self) -> bool {
        (0u8..3).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|b| *b == 0)))
    }

    /// Encodes this payload as CBOR (definite lengths), as NSM does. Used by the dev provider.
    pub fn to_cbor(&self) -> Vec<u8> {
        let opt = |v: &Option<Vec<u8>>| match v {
            Some(b) => Value::Bytes(b.clone()),
            None => Value::Null,
        };
        let map = Value::Map(vec![
            (
                Value::Text("module_id".into()),
                Value::Text(self.module_id.clone()),
            ),
            (
                Value::Text("digest".into()),
                Value::Text(self.digest.clone()),
            ),
            (
                Value::Text("timestamp".into()),
                Value::Integer(self.timestamp_ms.into()),
            ),
            (
                Value::Text("pcrs".into()),
                Value::Map(
                    self.pcrs
                        .iter()
                        .map(|(k, v)| (Value::Integer((*k).into()), Value::Bytes(v.clone())))
                        .collect(),
                ),
            ),
            (
                Value::Text("certificate".into()),
                Value::Bytes(self.certificate.clone()),
            ),
            (
                Value::Text("cabundle".into()),
                Value::Array(
                    self.cabundle
                        .iter()
                        .map(|c| Value::Bytes(c.clone()))
                        .collect(),
                ),
            ),
            (Value::Text("public_key".into()), opt(&self.public_key)),
            (Value::Text("user_data".into()), opt(&self.user_data)),
            (Value::Text("nonce".into()), opt(&self.nonce)),
        ]);
        let mut out = Vec::new();
        ciborium::ser::into_writer(&map, &mut out).expect("writing CBOR to a Vec cannot fail");
        out
    }
}

/// What the caller requires of a document.
#[derive(Debug, Clone)]
pub struct AttestationPolicy<'a> {
    /// Verification time, Unix ms: every certificate must be valid then.
    pub now_unix_ms: u64,
    /// Trusted root, DER. `None` = the AWS Nitro root G1.
    pub root_der: Option<&'a [u8]>,
    /// Expected PCR0 (48 bytes), if any.
    pub expected_pcr0: Option<&'a [u8]>,
    /// Accept debug-mode (all-zero PCR0/1/2) documents. Risky: such an enclave's memory is
    /// readable by its host.
    pub allow_debug: bool,
    /// Expected nonce, if the caller sent one.
    pub expected_nonce: Option<&'a [u8]>,
}

/// A document whose chain, signature and policy were checked. Only [`verify_attestation`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAttestation {
    document: AttestationDocument,
    debug: bool,
}

impl VerifiedAttestation {
    /// The verified payload.
    pub fn document(&self) -> &AttestationDocument {
        &self.document
    }
    /// Whether PCR0/1/2 are all zero (accepted only because the policy allowed debug).
    pub fn is_debug(&self) -> bool {
        self.debug
    }
    /// PCR `i`, if present.
    pub fn pcr(&self, i: u8) -> Option<&[u8]> {
        self.document.pcrs.get(&i).map(Vec::as_slice)
    }
    /// The enclave keys bound by `user_data` and `public_key`.
    ///
    /// # Errors
    /// [`crate::keys::KeysError`] if the document does not bind leadgate keys.
    pub fn enclave_keys(&self) -> Result<crate::keys::EnclaveKeys, crate::keys::KeysError> {
        crate::keys::EnclaveKeys::from_attested(
            self.document.user_data.as_deref(),
            self.document.public_key.as_deref(),
        )
    }
}

/// Accepts a document as raw CBOR, hex or base64 (white space ignored in the text forms).
///
/// # Errors
/// [`AttestationError::Malformed`] if it is none of them.
pub fn decode_document_input(input: &[u8]) -> Result<Vec<u8>, AttestationError> {
    use base64::Engine as _;
    if matches!(input.first(), Some(0x84 | 0x9f | 0xd2)) {
        return Ok(input.to_vec());
    }
    let text: String = std::str::from_utf8(input)
        .map_err(|_| malformed("neither CBOR, hex nor base64"))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if let Ok(bytes) = hex::decode(&text) {
        return Ok(bytes);
    }
    base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| malformed("neither CBOR, hex nor base64"))
}

/// Decodes the COSE_Sign1 envelope and the payload map, checking types and sizes. Verifies
/// nothing cryptographic.
///
/// # Errors
/// [`AttestationError::TooLarge`], [`AttestationError::Malformed`].
pub fn parse_attestation(
    bytes: &[u8],
) -> Result<(CoseSign1, AttestationDocument), AttestationError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(AttestationError::TooLarge);
    }
    let sign1 = match bytes.first() {
        Some(0xd2) => CoseSign1::from_tagged_slice(bytes),
        _ => CoseSign1::from_slice(bytes),
    }
    .map_err(|e| malformed(format!("COSE_Sign1: {e}")))?;
    let payload = sign1
        .payload
        .as_deref()
        .ok_or_else(|| malformed("no payload"))?;
    let doc = parse_payload(payload)?;
    Ok((sign1, doc))
}

fn bytes_field(v: Value, name: &str, max: usize) -> Result<Vec<u8>, AttestationError> {
    match v {
        Value::Bytes(b) if b.len() <= max => Ok(b),
        Value::Bytes(_) => Err(malformed(format!("{name} too large"))),
        _ => Err(malformed(format!("{name} must be a byte string"))),
    }
}

fn optional_bytes(v: Option<Value>, name: &str) -> Result<Option<Vec<u8>>, AttestationError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => bytes_field(v, name, MAX_OPTIONAL_FIELD_LEN).map(Some),
    }
}

fn parse_payload(payload: &[u8]) -> Result<AttestationDocument, AttestationError> {
    let mut rest = payload;
    let value: Value = ciborium::de::from_reader(&mut rest)
        .map_err(|e| malformed(format!("payload CBOR: {e}")))?;
    if !rest.is_empty() {
        return Err(malformed("trailing bytes after payload"));
    }
    let Value::Map(entries) = value else {
        return Err(malformed("payload must be a map"));
    };
    let mut fields: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in entries {
        let Value::Text(k) = k else {
            return Err(malformed("payload keys must be text"));
        };
        if fields.insert(k, v).is_some() {
            return Err(malformed("duplicate payload key"));
        }
    }
    let mut take = |name: &str| fields.remove(name);
    let module_id = match take("module_id") {
        Some(Value::Text(s)) if !s.is_empty() => s,
        _ => return Err(malformed("module_id must be non-empty text")),
    };
    let digest = match take("digest") {
        Some(Value::Text(s)) if s == "SHA384" => s,
        _ => return Err(malformed("digest must be SHA384")),
    };
    let timestamp_ms = match take("timestamp") {
        Some(Value::Integer(i)) => u64::try_from(i).map_err(|_| malformed("timestamp"))?,
        _ => return Err(malformed("timestamp must be an unsigned integer")),
    };
    let pcrs = match take("pcrs") {
        Some(Value::Map(m)) if !m.is_empty() && m.len() <= MAX_PCRS => {
            let mut pcrs = BTreeMap::new();
            for (k, v) in m {
                let idx = match k {
                    Value::Integer(i) => u8::try_from(i)
                        .ok()
                        .filter(|i| usize::from(*i) < MAX_PCRS)
                        .ok_or_else(|| malformed("PCR index out of range"))?,
                    _ => return Err(malformed("PCR index must be an integer")),
                };
                let val = bytes_field(v, "PCR", 64)?;
                if ![32, 48, 64].contains(&val.len()) {
                    return Err(malformed("PCR must be 32, 48 or 64 bytes"));
                }
                if pcrs.insert(idx, val).is_some() {
                    return Err(malformed("duplicate PCR index"));
                }
            }
            pcrs
        }
        _ => return Err(malformed("pcrs must be a map of 1 to 32 entries")),
    };
    let certificate = bytes_field(
        take("certificate").ok_or_else(|| malformed("no certificate"))?,
        "certificate",
        MAX_CERT_LEN,
    )?;
    let cabundle = match take("cabundle") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_CABUNDLE_LEN => items
            .into_iter()
            .map(|v| bytes_field(v, "cabundle entry", MAX_CERT_LEN))
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(malformed(
                "cabundle must be an array of 1 to 8 certificates",
            ))
        }
    };
    let public_key = optional_bytes(take("public_key"), "public_key")?;
    let user_data = optional_bytes(take("user_data"), "user_data")?;
    let nonce = optional_bytes(take("nonce"), "nonce")?;
    if !fields.is_empty() {
        return Err(malformed("unknown payload field"));
    }
    Ok(AttestationDocument {
        module_id,
        digest,
        timestamp_ms,
        pcrs,
        certificate,
        cabundle,
        public_key,
        user_data,
        nonce,
    })
}

/// Parses a PEM certificate into DER (for `--root PEM`).
///
/// # Errors
/// [`AttestationError::BadRoot`].
pub fn root_der_from_pem(pem: &str) -> Result<Vec<u8>, AttestationError> {
    Certificate::from_pem(pem)
        .ok()
        .and_then(|c| c.to_der().ok())
        .ok_or(AttestationError::BadRoot("not a PEM certificate"))
}

fn aws_root_der() -> Vec<u8> {
    let der = root_der_from_pem(AWS_NITRO_ROOT_G1_PEM).expect("the pinned AWS root parses");
    debug_assert_eq!(hex::encode(Sha256::digest(&der)), AWS_NITRO_ROOT_G1_SHA256);
    der
}

fn p384_key(cert: &Certificate) -> Result<VerifyingKey, AttestationError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let raw = spki
        .subject_public_key
        .as_bytes()
        .ok_or(AttestationError::UnsupportedAlgorithm(
            "public key bit string",
        ))?;
    VerifyingKey::from_sec1_bytes(raw)
        .map_err(|_| AttestationError::UnsupportedAlgorithm("certificate key is not P-384"))
}

fn check_validity(cert: &Certificate, now_unix_ms: u64) -> Result<(), AttestationError> {
    let v = &cert.tbs_certificate.validity;
    let not_before_ms = v.not_before.to_unix_duration().as_millis() as u64;
    let not_after_ms = v.not_after.to_unix_duration().as_millis() as u64;
    if now_unix_ms < not_before_ms || now_unix_ms > not_after_ms {
        return Err(AttestationError::CertificateExpired {
            now_unix_ms,
            not_before_ms,
            not_after_ms,
        });
    }
    Ok(())
}

/// ECDSA P-384 with SHA-384 (RFC 5758 §3.2), the only algorithm in the Nitro profile, for
/// rustls-webpki, verified with RustCrypto's `p384` (no ring or aws-lc in the verifier).
#[derive(Debug)]
struct EcdsaP384Sha384;

impl SignatureVerificationAlgorithm for EcdsaP384Sha384 {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P384
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA384
    }

    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let sig = Signature::from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &sig).map_err(|_| InvalidSignature)
    }
}

static NITRO_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[&EcdsaP384Sha384];

/// `KeyUsage` bits (RFC 5280 §4.2.1.3) as `der` decodes the BIT STRING: bit 0 is the first.
const KU_DIGITAL_SIGNATURE: usize = 0;
const KU_KEY_CERT_SIGN: usize = 5;

/// Whether `der`'s KeyUsage extension, if it has one, asserts `bit`.
fn key_usage_allows(der: &[u8], bit: usize) -> bool {
    let Ok(cert) = Certificate::from_der(der) else {
        return false;
    };
    let ext = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == x509_cert::ext::pkix::KeyUsage::OID);
    let Some(ext) = ext else { return true };
    der::asn1::BitString::from_der(ext.extn_value.as_bytes())
        .ok()
        .and_then(|bits| bits.bits().nth(bit))
        .unwrap_or(false)
}

/// Checks the certificate chain `root` → `intermediates` → `leaf` (DER each) at `now_unix_ms`
/// with rustls-webpki (RFC 5280 path validation as the Web PKI profiles it): ECDSA P-384 /
/// SHA-384 signatures, issuer/subject chaining, CA basic constraints, path-length constraints,
/// unknown critical extensions, name constraints, and validity at `now`. webpki ignores
/// KeyUsage by design; the Nitro profile asserts it, so it is checked too: every CA in the path
/// that carries KeyUsage must allow keyCertSign, and the leaf, which signs the document,
/// digitalSignature. The root is the trust anchor: its own validity is checked here as well,
/// since webpki does not look at an anchor's dates.
///
/// # Errors
/// [`AttestationError::BadRoot`] (root not DER), [`AttestationError::CertificateExpired`],
/// [`AttestationError::UnsupportedAlgorithm`], [`AttestationError::ChainInvalid`] (no path to
/// the root, a bad signature, a non-CA issuer, a path-length violation, an unknown critical
/// extension, a KeyUsage that forbids the use).
pub fn verify_chain(
    root_der: &[u8],
    intermediates: &[&[u8]],
    leaf_der: &[u8],
    now_unix_ms: u64,
) -> Result<(), AttestationError> {
    let root = Certificate::from_der(root_der)
        .map_err(|_| AttestationError::BadRoot("root is not DER"))?;
    // Dates first, for every certificate, so an expired chain says which dates it had.
    check_validity(&root, now_unix_ms)?;
    for der in intermediates.iter().chain([&leaf_der]) {
        let cert =
            Certificate::from_der(der).map_err(|_| malformed("certificate is not DER X.509"))?;
        check_validity(&cert, now_unix_ms)?;
    }
    let root_cert = CertificateDer::from(root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root_cert)
        .map_err(|_| AttestationError::BadRoot("root is not a usable trust anchor"))?
        .to_owned();
    let leaf = CertificateDer::from(leaf_der);
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| chain_error(&e))?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|d| CertificateDer::from(*d))
        .collect();
    let key_usage_refused = std::cell::Cell::new(false);
    let key_usage = |path: &webpki::VerifiedPath<'_>| {
        let cas_ok = path
            .intermediate_certificates()
            .all(|c| key_usage_allows(c.der().as_ref(), KU_KEY_CERT_SIGN));
        if cas_ok && key_usage_allows(leaf_der, KU_DIGITAL_SIGNATURE) {
            Ok(())
        } else {
            key_usage_refused.set(true);
            Err(webpki::Error::CertDistrusted)
        }
    };
    let time = UnixTime::since_unix_epoch(Duration::from_millis(now_unix_ms));
    ee.verify_for_usage(
        NITRO_ALGORITHMS,
        &[anchor],
        &intermediates,
        time,
        // The Nitro leaf has no ExtendedKeyUsage; one that has it must allow clientAuth.
        webpki::KeyUsage::required_if_present(ID_KP_CLIENT_AUTH),
        None,
        Some(&key_usage),
    )
    .map(|_| ())
    .map_err(|e| {
        if key_usage_refused.get() {
            AttestationError::ChainInvalid("key usage does not allow the certificate's use")
        } else {
            chain_error(&e)
        }
    })
}

/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2), DER contents.
const ID_KP_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

fn chain_error(e: &webpki::Error) -> AttestationError {
    use webpki::Error as W;
    let why = match e {
        W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            return AttestationError::UnsupportedAlgorithm(
                "certificate signature is not ecdsa-with-SHA384 by a P-384 key",
            )
        }
        W::CertExpired { .. } | W::CertNotValidYet { .. } | W::InvalidCertValidity => {
            "certificate validity"
        }
        W::UnknownIssuer => "no path from the certificate to the pinned root",
        W::InvalidSignatureForPublicKey => "certificate signature does not verify",
        W::CaUsedAsEndEntity => "the leaf certificate is a CA",
        W::EndEntityUsedAsCa => "an issuer is not a CA",
        W::PathLenConstraintViolated => "path length constraint violated",
        W::UnsupportedCriticalExtension => "unknown critical extension",
        W::RequiredEkuNotFoundContext(_) => "extended key usage does not allow clientAuth",
        W::NameConstraintViolation => "name constraint violated",
        W::MaximumPathDepthExceeded
        | W::MaximumSignatureChecksExceeded
        | W::MaximumPathBuildCallsExceeded => "chain too long",
        W::UnsupportedCertVersion => "certificate is not X.509 v3",
        _ => "certificate is malformed or not in the Nitro profile",
    };
    AttestationError::ChainInvalid(why)
}

/// Verifies an attestation document (raw COSE_Sign1 bytes) against `policy`.
///
/// # Errors
/// Any [`AttestationError`]; the first check that fails decides which.
pub fn verify_attestation(
    bytes: &[u8],
    policy: &AttestationPolicy<'_>,
) -> Result<VerifiedAttestation, AttestationError> {
    let (sign1, document) = parse_attestation(bytes)?;
    let alg_ok = matches!(
        &sign1.protected.header.alg,
        Some(coset::RegisteredLabelWithPrivate::Assigned(
            coset::iana::Algorithm::ES384
        ))
    );
    if !alg_ok {
        return Err(AttestationError::UnsupportedAlgorithm(
            "COSE algorithm is not ES384",
        ));
    }

    // The COSE signature, by the leaf key (checked first: it is one ECDSA verification and
    // covers the whole payload, chain included, so tampering fails fast).
    let leaf = Certificate::from_der(&document.certificate)
        .map_err(|_| malformed("certificate is not DER X.509"))?;
    let key = p384_key(&leaf)?;
    sign1
        .verify_signature(b"", |sig, data| {
            let sig = Signature::from_slice(sig).map_err(|_| ())?;
            key.verify(data, &sig).map_err(|_| ())
        })
        .map_err(|()| AttestationError::SignatureInvalid)?;

    // The chain: pinned root, then cabundle (minus a leading copy of the root), then the leaf.
    let aws_root;
    let root_der = match policy.root_der {
        Some(r) => r,
        None => {
            aws_root = aws_root_der();
            &aws_root
        }
    };
    let mut intermediates: Vec<&[u8]> = Vec::new();
    for (i, der) in document.cabundle.iter().enumerate() {
        if i == 0 && der.as_slice() == root_der {
            continue;
        }
        if i == 0 {
            let cert = Certificate::from_der(der)
                .map_err(|_| malformed("certificate is not DER X.509"))?;
            if cert.tbs_certificate.issuer == cert.tbs_certificate.subject {
                // A self-issued first certificate that is not our root: another trust anchor.
                return Err(AttestationError::UntrustedRoot);
            }
        }
        intermediates.push(der);
    }
    verify_chain(
        root_der,
        &intermediates,
        &document.certificate,
        policy.now_unix_ms,
    )?;

    // Policy.
    let debug = document.is_debug();
    if debug && !policy.allow_debug {
        return Err(AttestationError::DebugMode);
    }
    if let Some(expected) = policy.expected_pcr0 {
        if document.pcrs.get(&0).map(Vec::as_slice) != Some(expected) {
            return Err(AttestationError::PcrMismatch);
        }
    }
    if let Some(expected) = policy.expected_nonce {
        if document.nonce.as_deref() != Some(expected) {
            return Err(AttestationError::NonceMismatch);
        }
    }
    Ok(VerifiedAttestation { document, debug })
}
