//! The buyer's auto-bid rule endpoints: `POST /v1/rules`, `POST /v1/rules/cancel`,
//! `GET /v1/rules/{buyer}`.

use super::{db, origin, parse_json, read_body, AppResult, AppState};
use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use leadgate_verifier::api::{ErrorBody, RuleChangeEntry, RuleChanges, RulesAnswer};
use leadgate_verifier::autobid::{RulesCancel, SealedRuleSet};
use leadgate_verifier::bid::hex32;
use leadgate_verifier::ErrorCode;
use std::sync::Arc;

/// `POST /v1/rules`: a sealed rule set. The host checks only its encoding; the enclave checks
/// the signature, opens it, checks its gates and logs `rules.set`.
#[utoipa::path(post, path = "/v1/rules", tag = "buyer", request_body = SealedRuleSet,
    responses((status = 200, description = "The rule set's commitment and the receipt of its rules.set", body = RulesAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn post_rules(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<RulesAnswer>> {
    let (bytes, _budget) = read_body(&s, &headers, body, s.max_body_bytes).await?;
    let rules: SealedRuleSet = parse_json(&bytes)?;
    let decoded = rules
        .decode()
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    origin(&s).await?;
    let appended = s.gateway.set_rules(rules.clone()).await?;
    Ok(Json(RulesAnswer {
        buyer: rules.buyer,
        commitment: hex::encode(decoded.commitment),
        index: appended.index,
        receipt: appended.receipt,
    }))
}

/// `POST /v1/rules/cancel`: a buyer's signed cancellation of its active rule set.
#[utoipa::path(post, path = "/v1/rules/cancel", tag = "buyer", request_body = RulesCancel,
    responses((status = 200, description = "The receipt of the rules.cancelled", body = RulesAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn post_cancel(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<Json<RulesAnswer>> {
    let (bytes, _budget) = read_body(&s, &headers, body, s.max_body_bytes).await?;
    let cancel: RulesCancel = parse_json(&bytes)?;
    if hex32(&cancel.buyer).is_none() || hex32(&cancel.commitment).is_none() {
        return Err(ApiError::new(
            ErrorCode::RulesMalformed,
            "buyer and commitment are 64 lowercase hex digits",
        ));
    }
    origin(&s).await?;
    let appended = s.gateway.cancel_rules(cancel.clone()).await?;
    Ok(Json(RulesAnswer {
        buyer: cancel.buyer,
        commitment: cancel.commitment,
        index: appended.index,
        receipt: appended.receipt,
    }))
}

/// `GET /v1/rules/{buyer}`: the buyer's logged rule changes.
#[utoipa::path(get, path = "/v1/rules/{buyer}", tag = "buyer",
    params(("buyer" = String, Path, description = "Buyer id, 64 hex digits")),
    responses((status = 200, description = "The buyer's rule changes, oldest first (commitments only)", body = RuleChanges), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn get_rules(
    State(s): State<Arc<AppState>>,
    Path(buyer): Path<String>,
) -> AppResult<Json<RuleChanges>> {
    if hex32(&buyer).is_none() {
        return Err(ApiError::new(
            ErrorCode::RequestBadId,
            "a buyer id is 64 lowercase hex digits",
        ));
    }
    let changes = s.gateway.store.rule_changes(&buyer).await.map_err(db)?;
    let active = changes
        .last()
        .filter(|c| c.kind == "rules.set")
        .map(|c| c.commitment.clone());
    Ok(Json(RuleChanges {
        buyer,
        active,
        changes: changes
            .into_iter()
            .map(|c| RuleChangeEntry {
                index: c.index,
                kind: c.kind.to_owned(),
                commitment: c.commitment,
            })
            .collect(),
    }))
}
