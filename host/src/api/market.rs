//! The buyer's endpoints: `GET /v1/auctions`, `GET /v1/auctions/{id}`, `POST /v1/bids`,
//! `POST /v1/leads/{lead_id}/release`.

use super::{db, origin, parse_id, parse_json, read_body, AppResult, AppState};
use crate::error::ApiError;
use crate::storage::AuctionFilter;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use leadgate_protocol::BidOutcome;
use leadgate_verifier::api::{
    AuctionDetail, AuctionList, BidAnswer, BidEntry, ErrorBody, ReleaseAnswer, SettlementStatus,
};
use leadgate_verifier::bid::SealedBid;
use leadgate_verifier::release::ReleaseRequest;
use leadgate_verifier::ErrorCode;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::oneshot;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuctionQuery {
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

/// Auctions in a page when `limit` is not given.
pub const DEFAULT_AUCTIONS_PAGE: u32 = 100;

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
pub(super) async fn list_auctions(
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
        limit: match q.limit {
            None => DEFAULT_AUCTIONS_PAGE,
            Some(n @ 1..=MAX_AUCTIONS_PAGE) => n,
            Some(_) => {
                return Err(ApiError::new(
                    ErrorCode::RequestBadQuery,
                    format!("limit is 1 to {MAX_AUCTIONS_PAGE}"),
                ))
            }
        },
        offset: q.offset.unwrap_or(0),
    };
    let auctions = s.gateway.store.auctions(&filter).await.map_err(db)?;
    Ok(Json(AuctionList { auctions }))
}

#[utoipa::path(get, path = "/v1/auctions/{id}", tag = "buyer",
    params(("id" = String, Path, description = "Auction (lead) id, 32 hex digits")),
    responses((status = 200, description = "The auction and its bid entries (never amounts)", body = AuctionDetail), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_auction(
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

/// `GET /v1/settlements/{id}`: the settlement logged at auction `id`'s close and where its
/// payment stands (`docs/settlement.md`).
#[utoipa::path(get, path = "/v1/settlements/{id}", tag = "buyer",
    params(("id" = String, Path, description = "Auction (lead) id, 32 hex digits")),
    responses((status = 200, description = "The logged settlement and the host's record of its payment", body = SettlementStatus), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_settlement(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> AppResult<Json<SettlementStatus>> {
    let id = parse_id(&id)?;
    let settlement = s.gateway.store.settlement(&id).await.map_err(db)?;
    settlement.map(Json).ok_or_else(|| {
        ApiError::new(
            ErrorCode::SettlementUnknown,
            "no settlement is logged for this auction",
        )
    })
}

/// `POST /v1/bids`: a sealed bid. The host checks only its encoding; the enclave checks the
/// signature, opens it, and decides.
#[utoipa::path(post, path = "/v1/bids", tag = "buyer", request_body = SealedBid,
    responses((status = 200, description = "The bid's commitment and receipt (the same bid again: the same answer)", body = BidAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn post_bid(
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
pub(super) async fn post_release(
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
