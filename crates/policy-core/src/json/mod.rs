//! The JSON form of docs/contract.md §2.1: decision inputs in, decisions and errors out.
//!
//! Inputs are read from a [`serde_json::Value`] by hand so that every
//! problem names its field: a missing or mistyped field, an integer outside
//! 64 bits, or an unknown field (a misspelt `overide` must not be ignored
//! silently) is an `invalid_input` error. Nullable fields (`override`, `plan`,
//! `default_limit`, `plan.limit`, `override.expires_at_ms`) may be omitted,
//! which means null; `plan.rollout_percent` may be omitted, which means 100.
//! Ranges (`requested >= 1`, ...) are the policy's to check, not this module's.

mod cases;

pub use cases::{Case, CaseFile, mismatches};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Decision, DecisionInput, Override, PlanInfo, PolicyError, UsageKeyInfo};

/// The error code of an input line that is not valid JSON.
pub const INVALID_JSON: &str = "invalid_json";
/// The error code of a host failure to run the policy (trap, deadline, ...).
pub const POLICY_UNAVAILABLE: &str = "policy_unavailable";

/// What evaluating one JSON input gave, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluated {
    /// The policy decided; the usage key is filled in.
    Decision(Decision, UsageKeyInfo),
    /// The input was rejected (by the JSON reader or by the policy).
    PolicyError(PolicyError),
    /// The policy could not be run; the message says why.
    Unavailable(String),
}

impl Evaluated {
    /// The JSON output line: a decision or an error object.
    pub fn to_value(&self) -> Value {
        match self {
            Evaluated::Decision(d, key) => DecisionJson::new(d, key).to_value(),
            Evaluated::PolicyError(e) => policy_error_value(e),
            Evaluated::Unavailable(message) => error_value(POLICY_UNAVAILABLE, message),
        }
    }
}

/// Evaluates one JSON decision input natively with the reference policy.
pub fn evaluate_native(value: &Value) -> Evaluated {
    match input_from_value(value).and_then(|input| crate::decide(&input).map(|d| (d, input))) {
        Ok((decision, input)) => {
            Evaluated::Decision(decision, crate::usage_key(&input.entitlement_key))
        }
        Err(e) => Evaluated::PolicyError(e),
    }
}

/// A decision in its JSON form, with the usage key filled in.
#[derive(Debug, Serialize)]
pub struct DecisionJson<'a> {
    /// `allow`, `allow_grace`, `warn_only` or `block`.
    pub status: &'static str,
    /// The effective limit; `-1` unlimited.
    pub limit: i64,
    /// `override`, `plan`, `default` or `none`.
    pub limit_source: &'static str,
    /// An active override set the limit.
    pub override_applied: bool,
    /// An override was present but expired.
    pub override_expired: bool,
    /// Echoed usage.
    pub usage: i64,
    /// Echoed request.
    pub requested: i64,
    /// `usage + requested`, saturating.
    pub projected_usage: i64,
    /// Units beyond the limit.
    pub overage: i64,
    /// Enforcement applies to this user.
    pub enforced: bool,
    /// Grace the host records when applying the decision.
    pub grace_to_consume: i64,
    /// Grace left afterwards.
    pub grace_remaining: i64,
    /// The usage counter the entitlement reads.
    pub usage_key: &'a str,
    /// The usage key came from the fallback rule.
    pub usage_key_fallback: bool,
    /// One human sentence.
    pub reason: &'a str,
}

impl<'a> DecisionJson<'a> {
    /// The JSON form of `d` for an entitlement whose usage key is `key`.
    pub fn new(d: &'a Decision, key: &'a UsageKeyInfo) -> Self {
        DecisionJson {
            status: d.status.as_str(),
            limit: d.limit,
            limit_source: d.limit_source.as_str(),
            override_applied: d.override_applied,
            override_expired: d.override_expired,
            usage: d.usage,
            requested: d.requested,
            projected_usage: d.projected_usage,
            overage: d.overage,
            enforced: d.enforced,
            grace_to_consume: d.grace_to_consume,
            grace_remaining: d.grace_remaining,
            usage_key: &key.usage_key,
            usage_key_fallback: key.fallback,
            reason: &d.reason,
        }
    }

