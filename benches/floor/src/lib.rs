//! A benchmark fixture: the cost of a call before any policy work.
//!
//! It exports the policy contract, `quota:policy/engine`, with a `decide`
//! that does no work (it echoes the numbers the contract's invariants check
//! and returns a constant sentence as long as a typical reason), and
//! `quota:floor/calls`: calls of other shapes (`wit/floor.wit`). Same
//! profile, allocator and bindings generator as the reference policy, so
//! `benches/benches/floor.rs` can tell the cost of the contract's shape
//! from the cost of the policy.

#![deny(unsafe_code)]

/// The generated bindings of the `quota:floor/floor` world.
#[allow(unsafe_code, missing_debug_implementations, missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit", "wit"],
        world: "quota:floor/floor",
    });
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: quota_guest_arena::Arena = quota_guest_arena::Arena::new();

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::{Floor, bindings};
    bindings::export!(Floor with_types_in bindings);
}

use bindings::exports::quota::floor::calls;
use bindings::exports::quota::policy::engine;

/// As long as the reference's sentence for a typical decision.
const REASON: &str = "drafts.max: usage 3 + 1 requested = 4, limit 50 (plan); allowed.";

/// The fixture.
#[derive(Debug)]
pub struct Floor;

fn numbers(usage: i64, requested: i64) -> calls::DecisionNumbers {
    calls::DecisionNumbers {
        status: engine::Status::Allow,
        limit: -1,
        limit_source: engine::LimitSource::None,
        override_applied: false,
        override_expired: false,
        usage,
        requested,
        projected_usage: usage.saturating_add(requested),
        overage: 0,
        enforced: false,
        grace_to_consume: 0,
        grace_remaining: 0,
    }
}

fn decision(usage: i64, requested: i64) -> engine::Decision {
    let n = numbers(usage, requested);
    engine::Decision {
        status: n.status,
        limit: n.limit,
        limit_source: n.limit_source,
        override_applied: n.override_applied,
        override_expired: n.override_expired,
        usage: n.usage,
        requested: n.requested,
        projected_usage: n.projected_usage,
        overage: n.overage,
        enforced: n.enforced,
        grace_to_consume: n.grace_to_consume,
        grace_remaining: n.grace_remaining,
        reason: REASON.to_owned(),
    }
}

impl engine::Guest for Floor {
    fn usage_key(key: String) -> engine::UsageKeyInfo {
        engine::UsageKeyInfo {
            usage_key: key,
            fallback: true,
        }
    }

    fn decide(input: engine::DecisionInput) -> Result<engine::Decision, engine::PolicyError> {
        Ok(decision(input.usage, input.requested))
    }
}

impl calls::Guest for Floor {
    fn nop(x: i64) -> i64 {
        x
    }

    fn one_id(id: String) -> i64 {
        id.len() as i64
    }

    fn three_ids(ids: calls::Ids) -> i64 {
        (ids.user_id.len() + ids.plan_id.len() + ids.entitlement_key.len()) as i64
    }

    fn decide_flat(
        _ids: calls::Ids,
        n: calls::Numbers,
    ) -> Result<engine::Decision, engine::PolicyError> {
        Ok(decision(n.usage, n.requested))
    }

    fn decide_flat_numbers(
        _ids: calls::Ids,
        n: calls::Numbers,
    ) -> Result<calls::DecisionNumbers, engine::PolicyError> {
        Ok(numbers(n.usage, n.requested))
    }
}
