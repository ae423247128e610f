//! The Nitro sealer: AES-256-GCM under a data key that only AWS KMS can unwrap, and KMS
//! unwraps it only for an enclave whose attestation the key policy accepts.
//!
//! Sealing asks KMS `GenerateDataKey` with this enclave's attestation document as `Recipient`;
//! KMS returns the data key encrypted under the KMS key (`CiphertextBlob`, kept in the blob)
//! and encrypted to an ephemeral RSA key bound in the attestation (`CiphertextForRecipient`,
//! opened here). Unsealing sends the `CiphertextBlob` to KMS `Decrypt`, again with a fresh
//! attestation. The host stores the blob and relays the TLS bytes; it can do neither call
//! itself as long as the key policy requires `kms:RecipientAttestation:ImageSha384`.
//!
//! Blob: `"LGK1" ‖ len (2 bytes, big-endian) ‖ CiphertextBlob ‖ nonce (12 bytes) ‖
//! AES-256-GCM ciphertext ‖ tag (16 bytes)`, with `"LGK1" ‖ len ‖ CiphertextBlob` as the
//! associated data, so the wrapped key cannot be swapped.

use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use super::{gcm_open, gcm_seal, SealError, Sealer};
use crate::attest::AttestationProvider;
use crate::clock::now_ms;
use crate::kms::recipient::RecipientKey;
use crate::kms::{block_on, AwsCredentials, KmsClient, KmsError};

/// Sealed blob prefix for the KMS sealer (format version 1).
pub const KMS_MAGIC: &[u8; 4] = b"LGK1";
/// What the attestation documents sent to KMS carry as `user_data`, so that they cannot be
/// mistaken for the enclave's key-binding document.
const KMS_USER_DATA: &[u8] = b"leadgate kms recipient v1";

/// Seals under AWS KMS data keys (see the module doc).
pub struct KmsSealer {
    client: KmsClient,
    attestor: Box<dyn AttestationProvider>,
}

impl KmsSealer {
    /// A sealer using `client`'s key, attesting with `attestor` (the NSM on Nitro).
    pub fn new(client: KmsClient, attestor: Box<dyn AttestationProvider>) -> Self {
        Self { client, attestor }
    }

    /// A fresh recipient key and an attestation document binding it.
    fn recipient(&self) -> Result<(RecipientKey, Vec<u8>), SealError> {
        let key = RecipientKey::generate().map_err(KmsError::from)?;
        let document = self
            .attestor
            .attest(now_ms(), None, KMS_USER_DATA, key.spki_der())
            .map_err(KmsError::from)?;
        Ok((key, document))
    }
}

fn aad(wrapped_key: &[u8]) -> Result<Vec<u8>, SealError> {
    let len = u16::try_from(wrapped_key.len())
        .map_err(|_| KmsError::BadResponse("CiphertextBlob over 65535 bytes".into()))?;
    let mut out = KMS_MAGIC.to_vec();
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(wrapped_key);
    Ok(out)
}

fn data_key(plain: &[u8]) -> Result<Aes256Gcm, SealError> {
    Aes256Gcm::new_from_slice(plain)
        .map_err(|_| KmsError::BadResponse("the data key is not 32 bytes".into()).into())
}

impl Sealer for KmsSealer {
    fn seal(
        &self,
        plaintext: &[u8],
        credentials: Option<&AwsCredentials>,
    ) -> Result<Vec<u8>, SealError> {
        let credentials = credentials.ok_or(KmsError::NoCredentials)?;
        let (recipient, document) = self.recipient()?;
        let (wrapped, for_recipient) =
            block_on(self.client.generate_data_key(credentials, &document))?;
        let key = recipient.open(&for_recipient).map_err(KmsError::from)?;
        let header = aad(&wrapped)?;
        gcm_seal(&data_key(&key)?, header.clone(), &header, plaintext)
    }

    fn unseal(
        &self,
        blob: &[u8],
        credentials: Option<&AwsCredentials>,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let rest = blob.strip_prefix(KMS_MAGIC).ok_or(SealError::Unseal)?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or(SealError::Unseal)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 || rest.len() < len + 12 + 16 {
            return Err(SealError::Unseal);
        }
        let (wrapped, sealed) = rest.split_at(len);
        let credentials = credentials.ok_or(KmsError::NoCredentials)?;
        let (recipient, document) = self.recipient()?;
        let for_recipient = block_on(self.client.decrypt(credentials, wrapped, &document))?;
        let key = recipient.open(&for_recipient).map_err(KmsError::from)?;
        gcm_open(&data_key(&key)?, &aad(wrapped)?, sealed)
    }
}
