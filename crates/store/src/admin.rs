//! Admin operations. Each runs in one write transaction and writes what it
//! changed to the audit log (who, what, before, after) in the same one.

use quota_policy_core::names;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::error::StoreError;
use crate::model::{AuditEntry, OverrideRow, Plan, User};
use crate::sqlite::SqliteStore;

/// A change to a plan: only the fields given change. A new plan starts with
/// enforcement off, grace 0, rollout 100 and no limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// Limits to set, by entitlement key (`-1` unlimited).
    pub limits: Vec<(String, i64)>,
    /// Entitlement keys whose plan limit to remove (falls back to the default).
    pub remove_limits: Vec<String>,
    /// Enforcement on or off.
    pub enforcement_enabled: Option<bool>,
    /// Grace units per (user, plan, entitlement).
    pub grace_count: Option<i64>,
    /// Share of users (0..=100) enforcement applies to.
    pub rollout_percent: Option<i64>,
}

fn non_empty(field: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("`{field}` must not be empty")));
    }
    Ok(())
}

/// An entitlement key by the one rule every edge applies
/// ([`quota_policy_core::names::check_key`]).
pub(crate) fn key(field: &str, key: &str) -> Result<(), StoreError> {
    names::check_key(field, key).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A user or plan id by the one rule every edge applies
/// ([`quota_policy_core::names::check_id`]).
pub(crate) fn id(field: &str, id: &str) -> Result<(), StoreError> {
    names::check_id(field, id).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn limit_value(field: &str, value: i64) -> Result<(), StoreError> {
    if value < -1 {
        return Err(StoreError::Invalid(format!(
            "`{field}` must be -1 (unlimited) or more, got {value}"
        )));
    }
    Ok(())
}

impl PlanChange {
    fn validate(&self) -> Result<(), StoreError> {
        for (name, value) in &self.limits {
            key("entitlement_key", name)?;
            limit_value(&format!("limit {name}"), *value)?;
        }
        for name in &self.remove_limits {
            key("entitlement_key", name)?;
        }
        if let Some(grace) = self.grace_count
            && grace < 0
        {
            return Err(StoreError::Invalid(format!(
                "`grace_count` must be 0 or more, got {grace}"
            )));
        }
        if let Some(rollout) = self.rollout_percent
            && !(0..=100).contains(&rollout)
        {
            return Err(StoreError::Invalid(format!(
                "`rollout_percent` must be between 0 and 100, got {rollout}"
            )));
        }
        Ok(())
    }
}

fn audit(
    conn: &Connection,
    actor: &str,
    action: &str,
    subject: &str,
    before: &Value,
    after: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    let text = |v: &Value| {
        if v.is_null() {
            None
        } else {
            Some(v.to_string())
        }
    };
    conn.prepare_cached(
        "INSERT INTO audit_log (at_ms, actor, action, subject, before_json, after_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![now_ms, actor, action, subject, text(before), text(after)])?;
    Ok(())
}

pub(crate) fn plan(conn: &Connection, plan_id: &str) -> Result<Option<Plan>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT enforcement_enabled, grace_count, rollout_percent FROM plans WHERE id = ?1",
        )?
        .query_row([plan_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?;
    let Some((enforcement_enabled, grace_count, rollout_percent)) = head else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT entitlement_key, limit_value FROM plan_entitlements WHERE plan_id = ?1 ORDER BY entitlement_key",
    )?;
    let limits = stmt
        .query_map([plan_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Some(Plan {
        id: plan_id.to_owned(),
        enforcement_enabled,
        grace_count,
        rollout_percent,
        limits,
    }))
}

pub(crate) fn user(conn: &Connection, user_id: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT plan_id FROM users WHERE id = ?1")?
        .query_row([user_id], |row| {
            Ok(User {
                id: user_id.to_owned(),
                plan_id: row.get(0)?,
            })
        })
        .optional()?)
}

fn override_row(
    conn: &Connection,
    user_id: &str,
    key: &str,
) -> Result<Option<OverrideRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms
             FROM overrides WHERE user_id = ?1 AND entitlement_key = ?2",
        )?
        .query_row([user_id, key], read_override)
        .optional()?)
}

fn read_override(row: &rusqlite::Row<'_>) -> rusqlite::Result<OverrideRow> {
    Ok(OverrideRow {
        user_id: row.get(0)?,
        entitlement_key: row.get(1)?,
        value: row.get(2)?,
        expires_at_ms: row.get(3)?,
        created_by: row.get(4)?,
        created_at_ms: row.get(5)?,
        updated_at_ms: row.get(6)?,
    })
}

