//! A booted enclave connection that pipelines requests. The enclave answers requests in the
//! order it reads them, so the host may write the next request before the previous answer is
//! back: frames are written in order, and a reader task hands each answer to the oldest
//! request still waiting. This keeps the enclave busy while the host stores the previous
//! batch and forms the next one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use leadgate_protocol::transport::BoxStream;
use leadgate_protocol::{decode, encode, read_frame, write_frame, Request, Response};
use tokio::io::WriteHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use leadgate_protocol::WireError;

use crate::storage::StoreError;

/// What a request over the enclave link can end in, other than its answer: the link
/// itself failed (`Unavailable`, `Protocol`), the enclave refused (`Enclave`, with its code),
/// or a step the gateway takes around the exchange failed (`Store`, `Credentials`).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Not connected, or the connection broke.
    #[error("enclave unavailable")]
    Unavailable,
    /// The enclave answered something unexpected.
    #[error("enclave protocol error: {0}")]
    Protocol(String),
    /// The enclave refused or failed, with its code.
    #[error("enclave error {}: {}", .0.code, .0.message)]
    Enclave(WireError),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store lacks entries the running enclave signed and no longer holds: the gateway
    /// will not boot the enclave behind its own log (that would fork it). Heals when the
    /// entries are back (repaired from the bucket, or the database restored).
    #[error("{0}")]
    Behind(String),
    /// The AWS credentials to lend the enclave at boot could not be had.
    #[error(transparent)]
    Credentials(#[from] crate::aws_credentials::CredentialsError),
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> Self {
        LinkError::Store(StoreError::Db(e))
    }
}

/// Where a request's answer arrives. [`LinkError::Unavailable`] if the link closed first,
/// [`LinkError::Protocol`] if the answer frame did not decode.
pub type Answer = oneshot::Receiver<Result<Response, LinkError>>;

type Waiter = oneshot::Sender<Result<Response, LinkError>>;

/// The connection. Dropping it stops the reader, and every waiting request gets
/// [`LinkError::Unavailable`].
pub struct EnclaveConn {
    writer: WriteHalf<BoxStream>,
    waiting: mpsc::UnboundedSender<Waiter>,
    alive: Arc<AtomicBool>,
    reader: JoinHandle<()>,
}

impl EnclaveConn {
    /// Takes over a stream (TCP or vsock) with nothing in flight.
    pub fn new(stream: BoxStream) -> Self {
        let (mut rd, writer) = tokio::io::split(stream);
        let (waiting, mut waiters) = mpsc::unbounded_channel::<Waiter>();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        let reader = tokio::spawn(async move {
            loop {
                let body = match read_frame(&mut rd).await {
                    Ok(Some(body)) => body,
                    Ok(None) | Err(_) => break,
                };
                // A waiter is queued before its request is written, so an answer with no
                // waiter means the enclave is out of step with us.
                let Ok(waiter) = waiters.try_recv() else {
                    tracing::error!("enclave sent an answer nobody asked for");
                    break;
                };
                let answer =
                    decode::<Response>(&body).map_err(|e| LinkError::Protocol(e.to_string()));
                let _ = waiter.send(answer);
            }
            flag.store(false, Ordering::Release);
            // Dropping `waiters` fails every request still waiting.
        });
        Self {
            writer,
            waiting,
            alive,
            reader,
        }
    }

    /// False once the enclave closed the connection or broke the framing.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Writes `req` and returns where its answer will arrive. Requests are answered in the
    /// order they are sent.
    ///
    /// # Errors
    /// [`LinkError::Unavailable`] if the frame could not be written (the caller must drop the
    /// connection: the stream may hold half a frame).
    pub async fn send(&mut self, req: &Request) -> Result<Answer, LinkError> {
        if !self.is_alive() {
            return Err(LinkError::Unavailable);
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.send(tx).map_err(|_| LinkError::Unavailable)?;
        write_frame(&mut self.writer, &encode(req))
            .await
            .map_err(|_| LinkError::Unavailable)?;
        Ok(rx)
    }
}

impl EnclaveConn {
    /// Sends `req` and waits for its answer.
    ///
    /// # Errors
    /// As [`EnclaveConn::send`] and [`answer`].
    pub async fn call(&mut self, req: &Request) -> Result<Response, LinkError> {
        answer(self.send(req).await?).await
    }
}

impl Drop for EnclaveConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Waits for an answer.
///
/// # Errors
/// [`LinkError::Unavailable`] if the connection closed before answering,
/// [`LinkError::Protocol`] if the answer did not decode.
pub async fn answer(rx: Answer) -> Result<Response, LinkError> {
    rx.await.map_err(|_| LinkError::Unavailable)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_protocol::WireError;
    use serde_bytes::ByteBuf;

    /// A fake enclave that answers each `Attest` with its nonce, in order, after `n` requests
    /// closes the connection.
    async fn fake_enclave(n: usize) -> BoxStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for _ in 0..n {
                let body = read_frame(&mut s).await.unwrap().unwrap();
                let resp = match decode::<Request>(&body).unwrap() {
                    Request::Attest { nonce } => Response::Attestation {
                        document: nonce.unwrap_or_default(),
                    },
                    _ => Response::Error(WireError::new(
                        leadgate_verifier::ErrorCode::EnclaveProtocol,
                        "unexpected",
                    )),
                };
                // Answer slowly, so later requests are queued behind this one.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                write_frame(&mut s, &encode(&resp)).await.unwrap();
            }
        });
        Box::new(tokio::net::TcpStream::connect(addr).await.unwrap())
    }

    fn attest(i: u8) -> Request {
        Request::Attest {
            nonce: Some(ByteBuf::from(vec![i])),
        }
    }

    #[tokio::test]
    async fn pipelined_answers_reach_their_requests_in_order() {
        let mut conn = EnclaveConn::new(fake_enclave(3).await);
        let mut pending = Vec::new();
        for i in 0..4u8 {
            pending.push(conn.send(&attest(i)).await.unwrap());
        }
        for (i, rx) in pending.into_iter().enumerate() {
            let got = answer(rx).await;
            if i < 3 {
                assert_eq!(
                    got.unwrap(),
                    Response::Attestation {
                        document: ByteBuf::from(vec![i as u8])
                    }
                );
            } else {
                // The fake enclave closed before answering the fourth.
                assert!(matches!(got, Err(LinkError::Unavailable)), "{got:?}");
            }
        }
        assert!(!conn.is_alive());
        assert!(matches!(
            conn.send(&attest(9)).await,
            Err(LinkError::Unavailable)
        ));
    }
}
