//! API errors: one JSON shape, `{"error": {"code", "message"}}`, with the codes and their HTTP
//! statuses of [`leadgate_verifier::ErrorCode`]. Storage errors are logged and reported as `storage.unavailable` (503),
//! never sent verbatim.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use leadgate_protocol::WireError;
use leadgate_verifier::api::{ErrorBody, ErrorDetail};
use leadgate_verifier::ErrorCode;

/// An API error with a stable code; its HTTP status follows from the code
/// ([`ErrorCode::http_status`], one exhaustive table).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Stable code, e.g. `submission.bad_signature`.
    pub code: ErrorCode,
    /// Message for humans; never contains PII.
    pub message: String,
    /// `Retry-After` in seconds, when it is known (a seller's daily limit resets at the next
    /// UTC midnight); 429 and 503 answers without one carry 1.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// `rate.limited` (429) with `Retry-After: secs`.
    pub fn rate_limited(message: impl Into<String>, secs: u64) -> Self {
        Self {
            retry_after_secs: Some(secs),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A storage failure: logged here, reported as `storage.unavailable` (503 with
    /// `Retry-After`): a fault of ours that heals when the disk does.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage failed");
        Self::new(
            ErrorCode::StorageUnavailable,
            "storage is failing; the gateway heals by itself, retry",
        )
    }

    /// An internal failure: logged here, reported as `server.internal`.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %e, "internal error");
        Self::new(ErrorCode::ServerInternal, "internal error")
    }
}

impl From<WireError> for ApiError {
    /// An enclave's refusal or fault, with its code (and so its status) kept.
    fn from(e: WireError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<ApiError> for ErrorBody {
    /// The `{"error": {"code", "message"}}` body of the contract.
    fn from(e: ApiError) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: e.code,
                message: e.message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code;
        let retry_after = self.retry_after_secs;
        let mut resp = (status, axum::Json(ErrorBody::from(self))).into_response();
        // For the metrics middleware's `code` label.
        resp.extensions_mut().insert(code);
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(retry_after.unwrap_or(1)),
            );
        }
        resp
    }
}
