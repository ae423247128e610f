//! Helpers for the host's in-process tests.
#![allow(dead_code)]

use std::time::Duration;

use leadgate_host::HostConfig;
use tokio::net::TcpListener;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 request to the host at `addr` (`host:port`), JSON content type, connection
/// closed after; returns the status and the body. Panics if no answer comes within 30 s.
pub async fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let status = std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[split..].to_vec())
}

/// `leadgate_host::run` serving on a loopback port the OS chose, in this test's runtime.
pub struct RunningHost {
    /// The HTTP address, `127.0.0.1:PORT`.
    pub addr: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningHost {
    /// Starts the host with `config`; returns once its HTTP listener is bound.
    pub async fn start(config: HostConfig) -> Self {
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = http.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(leadgate_host::run(config, http, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop, task }
    }

    /// Resolves the host's shutdown future; panics unless `run` returns `Ok` within 10 s.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("run returns after shutdown")
            .unwrap()
            .unwrap();
    }
}
