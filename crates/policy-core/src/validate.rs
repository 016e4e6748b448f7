//! The input ranges of docs/contract.md §2.1. A violation is `invalid_input` naming the field.

use crate::reason::Text;
use crate::{DecisionInput, PolicyError, UNLIMITED};

fn non_empty(field: &str, value: &str) -> Result<(), PolicyError> {
    if value.is_empty() {
        let mut msg = Text::new();
        msg.push("`")
            .push(field)
            .push("` must be a non-empty string");
        return Err(PolicyError::invalid_input(msg.finish()));
    }
    Ok(())
}

#[inline]
fn at_least(field: &str, value: i64, min: i64) -> Result<(), PolicyError> {
    if value < min {
        return Err(below(field, value, min));
    }
    Ok(())
}

/// The error of [`at_least`], out of line: the checks that pass, which is
/// nearly all of them, stay a compare and a branch.
#[cold]
#[inline(never)]
fn below(field: &str, value: i64, min: i64) -> PolicyError {
    let mut msg = Text::new();
    msg.push("`")
        .push(field)
        .push("` must be at least ")
        .num(min)
        .push(", got ")
        .num(value);
    PolicyError::invalid_input(msg.finish())
}

fn limit(field: &str, value: Option<i64>) -> Result<(), PolicyError> {
    match value {
        Some(v) => at_least(field, v, UNLIMITED),
        None => Ok(()),
    }
}

/// Checks every range of the decision input, in field order.
pub(crate) fn check(input: &DecisionInput) -> Result<(), PolicyError> {
    non_empty("user_id", &input.user_id)?;
    non_empty("plan_id", &input.plan_id)?;
    non_empty("entitlement_key", &input.entitlement_key)?;
    at_least("requested", input.requested, 1)?;
    at_least("usage", input.usage, 0)?;
    if let Some(o) = &input.r#override {
        at_least("override.value", o.value, UNLIMITED)?;
    }
    if let Some(plan) = &input.plan {
        limit("plan.limit", plan.limit)?;
        at_least("plan.grace_count", plan.grace_count, 0)?;
        at_least("plan.rollout_percent", plan.rollout_percent, 0)?;
        if plan.rollout_percent > 100 {
            let mut msg = Text::new();
            msg.push("`plan.rollout_percent` must be at most 100, got ")
                .num(plan.rollout_percent);
            return Err(PolicyError::invalid_input(msg.finish()));
        }
    }
    limit("default_limit", input.default_limit)?;
    at_least("grace_used", input.grace_used, 0)?;
    Ok(())
}
