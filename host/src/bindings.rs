//! The generated bindings, kept private, and their conversions to the plain
//! types of `quota-policy-core`.

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy",
        // The input's strings are lowered straight from the caller's
        // `DecisionInput` instead of from copies.
        ownership: Borrowing {
            duplicate_if_necessary: false
        },
    });
}

pub(crate) use generated::{Policy, PolicyPre};

use generated::exports::quota::policy::engine as wit;
use quota_policy_core as core;

pub(crate) fn input_to_wit(i: &core::DecisionInput) -> wit::DecisionInput<'_> {
    wit::DecisionInput {
        user_id: &i.user_id,
        plan_id: &i.plan_id,
        entitlement_key: &i.entitlement_key,
        requested: i.requested,
        now_ms: i.now_ms,
        usage: i.usage,
        override_: i.r#override.as_ref().map(|o| wit::OverrideInfo {
            value: o.value,
            expires_at_ms: o.expires_at_ms,
        }),
        plan: i.plan.as_ref().map(|p| wit::PlanInfo {
            limit: p.limit,
            enforcement_enabled: p.enforcement_enabled,
            grace_count: p.grace_count,
            rollout_percent: p.rollout_percent,
        }),
        default_limit: i.default_limit,
        grace_used: i.grace_used,
    }
}

pub(crate) fn decision_from_wit(d: wit::Decision) -> core::Decision {
    core::Decision {
        status: match d.status {
            wit::Status::Allow => core::Status::Allow,
            wit::Status::AllowGrace => core::Status::AllowGrace,
            wit::Status::WarnOnly => core::Status::WarnOnly,
            wit::Status::Block => core::Status::Block,
        },
        limit: d.limit,
        limit_source: match d.limit_source {
            wit::LimitSource::Override => core::LimitSource::Override,
            wit::LimitSource::Plan => core::LimitSource::Plan,
            wit::LimitSource::Default => core::LimitSource::Default,
            wit::LimitSource::None => core::LimitSource::None,
        },
        override_applied: d.override_applied,
        override_expired: d.override_expired,
        usage: d.usage,
        requested: d.requested,
        projected_usage: d.projected_usage,
        overage: d.overage,
        enforced: d.enforced,
        grace_to_consume: d.grace_to_consume,
        grace_remaining: d.grace_remaining,
        reason: d.reason,
    }
}

pub(crate) fn error_from_wit(e: wit::PolicyError) -> core::PolicyError {
    core::PolicyError {
        code: match e.code {
            wit::ErrorCode::InvalidInput => core::ErrorCode::InvalidInput,
        },
        message: e.message,
    }
}

pub(crate) fn usage_key_from_wit(k: wit::UsageKeyInfo) -> core::UsageKeyInfo {
    core::UsageKeyInfo {
        usage_key: k.usage_key,
        fallback: k.fallback,
    }
}
