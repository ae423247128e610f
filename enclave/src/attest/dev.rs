//! The dev attestation provider.
//!
//! It makes real-format NSM documents: a COSE_Sign1 (ES384) over the same CBOR payload fields
//! NSM emits, with a chain dev root → per-boot leaf, all PCRs zero (which the verifier treats
//! exactly as Nitro debug mode), `public_key` = the intake key and `user_data` = the bound
//! keys. The dev root is created at first start and kept in the state directory
//! (`dev-root.pem`, `dev-root.key`); a verifier accepts these documents only given that root
//! and `--allow-debug`.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use coset::{iana, CborSerializable, CoseSign1Builder, HeaderBuilder};
use der::{DecodePem, EncodePem};
use leadgate_verifier::attestation::AttestationDocument;
use p384::ecdsa::{signature::Signer as _, DerSignature, Signature, SigningKey};
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::OsRng;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{asn1::UtcTime, Encode};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::{check_request_sizes, AttestationProvider, ProviderError};
use crate::private_file::write_private_file;

/// Dev CA root validity: 20 years from creation.
const DEV_ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Dev leaf validity: 3 hours, as AWS's instance certificates.
const DEV_LEAF_VALIDITY: Duration = Duration::from_secs(3 * 3600);

/// The dev attestation provider (see module docs).
pub struct DevAttestationProvider {
    root_key: SigningKey,
    root: Certificate,
    module_id: String,
    leaf: std::sync::Mutex<Option<(SigningKey, Certificate, u64)>>,
}

fn dca(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::DevCa(e.to_string())
}

fn validity(from_ms: u64, len: Duration) -> Result<Validity, ProviderError> {
    let start = Duration::from_millis(from_ms).saturating_sub(Duration::from_secs(60));
    let start = Duration::from_secs(start.as_secs());
    Ok(Validity {
        not_before: Time::UtcTime(UtcTime::from_unix_duration(start).map_err(dca)?),
        not_after: Time::UtcTime(UtcTime::from_unix_duration(start + len).map_err(dca)?),
    })
}

fn serial() -> SerialNumber {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut OsRng, &mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01;
    SerialNumber::new(&b).expect("16 positive bytes are a valid serial")
}

impl DevAttestationProvider {
    /// Loads the dev root from `dir`, creating it on first start.
    ///
    /// # Errors
    /// [`ProviderError::DevCa`] on I/O or encoding failures.
    pub fn open_or_create(dir: &Path, now_unix_ms: u64) -> Result<Self, ProviderError> {
        let key_path = dir.join("dev-root.key");
        let cert_path = dir.join("dev-root.pem");
        let (root_key, root) = if key_path.exists() {
            let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key_path).map_err(dca)?)
                .map_err(dca)?;
            let cert =
                Certificate::from_pem(std::fs::read(&cert_path).map_err(dca)?).map_err(dca)?;
            (key, cert)
        } else {
            let key = SigningKey::random(&mut OsRng);
            let subject =
                Name::from_str("CN=leadgate dev attestation root,O=leadgate dev (NOT AWS)")
                    .map_err(dca)?;
            let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(dca)?;
            let builder = CertificateBuilder::new(
                Profile::Root,
                serial(),
                validity(now_unix_ms, DEV_ROOT_VALIDITY)?,
                subject,
                spki,
                &key,
            )
            .map_err(dca)?;
            let cert = builder.build::<DerSignature>().map_err(dca)?;
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(dca)?;
            write_private_file(&key_path, pem.as_bytes()).map_err(dca)?;
            std::fs::write(&cert_path, cert.to_pem(LineEnding::LF).map_err(dca)?).map_err(dca)?;
            (key, cert)
        };
        Ok(Self {
            root_key,
            root,
            module_id: format!("i-dev-enc{:016x}", now_unix_ms),
            leaf: std::sync::Mutex::new(None),
        })
    }

    /// The dev root certificate, PEM.
    pub fn root_pem(&self) -> String {
        self.root.to_pem(LineEnding::LF).unwrap_or_default()
    }

    fn leaf(&self, now_unix_ms: u64) -> Result<(SigningKey, Certificate), ProviderError> {
        let mut guard = self.leaf.lock().unwrap_or_else(|p| p.into_inner());
        // Renew an hour before expiry.
        if let Some((k, c, made)) = guard.as_ref() {
            if now_unix_ms < made + (DEV_LEAF_VALIDITY.as_millis() as u64) - 3_600_000
                && now_unix_ms >= *made
            {
                return Ok((k.clone(), c.clone()));
            }
        }
        let key = SigningKey::random(&mut OsRng);
        let spki = SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).map_err(dca)?;
        let subject = Name::from_str(&format!("CN={},O=leadgate dev (NOT AWS)", self.module_id))
            .map_err(dca)?;
        let builder = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.root.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            serial(),
            validity(now_unix_ms, DEV_LEAF_VALIDITY)?,
            subject,
            spki,
            &self.root_key,
        )
        .map_err(dca)?;
        let cert = builder.build::<DerSignature>().map_err(dca)?;
        *guard = Some((key.clone(), cert.clone(), now_unix_ms));
        Ok((key, cert))
    }
}

