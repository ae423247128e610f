//! Operator endpoints: `GET /healthz`, `GET /metrics`, `GET /openapi.json`.

use super::{db, openapi_json, AppResult, AppState};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadgate_verifier::api::{ErrorBody, Health, HealthStatus};
use std::sync::Arc;

#[utoipa::path(get, path = "/openapi.json", tag = "operator",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)))]
pub(super) async fn get_openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(openapi_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// `GET /metrics`: the gauges are read now (queue depths, log size, link state, checkpoint
/// age, anchor lag, the newest sealed state and the restore lag), the counters and histograms kept as requests pass.
#[utoipa::path(get, path = "/metrics", tag = "operator",
    responses((status = 200, description = "Prometheus / OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_metrics(State(s): State<Arc<AppState>>) -> AppResult<Response> {
    let m = &s.metrics;
    let depth = |max: usize, free: usize| max.saturating_sub(free) as i64;
    m.submit_queue
        .set(depth(s.queue.max_capacity(), s.queue.capacity()));
    m.bid_queue
        .set(depth(s.bids.max_capacity(), s.bids.capacity()));
    let size = s.gateway.stored_size();
    m.log_size.set(size as i64);
    m.enclave_up.set(i64::from(s.gateway.health().0));
    let state = s.gateway.store.latest_state_size(size).await.map_err(db)?;
    m.sealed_state_size.set(state.map_or(-1, |v| v as i64));
    m.restore_lag
        .set(size.saturating_sub(state.unwrap_or(0)) as i64);
    let (checkpoint_ms, anchored) = s
        .gateway
        .store
        .checkpoint_and_anchor_marks()
        .await
        .map_err(db)?;
    let now = crate::clock::now_ms();
    m.checkpoint_age
        .set(checkpoint_ms.map_or(-1, |t| (now.saturating_sub(t) / 1000) as i64));
    m.anchor_lag.set(if s.anchoring {
        size.saturating_sub(anchored.unwrap_or(0)) as i64
    } else {
        -1
    });
    Ok(crate::metrics::exposition(m))
}

/// `{status: "ok" | "degraded", size, enclave, reason}`: `size` is the stored log size as of
/// the last commit, `enclave` whether the enclave link is up, `reason` says why when degraded
/// (the link, storage, or publishing to the bucket). Takes no lock and reads no database, so
/// it answers while the gateway is busy or its storage is failing.
#[utoipa::path(get, path = "/healthz", tag = "operator",
    responses((status = 200, description = "Whether the gateway serves; answers without locks or database reads", body = Health)))]
pub(super) async fn healthz(State(s): State<Arc<AppState>>) -> Json<Health> {
    let (up, reason) = s.gateway.health();
    let publish = s
        .gateway
        .damage()
        .map(|d| d.1)
        .or_else(|| s.gateway.publish_error());
    Json(Health {
        status: if up && publish.is_none() {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        size: s.gateway.stored_size(),
        enclave: up,
        reason: reason.or(publish),
    })
}
