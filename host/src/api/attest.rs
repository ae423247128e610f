//! `GET /attest`: an attestation document from the enclave, with the caller's nonce.

use super::{AppResult, AppState};
use crate::error::ApiError;
use axum::extract::{Query, State};
use axum::Json;
use base64::Engine as _;
use leadgate_verifier::api::{AttestAnswer, ErrorBody};
use leadgate_verifier::ErrorCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub(super) struct AttestQuery {
    nonce: Option<String>,
}

#[utoipa::path(get, path = "/attest", tag = "attestation",
    params(("nonce" = Option<String>, Query, description = "1 to 512 bytes, hex: echoed in the document")),
    responses((status = 200, description = "An attestation document binding the enclave's keys", body = AttestAnswer), (status = "4XX", description = "The caller's mistake", body = ErrorBody), (status = "5XX", description = "A fault of the gateway; 503 carries Retry-After", body = ErrorBody)))]
pub(super) async fn attest(
    State(s): State<Arc<AppState>>,
    q: Result<Query<AttestQuery>, axum::extract::rejection::QueryRejection>,
) -> AppResult<Json<AttestAnswer>> {
    let Query(q) = q.map_err(|e| ApiError::new(ErrorCode::RequestBadQuery, e.body_text()))?;
    let nonce = match q.nonce {
        Some(h) => {
            let n = leadgate_verifier::bid::is_lower_hex(&h)
                .then(|| hex::decode(&h).ok())
                .flatten()
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::AttestationBadNonce,
                        "nonce must be lowercase hex",
                    )
                })?;
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
