//! `leadgate_host::run` in process: when its shutdown future resolves it returns, and every
//! background task stops with it: the enclave link it holds is closed and nothing reconnects.

mod common;

use std::time::Duration;

use common::RunningHost;
use leadgate_host::HostConfig;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_server_and_every_background_task() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in enclave that accepts the link and never answers.
    let enclave = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let enclave_addr = enclave.local_addr().unwrap().to_string();
    let mut config = HostConfig::new(enclave_addr.parse().unwrap(), dir.path().join("host.db"));
    config.tick_ms = 10;
    let host = RunningHost::start(config).await;

    // The host's link task connects and sends its first request (Boot).
    let (mut link, _) = tokio::time::timeout(Duration::from_secs(10), enclave.accept())
        .await
        .expect("the host connects to the enclave")
        .unwrap();
    let mut len = [0u8; 4];
    link.read_exact(&mut len).await.unwrap();

    host.stop().await;

    // The link is closed: the rest of the frame, then end of stream.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), link.read_to_end(&mut rest))
        .await
        .expect("the link task stopped and closed its connection")
        .unwrap();
    assert_eq!(rest.len(), u32::from_be_bytes(len) as usize);
    // And nothing connects again.
    assert!(
        tokio::time::timeout(Duration::from_millis(1_500), enclave.accept())
            .await
            .is_err(),
        "a background task is still running after shutdown"
    );
}
