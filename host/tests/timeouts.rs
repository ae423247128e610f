//! The HTTP server's time limits (`leadgate_host::http::serve` with the real router), on
//! tokio's paused clock: time moves only when every task waits, straight to the next timer,
//! so the tests assert to the millisecond when a limit fires, at the default limits (10 s for
//! headers, 30 s for a body), without waiting for them.

use std::sync::Arc;
use std::time::Duration;

use leadgate_host::api::{router, AppState};
use leadgate_host::gateway::Gateway;
use leadgate_host::http::{BodyBudget, HttpLimits};
use leadgate_host::storage::Store;
use leadgate_verifier::api::ErrorBody;
use leadgate_verifier::ErrorCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Serves the real router with the default limits on a loopback port; the gateway has no
/// enclave link (none of these requests gets that far). The store is opened before the clock
/// is paused: its migrations run on SQLite's own thread, which the paused clock cannot see.
async fn serve(dir: &std::path::Path) -> (String, HttpLimits) {
    let store = Store::open(&dir.join("host.db")).await.unwrap();
    tokio::time::pause();
    let gateway = Arc::new(Gateway::new(store, "127.0.0.1:9".parse().unwrap()));
    let limits = HttpLimits::default();
    let state = Arc::new(AppState {
        gateway,
        queue: tokio::sync::mpsc::channel(1).0,
        bids: tokio::sync::mpsc::channel(1).0,
        limiter: leadgate_host::ratelimit::SellerLimiter::new(100),
        max_body_bytes: 64 * 1024,
        body_budget: BodyBudget::new(limits.max_buffered_bytes),
        body_timeout: limits.body_timeout,
        metrics: Arc::new(leadgate_host::metrics::Metrics::new()),
        anchoring: false,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(leadgate_host::http::serve(
        listener,
        router(state),
        limits,
        std::future::pending(),
    ));
    (addr, limits)
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_until_closed(s: &mut TcpStream) -> (String, Instant) {
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    (String::from_utf8_lossy(&out).into_owned(), Instant::now())
}

/// `at` is `limit` after `start`, to the millisecond (tokio's timer wheel has a resolution of
/// 1 ms and rounds a deadline up to it).
fn fired_at(start: Instant, at: Instant, limit: Duration) {
    let waited = at - start;
    assert!(
        waited >= limit && waited <= limit + Duration::from_millis(1),
        "fired after {waited:?}, the limit is {limit:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_stalled_head_is_closed_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, limits) = serve(dir.path()).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut s).await;
    fired_at(start, closed, limits.header_timeout);
    // hyper answers a head it gave up on with 408 or not at all; never with a 200.
    assert!(!answer.contains(" 200 "), "{answer}");
}

#[tokio::test(flavor = "current_thread")]
async fn an_idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, limits) = serve(dir.path()).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /openapi.json HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    // The first answer comes at once; then the connection idles until the limit.
    let mut first = [0u8; 12];
    s.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let answered = Instant::now();
    let (_, closed) = read_until_closed(&mut s).await;
    fired_at(answered, closed, limits.header_timeout);
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_that_stops_arriving_is_answered_408_at_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, limits) = serve(dir.path()).await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /v1/leads HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
          content-length: 1000\r\n\r\n{\"seller\":",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let mut answer = Vec::new();
    // Read the head and the JSON error body (the server keeps the connection open).
    while !answer.ends_with(b"}}") {
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    fired_at(start, Instant::now(), limits.body_timeout);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body = &answer[answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let err: ErrorBody = serde_json::from_slice(body).unwrap();
    assert_eq!(err.error.code, ErrorCode::RequestTimeout);
}
