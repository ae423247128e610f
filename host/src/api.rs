//! The HTTP API (axum). Every answer body is a type of [`leadgate_verifier::api`], the
//! contract the `leadgate` CLI reads with; every error is `{"error": {"code", "message"}}`
//! (see [`crate::error`]). Each handler carries its `#[utoipa::path]` (method, path,
//! parameters, bodies), from which [`ApiDoc`] builds the OpenAPI 3.1 document served at
//! `GET /openapi.json` and committed as `docs/openapi.json`; `host/tests/openapi.rs` checks it
//! against that copy, the README's endpoint table and the routes below.

use leadgate_verifier::ErrorCode;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use leadgate_protocol::{BidOutcome, SubmitOutcome};
use leadgate_verifier::api::{
    AnchorList, AttestAnswer, AuctionDetail, AuctionList, BatchAnswer, BatchRequest, BatchResult,
    BidAnswer, BidEntry, ConsistencyProof, EpochList, ErrorBody, Health, HealthStatus,
    InclusionProof, LeadRecord, ReleaseAnswer, SubmitAnswer, Verdict,
};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::merkle;
use leadgate_verifier::release::ReleaseRequest;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::gateway::{Gateway, Job, QueuedBid, QueuedJob};
use crate::metrics::Metrics;
use crate::ratelimit::SellerLimiter;
use crate::storage::AuctionFilter;

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
        .route("/attest", get(attest))
        .route("/v1/leads", post(post_lead))
        .route("/v1/leads/batch", post(post_leads_batch))
        .route("/v1/leads/{lead_id}", get(get_lead))
        .route("/v1/leads/{lead_id}/release", post(post_release))
        .route("/v1/auctions", get(list_auctions))
        .route("/v1/auctions/{id}", get(get_auction))
        .route("/v1/bids", post(post_bid))
        .route("/v1/checkpoint", get(get_checkpoint).post(post_checkpoint))
        .route("/v1/anchors", get(get_anchors))
        .route("/v1/epochs", get(get_epochs))
        .route("/v1/entries/{index}", get(get_entry))
        .route("/v1/proof/inclusion", get(inclusion))
        .route("/v1/proof/consistency", get(consistency))
        .route("/healthz", get(healthz))
        .route("/metrics", get(get_metrics))
        .route("/openapi.json", get(get_openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .fallback(|| async { ApiError::new(ErrorCode::RequestNotFound, "no such endpoint") })
        .with_state(state)
}

/// The OpenAPI 3.1 document of this API: the paths from the handlers' `#[utoipa::path]`
/// annotations, the schemas from the contract types of [`leadgate_verifier::api`]. Served at
/// `GET /openapi.json` and committed as `docs/openapi.json` (a test keeps the two, and the
/// README's endpoint table, in step).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "leadgate gateway",
        description = "The untrusted host's HTTP API. Formats inside the fields (signed texts, AADs, encodings): docs/PROTOCOL.md. Every error is an ErrorBody whose code fixes the status."
    ),
    paths(
        attest, post_lead, post_leads_batch, get_lead, post_release, list_auctions, get_auction,
        post_bid, get_checkpoint, post_checkpoint, get_anchors, get_epochs, get_entry, inclusion,
        consistency, healthz, get_metrics, get_openapi
    ),
    tags(
        (name = "attestation", description = "Trusting the enclave"),
        (name = "seller", description = "Submitting leads"),
        (name = "buyer", description = "Auctions, bids and releases"),
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

#[utoipa::path(get, path = "/openapi.json", tag = "operator",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)))]
async fn get_openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(openapi_json).clone();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// `GET /metrics`: the gauges are read now (queue depths, log size, link state, checkpoint
/// age, anchor lag, the newest sealed state and the restore lag), the counters and histograms kept as requests pass.
#[utoipa::path(get, path = "/metrics", tag = "operator",
    responses((status = 200, description = "Prometheus / OpenMetrics text exposition", content_type = "application/openmetrics-text", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_metrics(State(s): State<Arc<AppState>>) -> AppResult<Response> {
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

fn db(e: crate::storage::StoreError) -> ApiError {
    ApiError::storage(e)
}

#[derive(Deserialize)]
struct AttestQuery {
    nonce: Option<String>,
}

#[utoipa::path(get, path = "/attest", tag = "attestation",
    params(("nonce" = Option<String>, Query, description = "1 to 512 bytes, hex: echoed in the document")),
    responses((status = 200, description = "An attestation document binding the enclave's keys", body = AttestAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn attest(
    State(s): State<Arc<AppState>>,
    q: Result<Query<AttestQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<AttestAnswer>> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let nonce = match q.nonce {
        Some(h) => {
            let n = hex::decode(&h)
                .map_err(|_| ApiError::new(ErrorCode::AttestationBadNonce, "nonce must be hex"))?;
            if n.is_empty() || n.len() > 512 {
                return Err(ApiError::new(
                    ErrorCode::AttestationBadNonce,
                    "nonce must be 1 to 512 bytes",
                ));
            }
            Some(n)
        }
        None => None,
    };
    let doc = s.gateway.attest(nonce).await?;
    let origin = s
        .gateway
        .info()
        .await
        .map(|i| i.keys.origin)
        .unwrap_or_default();
    Ok(Json(AttestAnswer {
        document: base64::engine::general_purpose::STANDARD.encode(doc),
        origin,
    }))
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

/// A lead or auction id from a path: 32 hex digits, either case, answered the same way
/// (returned lowercase, as the log writes ids).
fn parse_id(id: &str) -> AppResult<String> {
    let lower = id.to_ascii_lowercase();
    if leadgate_verifier::bid::is_auction_id(&lower) {
        Ok(lower)
    } else {
        Err(ApiError::new(
            ErrorCode::RequestBadId,
            "lead and auction ids are 32 hex digits",
        ))
    }
}

/// Checks a sealed lead's encoding, reserves one of the seller's daily submissions and queues
/// it. Garbage costs no enclave work. The host does not verify the seller's signature: the
/// enclave must (the host is not trusted to), and checking twice would double the largest cost
/// of a submission. So a reservation is only kept for a submission the enclave logged; any
/// refusal (a forged signature among them) gives it back, and nobody can spend another
/// seller's budget. Replays of stored submissions are refused in the pipeline, one query per
/// batch.
fn admit(s: &AppState, lead: SealedLead, sealed_json: String) -> AppResult<Pending> {
    let sub = lead
        .decode()
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let now = crate::clock::now_ms();
    if !s.limiter.reserve(&lead.seller, now) {
        return Err(ApiError::new(
            ErrorCode::RateLimited,
            "seller is over its daily submission limit",
        ));
    }
    let seller = lead.seller.clone();
    let (tx, rx) = oneshot::channel();
    let job = Job {
        lead,
        sealed_json,
        ciphertext_sha256: hex::encode(sub.ciphertext_sha256),
    };
    if s.queue.try_send((job, tx)).is_err() {
        s.limiter.release(&seller, now);
        return Err(ApiError::new(
            ErrorCode::ServerOverloaded,
            "submission queue is full; retry",
        ));
    }
    Ok(Pending {
        rx,
        seller,
        reserved_ms: now,
    })
}

/// A queued lead: the reply channel and the seller reservation to give back on refusal.
struct Pending {
    rx: oneshot::Receiver<Result<SubmitOutcome, ApiError>>,
    seller: String,
    reserved_ms: u64,
}

/// Waits for a queued lead's outcome: the JSON answer for one lead. Releases the seller's
/// reservation unless the enclave logged the lead.
async fn settle(s: &AppState, pending: Pending) -> AppResult<SubmitAnswer> {
    let outcome = match pending.rx.await {
        Ok(Ok(SubmitOutcome::Logged {
            lead_id,
            accepted,
            reason,
            score,
            appended,
            ..
        })) => {
            return Ok(SubmitAnswer {
                verdict: if accepted {
                    Verdict::Accepted
                } else {
                    Verdict::Rejected
                },
                reason,
                score,
                lead_id,
                index: appended.index,
                receipt: appended.receipt,
            })
        }
        Ok(Ok(SubmitOutcome::Refused(e))) => ApiError::from(e),
        Ok(Err(e)) => e,
        Err(_) => ApiError::new(
            ErrorCode::EnclaveUnavailable,
            "submission was dropped; retry",
        ),
    };
    s.limiter.release(&pending.seller, pending.reserved_ms);
    Err(outcome)
}

async fn origin(s: &AppState) -> AppResult<String> {
    s.gateway
        .info()
        .await
        .map(|i| i.keys.origin)
        .ok_or_else(|| ApiError::new(ErrorCode::EnclaveNotReady, "enclave is starting"))
}

#[utoipa::path(post, path = "/v1/leads", tag = "seller", request_body = SealedLead,
    responses((status = 200, description = "The verdict and its receipt (the same request again: the same answer)", body = SubmitAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn post_lead(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<SubmitAnswer>> {
    let (bytes, _budget) = read_body(&s, &headers, body, s.max_body_bytes).await?;
    let lead: SealedLead = parse_json(&bytes)?;
    origin(&s).await?;
    let pending = admit(&s, lead, String::from_utf8_lossy(&bytes).into_owned())?;
    Ok(Json(settle(&s, pending).await?))
}

/// Most leads in one `POST /v1/leads/batch`.
pub const MAX_LEADS_PER_BATCH_REQUEST: usize = 256;

/// `POST /v1/leads/batch`: `{"leads": [sealed lead, …]}` (at most 256). Answers
/// `{"results": [...]}` in request order, each the single-lead answer or `{"error": …}`.
/// Leads are queued in order, so a later lead never overtakes an earlier one.
#[utoipa::path(post, path = "/v1/leads/batch", tag = "seller", request_body = BatchRequest,
    responses((status = 200, description = "One result per lead, in request order", body = BatchAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn post_leads_batch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<BatchAnswer>> {
    let limit = s.max_body_bytes.saturating_mul(MAX_LEADS_PER_BATCH_REQUEST);
    let (bytes, _budget) = read_body(&s, &headers, body, limit).await?;
    let batch: BatchRequest = parse_json(&bytes)?;
    if batch.leads.is_empty() || batch.leads.len() > MAX_LEADS_PER_BATCH_REQUEST {
        return Err(ApiError::new(
            ErrorCode::RequestBatchSize,
            format!("a batch holds 1 to {MAX_LEADS_PER_BATCH_REQUEST} leads"),
        ));
    }
    origin(&s).await?;
    let mut pending = Vec::with_capacity(batch.leads.len());
    for lead in batch.leads {
        let json = serde_json::to_string(&lead).map_err(|e| ApiError::internal("encode", e))?;
        pending.push(admit(&s, lead, json));
    }
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        let r = match p {
            Ok(p) => settle(&s, p).await,
            Err(e) => Err(e),
        };
        results.push(match r {
            Ok(answer) => BatchResult::Logged(answer),
            Err(e) => BatchResult::Error(e.into()),
        });
    }
    Ok(Json(BatchAnswer { results }))
}

#[utoipa::path(get, path = "/v1/leads/{lead_id}", tag = "seller",
    params(("lead_id" = String, Path, description = "32 hex digits, either case")),
    responses((status = 200, description = "The stored verdict and receipt", body = LeadRecord), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_lead(
    State(s): State<Arc<AppState>>,
    Path(lead_id): Path<String>,
) -> AppResult<Json<LeadRecord>> {
    let lead_id = parse_id(&lead_id)?;
    let rec = s
        .gateway
        .store
        .lead(&lead_id)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::new(ErrorCode::LeadUnknown, "no such lead"))?;
    Ok(Json(rec))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuctionQuery {
    status: Option<String>,
    industry: Option<String>,
    region: Option<String>,
    min_score: Option<u8>,
    winner: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

/// Most auctions in one page.
pub const MAX_AUCTIONS_PAGE: u32 = 1_000;

#[utoipa::path(get, path = "/v1/auctions", tag = "buyer",
    params(
        ("status" = Option<String>, Query, description = "open (default), sold, unsold or all"),
        ("industry" = Option<String>, Query, description = "Exact listing industry"),
        ("region" = Option<String>, Query, description = "Exact listing region"),
        ("min_score" = Option<u8>, Query, description = "Lowest score, 0 to 100"),
        ("winner" = Option<String>, Query, description = "Winning buyer id, 64 hex digits"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1,000 (default 100)"),
        ("offset" = Option<u32>, Query, description = "Auctions to skip"),
    ),
    responses((status = 200, description = "A page of auctions, soonest close first", body = AuctionList), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn list_auctions(
    State(s): State<Arc<AppState>>,
    q: Result<Query<AuctionQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<AuctionList>> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let status = match q.status.as_deref() {
        None | Some("open") => Some("open".to_owned()),
        Some("all") => None,
        Some(st @ ("sold" | "unsold")) => Some(st.to_owned()),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::RequestBadQuery,
                "status is open, sold, unsold or all",
            ))
        }
    };
    let filter = AuctionFilter {
        status,
        industry: q.industry,
        region: q.region,
        min_score: q.min_score,
        winner: q.winner,
        limit: q.limit.unwrap_or(100).clamp(1, MAX_AUCTIONS_PAGE),
        offset: q.offset.unwrap_or(0),
    };
    let auctions = s.gateway.store.auctions(&filter).await.map_err(db)?;
    Ok(Json(AuctionList { auctions }))
}

#[utoipa::path(get, path = "/v1/auctions/{id}", tag = "buyer",
    params(("id" = String, Path, description = "Auction (lead) id, 32 hex digits")),
    responses((status = 200, description = "The auction and its bid entries (never amounts)", body = AuctionDetail), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_auction(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> AppResult<Json<AuctionDetail>> {
    let id = parse_id(&id)?;
    let (rec, bids) = s
        .gateway
        .store
        .auction(&id)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::new(ErrorCode::AuctionUnknown, "no such auction"))?;
    Ok(Json(AuctionDetail {
        auction: rec,
        bid_entries: bids
            .into_iter()
            .map(|(index, buyer, commitment)| BidEntry {
                index,
                buyer,
                commitment,
            })
            .collect(),
    }))
}

/// `POST /v1/bids`: a sealed bid. The host checks only its encoding; the enclave checks the
/// signature, opens it, and decides.
#[utoipa::path(post, path = "/v1/bids", tag = "buyer", request_body = SealedBid,
    responses((status = 200, description = "The bid's commitment and receipt (the same bid again: the same answer)", body = BidAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn post_bid(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<BidAnswer>> {
    let (bytes, _budget) = read_body(&s, &headers, body, s.max_body_bytes).await?;
    let bid: SealedBid = parse_json(&bytes)?;
    bid.decode()
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    origin(&s).await?;
    let json = serde_json::to_string(&bid).map_err(|e| ApiError::internal("encode", e))?;
    let (tx, rx) = oneshot::channel();
    s.bids
        .try_send((bid, json, tx))
        .map_err(|_| ApiError::new(ErrorCode::ServerOverloaded, "bid queue is full; retry"))?;
    match rx.await {
        Ok(Ok(BidOutcome::Logged {
            auction_id,
            commitment,
            appended,
        })) => Ok(Json(BidAnswer {
            auction_id,
            commitment: hex::encode(commitment),
            index: appended.index,
            receipt: appended.receipt,
        })),
        Ok(Ok(BidOutcome::Refused(e))) => Err(ApiError::from(e)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::new(
            ErrorCode::EnclaveUnavailable,
            "bid was dropped; retry",
        )),
    }
}

/// `POST /v1/leads/{lead_id}/release`: a buyer's signed request; only the winner gets the lead
/// (sealed to its HPKE key).
#[utoipa::path(post, path = "/v1/leads/{lead_id}/release", tag = "buyer", request_body = ReleaseRequest,
    params(("lead_id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "The lead sealed to the winner, and the receipt of its lead.released", body = ReleaseAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn post_release(
    State(s): State<Arc<AppState>>,
    Path(lead_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<ReleaseAnswer>> {
    let lead_id = parse_id(&lead_id)?;
    let (bytes, _budget) = read_body(&s, &headers, body, s.max_body_bytes).await?;
    let req: ReleaseRequest = parse_json(&bytes)?;
    if req.lead_id != lead_id {
        return Err(ApiError::new(
            ErrorCode::RequestBadId,
            "the request is for another lead",
        ));
    }
    origin(&s).await?;
    let (released, appended) = s.gateway.release(req).await?;
    Ok(Json(ReleaseAnswer {
        lead_id,
        index: appended.index,
        receipt: appended.receipt,
        released,
    }))
}

fn note_response(note: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// The host's anchoring record (what it sent, what is mined); auditors check the chain itself
/// with `leadgate verify anchor`.
#[utoipa::path(get, path = "/v1/anchors", tag = "auditor",
    responses((status = 200, description = "Every anchor the host has recorded", body = AnchorList), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_anchors(State(s): State<Arc<AppState>>) -> AppResult<Json<AnchorList>> {
    let anchors = s.gateway.store.anchors().await.map_err(db)?;
    Ok(Json(AnchorList { anchors }))
}

/// `GET /v1/epochs`: `{"epochs": [index, …]}`, the leaf index of every `log.epoch` entry in
/// ascending order. An index only: auditors fetch each entry with its inclusion proof
/// (`/v1/entries/{index}`, `/v1/proof/inclusion`) and check the epochs are numbered 1, 2, …
/// with none missing, so an omitted epoch shows.
#[utoipa::path(get, path = "/v1/epochs", tag = "auditor",
    responses((status = 200, description = "The leaf index of every log.epoch, ascending", body = EpochList), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_epochs(State(s): State<Arc<AppState>>) -> AppResult<Json<EpochList>> {
    let epochs = s.gateway.store.epoch_indexes().await.map_err(db)?;
    Ok(Json(EpochList { epochs }))
}

#[utoipa::path(get, path = "/v1/checkpoint", tag = "auditor",
    responses((status = 200, description = "The latest checkpoint, a C2SP signed note", content_type = "text/plain", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_checkpoint(State(s): State<Arc<AppState>>) -> AppResult<Response> {
    let note = s
        .gateway
        .store
        .latest_checkpoint()
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::new(ErrorCode::CheckpointNone, "no checkpoint yet"))?;
    Ok(note_response(note))
}

#[utoipa::path(post, path = "/v1/checkpoint", tag = "auditor",
    responses((status = 200, description = "A checkpoint signed now, a C2SP signed note", content_type = "text/plain", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn post_checkpoint(State(s): State<Arc<AppState>>) -> AppResult<Response> {
    let note = s
        .gateway
        .checkpoint(true)
        .await?
        .ok_or_else(|| ApiError::internal("checkpoint", "enclave signed nothing"))?;
    Ok(note_response(note))
}

fn parse_u64(s: &str, what: &str) -> AppResult<u64> {
    leadgate_verifier::checkpoint::parse_decimal(s).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RequestBadNumber,
            format!("{what} must be a decimal integer"),
        )
    })
}

#[utoipa::path(get, path = "/v1/entries/{index}", tag = "auditor",
    params(("index" = u64, Path, description = "Leaf index, decimal")),
    responses((status = 200, description = "The leaf: one event in RFC 8785 canonical JSON", content_type = "application/json", body = Object), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn get_entry(
    State(s): State<Arc<AppState>>,
    Path(index): Path<String>,
) -> AppResult<Response> {
    let index = parse_u64(&index, "index")?;
    let leaf = s
        .gateway
        .store
        .leaf(index)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::new(ErrorCode::EntryUnknown, "no such entry"))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], leaf).into_response())
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: String,
    size: String,
}

/// Generates a proof over stored nodes for a tree of `size` leaves (at most the stored size);
/// returns the hashes as hex.
async fn proof_hex(
    s: &AppState,
    size: u64,
    generate: impl Fn(&dyn merkle::NodeStore) -> Result<Vec<merkle::Hash>, merkle::ProofError>,
) -> AppResult<Vec<String>> {
    let stored = s.gateway.store.size().await.map_err(db)?;
    if size > stored {
        return Err(ApiError::new(
            ErrorCode::ProofSizeBeyondLog,
            format!("log has {stored} entries"),
        ));
    }
    let proof = s.gateway.store.with_nodes(generate).await.map_err(db)?;
    let proof = proof.map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    Ok(proof.iter().map(hex::encode).collect())
}

#[utoipa::path(get, path = "/v1/proof/inclusion", tag = "auditor",
    params(("index" = u64, Query, description = "Leaf index"), ("size" = u64, Query, description = "Tree size, at most the stored size")),
    responses((status = 200, description = "RFC 9162 inclusion proof", body = InclusionProof), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn inclusion(
    State(s): State<Arc<AppState>>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<InclusionProof>> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let (index, size) = (parse_u64(&q.index, "index")?, parse_u64(&q.size, "size")?);
    let proof = proof_hex(&s, size, |st| merkle::inclusion_proof(st, index, size)).await?;
    Ok(Json(InclusionProof { index, size, proof }))
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: String,
    to: String,
}

#[utoipa::path(get, path = "/v1/proof/consistency", tag = "auditor",
    params(("from" = u64, Query, description = "Older tree size"), ("to" = u64, Query, description = "Newer tree size, at most the stored size")),
    responses((status = 200, description = "RFC 9162 consistency proof", body = ConsistencyProof), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
async fn consistency(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<ConsistencyProof>> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let (from, to) = (parse_u64(&q.from, "from")?, parse_u64(&q.to, "to")?);
    let proof = proof_hex(&s, to, |st| merkle::consistency_proof(st, from, to)).await?;
    Ok(Json(ConsistencyProof { from, to, proof }))
}

/// `{status: "ok" | "degraded", size, enclave, reason}`: `size` is the stored log size as of
/// the last commit, `reason` says why when degraded. Takes no lock and reads no database, so
/// it answers while the gateway is busy or its storage is failing.
#[utoipa::path(get, path = "/healthz", tag = "operator",
    responses((status = 200, description = "Whether the gateway serves; answers without locks or database reads", body = Health)))]
async fn healthz(State(s): State<Arc<AppState>>) -> Json<Health> {
    let (up, reason) = s.gateway.health();
    Json(Health {
        status: if up {
            HealthStatus::Ok
        } else {
            HealthStatus::Degraded
        },
        size: s.gateway.stored_size(),
        enclave: up,
        reason,
    })
}
