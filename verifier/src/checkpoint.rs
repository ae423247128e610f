//! C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>) bodies inside signed notes.
//!
//! The note text is: origin line, tree size in decimal, base64 root hash, then optional
//! extension lines, each ending in `\n`.

use crate::ErrorCode;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};

use crate::merkle::Hash;
use crate::note::{Note, NoteError, NoteVerifier};

/// Errors for checkpoints. Codes are stable (`checkpoint.*`, or the note's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed note itself is bad.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The note text is not a checkpoint body.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The checkpoint is for another log.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// The origin expected by the caller.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
}

impl CheckpointError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            CheckpointError::Note(e) => e.code(),
            CheckpointError::Malformed(_) => ErrorCode::CheckpointMalformed,
            CheckpointError::WrongOrigin { .. } => ErrorCode::CheckpointWrongOrigin,
        }
    }
}

/// A checkpoint body: origin, size, root hash and extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line, e.g. `leadgate.dev/log`.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash of the first `size` leaves.
    pub root: Hash,
    /// Extension lines (without their newlines); none are defined by leadgate.
    pub extensions: Vec<String>,
}

/// Parses a decimal `u64` strictly: ASCII digits only, no sign, no leading zeros.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

impl Checkpoint {
    /// Parses a checkpoint body (the note text).
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`].
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("must end in newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed("empty origin"));
        }
        let size = lines
            .next()
            .and_then(parse_decimal)
            .ok_or(CheckpointError::Malformed("bad tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|v| v.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "root must be base64 of 32 bytes",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The note text for this checkpoint.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

/// A checkpoint whose signature by the log key was verified. Only [`verify_checkpoint`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: Note,
}

impl VerifiedCheckpoint {
    /// The verified body.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }
    /// The signed note it came from.
    pub fn note(&self) -> &Note {
        &self.note
    }
}

/// Parses a signed checkpoint, checks its signature by `log_key` and that its origin is
/// `expected_origin` (the log key's name is the origin, as C2SP recommends).
///
/// # Errors
/// Any [`CheckpointError`].
pub fn verify_checkpoint(
    bytes: &[u8],
    log_key: &NoteVerifier,
    expected_origin: &str,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let note = Note::parse(bytes)?;
    let checkpoint = Checkpoint::parse_text(&note.text)?;
    if checkpoint.origin != expected_origin {
        return Err(CheckpointError::WrongOrigin {
            expected: expected_origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    note.verify(log_key)?;
    Ok(VerifiedCheckpoint { checkpoint, note })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;
    use ed25519_dalek::SigningKey;

    // The example body from c2sp.org/tlog-checkpoint.
    const SPEC_EXAMPLE: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn spec_example_parses_and_round_trips() {
        let c = Checkpoint::parse_text(SPEC_EXAMPLE).unwrap();
        assert_eq!(c.origin, "example.com/behind-the-sofa");
        assert_eq!(c.size, 20852163);
        assert_eq!(c.to_text(), SPEC_EXAMPLE);
    }

    #[test]
    fn strict_parsing() {
        for bad in [
            "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n+1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",
            "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
            "o\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        ] {
            assert!(Checkpoint::parse_text(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("00"), None);
    }

    #[test]
    fn signed_checkpoint_verifies_and_rejects_other_origins_and_keys() {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let signer = NoteSigner::new("example.com/behind-the-sofa", &sk).unwrap();
        let note = signer.sign(SPEC_EXAMPLE).unwrap().to_bytes();
        let v = verify_checkpoint(&note, signer.verifier(), "example.com/behind-the-sofa").unwrap();
        assert_eq!(v.checkpoint().size, 20852163);
        assert!(matches!(
            verify_checkpoint(&note, signer.verifier(), "other"),
            Err(CheckpointError::WrongOrigin { .. })
        ));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let ov = NoteVerifier::new("example.com/behind-the-sofa", other.verifying_key()).unwrap();
        assert_eq!(
            verify_checkpoint(&note, &ov, "example.com/behind-the-sofa")
                .unwrap_err()
                .code(),
            "note.unverified"
        );
    }
}
