//! The enclave's private keys: generated at first start, kept only in enclave memory and in
//! sealed form at the host.
//!
//! | key | algorithm | use |
//! |---|---|---|
//! | log | Ed25519 | checkpoints (C2SP signed notes) and receipts |
//! | intake | X25519 (HPKE RFC 9180 DHKEM(X25519, HKDF-SHA256)) | sellers seal leads to it |
//! | anchor | secp256k1 | signs on-chain anchor payloads |
//! | email tag | HMAC-SHA-256 key | `email_tag` of accepted leads, for duplicate detection |
//!
//! Serialized (before sealing) as a CBOR map `{v: 1, log, intake, anchor, tag}` of 32-byte
//! strings. Private-key types here have no `Debug` or `Clone` and zeroize on drop.

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use leadgate_verifier::{intake::intake_keypair_from_seed, keys::EnclaveKeys};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

type IntakeSecret = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PrivateKey;

/// The enclave's secrets.
pub struct Secrets {
    log: SigningKey,
    intake_seed: Zeroizing<[u8; 32]>,
    intake: IntakeSecret,
    intake_public: [u8; 32],
    anchor: k256::SecretKey,
    tag_key: Zeroizing<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u8,
    #[serde(with = "serde_bytes")]
    log: Vec<u8>,
    #[serde(with = "serde_bytes")]
    intake: Vec<u8>,
    #[serde(with = "serde_bytes")]
    anchor: Vec<u8>,
    #[serde(with = "serde_bytes")]
    tag: Vec<u8>,
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.log.zeroize();
        self.intake.zeroize();
        self.anchor.zeroize();
        self.tag.zeroize();
    }
}

/// Errors decoding secrets. Code: `secrets.malformed`.
#[derive(Debug, thiserror::Error)]
#[error("unsealed secrets are malformed")]
pub struct SecretsError;

fn from_seeds(
    log: [u8; 32],
    intake: [u8; 32],
    anchor: [u8; 32],
    tag: [u8; 32],
) -> Result<Secrets, SecretsError> {
    let anchor = k256::SecretKey::from_slice(&anchor).map_err(|_| SecretsError)?;
    let (intake_sk, intake_public) = intake_keypair_from_seed(&intake);
    Ok(Secrets {
        log: SigningKey::from_bytes(&log),
        intake_seed: Zeroizing::new(intake),
        intake: intake_sk,
        intake_public,
        anchor,
        tag_key: Zeroizing::new(tag),
    })
}

impl Secrets {
    /// Fresh random keys.
    pub fn generate() -> Self {
        let mut seeds = Zeroizing::new([[0u8; 32]; 4]);
        for s in seeds.iter_mut() {
            OsRng.fill_bytes(s);
        }
        // A uniformly random 32-byte string is a valid secp256k1 scalar except with
        // probability ~2^-128; retry rather than assume.
        loop {
            if let Ok(s) = from_seeds(seeds[0], seeds[1], seeds[2], seeds[3]) {
                return s;
            }
            OsRng.fill_bytes(&mut seeds[2]);
        }
    }

    /// The serialized form (CBOR), to be sealed.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let wire = Wire {
            v: 1,
            log: self.log.to_bytes().to_vec(),
            intake: self.intake_seed.to_vec(),
            anchor: self.anchor.to_bytes().to_vec(),
            tag: self.tag_key.to_vec(),
        };
        let mut out = Zeroizing::new(Vec::new());
        ciborium::ser::into_writer(&wire, &mut *out).expect("writing CBOR to a Vec cannot fail");
        out
    }

    /// Parses unsealed bytes.
    ///
    /// # Errors
    /// [`SecretsError`] if they are not a version-1 secrets map.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        let mut rest = bytes;
        let wire: Wire = ciborium::de::from_reader(&mut rest).map_err(|_| SecretsError)?;
        if !rest.is_empty() || wire.v != 1 {
            return Err(SecretsError);
        }
        let k = |v: &Vec<u8>| -> Result<[u8; 32], SecretsError> {
            v.as_slice().try_into().map_err(|_| SecretsError)
        };
        from_seeds(
            k(&wire.log)?,
            k(&wire.intake)?,
            k(&wire.anchor)?,
            k(&wire.tag)?,
        )
    }

    /// The log signing key.
    pub fn log_key(&self) -> &SigningKey {
        &self.log
    }

    /// The HPKE intake private key.
    pub fn intake_key(&self) -> &IntakeSecret {
        &self.intake
    }

    /// The secp256k1 anchor key.
    pub fn anchor_key(&self) -> &k256::SecretKey {
        &self.anchor
    }

    /// `HMAC-SHA-256(tag_key, normalised_email)`: 32 bytes.
    pub fn email_tag(&self, normalised_email: &str) -> [u8; 32] {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&*self.tag_key)
            .expect("HMAC takes any key length");
        mac.update(normalised_email.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The AES-256 key of the sealed state ([`crate::state`]), 32 bytes:
    /// `HMAC-SHA-256(tag_key, "leadgate.state-key.v1\n")`. The label holds a newline and no
    /// `@`, so it is never a normalised email, whose tags the same key makes.
    pub fn state_key(&self) -> Zeroizing<[u8; 32]> {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&*self.tag_key)
            .expect("HMAC takes any key length");
        mac.update(b"leadgate.state-key.v1\n");
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// The HPKE intake public key, 32 bytes (X25519).
    pub fn intake_public(&self) -> [u8; 32] {
        self.intake_public
    }

    /// The public keys, as bound into attestations.
    pub fn public_keys(&self, origin: &str) -> EnclaveKeys {
        let anchor = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &self.anchor.public_key(),
            true,
        );
        let mut anchor_key = [0u8; 33];
        anchor_key.copy_from_slice(anchor.as_bytes());
        EnclaveKeys {
            origin: origin.to_owned(),
            log_key: self.log.verifying_key(),
            intake_key: self.intake_public,
            anchor_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_key() {
        let s = Secrets::generate();
        let back = Secrets::from_bytes(&s.to_bytes()).unwrap();
        assert_eq!(s.public_keys("o"), back.public_keys("o"));
        assert_eq!(s.email_tag("a@b.co"), back.email_tag("a@b.co"));
        assert_ne!(
            s.email_tag("a@b.co"),
            Secrets::generate().email_tag("a@b.co")
        );
        let bytes = s.to_bytes();
        assert!(Secrets::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
