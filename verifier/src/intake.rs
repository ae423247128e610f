//! The seller's sealed lead submission (RFC 9180 HPKE) and its request signature.
//!
//! * HPKE suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, base mode, `info` =
//!   [`HPKE_INFO`]. The sealed plaintext is the lead JSON.
//! * AAD: `leadgate.lead.v1\n{origin}\n{seller hex}` binds the ciphertext to this log and seller,
//!   so it cannot be replayed to another gateway or re-attributed to another seller.
//! * The seller signs, with Ed25519, `leadgate.submit.v1\n{origin}\n{seller hex}\n
//!   {ciphertext_sha256 hex}\n{issued_at_ms}\n`, where `ciphertext_sha256 = SHA-256(enc ||
//!   ciphertext)`.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hpke::{
    aead::AesGcm256, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, Kem as _, OpModeR,
    OpModeS, Serializable,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// HPKE `info` string.
pub const HPKE_INFO: &[u8] = b"leadgate intake v1";

/// Largest lead plaintext accepted, in bytes. Leadpoet leads are under 2 KiB; 16 KiB leaves room
/// for long descriptions without letting one request cost much enclave work.
pub const MAX_LEAD_BYTES: usize = 16 * 1024;

/// HPKE encapsulated key size for X25519: 32 bytes.
pub const ENC_LEN: usize = 32;

/// AES-256-GCM tag size: 16 bytes.
pub const TAG_LEN: usize = 16;

/// Errors for submissions. Codes: `submission.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmissionError {
    /// A field is not in its encoding, or a size is out of range.
    #[error("malformed submission: {0}")]
    Malformed(&'static str),
    /// The seller's signature does not verify.
    #[error("submission signature is invalid")]
    BadSignature,
    /// HPKE open failed: garbled ciphertext, wrong key or wrong AAD.
    #[error("ciphertext does not open")]
    Decrypt,
}

impl SubmissionError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SubmissionError::Malformed(_) => "submission.malformed",
            SubmissionError::BadSignature => "submission.bad_signature",
            SubmissionError::Decrypt => "submission.decrypt_failed",
        }
    }
}

/// A sealed, signed lead as posted to `POST /v1/leads` (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedLead {
    /// Seller Ed25519 public key, hex (64 chars).
    pub seller: String,
    /// HPKE encapsulated key, base64 (32 bytes).
    pub enc: String,
    /// HPKE ciphertext of the lead JSON, base64 (plaintext + 16 bytes).
    pub ciphertext: String,
    /// When the seller signed, Unix ms. The enclave accepts a window around its own clock.
    pub issued_at_ms: u64,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
}

/// A [`DecodedSubmission`] whose seller signature has been checked; only
/// [`DecodedSubmission::verify`] makes one. Dereferences to the decoded fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSubmission(DecodedSubmission);

impl std::ops::Deref for VerifiedSubmission {
    type Target = DecodedSubmission;
    fn deref(&self) -> &DecodedSubmission {
        &self.0
    }
}

impl VerifiedSubmission {
    /// Lead id: hex of the first 16 bytes of `ciphertext_sha256` (32 chars).
    pub fn lead_id(&self) -> String {
        hex::encode(&self.ciphertext_sha256[..16])
    }
}

/// AAD for a lead sealed by `seller` to the log `origin`.
pub fn lead_aad(origin: &str, seller: &[u8; 32]) -> Vec<u8> {
    format!("leadgate.lead.v1\n{origin}\n{}", hex::encode(seller)).into_bytes()
}

fn signed_text(origin: &str, seller: &[u8; 32], ct_sha: &[u8; 32], issued_at_ms: u64) -> String {
    format!(
        "leadgate.submit.v1\n{origin}\n{}\n{}\n{issued_at_ms}\n",
        hex::encode(seller),
        hex::encode(ct_sha)
    )
}

fn ct_sha256(enc: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(enc);
    h.update(ciphertext);
    h.finalize().into()
}

/// Seals and signs a lead (the seller's side).
///
/// # Errors
/// [`SubmissionError::Malformed`] if the intake key is invalid or the lead is too large.
pub fn seal_lead(
    seller: &SigningKey,
    intake_key: &[u8; 32],
    origin: &str,
    lead_json: &[u8],
    issued_at_ms: u64,
) -> Result<SealedLead, SubmissionError> {
    if lead_json.len() > MAX_LEAD_BYTES {
        return Err(SubmissionError::Malformed("lead too large"));
    }
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(intake_key)
        .map_err(|_| SubmissionError::Malformed("intake key"))?;
    let seller_pk = seller.verifying_key().to_bytes();
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        HPKE_INFO,
        lead_json,
        &lead_aad(origin, &seller_pk),
        &mut rand_core::OsRng,
    )
    .map_err(|_| SubmissionError::Malformed("HPKE seal failed"))?;
    let mut enc_bytes = [0u8; ENC_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok(sign_sealed(
        seller,
        origin,
        &enc_bytes,
        &ciphertext,
        issued_at_ms,
    ))
}

