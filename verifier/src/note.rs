//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 signatures (type `0x01`).
//!
//! A signed note is UTF-8 text ending in a newline, a blank line, then one or more lines
//! `— <key name> base64(key ID || signature)`. Key ID = `SHA-256(name || 0x0A || 0x01 ||
//! pubkey)[:4]`. Verifier keys are written `name+hex(key ID)+base64(0x01 || pubkey)`.

use crate::ErrorCode;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// Largest note accepted, in bytes. A checkpoint with 16 Ed25519 cosignatures is about 1.7 KiB;
/// 16 KiB leaves room for extension lines and post-quantum signatures the spec anticipates.
pub const MAX_NOTE_SIZE: usize = 16 * 1024;

/// Most signature lines accepted (the spec requires accepting at least 16; Go's reference
/// implementation caps at 100).
pub const MAX_SIGNATURES: usize = 100;

/// Signature type byte for Ed25519 (C2SP signed-note §Signature types).
pub const SIG_TYPE_ED25519: u8 = 0x01;

/// Errors for notes and note keys. Codes are stable (`note.*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Over [`MAX_NOTE_SIZE`] or [`MAX_SIGNATURES`].
    #[error("note too large")]
    TooLarge,
    /// Not UTF-8, a control character, no blank line before signatures, or a bad signature line.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// A verifier key string that does not parse, or whose key ID does not match its key.
    #[error("malformed note key: {0}")]
    MalformedKey(&'static str),
    /// No signature by the expected key (name and key ID) is on the note.
    #[error("note has no signature from the expected key")]
    UnverifiedNote,
    /// A signature by the expected key (name and key ID) does not verify.
    #[error("note signature is invalid")]
    BadSignature,
}

impl NoteError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            NoteError::TooLarge => ErrorCode::NoteTooLarge,
            NoteError::Malformed(_) => ErrorCode::NoteMalformed,
            NoteError::MalformedKey(_) => ErrorCode::NoteMalformedKey,
            NoteError::UnverifiedNote => ErrorCode::NoteUnverified,
            NoteError::BadSignature => ErrorCode::NoteBadSignature,
        }
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name (no spaces, no `+`).
    pub name: String,
    /// The 4-byte key ID, big-endian.
    pub key_id: [u8; 4],
    /// The signature bytes after the key ID (64 for Ed25519).
    pub signature: Vec<u8>,
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in `\n`.
    pub text: String,
    /// Signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name || 0x0A || 0x01 || pubkey)[:4]`.
pub fn ed25519_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', SIG_TYPE_ED25519]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Note {
    /// Parses a signed note.
    ///
    /// # Errors
    /// [`NoteError::TooLarge`], [`NoteError::Malformed`].
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge);
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        // The text ends at the last blank line.
        let split = s
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end in a newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooLarge);
            }
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "signature line must start with em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs name and signature",
            ))?;
            if !valid_key_name(name) {
                return Err(NoteError::Malformed("invalid key name"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: [raw[0], raw[1], raw[2], raw[3]],
                signature: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Serializes the note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.text.clone();
        out.push('\n');
        for sig in &self.signatures {
            let mut raw = sig.key_id.to_vec();
            raw.extend_from_slice(&sig.signature);
            out.push_str(&format!("\u{2014} {} {}\n", sig.name, B64.encode(raw)));
        }
        out.into_bytes()
    }

    /// Verifies the note's signature by `key`. Signatures from other keys (another name or key
    /// ID) are ignored, as the spec requires.
    ///
    /// # Errors
    /// [`NoteError::UnverifiedNote`] if no signature from `key` is present,
    /// [`NoteError::BadSignature`] if one is present but fails.
    pub fn verify(&self, key: &NoteVerifier) -> Result<(), NoteError> {
        let mut found = false;
        for sig in &self.signatures {
            if sig.name != key.name || sig.key_id != key.key_id {
                continue;
            }
            found = true;
            let bytes: [u8; 64] = sig
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| NoteError::BadSignature)?;
            key.key
                .verify(
                    self.text.as_bytes(),
                    &ed25519_dalek::Signature::from_bytes(&bytes),
                )
                .map_err(|_| NoteError::BadSignature)?;
        }
        if found {
            Ok(())
        } else {
            Err(NoteError::UnverifiedNote)
        }
    }
}

/// An Ed25519 note verifier key: name, key ID and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Builds a verifier for `public_key` under `name`; the key ID is derived per the spec.
    ///
    /// # Errors
    /// [`NoteError::MalformedKey`] for an invalid name.
    pub fn new(name: &str, public_key: VerifyingKey) -> Result<Self, NoteError> {
        if !valid_key_name(name) {
            return Err(NoteError::MalformedKey("invalid key name"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: ed25519_key_id(name, public_key.as_bytes()),
            key: public_key,
        })
    }

    /// Parses `name+hex(key ID)+base64(0x01 || pubkey)`.
    ///
    /// # Errors
    /// [`NoteError::MalformedKey`] if any part is malformed or the key ID does not match.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        // name and key ID contain no '+'; the base64 key may.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey("expected name+id+key"));
        };
        if id_hex.len() != 8 || id_hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(NoteError::MalformedKey(
                "key ID must be 8 lowercase hex digits",
            ));
        }
        let mut key_id = [0u8; 4];
        hex::decode_to_slice(id_hex, &mut key_id)
            .map_err(|_| NoteError::MalformedKey("key ID is not hex"))?;
        let raw = B64
            .decode(key_b64)
            .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
        let Some((&alg, pk)) = raw.split_first() else {
            return Err(NoteError::MalformedKey("empty key"));
        };
        if alg != SIG_TYPE_ED25519 {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        }
        let pk: [u8; 32] = pk
            .try_into()
            .map_err(|_| NoteError::MalformedKey("Ed25519 key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&pk)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        let v = Self::new(name, key)?;
        if v.key_id != key_id {
            return Err(NoteError::MalformedKey("key ID does not match key"));
        }
        Ok(v)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The `name+hex(id)+base64(0x01||key)` string.
    pub fn to_vkey_string(&self) -> String {
        let mut raw = vec![SIG_TYPE_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(raw)
        )
    }
}

/// Signs note text with an Ed25519 key (used by the enclave; here so the format lives in one place).
pub struct NoteSigner<'a> {
    verifier: NoteVerifier,
    key: &'a SigningKey,
}

