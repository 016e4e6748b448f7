//! One JSON error shape for every failure: `{"error":{"code","message",...}}`.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quota_engine::EnforceError;
use quota_store::{Conflict, StoreError};

use crate::wire::ErrorBody;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body: `{"error":{...}}` (boxed: errors travel in every `Result`).
    pub body: Box<ErrorBody>,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Box::new(ErrorBody::new(code, message)),
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal` (a bug or the database failing; never client input).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// The code of a conflict: lease conflicts have their own, so that a node
/// knows what to do next; the rest are `conflict`.
fn conflict_code(conflict: &Conflict) -> &'static str {
    match conflict {
        Conflict::LeaseSeq { .. } => "lease_seq",
        Conflict::SettleMismatch { .. } => "settle_mismatch",
        Conflict::Overspent { .. } => "lease_overspent",
        Conflict::LeaseEnded { .. } => "lease_ended",
        Conflict::OwnedKey(_) => "owned_key",
        _ => "conflict",
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::UnknownPlan(_)
            | StoreError::UnknownUser(_)
            | StoreError::UnknownDraft(_)
            | StoreError::UnknownInvite(_)
            | StoreError::UnknownNode(_)
            | StoreError::UnknownWebhook(_)
            | StoreError::UnknownEvent(_)
            | StoreError::UnknownLease(_) => ApiError::not_found(message),
            StoreError::Conflict(conflict) => {
                ApiError::new(StatusCode::CONFLICT, conflict_code(&conflict), message)
            }
            StoreError::UserExists(_) | StoreError::NodeExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            StoreError::Forbidden(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message),
            StoreError::Invalid { .. } => ApiError::invalid(message),
            StoreError::Busy(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message),
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %message, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the database is unavailable; nothing was changed, a retry may succeed",
                )
            }
            StoreError::OutcomeUnknown(_) => {
                tracing::error!(error = %message, "connection lost during commit");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the connection to the database was lost during the commit: the change may or may not have been made; retry with the same Idempotency-Key to find out without doing it twice",
                )
            }
            StoreError::Migration(_) | StoreError::Database(_) | StoreError::Commit(_) => {
                tracing::error!(error = %message, "database failure");
                ApiError::internal("the database failed; nothing was changed")
            }
        }
    }
}

impl From<std::convert::Infallible> for ApiError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<EnforceError> for ApiError {
    fn from(e: EnforceError) -> Self {
        match e {
            EnforceError::QuotaExceeded(blocked) => ApiError {
                status: StatusCode::FORBIDDEN,
                body: Box::new(ErrorBody::quota_exceeded(&blocked)),
            },
            EnforceError::PolicyUnavailable(reason) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "policy_unavailable",
                format!("the policy could not decide: {reason}"),
            ),
            EnforceError::InvalidRequest(message) => ApiError::invalid(message),
            EnforceError::Store(e) => e.into(),
        }
    }
}

/// Whether `error` or one of its sources is the body read timeout.
pub(crate) fn body_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<crate::connections::BodyTimedOut>() {
            return true;
        }
        current = e.source();
    }
    false
}

impl ApiError {
    /// 408 `request_timeout`: the body did not arrive in time.
    pub(crate) fn body_timeout() -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time; nothing was changed",
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if body_timed_out(&rejection) {
            return ApiError::body_timeout();
        }
        match rejection.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON with `Content-Type: application/json`",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than the limit",
            ),
            _ => ApiError::invalid(rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::invalid(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid(rejection.body_text())
    }
}
