//! The HTTP/1.1 server loop (hyper), under limits no client can outgrow:
//!
//! * **connections**: at most [`HttpLimits::max_connections`]. At the cap, a new connection
//!   evicts the oldest connection that has no request in progress (a slow or idle peer); if
//!   every connection is busy, the new one is closed. So slow-header floods cannot starve
//!   `/healthz` or real clients, and the process stays under its file limit.
//! * **headers**: a request's head must arrive within [`HttpLimits::header_timeout`]; hyper
//!   applies the same timer to an idle keep-alive connection waiting for its next request.
//! * **bodies**: read within a deadline and against a budget of buffered bytes shared by all
//!   connections (see [`BodyBudget`], used by `crate::api`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Limits of the HTTP server; every one is configurable (`leadgate-host --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most open connections (default 512; keep it under the process's open-file limit).
    pub max_connections: usize,
    /// Longest wait for a request head, and for the next request on an idle keep-alive
    /// connection (default 10 s).
    pub header_timeout: Duration,
    /// Longest wait for a request body once its head is in (default 30 s): 408.
    pub body_timeout: Duration,
    /// Most request-body bytes buffered across all connections at once (default 64 MiB):
    /// a body that would go over it is refused with 503 `server.busy` before it is read.
    pub max_buffered_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The budget of buffered request-body bytes, in KiB permits.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    kib: Arc<Semaphore>,
    total_kib: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (rounded up to KiB).
    pub fn new(bytes: usize) -> Self {
        let total_kib = bytes.div_ceil(1024).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            kib: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Reserves `bytes` until the permit drops; `None` if the budget has not that much free.
    pub fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024).clamp(1, self.total_kib)).ok()?;
        self.kib.clone().try_acquire_many_owned(kib).ok()
    }
}

/// One open connection, as the eviction rule sees it.
struct Conn {
    id: u64,
    /// Requests in progress (a head was read and the answer is not yet produced).
    busy: AtomicUsize,
    close: Notify,
}

/// Open connections, oldest first.
#[derive(Default)]
struct Registry(Mutex<VecDeque<Arc<Conn>>>);

impl Registry {
    /// Admits a new connection, evicting the oldest idle one at the cap; `None` if every
    /// connection is busy.
    fn admit(&self, id: u64, max: usize) -> Option<Arc<Conn>> {
        let mut conns = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= max.max(1) {
            let idle = conns
                .iter()
                .position(|c| c.busy.load(Ordering::Acquire) == 0)?;
            if let Some(old) = conns.remove(idle) {
                old.close.notify_one();
            }
        }
        let conn = Arc::new(Conn {
            id,
            busy: AtomicUsize::new(0),
            close: Notify::new(),
        });
        conns.push_back(conn.clone());
        Some(conn)
    }

    fn remove(&self, id: u64) {
        let mut conns = self.0.lock().unwrap_or_else(|p| p.into_inner());
        conns.retain(|c| c.id != id);
    }
}

/// Counts a request in progress on its connection while alive.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Self(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves (then stops accepting;
/// open connections end with the runtime).
///
/// # Errors
/// None in practice: accept failures (out of file descriptors, a peer gone before accept) are
/// logged and retried after a short pause.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        next_id += 1;
        let Some(conn) = registry.admit(next_id, limits.max_connections) else {
            tracing::warn!(%peer, "connection refused: every connection is busy");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, registry) = (app.clone(), registry.clone());
        tokio::spawn(async move {
            let svc_conn = conn.clone();
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let busy = Busy::new(&svc_conn);
                let mut app = app.clone();
                async move {
                    let resp = tower_service::Service::call(&mut app, req).await;
                    drop(busy);
                    resp
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let served = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                r = served => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended");
                    }
                }
                () = conn.close.notified() => {
                    tracing::debug!(%peer, "idle connection evicted at the connection cap");
                }
            }
            registry.remove(conn.id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_idle_connection_is_evicted() {
        let r = Registry::default();
        let a = r.admit(1, 2).unwrap();
        let b = r.admit(2, 2).unwrap();
        let _busy = Busy::new(&a);
        // a is busy, so b (the oldest idle) goes.
        let c = r.admit(3, 2).unwrap();
        let ids: Vec<u64> = r.0.lock().unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![1, 3]);
        drop(b);
        // Every connection busy: refused.
        let _busy_c = Busy::new(&c);
        assert!(r.admit(4, 2).is_none());
        drop(_busy);
        assert!(r.admit(5, 2).is_some());
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(10 * 1024);
        let a = budget.reserve(6 * 1024).unwrap();
        assert!(budget.reserve(6 * 1024).is_none());
        let b = budget.reserve(4 * 1024).unwrap();
        drop(a);
        assert!(budget.reserve(6 * 1024).is_some());
        drop(b);
        // A body larger than the whole budget takes all of it, never more.
        assert!(budget.reserve(1 << 30).is_some());
    }
}
