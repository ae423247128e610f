//! API errors: one JSON shape, `{"error": {"code", "message"}}`, and one place that maps codes
//! to HTTP statuses. Storage errors are logged and reported as `storage.unavailable` (503),
//! never sent verbatim.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error with a stable code.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code, e.g. `submission.bad_signature`.
    pub code: String,
    /// Message for humans; never contains PII.
    pub message: String,
}

impl ApiError {
    /// An error whose status follows from its code.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: status_for(code),
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A storage failure: logged here, reported as `storage.unavailable` (503 with
    /// `Retry-After`): a fault of ours that heals when the disk does.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "storage failed");
        Self::new(
            "storage.unavailable",
            "storage is failing; the gateway heals by itself, retry",
        )
    }

    /// An internal failure: logged here, reported as `internal`.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %e, "internal error");
        Self::new("internal", "internal error")
    }
}

/// HTTP status for an error code (the one place this mapping lives).
pub fn status_for(code: &str) -> StatusCode {
    match code {
        "request.too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "request.unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "request.timeout" => StatusCode::REQUEST_TIMEOUT,
        "rate.limited" => StatusCode::TOO_MANY_REQUESTS,
        "submission.replayed" | "bid.replayed" => StatusCode::CONFLICT,
        "not_found" | "checkpoint.none" | "auction.unknown" => StatusCode::NOT_FOUND,
        "release.not_winner" | "release.not_sold" => StatusCode::FORBIDDEN,
        "auction.closed" | "release.not_closed" => StatusCode::CONFLICT,
        "enclave.unavailable"
        | "enclave.not_ready"
        | "overloaded"
        | "storage.unavailable"
        | "server.busy" => StatusCode::SERVICE_UNAVAILABLE,
        "internal" | "enclave.protocol" => StatusCode::INTERNAL_SERVER_ERROR,
        c if c.starts_with("submission.")
            || c.starts_with("lead.")
            || c.starts_with("bid.")
            || c.starts_with("release.") =>
        {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}
