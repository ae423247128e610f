//! Sealing: encrypting the enclave's secrets so that only this enclave can read them back.
//!
//! On Nitro, [`KmsSealer`] seals under an AWS KMS data key that KMS releases only to an
//! enclave whose attestation matches the key policy (PCR0). In dev mode, [`DevFileSealer`]
//! uses AES-256-GCM under a 32-byte key file in the enclave's state directory. Either way the
//! host stores only the sealed blob.

mod dev;
mod kms;

pub use dev::DevFileSealer;
pub use kms::{KmsSealer, KMS_MAGIC};

use crate::kms::{AwsCredentials, KmsError};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use leadgate_verifier::ErrorCode;
use rand_core::{OsRng, RngCore};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Appends `nonce (12 bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)` of `plaintext` to
/// `out`, with `aad` as associated data (a fresh random nonce each time).
fn gcm_seal(
    cipher: &Aes256Gcm,
    mut out: Vec<u8>,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Unseal)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens `nonce ‖ ciphertext ‖ tag` made by [`gcm_seal`] with the same `aad`.
fn gcm_open(
    cipher: &Aes256Gcm,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < 12 + 16 {
        return Err(SealError::Unseal);
    }
    let (nonce, ct) = sealed.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Unseal)
}

/// Errors from sealing. Codes: `sealing.*`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The blob is not ours, was tampered with, or was sealed under another key.
    #[error("sealed blob does not open")]
    Unseal,
    /// Sealing under AWS KMS failed (refused, unreachable, malformed answer, no credentials).
    #[error("{0}")]
    Kms(#[from] KmsError),
    /// The key file could not be read or created.
    #[error("sealing key file {path}: {source}")]
    KeyFile {
        /// The key file path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl SealError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            SealError::Unseal => ErrorCode::SealingUnsealFailed,
            SealError::Kms(e) => e.code(),
            SealError::KeyFile { .. } => ErrorCode::SealingKeyFile,
        }
    }
}

/// Seals and unseals the enclave's secrets.
///
/// `credentials` are the AWS credentials the host lent at boot (the KMS sealer signs its calls
/// with them; the dev sealer ignores them).
pub trait Sealer: Send + Sync {
    /// Encrypts and authenticates `plaintext`.
    ///
    /// # Errors
    /// Implementation-specific [`SealError`].
    fn seal(
        &self,
        plaintext: &[u8],
        credentials: Option<&AwsCredentials>,
    ) -> Result<Vec<u8>, SealError>;
    /// Opens a blob made by [`Sealer::seal`].
    ///
    /// # Errors
    /// [`SealError::Unseal`] if the blob is not authentic; the sealer's own errors otherwise.
    fn unseal(
        &self,
        blob: &[u8],
        credentials: Option<&AwsCredentials>,
    ) -> Result<Zeroizing<Vec<u8>>, SealError>;
}
