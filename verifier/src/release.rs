//! Winner-only release: the buyer's signed request and the lead re-sealed to the buyer.
//!
//! * Request: the buyer signs, with Ed25519 (`verify_strict`), the text
//!   `leadgate.release.v1\n{origin}\n{lead_id}\n{buyer}\n{issued_at_ms}\n`. The enclave answers
//!   only the auction's winner, and only within its freshness window around `issued_at_ms`.
//! * Answer: the lead JSON sealed (RFC 9180 HPKE, [`RELEASE_INFO`]) to the X25519 key the
//!   winner put in its winning bid, with AAD `leadgate.release.v1\n{origin}\n{lead_id}\n{buyer}`:
//!   only that buyer can open it, and it cannot pass for another lead. The log's `lead.released`
//!   event carries `sealed_sha256` = SHA-256(enc ‖ ciphertext) of exactly this envelope.

use crate::ErrorCode;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::bid::{hex32, is_auction_id};
use crate::envelope::{self, HpkeSecret, ENC_LEN, TAG_LEN};
use crate::intake::MAX_LEAD_BYTES;

/// HPKE `info` string of released leads.
pub const RELEASE_INFO: &[u8] = b"leadgate release v1";

/// Errors. Codes: `release.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// A field is not in its encoding.
    #[error("malformed release: {0}")]
    Malformed(&'static str),
    /// The buyer's signature does not verify.
    #[error("release request signature is invalid")]
    BadSignature,
    /// The envelope does not open with this key for this lead and buyer.
    #[error("released lead does not open")]
    Decrypt,
}

impl ReleaseError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReleaseError::Malformed(_) => ErrorCode::ReleaseMalformed,
            ReleaseError::BadSignature => ErrorCode::ReleaseBadSignature,
            ReleaseError::Decrypt => ErrorCode::ReleaseDecryptFailed,
        }
    }
}

/// A buyer's signed request for a won lead (`POST /v1/leads/{lead_id}/release`, JSON).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    /// Lead id, 32 hex chars.
    pub lead_id: String,
    /// Buyer id, 64 hex chars.
    pub buyer: String,
    /// When the buyer signed, Unix ms.
    pub issued_at_ms: u64,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
}

fn signed_text(origin: &str, lead_id: &str, buyer: &str, issued_at_ms: u64) -> String {
    format!("leadgate.release.v1\n{origin}\n{lead_id}\n{buyer}\n{issued_at_ms}\n")
}

/// AAD of a released lead.
pub fn release_aad(origin: &str, lead_id: &str, buyer: &[u8; 32]) -> Vec<u8> {
    format!(
        "leadgate.release.v1\n{origin}\n{lead_id}\n{}",
        hex::encode(buyer)
    )
    .into_bytes()
}

impl ReleaseRequest {
    /// Signs a request for `lead_id` as `buyer`.
    pub fn sign(buyer: &SigningKey, origin: &str, lead_id: &str, issued_at_ms: u64) -> Self {
        let buyer_hex = hex::encode(buyer.verifying_key().to_bytes());
        let sig = buyer.sign(signed_text(origin, lead_id, &buyer_hex, issued_at_ms).as_bytes());
        Self {
            lead_id: lead_id.to_owned(),
            buyer: buyer_hex,
            issued_at_ms,
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// Verifies the encoding and signature; returns the buyer's public key.
    ///
    /// # Errors
    /// [`ReleaseError::Malformed`], [`ReleaseError::BadSignature`].
    pub fn verify(&self, origin: &str) -> Result<[u8; 32], ReleaseError> {
        if !is_auction_id(&self.lead_id) {
            return Err(ReleaseError::Malformed(
                "lead id is 32 lowercase hex digits",
            ));
        }
        let buyer = hex32(&self.buyer).ok_or(ReleaseError::Malformed("buyer is 64 hex digits"))?;
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ReleaseError::Malformed(
                "signature must be base64 of 64 bytes",
            ))?;
        let key = VerifyingKey::from_bytes(&buyer)
            .map_err(|_| ReleaseError::Malformed("buyer is not an Ed25519 key"))?;
        let text = signed_text(origin, &self.lead_id, &self.buyer, self.issued_at_ms);
        key.verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| ReleaseError::BadSignature)?;
        Ok(buyer)
    }
}

/// A lead sealed to its winner (JSON in the release answer).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasedLead {
    /// Lead id, 32 hex chars.
    pub lead_id: String,
    /// Buyer id, 64 hex chars.
    pub buyer: String,
    /// HPKE encapsulated key, base64 (32 bytes).
    pub enc: String,
    /// HPKE ciphertext of the lead JSON, base64.
    pub ciphertext: String,
}

