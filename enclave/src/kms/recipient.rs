//! The enclave's side of a KMS `Recipient` request: an ephemeral RSA-2048 key whose public
//! half goes into the attestation document's `public_key`, and the unwrap of the
//! `CiphertextForRecipient` KMS encrypts to it (AWS KMS Developer Guide, "How AWS Nitro
//! Enclaves uses AWS KMS").

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use rand_core::OsRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};
use zeroize::Zeroizing;

use super::cms::{parse_enveloped, CmsError};

/// RSA modulus size, bits. KMS accepts 2048, 3072 or 4096-bit keys for `RSAES_OAEP_SHA_256`.
pub const RSA_BITS: usize = 2048;

/// An ephemeral RSA key pair for one KMS call; the private half never leaves the enclave and
/// is dropped with the value.
pub struct RecipientKey {
    private: RsaPrivateKey,
    spki_der: Vec<u8>,
}

impl RecipientKey {
    /// A fresh RSA-2048 key from the OS RNG.
    ///
    /// # Errors
    /// [`CmsError`] if key generation or SPKI encoding fails (it does not, short of a broken
    /// RNG).
    pub fn generate() -> Result<Self, CmsError> {
        let private =
            RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|_| CmsError("RSA key generation"))?;
        let spki_der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|_| CmsError("RSA public key encoding"))?
            .into_vec();
        Ok(Self { private, spki_der })
    }

    /// The public key as DER SubjectPublicKeyInfo (294 bytes for RSA-2048): what the
    /// attestation document's `public_key` carries and KMS encrypts to.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Opens KMS's `CiphertextForRecipient`: parses the CMS EnvelopedData, decrypts the
    /// content key with RSAES-OAEP (SHA-256, MGF1-SHA-256, empty label) and the content with
    /// AES-256-CBC (PKCS#7 padding).
    ///
    /// # Errors
    /// [`CmsError`] for any malformed structure, a key that does not decrypt or is not 32
    /// bytes, or bad padding.
    pub fn open(&self, ciphertext_for_recipient: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        let parts = parse_enveloped(ciphertext_for_recipient)?;
        let cek = Zeroizing::new(
            self.private
                .decrypt(Oaep::new::<sha2::Sha256>(), &parts.encrypted_key)
                .map_err(|_| CmsError("the content key does not decrypt with our key"))?,
        );
        let decryptor = cbc::Decryptor::<aes::Aes256>::new_from_slices(&cek, &parts.iv)
            .map_err(|_| CmsError("the content key is not 32 bytes"))?;
        decryptor
            .decrypt_padded_vec_mut::<Pkcs7>(&parts.ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| CmsError("the content does not decrypt (padding)"))
    }
}
