//! The checks every backend applies to what it is asked to store.

use quota_policy_core::names;

use crate::error::StoreError;
use crate::events::{MAX_PERCENT, MAX_THRESHOLDS};
use crate::model::PlanChange;

pub(crate) fn non_empty(field: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::invalid(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    Ok(())
}

/// An entitlement key by the one rule every edge applies
/// ([`quota_policy_core::names::check_key`]).
pub(crate) fn key(field: &str, key: &str) -> Result<(), StoreError> {
    names::check_key(field, key).map_err(|e| StoreError::invalid(field, e.to_string()))
}

/// A user or plan id by the one rule every edge applies
/// ([`quota_policy_core::names::check_id`]).
pub(crate) fn id(field: &str, id: &str) -> Result<(), StoreError> {
    names::check_id(field, id).map_err(|e| StoreError::invalid(field, e.to_string()))
}

pub(crate) fn limit_value(field: &str, value: i64) -> Result<(), StoreError> {
    if value < -1 {
        return Err(StoreError::invalid(
            field,
            format!("`{field}` must be -1 (unlimited) or more, got {value}"),
        ));
    }
    Ok(())
}

/// A key's threshold percentages: each from 1 to [`MAX_PERCENT`], no
/// repeats, at most [`MAX_THRESHOLDS`].
fn thresholds(name: &str, percents: &[i64]) -> Result<(), StoreError> {
    let field = format!("thresholds.{name}");
    if percents.len() > MAX_THRESHOLDS {
        return Err(StoreError::invalid(
            &field,
            format!(
                "`{field}` may hold at most {MAX_THRESHOLDS} thresholds, got {}",
                percents.len()
            ),
        ));
    }
    for (i, pct) in percents.iter().enumerate() {
        if !(1..=MAX_PERCENT).contains(pct) {
            return Err(StoreError::invalid(
                &field,
                format!(
                    "`{field}`: a threshold is a percentage from 1 to {MAX_PERCENT}, got {pct}"
                ),
            ));
        }
        if percents[..i].contains(pct) {
            return Err(StoreError::invalid(
                &field,
                format!("`{field}` names {pct} twice"),
            ));
        }
    }
    Ok(())
}

impl PlanChange {
    /// Checks every field, as a change would; nothing is written.
    pub fn validate(&self) -> Result<(), StoreError> {
        for (name, value) in &self.limits {
            key("entitlement_key", name)?;
            limit_value(&format!("limit {name}"), *value)?;
        }
        for name in &self.remove_limits {
            key("entitlement_key", name)?;
        }
        for (name, _) in &self.periods {
            key("entitlement_key", name)?;
        }
        for (name, percents) in &self.thresholds {
            key("entitlement_key", name)?;
            thresholds(name, percents)?;
        }
        if let Some(grace) = self.grace_count
            && grace < 0
        {
            return Err(StoreError::invalid(
                "grace_count",
                format!("`grace_count` must be 0 or more, got {grace}"),
            ));
        }
        if let Some(rollout) = self.rollout_percent
            && !(0..=100).contains(&rollout)
        {
            return Err(StoreError::invalid(
                "rollout_percent",
                format!("`rollout_percent` must be between 0 and 100, got {rollout}"),
            ));
        }
        Ok(())
    }
}