impl AttestationProvider for DevAttestationProvider {
    fn attest(
        &self,
        now_unix_ms: u64,
        nonce: Option<&[u8]>,
        user_data: &[u8],
        public_key: &[u8],
    ) -> Result<Vec<u8>, ProviderError> {
        check_request_sizes(nonce, user_data, public_key)?;
        let (leaf_key, leaf) = self.leaf(now_unix_ms)?;
        let doc = AttestationDocument {
            module_id: self.module_id.clone(),
            digest: "SHA384".into(),
            timestamp_ms: now_unix_ms,
            pcrs: (0u8..16).map(|i| (i, vec![0u8; 48])).collect(),
            certificate: leaf.to_der().map_err(dca)?,
            cabundle: vec![self.root.to_der().map_err(dca)?],
            public_key: Some(public_key.to_vec()),
            user_data: Some(user_data.to_vec()),
            nonce: nonce.map(<[u8]>::to_vec),
        };
        let protected = HeaderBuilder::new()
            .algorithm(iana::Algorithm::ES384)
            .build();
        let sign1 = CoseSign1Builder::new()
            .protected(protected)
            .payload(doc.to_cbor())
            .create_signature(b"", |data| {
                let sig: Signature = leaf_key.sign(data);
                sig.to_bytes().to_vec()
            })
            .build();
        sign1.to_vec().map_err(dca)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_verifier::attestation::{
        root_der_from_pem, verify_attestation, AttestationError, AttestationPolicy,
    };

    #[test]
    fn dev_documents_verify_only_with_dev_root_and_allow_debug() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_800_000_000_000;
        let p = DevAttestationProvider::open_or_create(dir.path(), now).unwrap();
        let doc = p.attest(now, Some(b"nonce-1"), b"ud", &[7u8; 32]).unwrap();
        let root = root_der_from_pem(&p.root_pem()).unwrap();
        let policy = AttestationPolicy {
            now_unix_ms: now,
            root_der: Some(&root),
            expected_pcr0: None,
            allow_debug: true,
            expected_nonce: Some(b"nonce-1"),
        };
        let v = verify_attestation(&doc, &policy).unwrap();
        assert!(v.is_debug());
        assert_eq!(v.document().user_data.as_deref(), Some(&b"ud"[..]));
        assert_eq!(
            verify_attestation(
                &doc,
                &AttestationPolicy {
                    allow_debug: false,
                    ..policy.clone()
                }
            ),
            Err(AttestationError::DebugMode)
        );
        // Against the AWS root: another trust anchor.
        assert_eq!(
            verify_attestation(
                &doc,
                &AttestationPolicy {
                    root_der: None,
                    ..policy.clone()
                }
            ),
            Err(AttestationError::UntrustedRoot)
        );
        // The root persists across restarts.
        let again = DevAttestationProvider::open_or_create(dir.path(), now + 1000).unwrap();
        assert_eq!(again.root_pem(), p.root_pem());
        let doc2 = again.attest(now + 1000, None, b"ud", &[7u8; 32]).unwrap();
        assert!(verify_attestation(
            &doc2,
            &AttestationPolicy {
                now_unix_ms: now + 1000,
                expected_nonce: None,
                ..policy
            }
        )
        .is_ok());
    }
}
