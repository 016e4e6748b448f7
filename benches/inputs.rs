//! The shared decision inputs: one realistic set every engine decides.

use quota_policy_core::{DecisionInput, LimitSource, Override, PlanInfo, Status};

/// The time every input is decided at: 2026-01-01T00:00:00Z, Unix ms.
pub const NOW_MS: i64 = 1_767_225_600_000;

/// How many inputs the set has; the benchmarks cycle through them.
pub const COUNT: usize = 64;

const PLANS: [&str; 3] = ["free", "pro", "enterprise"];
const KEYS: [&str; 3] = ["drafts.max", "segments.max", "collaborators.max"];

/// A deterministic pseudo-random choice in `0..n` for input `i` and
/// dimension `salt` (splitmix64), so the dimensions vary independently.
fn pick(i: usize, salt: u64, n: u64) -> u64 {
    let mut z = (i as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(salt.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % n
}

fn small(i: usize, salt: u64, n: u64) -> i64 {
    // Below `n`, which callers keep small, so it always fits.
    i64::try_from(pick(i, salt, n)).unwrap_or(0)
}

/// Input `i` of the set, before its usage is placed against its limit.
fn shape(i: usize) -> DecisionInput {
    let plan_ix = usize::try_from(pick(i, 1, 3)).unwrap_or(0);
    let plan_id = PLANS[plan_ix];
    // Per plan: limit, grace units, rollout percent. `pro` enforces for
    // half of its users only, so the rollout bucket decides there.
    let (limit, grace_count, rollout_percent) = match plan_ix {
        0 => (3, 2, 100),
        1 => (50, 5, 50),
        _ => (-1, 0, 100),
    };
    let plan = (pick(i, 2, 8) != 0).then(|| PlanInfo {
        // One plan in six does not name the key: the default applies.
        limit: (pick(i, 3, 6) != 0).then_some(limit),
        enforcement_enabled: pick(i, 4, 4) != 0,
        grace_count,
        rollout_percent,
    });
    let value = if pick(i, 6, 4) == 0 {
        -1
    } else {
        5 + small(i, 7, 20)
    };
    let r#override = match pick(i, 5, 5) {
        // Active: no expiry, or an expiry in the future.
        2 => Some(Override {
            value,
            expires_at_ms: None,
        }),
        3 => Some(Override {
            value,
            expires_at_ms: Some(NOW_MS + 86_400_000),
        }),
        // Expired: exactly now (an override expiring now is expired) or before.
        4 => Some(Override {
            value,
            expires_at_ms: Some(NOW_MS - small(i, 8, 2) * 3_600_000),
        }),
        _ => None,
    };
    DecisionInput {
        user_id: format!("user-{:05}", pick(i, 9, 100_000)),
        plan_id: plan_id.to_owned(),
        entitlement_key: KEYS[usize::try_from(pick(i, 10, 3)).unwrap_or(0)].to_owned(),
        requested: 1,
        now_ms: NOW_MS,
        usage: 0,
        r#override,
        plan,
        default_limit: (pick(i, 11, 2) == 0).then_some(10),
        grace_used: small(i, 12, 4),
    }
}

/// The shared input set: [`COUNT`] inputs with string ids like
/// `user-00042`, plans `free`, `pro` and `enterprise`, overrides absent,
/// active (with and without expiry) and expired, unlimited limits (plan and
/// override), keys the plan does not name, users without a plan, grace
/// available and exhausted, enforcement on, off and rolled out to half the
/// users. Usage is placed against each input's effective limit so that every
/// status occurs: well within, just over, over by several units, and
/// already over before the request.
pub fn decision_inputs() -> Result<Vec<DecisionInput>, String> {
    let inputs: Vec<DecisionInput> = (0..COUNT)
        .map(|i| {
            let mut input = shape(i);
            // The effective limit, from the reference itself.
            let limit = quota_policy_core::decide(&input)
                .map(|d| d.limit)
                .unwrap_or(-1);
            if limit == -1 {
                input.usage = small(i, 13, 1000);
            } else {
                match pick(i, 14, 4) {
                    0 => input.usage = (limit - 1).max(0),
                    1 => input.usage = limit,
                    2 => {
                        input.usage = limit;
                        input.requested = 2 + small(i, 15, 3);
                    }
                    _ => input.usage = limit + 3,
                }
            }
            input
        })
        .collect();
    check_coverage(&inputs)?;
    Ok(inputs)
}

/// Fails unless the set exercises every branch of the decision.
fn check_coverage(inputs: &[DecisionInput]) -> Result<(), String> {
    let mut decisions = Vec::with_capacity(inputs.len());
    for input in inputs {
        decisions.push(quota_policy_core::decide(input).map_err(|e| format!("{input:?}: {e}"))?);
    }
    let mut missing = Vec::new();
    for status in [
        Status::Allow,
        Status::AllowGrace,
        Status::WarnOnly,
        Status::Block,
    ] {
        if !decisions.iter().any(|d| d.status == status) {
            missing.push(status.as_str().to_owned());
        }
    }
    for source in [
        LimitSource::Override,
        LimitSource::Plan,
        LimitSource::Default,
        LimitSource::None,
    ] {
        if !decisions.iter().any(|d| d.limit_source == source) {
            missing.push(format!("limit_source {}", source.as_str()));
        }
    }
    let need = |name: &str, a: bool| {
        if a { None } else { Some(name.to_owned()) }
    };
    let zip = || inputs.iter().zip(&decisions);
    missing.extend(
        [
            need(
                "expired override",
                decisions.iter().any(|d| d.override_expired),
            ),
            need(
                "override expiring exactly now",
                inputs
                    .iter()
                    .any(|i| i.r#override.as_ref().and_then(|o| o.expires_at_ms) == Some(NOW_MS)),
            ),
            need(
                "unlimited override",
                decisions
                    .iter()
                    .any(|d| d.override_applied && d.limit == -1),
            ),
            need(
                "unlimited plan",
                decisions
                    .iter()
                    .any(|d| d.limit_source == LimitSource::Plan && d.limit == -1),
            ),
            need(
                "grace exhausted (block with grace configured)",
                zip().any(|(i, d)| {
                    d.status == Status::Block && i.plan.as_ref().is_some_and(|p| p.grace_count > 0)
                }),
            ),
            need(
                "enforcement off",
                zip().any(|(i, d)| {
                    d.status == Status::WarnOnly
                        && i.plan.as_ref().is_some_and(|p| !p.enforcement_enabled)
                }),
            ),
            need(
                "rolled out to someone else",
                zip().any(|(i, d)| {
                    d.status == Status::WarnOnly
                        && i.plan.as_ref().is_some_and(|p| p.enforcement_enabled)
                }),
            ),
            need("no plan record", inputs.iter().any(|i| i.plan.is_none())),
        ]
        .into_iter()
        .flatten(),
    );
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the input set does not cover: {}",
            missing.join(", ")
        ))
    }
}
