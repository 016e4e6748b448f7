//! The JSON shapes the service answers with, shared with the command line.

use quota_store::{StoreError, UserStore};
use serde_json::{Value, json};

/// A user with their usage counters and grace used:
/// `{"id","plan_id","usage":{key: n},"grace_used":[{"plan_id","entitlement_key","used"}]}`.
pub fn user_details(store: &impl UserStore, user_id: &str) -> Result<Value, StoreError> {
    let mut details = store.user(user_id)?.to_json();
    let usage: serde_json::Map<String, Value> = store
        .usage(user_id)?
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    details["usage"] = Value::Object(usage);
    details["grace_used"] = store
        .grace(user_id)?
        .into_iter()
        .map(|(plan, key, used)| json!({ "plan_id": plan, "entitlement_key": key, "used": used }))
        .collect();
    Ok(details)
}
