//! The seller's endpoints: `POST /v1/leads`, `POST /v1/leads/batch`, `GET /v1/leads/{lead_id}`;
//! admission (encoding, the seller's daily limit, the queue) and the wait for the stored answer.

use super::{db, origin, parse_id, parse_json, read_body, AppResult, AppState};
use crate::error::ApiError;
use crate::gateway::Job;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use leadgate_protocol::SubmitOutcome;
use leadgate_verifier::api::{
    BatchAnswer, BatchRequest, BatchResult, ErrorBody, LeadRecord, SubmitAnswer, Verdict,
};
use leadgate_verifier::intake::SealedLead;
use leadgate_verifier::ErrorCode;
use std::sync::Arc;
use tokio::sync::oneshot;

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
        return Err(ApiError::rate_limited(
            "seller is over its daily submission limit; it resets at 00:00 UTC",
            crate::ratelimit::secs_to_reset(now),
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
            sale,
            ..
        })) => {
            let sale = match sale.map(|a| instant_sale(&a).map(Box::new)).transpose() {
                Ok(sale) => sale,
                Err(e) => {
                    return Err(ApiError::new(
                        ErrorCode::EnclaveProtocol,
                        format!("an instant close: {e}"),
                    ))
                }
            };
            return Ok(SubmitAnswer {
                sale,
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
            });
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

/// The answer's view of an instant auction's close entry.
fn instant_sale(
    a: &leadgate_protocol::WireAppended,
) -> Result<leadgate_verifier::api::InstantSale, String> {
    use leadgate_verifier::api::{AuctionStatus, InstantSale};
    use leadgate_verifier::event::Event;
    let (status, winner, price, bids, settlement) =
        match Event::from_leaf(&a.leaf).map_err(|e| e.to_string())? {
            Event::AuctionClosed(c) => (
                AuctionStatus::Sold,
                Some(c.winner),
                Some(c.price),
                c.bids,
                c.settlement,
            ),
            Event::AuctionUnsold(u) => (AuctionStatus::Unsold, None, None, u.bids, None),
            other => return Err(format!("a {} is not a close", other.kind())),
        };
    Ok(InstantSale {
        status,
        index: a.index,
        receipt: a.receipt.clone(),
        winner,
        price,
        bids,
        settlement,
    })
}

#[utoipa::path(post, path = "/v1/leads", tag = "seller", request_body = SealedLead,
    responses((status = 200, description = "The verdict and its receipt (the same request again: the same answer)", body = SubmitAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn post_lead(
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
pub(super) async fn post_leads_batch(
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
pub(super) async fn get_lead(
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
