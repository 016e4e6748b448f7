//! An example policy, "percent grace": it decides exactly like the reference
//! policy except that the grace allowance is 20% of the resolved limit,
//! rounded up, instead of the plan's `grace_count`.
//!
//! | resolved limit | grace allowance |
//! |---|---|
//! | 0 | 0 |
//! | 3 | 1 |
//! | 10 | 2 |
//! | 11 | 3 |
//! | unlimited (`-1`) | 0 (never used: an unlimited request is always allowed) |
//!
//! The limit is the one the reference resolves (active override, else the
//! plan's limit, else the default), so an override of 10 gives 2 grace units
//! whatever the plan says. Everything else is the reference's: usage keys,
//! enforcement and rollout, the errors for invalid input (the plan's own
//! `grace_count` is still validated), and the reason sentence. The
//! `grace_remaining` it reports is counted from the percentage too, so it
//! differs from the reference's wherever `grace_count` does.
//!
//! It reuses the reference rather than restating it: one reference decision
//! validates the input and resolves the limit, and when the percentage
//! differs from the plan's `grace_count` a second one decides with the plan's
//! `grace_count` replaced.

#![deny(unsafe_code)]

use quota_policy::Reference;
use quota_policy::wit::{self, Guest};

// The opt-in bump arena (`quota-guest-arena`) as the allocator, as the
// reference component has: every call frees what it allocates, so an
// allocation is a pointer bump instead of a trip through dlmalloc
// (single-threaded guests only).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: quota_guest_arena::Arena = quota_guest_arena::Arena::new();

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod export {
    use super::PercentGrace;
    quota_policy::bindings::export!(PercentGrace with_types_in quota_policy::bindings);
}

/// The percent-grace policy.
#[derive(Debug)]
pub struct PercentGrace;

/// The grace allowance for a resolved `limit`: 20% of it, rounded up; 0 when
/// unlimited (`-1`).
pub fn percent_grace(limit: i64) -> i64 {
    if limit <= 0 {
        return 0;
    }
    limit / 5 + i64::from(limit % 5 != 0)
}

impl Guest for PercentGrace {
    fn usage_key(key: String) -> wit::UsageKeyInfo {
        Reference::usage_key(key)
    }

    fn decide(input: wit::DecisionInput) -> Result<wit::Decision, wit::PolicyError> {
        // Validates the input (errors are the reference's) and resolves the
        // limit, which does not depend on the grace count.
        let reference = Reference::decide(input.clone())?;
        let grace_count = percent_grace(reference.limit);
        match input.plan {
            Some(plan) if plan.grace_count != grace_count => {
                Reference::decide(wit::DecisionInput {
                    plan: Some(wit::PlanInfo {
                        grace_count,
                        ..plan
                    }),
                    ..input
                })
            }
            // No plan: no grace at all; or the plan already has that grace.
            _ => Ok(reference),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(limit: i64, grace_count: i64, usage: i64, grace_used: i64) -> wit::DecisionInput {
        wit::DecisionInput {
            user_id: "alice".into(),
            plan_id: "pro".into(),
            entitlement_key: "drafts.max".into(),
            requested: 1,
            now_ms: 1_700_000_000_000,
            usage,
            override_: None,
            plan: Some(wit::PlanInfo {
                limit: Some(limit),
                enforcement_enabled: true,
                grace_count,
                rollout_percent: 100,
            }),
            default_limit: None,
            grace_used,
        }
    }

    #[test]
    fn grace_is_a_fifth_of_the_limit_rounded_up() {
        let table = [
            (-1, 0),
            (0, 0),
            (1, 1),
            (3, 1),
            (5, 1),
            (6, 2),
            (10, 2),
            (11, 3),
        ];
        for (limit, grace) in table {
            assert_eq!(percent_grace(limit), grace, "limit {limit}");
        }
        assert_eq!(percent_grace(i64::MAX), i64::MAX / 5 + 1);
    }

    #[test]
    fn the_plan_grace_count_is_replaced() {
        let Ok(d) = PercentGrace::decide(input(10, 0, 10, 0)) else {
            unreachable!("a valid input")
        };
        assert!(matches!(d.status, wit::Status::AllowGrace));
        assert_eq!((d.grace_to_consume, d.grace_remaining), (1, 1));

        let Ok(d) = PercentGrace::decide(input(3, 2, 4, 1)) else {
            unreachable!("a valid input")
        };
        assert!(matches!(d.status, wit::Status::Block));
        assert_eq!(d.grace_remaining, 0);
    }

    #[test]
    fn an_invalid_grace_count_is_still_an_error() {
        let Err(e) = PercentGrace::decide(input(10, -1, 0, 0)) else {
            unreachable!("grace_count -1 is out of range")
        };
        assert!(matches!(e.code, wit::ErrorCode::InvalidInput));
        assert!(e.message.contains("plan.grace_count"), "{}", e.message);
    }
}
