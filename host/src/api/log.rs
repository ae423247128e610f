//! The auditor's endpoints: checkpoints, entries, inclusion and consistency proofs, epochs and
//! the anchoring record.

use super::{db, parse_u64, AppResult, AppState};
use crate::error::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadgate_verifier::api::{AnchorList, ConsistencyProof, EpochList, ErrorBody, InclusionProof};
use leadgate_verifier::merkle;
use leadgate_verifier::ErrorCode;
use serde::Deserialize;
use std::sync::Arc;

fn note_response(note: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response()
}

/// The host's anchoring record (what it sent, what is mined); auditors check the chain itself
/// with `leadgate verify anchor`.
#[utoipa::path(get, path = "/v1/anchors", tag = "auditor",
    responses((status = 200, description = "Every anchor the host has recorded", body = AnchorList), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_anchors(State(s): State<Arc<AppState>>) -> AppResult<Json<AnchorList>> {
    let anchors = s.gateway.store.anchors().await.map_err(db)?;
    Ok(Json(AnchorList { anchors }))
}

/// `GET /v1/epochs`: `{"epochs": [index, …]}`, the leaf index of every `log.epoch` entry in
/// ascending order. An index only: auditors fetch each entry with its inclusion proof
/// (`/v1/entries/{index}`, `/v1/proof/inclusion`) and check the epochs are numbered 1, 2, …
/// with none missing, so an omitted epoch shows.
#[utoipa::path(get, path = "/v1/epochs", tag = "auditor",
    responses((status = 200, description = "The leaf index of every log.epoch, ascending", body = EpochList), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_epochs(State(s): State<Arc<AppState>>) -> AppResult<Json<EpochList>> {
    let epochs = s.gateway.store.epoch_indexes().await.map_err(db)?;
    Ok(Json(EpochList { epochs }))
}

#[utoipa::path(get, path = "/v1/checkpoint", tag = "auditor",
    responses((status = 200, description = "The latest checkpoint, a C2SP signed note", content_type = "text/plain", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_checkpoint(State(s): State<Arc<AppState>>) -> AppResult<Response> {
    Ok(note_response(latest_note(&s).await?))
}

/// The newest stored checkpoint note; 404 `checkpoint.none` before the first.
pub(super) async fn latest_note(s: &AppState) -> AppResult<Vec<u8>> {
    s.gateway
        .store
        .latest_checkpoint()
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::new(ErrorCode::CheckpointNone, "no checkpoint yet"))
}

#[utoipa::path(post, path = "/v1/checkpoint", tag = "auditor",
    responses((status = 200, description = "A checkpoint signed now, a C2SP signed note", content_type = "text/plain", body = String), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn post_checkpoint(State(s): State<Arc<AppState>>) -> AppResult<Response> {
    let note = s
        .gateway
        .checkpoint(true)
        .await?
        .ok_or_else(|| ApiError::internal("checkpoint", "enclave signed nothing"))?;
    Ok(note_response(note))
}

#[utoipa::path(get, path = "/v1/entries/{index}", tag = "auditor",
    params(("index" = u64, Path, description = "Leaf index, decimal")),
    responses((status = 200, description = "The leaf: one event in RFC 8785 canonical JSON", content_type = "application/json", body = Object), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_entry(
    State(s): State<Arc<AppState>>,
    Path(index): Path<String>,
) -> AppResult<Response> {
    s.gateway.refuse_if_damaged()?;
    let index = parse_u64(&index, "index")?;
    let leaf = s
        .gateway
        .store
        .leaf(index)
        .await
        .map_err(db)?
        .ok_or_else(|| ApiError::new(ErrorCode::EntryUnknown, "no such entry"))?;
    // The leaf must hash to its tree node: a damaged row is never served.
    let node = s.gateway.store.node_range(0, index, 1).await.map_err(db)?;
    if node.first() != Some(&merkle::leaf_hash(&leaf)) {
        return Err(s.gateway.suspect(index));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], leaf).into_response())
}

#[derive(Deserialize)]
pub(super) struct InclusionQuery {
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
pub(super) async fn inclusion(
    State(s): State<Arc<AppState>>,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<InclusionProof>> {
    s.gateway.refuse_if_damaged()?;
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let (index, size) = (parse_u64(&q.index, "index")?, parse_u64(&q.size, "size")?);
    let proof = proof_hex(&s, size, |st| merkle::inclusion_proof(st, index, size)).await?;
    Ok(Json(InclusionProof { index, size, proof }))
}

#[derive(Deserialize)]
pub(super) struct ConsistencyQuery {
    from: String,
    to: String,
}

#[utoipa::path(get, path = "/v1/proof/consistency", tag = "auditor",
    params(("from" = u64, Query, description = "Older tree size"), ("to" = u64, Query, description = "Newer tree size, at most the stored size")),
    responses((status = 200, description = "RFC 9162 consistency proof", body = ConsistencyProof), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn consistency(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<ConsistencyProof>> {
    s.gateway.refuse_if_damaged()?;
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let (from, to) = (parse_u64(&q.from, "from")?, parse_u64(&q.to, "to")?);
    let proof = proof_hex(&s, to, |st| merkle::consistency_proof(st, from, to)).await?;
    Ok(Json(ConsistencyProof { from, to, proof }))
}
