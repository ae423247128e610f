//! Operator metrics, served at `GET /metrics` in the Prometheus text exposition format
//! (OpenMetrics 1.0, `prometheus-client`). Labels are bounded: endpoints are route templates,
//! codes are [`ErrorCode`]s or `ok`. No label carries a lead, seller or buyer.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `leadgate_http_requests_total{endpoint, method, status, code}` | counter | answered requests |
//! | `leadgate_http_request_duration_seconds{endpoint, method}` | histogram | time to answer |
//! | `leadgate_submit_batch_leads` | histogram | leads per enclave `Submit` |
//! | `leadgate_bid_batch_bids` | histogram | bids per enclave `Bid` |
//! | `leadgate_submit_queue_depth`, `leadgate_bid_queue_depth` | gauge | jobs waiting for the pipeline |
//! | `leadgate_log_size` | gauge | leaves stored |
//! | `leadgate_checkpoint_age_seconds` | gauge | since the latest stored checkpoint was signed (−1: none) |
//! | `leadgate_anchor_lag_leaves` | gauge | stored leaves past the latest anchored checkpoint (−1: anchoring off) |
//! | `leadgate_enclave_up` | gauge | 1 while the enclave link is up and booted |

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leadgate_verifier::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a request count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template, e.g. `/v1/leads/{lead_id}`.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// HTTP status, e.g. `200`.
    pub status: u16,
    /// The error code, or `ok`.
    pub code: &'static str,
}

/// Labels of a latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Route template.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
}

/// The host's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    /// Leads per enclave `Submit`.
    pub submit_batch: Histogram,
    /// Bids per enclave `Bid`.
    pub bid_batch: Histogram,
    /// Jobs waiting in the submit queue (set at scrape).
    pub submit_queue: Gauge,
    /// Bids waiting in the bid queue (set at scrape).
    pub bid_queue: Gauge,
    /// Leaves stored (set at scrape).
    pub log_size: Gauge,
    /// Seconds since the latest checkpoint, −1 without one (set at scrape).
    pub checkpoint_age: Gauge,
    /// Leaves past the latest anchored checkpoint, −1 without anchoring (set at scrape).
    pub anchor_lag: Gauge,
    /// 1 while the enclave link is up (set at scrape).
    pub enclave_up: Gauge,
    /// Stored leaves past the newest stored sealed state: what an enclave restart would replay
    /// (all of them without a sealed state) (set at scrape).
    pub restore_lag: Gauge,
    /// Log size of the newest stored sealed state, −1 without one (set at scrape).
    pub sealed_state_size: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s in doublings.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

fn batch_histogram() -> Histogram {
    // 1, 2, 4, … 256: the batch limits are 256.
    Histogram::new(exponential_buckets(1.0, 2.0, 9))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("leadgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        let m = Self {
            registry: Registry::default(),
            requests: requests.clone(),
            latency: latency.clone(),
            submit_batch: batch_histogram(),
            bid_batch: batch_histogram(),
            submit_queue: Gauge::default(),
            bid_queue: Gauge::default(),
            log_size: Gauge::default(),
            checkpoint_age: Gauge::default(),
            anchor_lag: Gauge::default(),
            enclave_up: Gauge::default(),
            restore_lag: Gauge::default(),
            sealed_state_size: Gauge::default(),
        };
        registry.register("http_requests", "HTTP requests answered", requests);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, seconds",
            latency,
        );
        registry.register(
            "submit_batch_leads",
            "Leads per enclave Submit",
            m.submit_batch.clone(),
        );
        registry.register(
            "bid_batch_bids",
            "Bids per enclave Bid",
            m.bid_batch.clone(),
        );
        registry.register(
            "submit_queue_depth",
            "Submissions waiting for the pipeline",
            m.submit_queue.clone(),
        );
        registry.register(
            "bid_queue_depth",
            "Bids waiting for the pipeline",
            m.bid_queue.clone(),
        );
        registry.register("log_size", "Leaves stored", m.log_size.clone());
        registry.register(
            "checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed (-1: none)",
            m.checkpoint_age.clone(),
        );
        registry.register(
            "anchor_lag_leaves",
            "Stored leaves past the latest anchored checkpoint (-1: anchoring off)",
            m.anchor_lag.clone(),
        );
        registry.register(
            "enclave_up",
            "1 while the enclave link is up and booted",
            m.enclave_up.clone(),
        );
        registry.register(
            "restore_lag_leaves",
            "Stored leaves an enclave restart would replay after the newest sealed state",
            m.restore_lag.clone(),
        );
        registry.register(
            "sealed_state_size",
            "Log size of the newest stored sealed enclave state (-1: none)",
            m.sealed_state_size.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one answered request.
    pub fn observe(&self, labels: RequestLabels, seconds: f64) {
        self.latency
            .get_or_create(&EndpointLabels {
                endpoint: labels.endpoint.clone(),
                method: labels.method.clone(),
            })
            .observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Middleware (a `route_layer`, so the route template is known): counts and times each
/// request under its endpoint, status and error code.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let code = resp
        .extensions()
        .get::<ErrorCode>()
        .map(|c| c.as_str())
        .unwrap_or("ok");
    metrics.observe(
        RequestLabels {
            endpoint,
            method,
            status: resp.status().as_u16(),
            code,
        },
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /metrics`'s body with its content type.
pub fn exposition(metrics: &Metrics) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_histograms_and_gauges() {
        let m = Metrics::new();
        for status in [200, 200, 409] {
            m.observe(
                RequestLabels {
                    endpoint: "/v1/leads".into(),
                    method: "POST".into(),
                    status,
                    code: if status == 200 {
                        "ok"
                    } else {
                        ErrorCode::SubmissionReplayed.as_str()
                    },
                },
                0.003,
            );
        }
        m.submit_batch.observe(3.0);
        m.log_size.set(42);
        let text = m.render();
        assert!(text.contains(
            "leadgate_http_requests_total{endpoint=\"/v1/leads\",method=\"POST\",status=\"200\",code=\"ok\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "leadgate_http_requests_total{endpoint=\"/v1/leads\",method=\"POST\",status=\"409\",code=\"submission.replayed\"} 1\n"
        ), "{text}");
        assert!(text.contains(
            "leadgate_http_request_duration_seconds_count{endpoint=\"/v1/leads\",method=\"POST\"} 3\n"
        ), "{text}");
        // 3 ms falls in the 4 ms bucket (0.0005 · 2^3) and every larger one.
        assert!(text.contains(
            "leadgate_http_request_duration_seconds_bucket{le=\"0.004\",endpoint=\"/v1/leads\",method=\"POST\"} 3\n"
        ), "{text}");
        assert!(text.contains(
            "leadgate_http_request_duration_seconds_bucket{le=\"0.002\",endpoint=\"/v1/leads\",method=\"POST\"} 0\n"
        ), "{text}");
        assert!(
            text.contains("leadgate_submit_batch_leads_count 1\n"),
            "{text}"
        );
        assert!(text.contains("leadgate_log_size 42\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
