//! The dev sealer: AES-256-GCM under a key file in the enclave's state directory.

use aes_gcm::{Aes256Gcm, KeyInit};
use rand_core::{OsRng, RngCore};
use std::path::Path;

use crate::private_file::write_private_file;
use zeroize::Zeroizing;

use super::{gcm_open, gcm_seal, SealError, Sealer};
use leadgate_protocol::AwsCredentials;

/// Sealed blob prefix for the dev sealer (format version 1).
const DEV_MAGIC: &[u8; 4] = b"LGS1";

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

impl Sealer for DevFileSealer {
    fn seal(&self, plaintext: &[u8], _: Option<&AwsCredentials>) -> Result<Vec<u8>, SealError> {
        gcm_seal(&self.cipher, DEV_MAGIC.to_vec(), b"", plaintext)
    }

    fn unseal(
        &self,
        blob: &[u8],
        _: Option<&AwsCredentials>,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let rest = blob.strip_prefix(DEV_MAGIC).ok_or(SealError::Unseal)?;
        gcm_open(&self.cipher, b"", rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_tamper_and_other_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = DevFileSealer::open_or_create(dir.path()).unwrap();
        let blob = s.seal(b"secret", None).unwrap();
        assert_eq!(&*s.unseal(&blob, None).unwrap(), b"secret");
        // Reopening reads the same key.
        let again = DevFileSealer::open_or_create(dir.path()).unwrap();
        assert_eq!(&*again.unseal(&blob, None).unwrap(), b"secret");
        for i in 0..blob.len() {
            let mut m = blob.clone();
            m[i] ^= 1;
            assert!(s.unseal(&m, None).is_err());
        }
        assert!(s.unseal(&blob[..20], None).is_err());
        let other_dir = tempfile::tempdir().unwrap();
        let other = DevFileSealer::open_or_create(other_dir.path()).unwrap();
        assert!(other.unseal(&blob, None).is_err());
    }
}
