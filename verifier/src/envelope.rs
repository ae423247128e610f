//! The one HPKE suite leadgate uses (RFC 9180): DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM, base mode, single-shot. Sellers seal leads and buyers seal bids to the
//! enclave's intake key with it; the enclave re-seals a won lead to the winner's key with it.
//! Each use has its own `info` string and an AAD that names what the ciphertext belongs to.

use hpke::{
    aead::AesGcm256, kdf::HkdfSha256, kem::X25519HkdfSha256, Deserializable, Kem as _, OpModeR,
    OpModeS, Serializable,
};
use sha2::{Digest, Sha256};

/// HPKE encapsulated key size for X25519: 32 bytes.
pub const ENC_LEN: usize = 32;

/// AES-256-GCM tag size: 16 bytes.
pub const TAG_LEN: usize = 16;

/// An X25519 HPKE private key.
pub type HpkeSecret = <X25519HkdfSha256 as hpke::Kem>::PrivateKey;

/// Errors. The codes belong to the caller (a bid and a lead fail differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The recipient public key is not an X25519 key.
    #[error("recipient key is invalid")]
    BadKey,
    /// Sealing failed (the RNG or the key).
    #[error("HPKE seal failed")]
    Seal,
    /// Opening failed: garbled ciphertext, wrong key, info or AAD.
    #[error("ciphertext does not open")]
    Open,
}

/// Seals `plaintext` to `recipient` (32-byte X25519 public key). Returns `(enc, ciphertext)`;
/// the ciphertext is `plaintext.len() + 16` bytes.
///
/// # Errors
/// [`EnvelopeError::BadKey`], [`EnvelopeError::Seal`].
pub fn seal(
    recipient: &[u8; 32],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; ENC_LEN], Vec<u8>), EnvelopeError> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|_| EnvelopeError::BadKey)?;
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut rand_core::OsRng,
    )
    .map_err(|_| EnvelopeError::Seal)?;
    let mut enc_bytes = [0u8; ENC_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok((enc_bytes, ct))
}

/// Opens what [`seal`] made, with the recipient's private key.
///
/// # Errors
/// [`EnvelopeError::Open`].
pub fn open(
    secret: &HpkeSecret,
    enc: &[u8; ENC_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| EnvelopeError::Open)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        secret,
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map_err(|_| EnvelopeError::Open)
}

/// SHA-256(enc ‖ ciphertext): the public fingerprint of a sealed object (a lead's
/// `ciphertext_sha256`, a bid's commitment, a release's `sealed_sha256`).
pub fn fingerprint(enc: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(enc);
    h.update(ciphertext);
    h.finalize().into()
}

/// Derives an X25519 key pair from 32 secret bytes (RFC 9180 §7.1.3 DeriveKeyPair); returns
/// the private key and the 32-byte public key.
pub fn keypair_from_seed(seed: &[u8; 32]) -> (HpkeSecret, [u8; 32]) {
    let (sk, pk) = X25519HkdfSha256::derive_keypair(seed);
    let mut pk_bytes = [0u8; 32];
    pk_bytes.copy_from_slice(&pk.to_bytes());
    (sk, pk_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let (sk, pk) = keypair_from_seed(&[3u8; 32]);
        let (enc, ct) = seal(&pk, b"i", b"aad", b"hello").unwrap();
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(open(&sk, &enc, b"i", b"aad", &ct).unwrap(), b"hello");
        assert_eq!(open(&sk, &enc, b"i", b"aae", &ct), Err(EnvelopeError::Open));
        assert_eq!(open(&sk, &enc, b"j", b"aad", &ct), Err(EnvelopeError::Open));
        let (other, _) = keypair_from_seed(&[4u8; 32]);
        assert_eq!(
            open(&other, &enc, b"i", b"aad", &ct),
            Err(EnvelopeError::Open)
        );
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            open(&sk, &enc, b"i", b"aad", &bad),
            Err(EnvelopeError::Open)
        );
        assert_ne!(fingerprint(&enc, &ct), fingerprint(&enc, &bad));
    }
}
