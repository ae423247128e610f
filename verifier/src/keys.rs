//! The enclave's public keys and how an attestation binds them.
//!
//! NSM `public_key` carries the 32-byte X25519 intake key; NSM `user_data` carries
//! [`EnclaveKeys`] as a CBOR map (RFC 8949) with text keys `v` (format version, 1), `origin`,
//! `log_key` (32-byte Ed25519), `intake_key` (32-byte X25519) and `anchor_key` (33-byte SEC1
//! compressed secp256k1). The verifier requires both to agree.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};

/// Most bytes NSM accepts in `user_data` (AWS Nitro Enclaves NSM API, `Attestation` request).
pub const MAX_USER_DATA_LEN: usize = 1024;

/// Errors decoding bound keys. Code: `attestation.key_binding`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// `user_data` is absent, too large, not the CBOR map above, or a key is invalid.
    #[error("user_data does not hold leadgate keys: {0}")]
    Malformed(&'static str),
    /// `public_key` differs from `user_data`'s intake key.
    #[error("public_key does not match the intake key in user_data")]
    Mismatch,
}

impl KeysError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::AttestationKeyBinding
    }
}

/// The public keys an enclave binds into its attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveKeys {
    /// Log origin (also the note key name).
    pub origin: String,
    /// Ed25519 log key: checkpoints and receipts.
    pub log_key: ed25519_dalek::VerifyingKey,
    /// X25519 HPKE intake key, 32 bytes.
    pub intake_key: [u8; 32],
    /// secp256k1 anchor key, SEC1 compressed (33 bytes).
    pub anchor_key: [u8; 33],
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    origin: String,
    #[serde(with = "serde_bytes")]
    log_key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    intake_key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    anchor_key: Vec<u8>,
}

impl EnclaveKeys {
    /// The `user_data` bytes.
    pub fn to_user_data(&self) -> Vec<u8> {
        let wire = Wire {
            v: 1,
            origin: self.origin.clone(),
            log_key: self.log_key.as_bytes().to_vec(),
            intake_key: self.intake_key.to_vec(),
            anchor_key: self.anchor_key.to_vec(),
        };
        let mut out = Vec::new();
        ciborium::ser::into_writer(&wire, &mut out).expect("writing CBOR to a Vec cannot fail");
        out
    }

    /// Decodes `user_data` and checks `public_key` (if present) equals the intake key.
    ///
    /// # Errors
    /// [`KeysError`].
    pub fn from_attested(
        user_data: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Self, KeysError> {
        let data = user_data.ok_or(KeysError::Malformed("no user_data"))?;
        if data.len() > MAX_USER_DATA_LEN {
            return Err(KeysError::Malformed("user_data too large"));
        }
        let mut rest = data;
        let wire: Wire = ciborium::de::from_reader(&mut rest)
            .map_err(|_| KeysError::Malformed("not the leadgate CBOR map"))?;
        if !rest.is_empty() {
            return Err(KeysError::Malformed("trailing bytes"));
        }
        if wire.v != 1 {
            return Err(KeysError::Malformed("unknown version"));
        }
        let log: [u8; 32] = wire
            .log_key
            .try_into()
            .map_err(|_| KeysError::Malformed("log_key must be 32 bytes"))?;
        let log_key = ed25519_dalek::VerifyingKey::from_bytes(&log)
            .map_err(|_| KeysError::Malformed("log_key is not an Ed25519 point"))?;
        let intake_key: [u8; 32] = wire
            .intake_key
            .try_into()
            .map_err(|_| KeysError::Malformed("intake_key must be 32 bytes"))?;
        let anchor_key: [u8; 33] = wire
            .anchor_key
            .try_into()
            .map_err(|_| KeysError::Malformed("anchor_key must be 33 bytes"))?;
        k256::PublicKey::from_sec1_bytes(&anchor_key)
            .map_err(|_| KeysError::Malformed("anchor_key is not a secp256k1 point"))?;
        if let Some(pk) = public_key {
            if pk != intake_key {
                return Err(KeysError::Mismatch);
            }
        }
        Ok(Self {
            origin: wire.origin,
            log_key,
            intake_key,
            anchor_key,
        })
    }

    /// The log key as a C2SP note verifier (name = origin).
    ///
    /// # Errors
    /// [`crate::note::NoteError::MalformedKey`] if the origin is not a valid key name.
    pub fn note_verifier(&self) -> Result<crate::note::NoteVerifier, crate::note::NoteError> {
        crate::note::NoteVerifier::new(&self.origin, self.log_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> EnclaveKeys {
        let anchor = k256::SecretKey::from_slice(&[5u8; 32])
            .unwrap()
            .public_key();
        let sec1 = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&anchor, true);
        EnclaveKeys {
            origin: "leadgate.dev/log".into(),
            log_key: ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]).verifying_key(),
            intake_key: [2u8; 32],
            anchor_key: sec1.as_bytes().try_into().unwrap(),
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let k = keys();
        let ud = k.to_user_data();
        assert!(ud.len() < 200);
        assert_eq!(
            EnclaveKeys::from_attested(Some(&ud), Some(&[2u8; 32])).unwrap(),
            k
        );
        assert_eq!(
            EnclaveKeys::from_attested(Some(&ud), Some(&[3u8; 32])),
            Err(KeysError::Mismatch)
        );
        assert!(EnclaveKeys::from_attested(None, None).is_err());
        let mut trailing = ud.clone();
        trailing.push(0);
        assert!(EnclaveKeys::from_attested(Some(&trailing), None).is_err());
        assert!(EnclaveKeys::from_attested(Some(&ud[..ud.len() - 1]), None).is_err());
    }
}
