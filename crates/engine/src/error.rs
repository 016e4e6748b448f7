//! What an enforce or check can end in, besides success.

use quota_store::StoreError;

use crate::request::Outcome;

/// The request was blocked: nothing happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// The `block` decision and its context.
    pub outcome: Outcome,
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

/// Why the policy could not decide; the engine failed closed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFailure {
    /// The call failed: a trap, the deadline, the memory cap, an instance
    /// that could not be made, or a decision that breaks the contract.
    #[error(transparent)]
    Call(#[from] quota_host::CallError),
    /// The policy answered an error for the input the engine gave it.
    #[error("the policy rejected its input: {0}")]
    Rejected(quota_policy_core::PolicyError),
    /// The policy named a usage counter that breaks the key rule.
    #[error("the policy answered an invalid usage key: {0}")]
    UsageKey(String),
}

/// Why an enforce or check did not admit the action.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The policy blocked the request; nothing changed.
    #[error("{0}")]
    QuotaExceeded(Box<QuotaExceeded>),
    /// The policy could not decide; the engine failed closed.
    #[error("policy unavailable: {0}")]
    PolicyUnavailable(PolicyFailure),
    /// The request itself is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The store failed, or the caller's action was refused by it
    /// (unknown draft, forbidden, conflict); nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EnforceError {
    /// A stable snake_case code for the error, as used in JSON bodies.
    pub fn code(&self) -> &'static str {
        match self {
            EnforceError::QuotaExceeded(_) => "quota_exceeded",
            EnforceError::PolicyUnavailable(_) => "policy_unavailable",
            EnforceError::InvalidRequest(_) => "invalid_request",
            EnforceError::Store(_) => "store_error",
        }
    }
}
