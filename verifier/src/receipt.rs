//! Receipts: the enclave's signed promise that an event is in the log.
//!
//! A receipt says: in log `origin`, during boot `epoch`, the event with `leaf_hash` was
//! appended at `index` at `time` (Unix ms), and the tree of `index + 1` leaves then had root
//! `root`. Committing to the root (not only the leaf) makes a receipt a small signed tree head:
//! a later checkpoint must be *consistent* with it (RFC 9162 §2.1.4), so a host that forks or
//! rewrites the log after handing out receipts is caught by the receipts alone.
//!
//! The signature is Ed25519 by the log key over the text
//! `leadgate.receipt.v1\n{origin}\n{epoch}\n{index}\n{leaf_hash hex}\n{root hex}\n{time}\n`.

use crate::ErrorCode;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;

/// Domain separation line of the receipt signature.
pub const RECEIPT_CONTEXT: &str = "leadgate.receipt.v1";

/// Errors for receipts. Codes: `receipt.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// A field is not in its encoding (hex, base64, sizes).
    #[error("malformed receipt: {0}")]
    Malformed(&'static str),
    /// The signature does not verify under the log key.
    #[error("receipt signature is invalid")]
    BadSignature,
    /// The receipt is for another log.
    #[error("receipt is for another log origin")]
    WrongOrigin,
}

impl ReceiptError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ReceiptError::Malformed(_) => ErrorCode::ReceiptMalformed,
            ReceiptError::BadSignature => ErrorCode::ReceiptBadSignature,
            ReceiptError::WrongOrigin => ErrorCode::ReceiptWrongOrigin,
        }
    }
}

/// A receipt as JSON: hashes in lowercase hex, signature in base64.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Log origin.
    pub origin: String,
    /// Boot epoch of the enclave that signed it.
    pub epoch: u64,
    /// Leaf index of the event.
    pub index: u64,
    /// RFC 6962 leaf hash of the event, hex (64 chars).
    pub leaf_hash: String,
    /// Root of the tree of `index + 1` leaves, hex (64 chars).
    pub root: String,
    /// Unix ms, enclave clock, when the event was appended.
    pub time: u64,
    /// Ed25519 signature, base64 (64 bytes).
    pub signature: String,
}

/// The decoded content of a receipt whose signature was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// Boot epoch.
    pub epoch: u64,
    /// Leaf index.
    pub index: u64,
    /// Leaf hash.
    pub leaf_hash: Hash,
    /// Root of the tree of `index + 1` leaves.
    pub root: Hash,
    /// Unix ms.
    pub time: u64,
}

fn signed_text(
    origin: &str,
    epoch: u64,
    index: u64,
    leaf_hash: &Hash,
    root: &Hash,
    time: u64,
) -> String {
    format!(
        "{RECEIPT_CONTEXT}\n{origin}\n{epoch}\n{index}\n{}\n{}\n{time}\n",
        hex::encode(leaf_hash),
        hex::encode(root)
    )
}

fn hash_from_hex(s: &str) -> Result<Hash, ReceiptError> {
    let mut out = [0u8; 32];
    if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReceiptError::Malformed(
            "hash must be 64 lowercase hex digits",
        ));
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| ReceiptError::Malformed("hash is not hex"))?;
    Ok(out)
}

impl Receipt {
    /// Signs a receipt (the enclave's side).
    pub fn sign(
        key: &SigningKey,
        origin: &str,
        epoch: u64,
        index: u64,
        leaf_hash: &Hash,
        root: &Hash,
        time: u64,
    ) -> Self {
        let sig = key.sign(signed_text(origin, epoch, index, leaf_hash, root, time).as_bytes());
        Receipt {
            origin: origin.to_owned(),
            epoch,
            index,
            leaf_hash: hex::encode(leaf_hash),
            root: hex::encode(root),
            time,
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// Verifies the signature under `log_key` and that the receipt is for `origin`.
    ///
    /// # Errors
    /// [`ReceiptError`].
    pub fn verify(
        &self,
        log_key: &VerifyingKey,
        origin: &str,
    ) -> Result<VerifiedReceipt, ReceiptError> {
        if self.origin != origin {
            return Err(ReceiptError::WrongOrigin);
        }
        let leaf_hash = hash_from_hex(&self.leaf_hash)?;
        let root = hash_from_hex(&self.root)?;
        let sig: [u8; 64] = B64
            .decode(&self.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ReceiptError::Malformed(
                "signature must be base64 of 64 bytes",
            ))?;
        log_key
            .verify(
                signed_text(origin, self.epoch, self.index, &leaf_hash, &root, self.time)
                    .as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .map_err(|_| ReceiptError::BadSignature)?;
        Ok(VerifiedReceipt {
            epoch: self.epoch,
            index: self.index,
            leaf_hash,
            root,
            time: self.time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_every_field_is_bound() {
        let sk = SigningKey::from_bytes(&[3u8; 32]);
        let vk = sk.verifying_key();
        let r = Receipt::sign(&sk, "o", 2, 41, &[0xab; 32], &[5u8; 32], 1_700_000_000_123);
        let v = r.verify(&vk, "o").unwrap();
        assert_eq!((v.epoch, v.index, v.time), (2, 41, 1_700_000_000_123));
        let json = serde_json::to_string(&r).unwrap();
        let back: Receipt = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);

        let mut m = r.clone();
        m.index += 1;
        assert_eq!(m.verify(&vk, "o"), Err(ReceiptError::BadSignature));
        let mut m = r.clone();
        m.epoch += 1;
        assert_eq!(m.verify(&vk, "o"), Err(ReceiptError::BadSignature));
        let mut m = r.clone();
        m.time += 1;
        assert_eq!(m.verify(&vk, "o"), Err(ReceiptError::BadSignature));
        let mut m = r.clone();
        m.root = hex::encode([6u8; 32]);
        assert_eq!(m.verify(&vk, "o"), Err(ReceiptError::BadSignature));
        let mut m = r.clone();
        m.leaf_hash = m.leaf_hash.to_uppercase();
        assert_eq!(m.verify(&vk, "o").unwrap_err().code(), "receipt.malformed");
        assert_eq!(r.verify(&vk, "p"), Err(ReceiptError::WrongOrigin));
        let other = SigningKey::from_bytes(&[4u8; 32]).verifying_key();
        assert_eq!(r.verify(&other, "o"), Err(ReceiptError::BadSignature));
    }
}
