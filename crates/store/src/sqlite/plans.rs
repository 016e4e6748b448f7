//! Plans and the global defaults, on SQLite; each change audited.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::json;

use super::SqliteStore;
use super::audit::audit;
use super::leases::revoke;
use crate::checks::{id, key, limit_value};
use crate::error::StoreError;
use crate::events::group_thresholds;
use crate::leases::Revoke;
use crate::model::{Plan, PlanChange};
use crate::period::{self, PeriodKind};
use crate::snapshot;
use crate::traits::PlanStore;

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
    let periods: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT entitlement_key, period FROM plan_periods WHERE plan_id = ?1 ORDER BY entitlement_key",
        )?
        .query_map([plan_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let thresholds: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT entitlement_key, percent FROM plan_thresholds WHERE plan_id = ?1 ORDER BY entitlement_key, percent",
        )?
        .query_map([plan_id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Some(Plan {
        id: plan_id.to_owned(),
        enforcement_enabled,
        grace_count,
        rollout_percent,
        limits,
        periods: period::parse_all(periods)?,
        thresholds: group_thresholds(thresholds),
    }))
}

impl PlanStore for SqliteStore {
    fn set_plan(
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
            for (key, kind) in &change.periods {
                if *kind == PeriodKind::None {
                    tx.prepare_cached("DELETE FROM plan_periods WHERE plan_id = ?1 AND entitlement_key = ?2")?
                        .execute(params![plan_id, key])?;
                    continue;
                }
                // A new kind starts a new period now; the same kind keeps its own.
                tx.prepare_cached(
                    "INSERT INTO plan_periods (plan_id, entitlement_key, period, since_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (plan_id, entitlement_key) DO UPDATE SET period = excluded.period, since_ms = excluded.since_ms
                     WHERE period <> excluded.period",
                )?
                .execute(params![plan_id, key, kind.as_str(), now_ms])?;
            }
            for (key, percents) in &change.thresholds {
                tx.prepare_cached("DELETE FROM plan_thresholds WHERE plan_id = ?1 AND entitlement_key = ?2")?
                    .execute(params![plan_id, key])?;
                for percent in percents {
                    tx.prepare_cached(
                        "INSERT INTO plan_thresholds (plan_id, entitlement_key, percent) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![plan_id, key, percent])?;
                }
            }
            let after = plan(tx, plan_id)?.ok_or_else(|| StoreError::UnknownPlan(plan_id.to_owned()))?;
            if before.as_ref() != Some(&after) {
                let action = if before.is_none() { "plan.create" } else { "plan.update" };
                audit(tx, actor, action, &format!("plan:{plan_id}"), before.as_ref().map(snapshot::plan), Some(snapshot::plan(&after)), now_ms)?;
                revoke(tx, Revoke::Plan(plan_id), now_ms)?;
            }
            Ok(after)
        })
    }

    fn plan(&self, plan_id: &str) -> Result<Plan, StoreError> {
        self.read(|conn| plan(conn, plan_id))?
            .ok_or_else(|| StoreError::UnknownPlan(plan_id.to_owned()))
    }

    fn plans(&self) -> Result<Vec<Plan>, StoreError> {
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

    fn set_default(
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
                audit(tx, actor, "default.set", &format!("default:{key}"), Some(json!(before)), Some(json!(value)), now_ms)?;
                revoke(tx, Revoke::Key(key), now_ms)?;
            }
            Ok(())
        })
    }

    fn defaults(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT entitlement_key, limit_value FROM entitlement_defaults ORDER BY entitlement_key")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
    }

    fn plan_user_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT p.id, count(u.id) FROM plans p LEFT JOIN users u ON u.plan_id = p.id
                     GROUP BY p.id ORDER BY p.id",
                )?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
    }
}