impl<'a> NoteSigner<'a> {
    /// A signer for `key` under `name`.
    ///
    /// # Errors
    /// [`NoteError::MalformedKey`] for an invalid name.
    pub fn new(name: &str, key: &'a SigningKey) -> Result<Self, NoteError> {
        Ok(Self {
            verifier: NoteVerifier::new(name, key.verifying_key())?,
            key,
        })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// Signs `text` (which must end in `\n` and contain no control characters but newlines).
    ///
    /// # Errors
    /// [`NoteError::Malformed`] if the text breaks those rules.
    pub fn sign(&self, text: &str) -> Result<Note, NoteError> {
        if !text.ends_with('\n') || text.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed(
                "text must end in newline, no controls",
            ));
        }
        let sig = self.key.sign(text.as_bytes());
        Ok(Note {
            text: text.to_owned(),
            signatures: vec![NoteSignature {
                name: self.verifier.name.clone(),
                key_id: self.verifier.key_id,
                signature: sig.to_bytes().to_vec(),
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example key and note of the Go reference implementation (golang.org/x/mod/sumdb/note),
    // which the C2SP signed-note spec is derived from.
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n\
                          \n\
                          \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn skey_seed() -> [u8; 32] {
        let b64 = SKEY.splitn(5, '+').nth(4).unwrap();
        let raw = B64.decode(b64).unwrap();
        assert_eq!(raw[0], SIG_TYPE_ED25519);
        raw[1..].try_into().unwrap()
    }

    #[test]
    fn reference_vector_verifies_and_round_trips() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        assert_eq!(hex::encode(v.key_id()), "c74f20a3");
        assert_eq!(v.to_vkey_string(), VKEY);
        let note = Note::parse(SIGNED.as_bytes()).unwrap();
        assert_eq!(note.text, TEXT);
        note.verify(&v).unwrap();
        assert_eq!(note.to_bytes(), SIGNED.as_bytes());
    }

    #[test]
    fn signing_reproduces_the_reference_signature() {
        let sk = SigningKey::from_bytes(&skey_seed());
        let signer = NoteSigner::new("PeterNeumann", &sk).unwrap();
        assert_eq!(signer.verifier().to_vkey_string(), VKEY);
        let note = signer.sign(TEXT).unwrap();
        assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), SIGNED);
    }

    #[test]
    fn tampering_and_unknown_keys_are_rejected() {
        let v = NoteVerifier::parse(VKEY).unwrap();
        let tampered = SIGNED.replace("cryptography", "cryptographY");
        assert_eq!(
            Note::parse(tampered.as_bytes()).unwrap().verify(&v),
            Err(NoteError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[7u8; 32]);
        let ov = NoteVerifier::new("PeterNeumann", other.verifying_key()).unwrap();
        assert_eq!(
            Note::parse(SIGNED.as_bytes()).unwrap().verify(&ov),
            Err(NoteError::UnverifiedNote)
        );
    }

    #[test]
    fn vkeys_whose_base64_contains_plus_round_trip() {
        let mut seen = 0;
        for seed in 0u8..=255 {
            let v = NoteVerifier::new(
                "example.com/log",
                SigningKey::from_bytes(&[seed; 32]).verifying_key(),
            )
            .unwrap();
            let s = v.to_vkey_string();
            if s.splitn(3, '+').nth(2).is_some_and(|k| k.contains('+')) {
                seen += 1;
                assert_eq!(NoteVerifier::parse(&s).unwrap(), v, "{s}");
            }
        }
        assert!(seen > 10, "the sample has keys with '+' in base64");
    }

    #[test]
    fn every_mangled_vkey_is_rejected() {
        // As in the Go reference tests: every proper substring and every single-byte change.
        let b = VKEY.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if i != 0 || j != b.len() {
                    if let Ok(s) = std::str::from_utf8(&b[i..j]) {
                        assert!(NoteVerifier::parse(s).is_err(), "{s}");
                    }
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(NoteVerifier::parse(s).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn malformed_notes_are_rejected() {
        for bad in [
            "no blank line\n\u{2014} PeterNeumann x08go/ZJk=\n",
            "text\n\n",
            "text\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG\n",
            "text\n\n- PeterNeumann x08go/ZJkuBS9UG/Sff=\n",
            "text\n\n\u{2014} Peter+Neumann x08go/ZJkuBS9UG/Sff=\n",
            "te\u{1}xt\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/Sff=\n",
            "text\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/Sff=",
        ] {
            assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            Note::parse(&vec![b'a'; MAX_NOTE_SIZE + 1]),
            Err(NoteError::TooLarge)
        );
    }
}