    /// As a JSON value.
    pub fn to_value(&self) -> Value {
        // Serializing a struct of plain fields into a Value cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// `{"error":{"code":CODE,"message":MESSAGE}}`.
pub fn error_value(code: &str, message: &str) -> Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// The JSON error object of a policy error.
pub fn policy_error_value(err: &PolicyError) -> Value {
    error_value(err.code.as_str(), &err.message)
}

fn invalid(message: String) -> PolicyError {
    PolicyError::invalid_input(message)
}

/// A JSON object being read: tracks which fields were used.
struct Fields<'a> {
    prefix: &'static str,
    map: &'a Map<String, Value>,
    known: &'static [&'static str],
}

impl<'a> Fields<'a> {
    fn new(
        prefix: &'static str,
        value: &'a Value,
        known: &'static [&'static str],
    ) -> Result<Self, PolicyError> {
        let map = value.as_object().ok_or_else(|| {
            let what = if prefix.is_empty() {
                "the decision input".to_owned()
            } else {
                format!("`{}`", prefix.trim_end_matches('.'))
            };
            invalid(format!("{what} must be a JSON object, got {}", kind(value)))
        })?;
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(format!("unknown field `{prefix}{unknown}`")));
        }
        Ok(Fields { prefix, map, known })
    }

    fn name(&self, field: &str) -> String {
        debug_assert!(self.known.contains(&field));
        format!("{}{field}", self.prefix)
    }

    /// The field, `None` when missing or null.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn required(&self, field: &str) -> Result<&'a Value, PolicyError> {
        self.get(field)
            .ok_or_else(|| invalid(format!("missing field `{}`", self.name(field))))
    }

    fn string(&self, field: &str) -> Result<String, PolicyError> {
        let v = self.required(field)?;
        v.as_str().map(str::to_owned).ok_or_else(|| {
            invalid(format!(
                "`{}` must be a string, got {}",
                self.name(field),
                kind(v)
            ))
        })
    }

    fn int(&self, field: &str) -> Result<i64, PolicyError> {
        let v = self.required(field)?;
        self.as_int(field, v)
    }

    fn opt_int(&self, field: &str) -> Result<Option<i64>, PolicyError> {
        self.get(field).map(|v| self.as_int(field, v)).transpose()
    }

    fn as_int(&self, field: &str, v: &Value) -> Result<i64, PolicyError> {
        if let Some(n) = v.as_i64() {
            return Ok(n);
        }
        // `-0` is a JSON integer, but the parser reads it as the float -0.0.
        if v.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) {
            return Ok(0);
        }
        let why = if v.is_u64() {
            "is larger than the 64-bit integer maximum".to_owned()
        } else {
            format!("must be an integer, got {}", kind(v))
        };
        Err(invalid(format!("`{}` {why}", self.name(field))))
    }

    fn bool(&self, field: &str) -> Result<bool, PolicyError> {
        let v = self.required(field)?;
        v.as_bool().ok_or_else(|| {
            invalid(format!(
                "`{}` must be true or false, got {}",
                self.name(field),
                kind(v)
            ))
        })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

const INPUT_FIELDS: &[&str] = &[
    "user_id",
    "plan_id",
    "entitlement_key",
    "requested",
    "now_ms",
    "usage",
    "override",
    "plan",
    "default_limit",
    "grace_used",
];
const OVERRIDE_FIELDS: &[&str] = &["value", "expires_at_ms"];
const PLAN_FIELDS: &[&str] = &[
    "limit",
    "enforcement_enabled",
    "grace_count",
    "rollout_percent",
];

/// Reads a decision input from its JSON form.
pub fn input_from_value(value: &Value) -> Result<DecisionInput, PolicyError> {
    let f = Fields::new("", value, INPUT_FIELDS)?;
    let r#override = match f.get("override") {
        None => None,
        Some(v) => {
            let o = Fields::new("override.", v, OVERRIDE_FIELDS)?;
            Some(Override {
                value: o.int("value")?,
                expires_at_ms: o.opt_int("expires_at_ms")?,
            })
        }
    };
    let plan = match f.get("plan") {
        None => None,
        Some(v) => {
            let p = Fields::new("plan.", v, PLAN_FIELDS)?;
            Some(PlanInfo {
                limit: p.opt_int("limit")?,
                enforcement_enabled: p.bool("enforcement_enabled")?,
                grace_count: p.int("grace_count")?,
                rollout_percent: p.opt_int("rollout_percent")?.unwrap_or(100),
            })
        }
    };
    Ok(DecisionInput {
        user_id: f.string("user_id")?,
        plan_id: f.string("plan_id")?,
        entitlement_key: f.string("entitlement_key")?,
        requested: f.int("requested")?,
        now_ms: f.int("now_ms")?,
        usage: f.int("usage")?,
        r#override,
        plan,
        default_limit: f.opt_int("default_limit")?,
        grace_used: f.int("grace_used")?,
    })
}