/// Signs an already sealed lead as `seller` (the second half of [`seal_lead`]). Signing
/// someone else's ciphertext gets the signer nothing: the AAD binds the original seller, so the
/// enclave cannot open it.
pub fn sign_sealed(
    seller: &SigningKey,
    origin: &str,
    enc: &[u8; ENC_LEN],
    ciphertext: &[u8],
    issued_at_ms: u64,
) -> SealedLead {
    let seller_pk = seller.verifying_key().to_bytes();
    let sha = ct_sha256(enc, ciphertext);
    let sig = seller.sign(signed_text(origin, &seller_pk, &sha, issued_at_ms).as_bytes());
    SealedLead {
        seller: hex::encode(seller_pk),
        enc: B64.encode(enc),
        ciphertext: B64.encode(ciphertext),
        issued_at_ms,
        signature: B64.encode(sig.to_bytes()),
    }
}

/// A [`SealedLead`] decoded into bytes, its signature not yet checked: what an untrusted relay
/// (the host) may learn from a submission without any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSubmission {
    /// Seller public key.
    pub seller: [u8; 32],
    /// HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// HPKE ciphertext.
    pub ciphertext: Vec<u8>,
    /// Unix ms.
    pub issued_at_ms: u64,
    /// SHA-256(enc || ciphertext).
    pub ciphertext_sha256: [u8; 32],
    signature: ed25519_dalek::Signature,
}

impl SealedLead {
    /// Decodes the fields (hex, base64, sizes) without checking the signature or whether the
    /// seller key is a valid Ed25519 point (both cost a curve operation; [`DecodedSubmission::verify`]
    /// does them).
    ///
    /// # Errors
    /// [`SubmissionError::Malformed`].
    pub fn decode(&self) -> Result<DecodedSubmission, SubmissionError> {
        let mut seller = [0u8; 32];
        if self.seller.len() != 64 {
            return Err(SubmissionError::Malformed("seller must be 64 hex digits"));
        }
        hex::decode_to_slice(&self.seller, &mut seller)
            .map_err(|_| SubmissionError::Malformed("seller is not hex"))?;
        let enc: [u8; ENC_LEN] = B64
            .decode(&self.enc)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SubmissionError::Malformed("enc must be base64 of 32 bytes"))?;
        if self.ciphertext.len() > (MAX_LEAD_BYTES + TAG_LEN).div_ceil(3) * 4 {
            return Err(SubmissionError::Malformed("ciphertext too large"));
        }
        let ciphertext = B64
            .decode(&self.ciphertext)
            .map_err(|_| SubmissionError::Malformed("ciphertext is not base64"))?;
        if ciphertext.len() < TAG_LEN {
            return Err(SubmissionError::Malformed(
                "ciphertext shorter than its tag",
            ));
        }
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(SubmissionError::Malformed(
                "signature must be base64 of 64 bytes",
            ))?;
        Ok(DecodedSubmission {
            seller,
            ciphertext_sha256: ct_sha256(&enc, &ciphertext),
            enc,
            ciphertext,
            issued_at_ms: self.issued_at_ms,
            signature: ed25519_dalek::Signature::from_bytes(&sig),
        })
    }

    /// Decodes the fields and verifies the seller's signature for `origin`.
    ///
    /// # Errors
    /// [`SubmissionError::Malformed`], [`SubmissionError::BadSignature`].
    pub fn verify(&self, origin: &str) -> Result<VerifiedSubmission, SubmissionError> {
        self.decode()?.verify(origin)
    }
}

impl DecodedSubmission {
    /// Verifies the seller's Ed25519 signature (RFC 8032, `verify_strict`: no small-order keys
    /// or R, canonical S) over the submission text for `origin`.
    ///
    /// # Errors
    /// [`SubmissionError::Malformed`] if the seller key is not an Ed25519 point,
    /// [`SubmissionError::BadSignature`].
    pub fn verify(self, origin: &str) -> Result<VerifiedSubmission, SubmissionError> {
        let seller_key = VerifyingKey::from_bytes(&self.seller)
            .map_err(|_| SubmissionError::Malformed("seller is not an Ed25519 key"))?;
        self.verify_with_key(origin, &seller_key)
    }