fn json_or_null<T>(value: Option<&T>, f: impl Fn(&T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

impl SqliteStore {
    /// Creates the plan, or changes only the fields given.
    pub fn set_plan(
        &self,
        actor: &str,
        plan_id: &str,
        change: &PlanChange,
        now_ms: i64,
    ) -> Result<Plan, StoreError> {
        id("plan_id", plan_id)?;
        change.validate()?;
        self.write(|tx| {
            let before = plan(tx, plan_id)?;
            if before.is_none() {
                tx.prepare_cached(
                    "INSERT INTO plans (id, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?2)",
                )?
                .execute(params![plan_id, now_ms])?;
            }
            tx.prepare_cached(
                "UPDATE plans SET enforcement_enabled = COALESCE(?2, enforcement_enabled),
                                  grace_count = COALESCE(?3, grace_count),
                                  rollout_percent = COALESCE(?4, rollout_percent),
                                  updated_at_ms = ?5
                 WHERE id = ?1",
            )?
            .execute(params![plan_id, change.enforcement_enabled, change.grace_count, change.rollout_percent, now_ms])?;
            for (key, value) in &change.limits {
                tx.prepare_cached(
                    "INSERT INTO plan_entitlements (plan_id, entitlement_key, limit_value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (plan_id, entitlement_key) DO UPDATE SET limit_value = excluded.limit_value",
                )?
                .execute(params![plan_id, key, value])?;
            }
            for key in &change.remove_limits {
                tx.prepare_cached("DELETE FROM plan_entitlements WHERE plan_id = ?1 AND entitlement_key = ?2")?
                    .execute(params![plan_id, key])?;
            }
            let after = plan(tx, plan_id)?.ok_or_else(|| StoreError::UnknownPlan(plan_id.to_owned()))?;
            if before.as_ref() != Some(&after) {
                let action = if before.is_none() { "plan.create" } else { "plan.update" };
                audit(tx, actor, action, &format!("plan:{plan_id}"), &json_or_null(before.as_ref(), Plan::to_json), &after.to_json(), now_ms)?;
            }
            Ok(after)
        })
    }

    /// A plan with its limits.
    pub fn plan(&self, plan_id: &str) -> Result<Plan, StoreError> {
        self.read(|conn| plan(conn, plan_id))?
            .ok_or_else(|| StoreError::UnknownPlan(plan_id.to_owned()))
    }

    /// Every plan, by id.
    pub fn plans(&self) -> Result<Vec<Plan>, StoreError> {
        self.read(|conn| {
            let ids: Vec<String> = conn
                .prepare_cached("SELECT id FROM plans ORDER BY id")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter()
                .filter_map(|id| plan(conn, id).transpose())
                .collect()
        })
    }

    /// Sets the global default limit for an entitlement.
    pub fn set_default(
        &self,
        actor: &str,
        key: &str,
        value: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self::key("entitlement_key", key)?;
        limit_value("default", value)?;
        self.write(|tx| {
            let before: Option<i64> = tx
                .prepare_cached("SELECT limit_value FROM entitlement_defaults WHERE entitlement_key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?;
            tx.prepare_cached(
                "INSERT INTO entitlement_defaults (entitlement_key, limit_value, updated_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (entitlement_key) DO UPDATE SET limit_value = excluded.limit_value, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![key, value, now_ms])?;
            if before != Some(value) {
                audit(tx, actor, "default.set", &format!("default:{key}"), &json!(before), &json!(value), now_ms)?;
            }
            Ok(())
        })
    }

    /// The global defaults, by key.
    pub fn defaults(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT entitlement_key, limit_value FROM entitlement_defaults ORDER BY entitlement_key")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
    }

    /// Creates a user on a plan.
    pub fn create_user(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        self.insert_user(actor, user_id, plan_id, None, now_ms)
    }

    /// Creates a user on a plan together with their API token's sha256, in
    /// one transaction: there is never a user without their token.
    pub fn create_user_with_token(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        self.insert_user(actor, user_id, plan_id, Some(token_sha256), now_ms)
    }

    fn insert_user(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        token_sha256: Option<&str>,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        id("user_id", user_id)?;
        id("plan_id", plan_id)?;
        self.write(|tx| {
            if plan(tx, plan_id)?.is_none() {
                return Err(StoreError::UnknownPlan(plan_id.to_owned()));
            }
            if user(tx, user_id)?.is_some() {
                return Err(StoreError::UserExists(user_id.to_owned()));
            }
            tx.prepare_cached("INSERT INTO users (id, plan_id, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?3)")?
                .execute(params![user_id, plan_id, now_ms])?;
            if let Some(token) = token_sha256 {
                tx.prepare_cached("INSERT INTO user_tokens (token_sha256, user_id, created_at_ms) VALUES (?1, ?2, ?3)")?
                    .execute(params![token, user_id, now_ms])?;
            }
            let created = User {
                id: user_id.to_owned(),
                plan_id: plan_id.to_owned(),
            };
            audit(tx, actor, "user.create", &format!("user:{user_id}"), &Value::Null, &created.to_json(), now_ms)?;
            Ok(created)
        })
    }

    /// A user.
    pub fn user(&self, user_id: &str) -> Result<User, StoreError> {
        self.read(|conn| user(conn, user_id))?
            .ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))
    }

    /// Moves a user to another plan and resets all their grace usage.
    pub fn set_user_plan(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        id("user_id", user_id)?;
        id("plan_id", plan_id)?;
        self.write(|tx| {
            let before =
                user(tx, user_id)?.ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
            if plan(tx, plan_id)?.is_none() {
                return Err(StoreError::UnknownPlan(plan_id.to_owned()));
            }
            tx.prepare_cached("UPDATE users SET plan_id = ?2, updated_at_ms = ?3 WHERE id = ?1")?
                .execute(params![user_id, plan_id, now_ms])?;
            let reset = tx
                .prepare_cached("DELETE FROM grace_usage WHERE user_id = ?1")?
                .execute([user_id])?;
            let after = User {
                id: user_id.to_owned(),
                plan_id: plan_id.to_owned(),
            };
            let mut after_json = after.to_json();
            after_json["grace_rows_reset"] = json!(reset);
            audit(
                tx,
                actor,
                "user.set_plan",
                &format!("user:{user_id}"),
                &before.to_json(),
                &after_json,
                now_ms,
            )?;
            Ok(after)
        })
    }

    /// Sets (creates or replaces) a user's override for one entitlement.
    pub fn set_override(
        &self,
        actor: &str,
        user_id: &str,
        key: &str,
        value: i64,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<OverrideRow, StoreError> {
        id("user_id", user_id)?;
        self::key("entitlement_key", key)?;
        non_empty("created_by", actor)?;
        limit_value("override value", value)?;
        self.write(|tx| {
            if user(tx, user_id)?.is_none() {
                return Err(StoreError::UnknownUser(user_id.to_owned()));
            }
            let before = override_row(tx, user_id, key)?;
            tx.prepare_cached(
                "INSERT INTO overrides (user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT (user_id, entitlement_key) DO UPDATE SET
                     value = excluded.value, expires_at_ms = excluded.expires_at_ms,
                     created_by = excluded.created_by, updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![user_id, key, value, expires_at_ms, actor, now_ms])?;
            let after = override_row(tx, user_id, key)?.ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
            audit(
                tx,
                actor,
                "override.set",
                &format!("override:{user_id}:{key}"),
                &json_or_null(before.as_ref(), |o| o.to_json(now_ms)),
                &after.to_json(now_ms),
                now_ms,
            )?;
            Ok(after)
        })
    }

    /// Removes a user's override for one entitlement; returns it, or `None`
    /// when there was none (then nothing is written).
    pub fn clear_override(
        &self,
        actor: &str,
        user_id: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<OverrideRow>, StoreError> {
        id("user_id", user_id)?;
        self::key("entitlement_key", key)?;
        self.write(|tx| {
            if user(tx, user_id)?.is_none() {
                return Err(StoreError::UnknownUser(user_id.to_owned()));
            }
            let before = override_row(tx, user_id, key)?;
            if let Some(removed) = &before {
                tx.prepare_cached(
                    "DELETE FROM overrides WHERE user_id = ?1 AND entitlement_key = ?2",
                )?
                .execute([user_id, key])?;
                audit(
                    tx,
                    actor,
                    "override.clear",
                    &format!("override:{user_id}:{key}"),
                    &removed.to_json(now_ms),
                    &Value::Null,
                    now_ms,
                )?;
            }
            Ok(before)
        })
    }

    /// Overrides, of one user or all, by user then key.
    pub fn overrides(&self, user_id: Option<&str>) -> Result<Vec<OverrideRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms
                 FROM overrides WHERE ?1 IS NULL OR user_id = ?1 ORDER BY user_id, entitlement_key",
            )?;
            Ok(stmt.query_map([user_id], read_override)?.collect::<Result<_, _>>()?)
        })
    }

    /// The audit log, newest first, at most `limit` entries.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at_ms, actor, action, subject, before_json, after_json FROM audit_log ORDER BY id DESC LIMIT ?1",
            )?;
            let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            Ok(stmt
                .query_map([limit], |row| {
                    Ok(AuditEntry {
                        id: row.get(0)?,
                        at_ms: row.get(1)?,
                        actor: row.get(2)?,
                        action: row.get(3)?,
                        subject: row.get(4)?,
                        before: parse(row.get(5)?),
                        after: parse(row.get(6)?),
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
    }

    /// The user's usage counters, by key.
    pub fn usage(&self, user_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT usage_key, value FROM usage_counters WHERE user_id = ?1 ORDER BY usage_key")?
                .query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
    }

    /// A user with their usage counters and grace used, as JSON:
    /// `{"id","plan_id","usage":{key: n},"grace_used":[{"plan_id","entitlement_key","used"}]}`.
    pub fn user_details(&self, user_id: &str) -> Result<Value, StoreError> {
        let mut out = self.user(user_id)?.to_json();
        let usage: serde_json::Map<String, Value> = self
            .usage(user_id)?
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        out["usage"] = Value::Object(usage);
        out["grace_used"] = self
            .grace(user_id)?
            .into_iter()
            .map(|(plan, key, used)| json!({ "plan_id": plan, "entitlement_key": key, "used": used }))
            .collect();
        Ok(out)
    }

    /// Grace used by the user on their plans: (plan, key, used).
    pub fn grace(&self, user_id: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT plan_id, entitlement_key, used FROM grace_usage WHERE user_id = ?1 ORDER BY plan_id, entitlement_key")?
                .query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<Result<_, _>>()?)
        })
    }
}
