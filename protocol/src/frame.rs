//! Framing: a 4-byte big-endian body length, then the CBOR body (RFC 8949), at most
//! [`MAX_FRAME_LEN`] bytes.

use leadgate_verifier::ErrorCode;
use serde::{de::DeserializeOwned, Serialize};

use crate::limits::MAX_FRAME_LEN;

/// Errors decoding frames. Code: `protocol.malformed_frame` or `protocol.frame_too_large`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Over [`MAX_FRAME_LEN`].
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// Not the expected CBOR message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge(_) => ErrorCode::ProtocolFrameTooLarge,
            FrameError::Malformed(_) => ErrorCode::ProtocolMalformedFrame,
            FrameError::Io(_) => ErrorCode::ProtocolIo,
        }
    }
}

/// Encodes a message body (CBOR).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(msg, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes a message body, rejecting trailing bytes.
///
/// # Errors
/// [`FrameError::TooLarge`], [`FrameError::Malformed`].
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut rest = body;
    let msg =
        ciborium::de::from_reader(&mut rest).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(FrameError::Malformed("trailing bytes".into()));
    }
    Ok(msg)
}

/// Reads one frame body. `Ok(None)` at a clean end of stream.
///
/// # Errors
/// [`FrameError::Io`], [`FrameError::TooLarge`] (the stream is then unusable).
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    use tokio::io::AsyncReadExt as _;
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    // Grown as bytes arrive, so a peer that announces a large frame and sends little of it
    // costs what it sent, not what it announced.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    Ok(Some(body))
}

/// Writes one frame.
///
/// # Errors
/// [`FrameError::Io`], [`FrameError::TooLarge`].
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    body: &[u8],
) -> Result<(), FrameError> {
    use tokio::io::AsyncWriteExt as _;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}
