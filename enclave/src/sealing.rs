//! Sealing: encrypting the enclave's secrets so that only this enclave can read them back.
//!
//! On Nitro, sealing is AWS KMS with the attestation document as Recipient and a key policy
//! on PCR0 (the NSM sealer comes with the Nitro work). In dev mode, [`DevFileSealer`] uses
//! AES-256-GCM under a 32-byte key file in the enclave's state directory. Either way the host
//! stores only the sealed blob.

use aes_gcm::{aead::Aead, Aes256Gcm, KeyInit, Nonce};
use rand_core::{OsRng, RngCore};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Sealed blob prefix for the dev sealer (format version 1).
const DEV_MAGIC: &[u8; 4] = b"LGS1";

/// Errors from sealing. Codes: `sealing.*`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The blob is not ours, was tampered with, or was sealed under another key.
    #[error("sealed blob does not open")]
    Unseal,
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
    pub fn code(&self) -> &'static str {
        match self {
            SealError::Unseal => "sealing.unseal_failed",
            SealError::KeyFile { .. } => "sealing.key_file",
        }
    }
}

/// Seals and unseals the enclave's secrets. The KMS sealer implements this on Nitro.
pub trait Sealer: Send + Sync {
    /// Encrypts and authenticates `plaintext`.
    ///
    /// # Errors
    /// Implementation-specific [`SealError`].
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Opens a blob made by [`Sealer::seal`].
    ///
    /// # Errors
    /// [`SealError::Unseal`] if the blob is not authentic.
    fn unseal(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// Dev sealer: AES-256-GCM under a key file (`seal.key`, 32 random bytes, mode 0600).
/// Blob: `"LGS1" || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
pub struct DevFileSealer {
    cipher: Aes256Gcm,
}

impl DevFileSealer {
    /// Opens `dir/seal.key`, creating it with a fresh random key on first start.
    ///
    /// # Errors
    /// [`SealError::KeyFile`].
    pub fn open_or_create(dir: &Path) -> Result<Self, SealError> {
        let path = dir.join("seal.key");
        let err = |source| SealError::KeyFile {
            path: path.clone(),
            source,
        };
        let key = match std::fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new(vec![0u8; 32]);
                OsRng.fill_bytes(&mut key);
                write_private_file(&path, &key).map_err(err)?;
                key
            }
            Err(e) => return Err(err(e)),
        };
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "seal.key must be 32 bytes",
            ))
        })?;
        Ok(Self { cipher })
    }
}

/// Writes a file readable only by its owner.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

impl Sealer for DevFileSealer {
    fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| SealError::Unseal)?;
        let mut out = DEV_MAGIC.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unseal(&self, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let rest = blob.strip_prefix(DEV_MAGIC).ok_or(SealError::Unseal)?;
        if rest.len() < 12 + 16 {
            return Err(SealError::Unseal);
        }
        let (nonce, ct) = rest.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_tamper_and_other_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = DevFileSealer::open_or_create(dir.path()).unwrap();
        let blob = s.seal(b"secret").unwrap();
        assert_eq!(&*s.unseal(&blob).unwrap(), b"secret");
        // Reopening reads the same key.
        let again = DevFileSealer::open_or_create(dir.path()).unwrap();
        assert_eq!(&*again.unseal(&blob).unwrap(), b"secret");
        for i in 0..blob.len() {
            let mut m = blob.clone();
            m[i] ^= 1;
            assert!(s.unseal(&m).is_err());
        }
        assert!(s.unseal(&blob[..20]).is_err());
        let other_dir = tempfile::tempdir().unwrap();
        let other = DevFileSealer::open_or_create(other_dir.path()).unwrap();
        assert!(other.unseal(&blob).is_err());
    }
}
