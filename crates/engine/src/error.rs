//! What an enforce or check can end in, besides success.

use quota_store::StoreError;
use serde_json::{Value, json};

use crate::request::Outcome;

/// The request was blocked: nothing happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The `block` decision and its context.
    pub outcome: Outcome,
}

impl QuotaExceeded {
    /// The error body of docs/contract.md §4.3 (HTTP 403, CLI exit 3):
    /// `{"error":{"code":"quota_exceeded","message",...}}`.
    pub fn to_json(&self) -> Value {
        let d = &self.outcome.decision;
        json!({
            "error": {
                "code": "quota_exceeded",
                "message": format!(
                    "quota exceeded for `{}`: {}",
                    self.outcome.entitlement_key, d.reason
                ),
                "entitlement_key": self.outcome.entitlement_key,
                "limit": d.limit,
                "usage": d.usage,
                "requested": d.requested,
                "grace_remaining": d.grace_remaining,
            }
        })
    }
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "quota exceeded for `{}`: {}",
            self.outcome.entitlement_key, self.outcome.decision.reason
        )
    }
}

impl std::error::Error for QuotaExceeded {}

/// Why an enforce or check did not admit the action. `E` is the caller's
/// own error (from its prepare or mutation step).
#[derive(Debug, thiserror::Error)]
pub enum EnforceError<E> {
    /// The policy blocked the request; nothing changed.
    #[error("{0}")]
    QuotaExceeded(Box<QuotaExceeded>),
    /// The policy could not decide (trap, deadline, memory, impossible or
    /// rejected decision); the engine failed closed.
    #[error("policy unavailable: {0}")]
    PolicyUnavailable(String),
    /// The request itself is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The store failed; nothing was recorded.
    #[error(transparent)]
    Store(StoreError),
    /// The caller's prepare or mutation step failed; nothing was recorded.
    #[error("{0}")]
    Action(E),
}

impl<E> EnforceError<E> {
    /// A stable snake_case code for the error, as used in JSON bodies.
    pub fn code(&self) -> &'static str {
        match self {
            EnforceError::QuotaExceeded(_) => "quota_exceeded",
            EnforceError::PolicyUnavailable(_) => "policy_unavailable",
            EnforceError::InvalidRequest(_) => "invalid_request",
            EnforceError::Store(_) => "store_error",
            EnforceError::Action(_) => "action_failed",
        }
    }
}
