//! The JSON the audit log keeps of a row before and after a change: a
//! column format inside the store, not an answer to any client (the
//! server has its own wire types). Every backend writes the same.

use serde_json::{Value, json};

use crate::model::{OverrideRow, Plan, User};

/// A plan: its settings and limits by key.
pub(crate) fn plan(plan: &Plan) -> Value {
    let limits: serde_json::Map<String, Value> = plan
        .limits
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut snapshot = json!({
        "id": plan.id,
        "enforcement_enabled": plan.enforcement_enabled,
        "grace_count": plan.grace_count,
        "rollout_percent": plan.rollout_percent,
        "limits": limits,
    });
    // Only plans with periods or thresholds carry those fields.
    if !plan.periods.is_empty() {
        let periods: serde_json::Map<String, Value> = plan
            .periods
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.as_str())))
            .collect();
        snapshot["periods"] = json!(periods);
    }
    if !plan.thresholds.is_empty() {
        let thresholds: serde_json::Map<String, Value> = plan
            .thresholds
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        snapshot["thresholds"] = json!(thresholds);
    }
    snapshot
}

/// A user and their plan.
pub(crate) fn user(user: &User) -> Value {
    json!({ "id": user.id, "plan_id": user.plan_id })
}

/// An override, with whether it had expired at `now_ms`.
pub(crate) fn override_row(row: &OverrideRow, now_ms: i64) -> Value {
    json!({
        "user_id": row.user_id,
        "entitlement_key": row.entitlement_key,
        "value": row.value,
        "expires_at_ms": row.expires_at_ms,
        "created_by": row.created_by,
        "created_at_ms": row.created_at_ms,
        "updated_at_ms": row.updated_at_ms,
        "expired": row.expired_at(now_ms),
    })
}

/// A webhook endpoint: never its secret.
pub(crate) fn webhook(webhook: &crate::events::Webhook) -> Value {
    let events: Vec<&str> = webhook.events.iter().map(|k| k.as_str()).collect();
    json!({ "id": webhook.id, "url": webhook.url, "events": events })
}
