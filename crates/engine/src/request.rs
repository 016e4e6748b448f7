//! What the engine is asked and what it answers.

use quota_policy_core::{Decision, UsageKeyInfo};
use quota_store::Period;

/// What to decide: `requested` units of `entitlement_key` for `user_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRequest {
    /// The user whose entitlement is used.
    pub user_id: String,
    /// The entitlement, e.g. `drafts.max`.
    pub entitlement_key: String,
    /// Units the action uses: 1 or more.
    pub requested: i64,
}

impl QuotaRequest {
    /// A request for `requested` units.
    pub fn new(
        user_id: impl Into<String>,
        entitlement_key: impl Into<String>,
        requested: i64,
    ) -> Self {
        QuotaRequest {
            user_id: user_id.into(),
            entitlement_key: entitlement_key.into(),
            requested,
        }
    }
}

/// A decision with everything needed to explain and apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The user decided for.
    pub user_id: String,
    /// The user's plan at the time.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The usage counter it reads.
    pub usage_key: UsageKeyInfo,
    /// The policy's decision.
    pub decision: Decision,
    /// The sha256 of the policy component that decided.
    pub policy_sha256: String,
    /// True when the policy failed and the engine admitted the request
    /// because it is configured to fail open.
    pub failed_open: bool,
    /// Units of the usage counter held by open leases: included in the
    /// decision's `usage`, as they count as used until settled.
    pub reserved: i64,
    /// The usage period the decision counted in, when the plan gives the
    /// key one: `usage` and grace are that period's, and what the
    /// decision consumes goes to it.
    pub period: Option<Period>,
    /// The plan names thresholds for the key: committing the decision
    /// checks them.
    pub has_thresholds: bool,
}

/// The answer of a soft check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// True when the request would stay within the limit (`ok`); false
    /// when it would go beyond it (`would_exceed`), whatever grace or
    /// enforcement would then do.
    pub ok: bool,
    /// The decision enforcing would make now.
    pub outcome: Outcome,
}

impl Checked {
    /// `ok` or `would_exceed`.
    pub fn result(&self) -> &'static str {
        if self.ok { "ok" } else { "would_exceed" }
    }
}

/// What happens when the policy cannot decide (trap, deadline, bad output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailMode {
    /// Refuse the request with `policy_unavailable`. The default.
    #[default]
    Closed,
    /// Admit the request as `warn_only` (usage counted, no grace), marked
    /// `failed_open`, when `decide` fails. Only for deployments that prefer
    /// availability. A failing `usage-key` still fails closed: without it
    /// the engine would not know which counter to update.
    Open,
}