    /// [`DecodedSubmission::verify`] with the seller key already decompressed (from a cache).
    ///
    /// # Errors
    /// [`SubmissionError::BadSignature`], also if `seller_key` is not this submission's seller.
    pub fn verify_with_key(
        self,
        origin: &str,
        seller_key: &VerifyingKey,
    ) -> Result<VerifiedSubmission, SubmissionError> {
        if seller_key.as_bytes() != &self.seller {
            return Err(SubmissionError::BadSignature);
        }
        let text = signed_text(
            origin,
            &self.seller,
            &self.ciphertext_sha256,
            self.issued_at_ms,
        );
        seller_key
            .verify_strict(text.as_bytes(), &self.signature)
            .map_err(|_| SubmissionError::BadSignature)?;
        Ok(VerifiedSubmission(self))
    }
}

/// The enclave's side: opens a verified submission with the intake private key.
///
/// # Errors
/// [`SubmissionError::Decrypt`] if the ciphertext, key or AAD is wrong.
pub fn open_lead(
    intake_secret: &<X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    origin: &str,
    sub: &VerifiedSubmission,
) -> Result<Vec<u8>, SubmissionError> {
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&sub.enc)
        .map_err(|_| SubmissionError::Decrypt)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        intake_secret,
        &enc,
        HPKE_INFO,
        &sub.ciphertext,
        &lead_aad(origin, &sub.seller),
    )
    .map_err(|_| SubmissionError::Decrypt)
}

/// Derives an X25519 intake key pair from 32 secret bytes (RFC 9180 §7.1.3 DeriveKeyPair).
pub fn intake_keypair_from_seed(
    seed: &[u8; 32],
) -> (<X25519HkdfSha256 as hpke::Kem>::PrivateKey, [u8; 32]) {
    let (sk, pk) = X25519HkdfSha256::derive_keypair(seed);
    let mut pk_bytes = [0u8; 32];
    pk_bytes.copy_from_slice(&pk.to_bytes());
    (sk, pk_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_verify_open_round_trip_and_attacks() {
        let (sk, pk) = intake_keypair_from_seed(&[7u8; 32]);
        let seller = SigningKey::from_bytes(&[1u8; 32]);
        let lead = br#"{"email":"a@b.co"}"#;
        let sealed = seal_lead(&seller, &pk, "o", lead, 1000).unwrap();
        let sub = sealed.verify("o").unwrap();
        assert_eq!(open_lead(&sk, "o", &sub).unwrap(), lead);
        assert_eq!(sub.lead_id().len(), 32);

        // A cached key must be the submission's own seller key.
        let other_key = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert_eq!(
            sealed.decode().unwrap().verify_with_key("o", &other_key),
            Err(SubmissionError::BadSignature)
        );
        assert_eq!(
            sealed
                .decode()
                .unwrap()
                .verify_with_key("o", &seller.verifying_key())
                .unwrap(),
            sub
        );
        // Wrong origin: the signature covers it.
        assert_eq!(sealed.verify("p"), Err(SubmissionError::BadSignature));
        // Re-attributed to another seller: signature fails.
        let mut other = sealed.clone();
        other.seller = hex::encode(
            SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert_eq!(other.verify("o"), Err(SubmissionError::BadSignature));
        // Garbled ciphertext: signature fails first; if re-signed by an attacker-seller, AAD fails.
        let mut garbled = sealed.clone();
        let mut ct = B64.decode(&garbled.ciphertext).unwrap();
        ct[3] ^= 1;
        garbled.ciphertext = B64.encode(&ct);
        assert_eq!(garbled.verify("o"), Err(SubmissionError::BadSignature));
        // Another seller re-signing the same ciphertext: the AAD binds the original seller.
        let thief = SigningKey::from_bytes(&[9u8; 32]);
        let thief_pk = thief.verifying_key().to_bytes();
        let enc = B64.decode(&sealed.enc).unwrap();
        let ct = B64.decode(&sealed.ciphertext).unwrap();
        let sha = ct_sha256(&enc, &ct);
        let stolen = SealedLead {
            seller: hex::encode(thief_pk),
            signature: B64.encode(
                thief
                    .sign(signed_text("o", &thief_pk, &sha, 1000).as_bytes())
                    .to_bytes(),
            ),
            ..sealed.clone()
        };
        let sub = stolen.verify("o").unwrap();
        assert_eq!(open_lead(&sk, "o", &sub), Err(SubmissionError::Decrypt));
        // Truncated ciphertext and bad encodings.
        let mut short = sealed.clone();
        short.ciphertext = B64.encode([0u8; 4]);
        assert_eq!(
            short.verify("o").unwrap_err().code(),
            "submission.malformed"
        );
        let mut bad = sealed;
        bad.enc = "!!".into();
        assert_eq!(bad.verify("o").unwrap_err().code(), "submission.malformed");
    }
}
