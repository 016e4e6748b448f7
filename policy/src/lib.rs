//! The reference quota policy as a WebAssembly component: the template a
//! policy author copies.
//!
//! A thin adapter over generated bindings: it converts the WIT types of
//! `quota:policy/engine` to the plain Rust types of `quota-policy-core`,
//! calls it, and converts back. All decision logic lives in policy-core.
//! Built for `wasm32-unknown-unknown` and encoded as a component, it
//! imports nothing.
//!
//! With the default `export` feature the crate is the component
//! (`export!` below). [`Reference`] is also usable by another guest: turn
//! `export` off, wrap it, and export the wrapper with
//! `quota_policy::bindings::export!(MyPolicy with_types_in quota_policy::bindings)`
//! (see `examples/percent-grace`).

#![deny(unsafe_code)]

/// The generated bindings of the `quota:policy/policy` world.
#[allow(unsafe_code, missing_debug_implementations, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
    });
}

// The allocator: opt-in, one line (`quota-guest-arena`). Every call frees
// what it allocates, so a bump arena beats dlmalloc's bins; only where
// this crate is the component and single-threaded (a wrapping guest picks
// its own: two `#[global_allocator]`s cannot link).
#[cfg(all(
    target_arch = "wasm32",
    not(target_feature = "atomics"),
    feature = "export"
))]
#[global_allocator]
static ALLOCATOR: quota_guest_arena::Arena = quota_guest_arena::Arena::new();

#[cfg(all(target_arch = "wasm32", feature = "export"))]
#[allow(unsafe_code)]
mod export {
    use super::{Reference, bindings};
    bindings::export!(Reference with_types_in bindings);
}

pub use bindings::exports::quota::policy::engine as wit;
use quota_policy_core as core;

/// The reference policy.
#[derive(Debug)]
pub struct Reference;

impl wit::Guest for Reference {
    fn usage_key(key: String) -> wit::UsageKeyInfo {
        let info = core::usage_key(&key);
        wit::UsageKeyInfo {
            usage_key: info.usage_key,
            fallback: info.fallback,
        }
    }

    fn decide(input: wit::DecisionInput) -> Result<wit::Decision, wit::PolicyError> {
        core::decide(&input_from_wit(input))
            .map(decision_to_wit)
            .map_err(|e| wit::PolicyError {
                code: match e.code {
                    core::ErrorCode::InvalidInput => wit::ErrorCode::InvalidInput,
                },
                message: e.message,
            })
    }
}

fn input_from_wit(i: wit::DecisionInput) -> core::DecisionInput {
    core::DecisionInput {
        user_id: i.user_id,
        plan_id: i.plan_id,
        entitlement_key: i.entitlement_key,
        requested: i.requested,
        now_ms: i.now_ms,
        usage: i.usage,
        r#override: i.override_.map(|o| core::Override {
            value: o.value,
            expires_at_ms: o.expires_at_ms,
        }),
        plan: i.plan.map(|p| core::PlanInfo {
            limit: p.limit,
            enforcement_enabled: p.enforcement_enabled,
            grace_count: p.grace_count,
            rollout_percent: p.rollout_percent,
        }),
        default_limit: i.default_limit,
        grace_used: i.grace_used,
    }
}

fn decision_to_wit(d: core::Decision) -> wit::Decision {
    wit::Decision {
        status: match d.status {
            core::Status::Allow => wit::Status::Allow,
            core::Status::AllowGrace => wit::Status::AllowGrace,
            core::Status::WarnOnly => wit::Status::WarnOnly,
            core::Status::Block => wit::Status::Block,
        },
        limit: d.limit,
        limit_source: match d.limit_source {
            core::LimitSource::Override => wit::LimitSource::Override,
            core::LimitSource::Plan => wit::LimitSource::Plan,
            core::LimitSource::Default => wit::LimitSource::Default,
            core::LimitSource::None => wit::LimitSource::None,
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
