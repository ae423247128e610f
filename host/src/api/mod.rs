//! The HTTP API (axum). Every answer body is a type of [`leadgate_verifier::api`], the
//! contract the `leadgate` CLI reads with; every error is `{"error": {"code", "message"}}`
//! (see [`crate::error`]). Each handler carries its `#[utoipa::path]` (method, path,
//! parameters, bodies), from which [`ApiDoc`] builds the OpenAPI 3.1 document served at
//! `GET /openapi.json` and committed as `docs/openapi.json`; `host/tests/openapi.rs` checks it
//! against that copy, the endpoint table of `docs/PROTOCOL.md` and the routes below. One
//! module per resource: `leads` (seller), `market` and `rules` (buyer), `log` (auditor), `tiles` (the
//! log in the C2SP tlog-tiles layout), `attest`, `operator`.

use leadgate_verifier::ErrorCode;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::gateway::{Gateway, QueuedBid, QueuedJob};
use crate::metrics::Metrics;
use crate::ratelimit::SellerLimiter;

mod attest;
mod leads;
mod log;
mod market;
mod operator;
mod rules;
mod tiles;

pub use leads::MAX_LEADS_PER_BATCH_REQUEST;
pub use market::MAX_AUCTIONS_PAGE;

/// Shared state of the API.
pub struct AppState {
    /// The gateway.
    pub gateway: Arc<Gateway>,
    /// Submission queue (bounded: a full queue answers 503).
    pub queue: mpsc::Sender<QueuedJob>,
    /// Bid queue (bounded: a full queue answers 503).
    pub bids: mpsc::Sender<QueuedBid>,
    /// Per-seller limits.
    pub limiter: SellerLimiter,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Request-body bytes buffered across all connections.
    pub body_budget: crate::http::BodyBudget,
    /// Longest wait for a request body.
    pub body_timeout: std::time::Duration,
    /// Operator metrics (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Whether checkpoints are anchored on a chain.
    pub anchoring: bool,
}

type AppResult<T> = Result<T, ApiError>;

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/attest", get(attest::attest))
        .route("/v1/leads", post(leads::post_lead))
        .route("/v1/leads/batch", post(leads::post_leads_batch))
        .route("/v1/leads/{lead_id}", get(leads::get_lead))
        .route("/v1/leads/{lead_id}/release", post(market::post_release))
        .route("/v1/auctions", get(market::list_auctions))
        .route("/v1/auctions/{id}", get(market::get_auction))
        .route("/v1/bids", post(market::post_bid))
        .route("/v1/settlements/{id}", get(market::get_settlement))
        .route("/v1/rules", post(rules::post_rules))
        .route("/v1/rules/cancel", post(rules::post_cancel))
        .route("/v1/rules/{buyer}", get(rules::get_rules))
        .route(
            "/v1/checkpoint",
            get(log::get_checkpoint).post(log::post_checkpoint),
        )
        .route("/checkpoint", get(tiles::get_checkpoint))
        .route("/tile/{level}/{*path}", get(tiles::get_tile))
        .route("/v1/anchors", get(log::get_anchors))
        .route("/v1/epochs", get(log::get_epochs))
        .route("/v1/entries/{index}", get(log::get_entry))
        .route("/v1/proof/inclusion", get(log::inclusion))
        .route("/v1/proof/consistency", get(log::consistency))
        .route("/healthz", get(operator::healthz))
        .route("/metrics", get(operator::get_metrics))
        .route("/openapi.json", get(operator::get_openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .fallback(|| async { ApiError::new(ErrorCode::RequestNotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::RequestMethodNotAllowed,
                "this endpoint does not take this method",
            )
        })
        .with_state(state)
}

/// The OpenAPI 3.1 document of this API: the paths from the handlers' `#[utoipa::path]`
/// annotations, the schemas from the contract types of [`leadgate_verifier::api`]. Served at
/// `GET /openapi.json` and committed as `docs/openapi.json` (a test keeps the two, and the
/// endpoint table of `docs/PROTOCOL.md`, in step).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "leadgate gateway",
        description = "The untrusted host's HTTP API. Formats inside the fields (signed texts, AADs, encodings): docs/PROTOCOL.md. Every error is an ErrorBody whose code fixes the status."
    ),
    paths(
        attest::attest, leads::post_lead, leads::post_leads_batch, leads::get_lead, market::post_release, market::list_auctions, market::get_auction,
        market::post_bid, market::get_settlement, rules::post_rules, rules::post_cancel, rules::get_rules, log::get_checkpoint, log::post_checkpoint, log::get_anchors, log::get_epochs, log::get_entry, log::inclusion,
        log::consistency, tiles::get_checkpoint, tiles::get_tile, operator::healthz, operator::get_metrics, operator::get_openapi
    ),
    tags(
        (name = "attestation", description = "Trusting the enclave"),
        (name = "seller", description = "Submitting leads"),
        (name = "buyer", description = "Auctions, bids, releases and settlements"),
        (name = "auditor", description = "The log, its proofs, checkpoints and anchors"),
        (name = "operator", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `GET /openapi.json` serves).
pub fn openapi_json() -> String {
    let mut json = <ApiDoc as utoipa::OpenApi>::openapi()
        .to_pretty_json()
        .unwrap_or_default();
    json.push('\n');
    json
}

fn db(e: crate::storage::StoreError) -> ApiError {
    ApiError::storage(e)
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> AppResult<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("unknown field") {
            ApiError::new(ErrorCode::RequestUnknownField, msg)
        } else {
            ApiError::new(ErrorCode::RequestMalformedJson, msg)
        }
    })
}

/// A request body read under the limits: JSON only (415 otherwise), at most `limit` bytes
/// (413), within the body timeout (408), and only while the shared budget of buffered bytes
/// has room for it (503 `server.busy`, checked before a byte is read). The permit holds the
/// body's share of the budget until the handler drops it.
async fn read_body(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> AppResult<(axum::body::Bytes, tokio::sync::OwnedSemaphorePermit)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            ErrorCode::RequestUnsupportedMediaType,
            "the body must be application/json",
        ));
    }
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("body over {limit} bytes"),
        ));
    }
    let permit = s
        .body_budget
        .reserve(announced.unwrap_or(limit))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ServerBusy,
                "too many request bodies in flight; retry",
            )
        })?;
    match tokio::time::timeout(s.body_timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::new(
            ErrorCode::RequestTimeout,
            "the body did not arrive in time",
        )),
        Ok(Err(_)) => Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("body over {limit} bytes or cut short"),
        )),
        Ok(Ok(bytes)) => Ok((bytes, permit)),
    }
}

/// A lead or auction id from a path: 32 lowercase hex digits, as the log writes ids (one
/// spelling per id, as everywhere in the protocol); anything else is `request.bad_id`.
fn parse_id(id: &str) -> AppResult<String> {
    if leadgate_verifier::bid::is_auction_id(id) {
        Ok(id.to_owned())
    } else {
        Err(ApiError::new(
            ErrorCode::RequestBadId,
            "lead and auction ids are 32 lowercase hex digits",
        ))
    }
}

async fn origin(s: &AppState) -> AppResult<String> {
    s.gateway
        .info()
        .await
        .map(|i| i.keys.origin)
        .ok_or_else(|| ApiError::new(ErrorCode::EnclaveNotReady, "enclave is starting"))
}

fn parse_u64(s: &str, what: &str) -> AppResult<u64> {
    leadgate_verifier::checkpoint::parse_decimal(s).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RequestBadNumber,
            format!("{what} must be a decimal integer"),
        )
    })
}
