//! A decision and its context, as clients see them.

use serde::Serialize;
use utoipa::ToSchema;

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionStatus {
    /// Within the limit, or unlimited.
    Allow,
    /// Over the limit, admitted by consuming grace.
    AllowGrace,
    /// Over the limit, admitted because enforcement does not apply.
    WarnOnly,
    /// Over the limit with not enough grace: refused.
    Block,
}

impl From<quota_policy_core::Status> for DecisionStatus {
    fn from(status: quota_policy_core::Status) -> Self {
        use quota_policy_core::Status;
        match status {
            Status::Allow => DecisionStatus::Allow,
            Status::AllowGrace => DecisionStatus::AllowGrace,
            Status::WarnOnly => DecisionStatus::WarnOnly,
            Status::Block => DecisionStatus::Block,
        }
    }
}

/// Where the limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// An active override.
    Override,
    /// The plan's limit for the key.
    Plan,
    /// The global default for the key.
    Default,
    /// Nothing configured: unlimited.
    None,
}

impl From<quota_policy_core::LimitSource> for LimitSource {
    fn from(source: quota_policy_core::LimitSource) -> Self {
        use quota_policy_core::LimitSource as Source;
        match source {
            Source::Override => LimitSource::Override,
            Source::Plan => LimitSource::Plan,
            Source::Default => LimitSource::Default,
            Source::None => LimitSource::None,
        }
    }
}

/// The policy's decision (docs/contract.md §2.1 output) with the usage
/// counter it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Decision {
    /// The outcome.
    pub status: DecisionStatus,
    /// The effective limit; `-1` unlimited.
    pub limit: i64,
    /// Where `limit` came from.
    pub limit_source: LimitSource,
    /// An active override set the limit.
    pub override_applied: bool,
    /// An override was present but had expired.
    pub override_expired: bool,
    /// The usage before the request.
    pub usage: i64,
    /// The units requested.
    pub requested: i64,
    /// `usage + requested`, saturating.
    pub projected_usage: i64,
    /// Units beyond the limit; 0 when within.
    pub overage: i64,
    /// Enforcement applies to this user.
    pub enforced: bool,
    /// Grace recorded when the decision is applied.
    pub grace_to_consume: i64,
    /// Grace left afterwards.
    pub grace_remaining: i64,
    /// The usage counter the entitlement reads.
    pub usage_key: String,
    /// The usage key came from the fallback rule.
    pub usage_key_fallback: bool,
    /// One human sentence.
    pub reason: String,
}

impl Decision {
    /// The decision `d` for an entitlement whose usage counter is `key`.
    pub fn new(d: &quota_policy_core::Decision, key: &quota_policy_core::UsageKeyInfo) -> Self {
        Decision {
            status: d.status.into(),
            limit: d.limit,
            limit_source: d.limit_source.into(),
            override_applied: d.override_applied,
            override_expired: d.override_expired,
            usage: d.usage,
            requested: d.requested,
            projected_usage: d.projected_usage,
            overage: d.overage,
            enforced: d.enforced,
            grace_to_consume: d.grace_to_consume,
            grace_remaining: d.grace_remaining,
            usage_key: key.usage_key.clone(),
            usage_key_fallback: key.fallback,
            reason: d.reason.clone(),
        }
    }
}

/// A decision with the user, plan and policy it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Outcome {
    /// The user.
    pub user_id: String,
    /// The user's plan then.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The decision.
    pub decision: Decision,
    /// The sha256 of the policy that decided.
    pub policy_sha256: String,
    /// The policy failed and the service admitted the request because it
    /// is configured to fail open.
    pub failed_open: bool,
    /// The usage period the decision counted in, when the plan gives the
    /// key one. Absent: the key counts for ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<super::Period>,
}

impl From<&quota_engine::Outcome> for Outcome {
    fn from(o: &quota_engine::Outcome) -> Self {
        Outcome {
            user_id: o.user_id.clone(),
            plan_id: o.plan_id.clone(),
            entitlement_key: o.entitlement_key.clone(),
            decision: Decision::new(&o.decision, &o.usage_key),
            policy_sha256: o.policy_sha256.clone(),
            failed_open: o.failed_open,
            period: o.period.map(super::Period::from),
        }
    }
}