impl ReleasedLead {
    /// Seals `lead_json` for `buyer` at its HPKE key `buyer_hpke` (the enclave's side).
    ///
    /// # Errors
    /// [`ReleaseError::Malformed`] if the key is not an X25519 key.
    pub fn seal(
        origin: &str,
        lead_id: &str,
        buyer: &[u8; 32],
        buyer_hpke: &[u8; 32],
        lead_json: &[u8],
    ) -> Result<Self, ReleaseError> {
        let (enc, ct) = envelope::seal(
            buyer_hpke,
            RELEASE_INFO,
            &release_aad(origin, lead_id, buyer),
            lead_json,
        )
        .map_err(|_| ReleaseError::Malformed("buyer HPKE key"))?;
        Ok(Self {
            lead_id: lead_id.to_owned(),
            buyer: hex::encode(buyer),
            enc: B64.encode(enc),
            ciphertext: B64.encode(ct),
        })
    }

    fn decode(&self) -> Result<([u8; ENC_LEN], Vec<u8>), ReleaseError> {
        let enc: [u8; ENC_LEN] = B64
            .decode(&self.enc)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ReleaseError::Malformed("enc must be base64 of 32 bytes"))?;
        if self.ciphertext.len() > (MAX_LEAD_BYTES + TAG_LEN).div_ceil(3) * 4 {
            return Err(ReleaseError::Malformed("ciphertext too large"));
        }
        let ct = B64
            .decode(&self.ciphertext)
            .map_err(|_| ReleaseError::Malformed("ciphertext is not base64"))?;
        Ok((enc, ct))
    }

    /// SHA-256(enc ‖ ciphertext): the `sealed_sha256` of its `lead.released` event.
    ///
    /// # Errors
    /// [`ReleaseError::Malformed`].
    pub fn sealed_sha256(&self) -> Result<[u8; 32], ReleaseError> {
        let (enc, ct) = self.decode()?;
        Ok(envelope::fingerprint(&enc, &ct))
    }

    /// Opens the lead with the buyer's HPKE private key (the buyer's side).
    ///
    /// # Errors
    /// [`ReleaseError::Malformed`], [`ReleaseError::Decrypt`].
    pub fn open(
        &self,
        origin: &str,
        buyer_hpke_secret: &HpkeSecret,
    ) -> Result<Vec<u8>, ReleaseError> {
        let (enc, ct) = self.decode()?;
        let buyer = hex32(&self.buyer).ok_or(ReleaseError::Malformed("buyer is 64 hex digits"))?;
        envelope::open(
            buyer_hpke_secret,
            &enc,
            RELEASE_INFO,
            &release_aad(origin, &self.lead_id, &buyer),
            &ct,
        )
        .map_err(|_| ReleaseError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::keypair_from_seed;

    const LEAD: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn request_and_envelope_round_trip_and_attacks() {
        let buyer = SigningKey::from_bytes(&[1u8; 32]);
        let buyer_pk = buyer.verifying_key().to_bytes();
        let req = ReleaseRequest::sign(&buyer, "o", LEAD, 1000);
        assert_eq!(req.verify("o"), Ok(buyer_pk));
        assert_eq!(req.verify("p"), Err(ReleaseError::BadSignature));
        let mut other = req.clone();
        other.lead_id = "f".repeat(32);
        assert_eq!(other.verify("o"), Err(ReleaseError::BadSignature));
        let mut later = req.clone();
        later.issued_at_ms += 1;
        assert_eq!(later.verify("o"), Err(ReleaseError::BadSignature));
        let mut claimed = req;
        claimed.buyer = hex::encode(
            SigningKey::from_bytes(&[2u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        assert_eq!(claimed.verify("o"), Err(ReleaseError::BadSignature));

        let (sk, pk) = keypair_from_seed(&[4u8; 32]);
        let sealed = ReleasedLead::seal("o", LEAD, &buyer_pk, &pk, b"{\"a\":1}").unwrap();
        assert_eq!(sealed.open("o", &sk).unwrap(), b"{\"a\":1}");
        let (other_sk, _) = keypair_from_seed(&[5u8; 32]);
        assert_eq!(sealed.open("o", &other_sk), Err(ReleaseError::Decrypt));
        let mut relabelled = sealed.clone();
        relabelled.lead_id = "f".repeat(32);
        assert_eq!(relabelled.open("o", &sk), Err(ReleaseError::Decrypt));
        assert_eq!(sealed.sealed_sha256().unwrap().len(), 32);
    }
}
