//! The enclave's listener: length-prefixed CBOR frames over TCP (dev). One host connection
//! at a time is served; requests are handled in order. A malformed frame gets an error frame
//! and the connection stays usable; an oversized length prefix closes the connection (the
//! stream can no longer be framed).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::core::Enclave;
use crate::protocol::{decode, encode, read_frame, write_frame, Request, Response, WireError};

/// The enclave's clock, Unix ms. The enclave never takes time from the host.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Serves connections on `listener` until the task is dropped.
///
/// # Errors
/// Only if accepting fails fatally.
pub async fn serve(listener: TcpListener, enclave: Arc<Mutex<Enclave>>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        tracing::info!(%peer, "host connected");
        let enclave = enclave.clone();
        // One connection at a time: the lock is held per request, so a second connection would
        // interleave but never corrupt state.
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let (mut rd, mut wr) = stream.into_split();
            loop {
                let body = match read_frame(&mut rd).await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(code = e.code(), "closing host connection");
                        let resp = Response::Error(WireError::new(e.code(), e.to_string()));
                        let _ = write_frame(&mut wr, &encode(&resp)).await;
                        break;
                    }
                };
                let resp = match decode::<Request>(&body) {
                    Ok(req) => {
                        let mut e = enclave.lock().await;
                        tokio::task::block_in_place(|| e.handle(req, now_ms()))
                    }
                    Err(e) => Response::Error(WireError::new(e.code(), e.to_string())),
                };
                if write_frame(&mut wr, &encode(&resp)).await.is_err() {
                    break;
                }
            }
            tracing::info!(%peer, "host disconnected");
        });
    }
}