/// The JSON form of a decision input (the inverse of [`input_from_value`]).
pub fn input_to_value(input: &DecisionInput) -> Value {
    serde_json::json!({
        "user_id": input.user_id,
        "plan_id": input.plan_id,
        "entitlement_key": input.entitlement_key,
        "requested": input.requested,
        "now_ms": input.now_ms,
        "usage": input.usage,
        "override": input.r#override.as_ref().map(|o| serde_json::json!({
            "value": o.value,
            "expires_at_ms": o.expires_at_ms,
        })),
        "plan": input.plan.as_ref().map(|p| serde_json::json!({
            "limit": p.limit,
            "enforcement_enabled": p.enforcement_enabled,
            "grace_count": p.grace_count,
            "rollout_percent": p.rollout_percent,
        })),
        "default_limit": input.default_limit,
        "grace_used": input.grace_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "user_id": "u", "plan_id": "p", "entitlement_key": "drafts.max",
            "requested": 1, "now_ms": 0, "usage": 0, "grace_used": 0
        })
    }

    fn err_of(v: Value) -> String {
        match input_from_value(&v) {
            Ok(input) => format!("parsed: {input:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn nullable_fields_may_be_omitted() {
        let input = input_from_value(&base()).unwrap();
        assert_eq!(input.r#override, None);
        assert_eq!(input.plan, None);
        assert_eq!(input.default_limit, None);
    }

    #[test]
    fn omitted_rollout_means_one_hundred() {
        let mut v = base();
        v["plan"] = json!({"limit": 3, "enforcement_enabled": true, "grace_count": 0});
        let plan = input_from_value(&v).unwrap().plan.unwrap();
        assert_eq!(plan.rollout_percent, 100);
        assert_eq!(plan.limit, Some(3));
    }

    #[test]
    fn unknown_fields_are_named() {
        let mut v = base();
        v["overide"] = json!(null);
        assert_eq!(err_of(v), "unknown field `overide`");
        let mut v = base();
        v["plan"] = json!({"enforcement_enabled": true, "grace_count": 0, "grace": 1});
        assert_eq!(err_of(v), "unknown field `plan.grace`");
    }

    #[test]
    fn wrong_types_and_missing_fields_are_named() {
        let mut v = base();
        v["requested"] = json!("1");
        assert_eq!(err_of(v), "`requested` must be an integer, got a string");
        let mut v = base();
        v["usage"] = json!(1.5);
        assert_eq!(
            err_of(v),
            "`usage` must be an integer, got a fractional number"
        );
        let mut v = base();
        v.as_object_mut().unwrap().remove("now_ms");
        assert_eq!(err_of(v), "missing field `now_ms`");
        let mut v = base();
        v["override"] = json!({"expires_at_ms": 5});
        assert_eq!(err_of(v), "missing field `override.value`");
        let mut v = base();
        v["usage"] = json!(9_223_372_036_854_775_808u64);
        assert_eq!(
            err_of(v),
            "`usage` is larger than the 64-bit integer maximum"
        );
        assert_eq!(
            err_of(json!([1])),
            "the decision input must be a JSON object, got an array"
        );
    }

    #[test]
    fn minus_zero_is_the_integer_zero() {
        let v: Value = serde_json::from_str(
            r#"{"user_id":"u","plan_id":"p","entitlement_key":"k","requested":1,"now_ms":-0,"usage":-0,"grace_used":0}"#,
        )
        .unwrap();
        let input = input_from_value(&v).unwrap();
        assert_eq!((input.now_ms, input.usage), (0, 0));
    }

    #[test]
    fn input_round_trips_through_json() {
        let mut v = base();
        v["override"] = json!({"value": -1, "expires_at_ms": 10});
        v["plan"] = json!({"limit": null, "enforcement_enabled": false, "grace_count": 2, "rollout_percent": 30});
        v["default_limit"] = json!(7);
        let input = input_from_value(&v).unwrap();
        assert_eq!(input_from_value(&input_to_value(&input)).unwrap(), input);
    }
}
