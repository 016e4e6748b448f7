//! Plans and the global defaults, on PostgreSQL; each change audited.

use serde_json::json;

use super::audit::audit;
use super::leases::revoke;
use super::{Conn, PgStore};
use crate::checks::{id, key, limit_value};
use crate::error::StoreError;
use crate::events::group_thresholds;
use crate::leases::Revoke;
use crate::model::{Plan, PlanChange};
use crate::period::{self, PeriodKind};
use crate::snapshot;
use crate::traits::PlanStore;

pub(crate) fn plan(conn: &mut Conn, plan_id: &str) -> Result<Option<Plan>, StoreError> {
    let Some(head) = conn.query_opt(
        "SELECT enforcement_enabled, grace_count, rollout_percent FROM plans WHERE id = $1",
        &[&plan_id],
    )?
    else {
        return Ok(None);
    };
    let limits = conn
        .query(
            "SELECT entitlement_key, limit_value FROM plan_entitlements WHERE plan_id = $1 ORDER BY entitlement_key",
            &[&plan_id],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let periods = conn
        .query(
            "SELECT entitlement_key, period FROM plan_periods WHERE plan_id = $1 ORDER BY entitlement_key",
            &[&plan_id],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let thresholds = conn
        .query(
            "SELECT entitlement_key, percent FROM plan_thresholds WHERE plan_id = $1 ORDER BY entitlement_key, percent",
            &[&plan_id],
        )?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    Ok(Some(Plan {
        id: plan_id.to_owned(),
        enforcement_enabled: head.get(0),
        grace_count: head.get(1),
        rollout_percent: head.get(2),
        limits,
        periods: period::parse_all(periods)?,
        thresholds: group_thresholds(thresholds),
    }))
}

impl PlanStore for PgStore {
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
            // Created if new; then locked, so concurrent changes of one
            // plan are audited one after the other.
            let created = tx.execute(
                "INSERT INTO plans (id, created_at_ms, updated_at_ms) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING",
                &[&plan_id, &now_ms],
            )? == 1;
            tx.query_one("SELECT 1 FROM plans WHERE id = $1 FOR UPDATE", &[&plan_id])?;
            let before = if created { None } else { plan(tx, plan_id)? };
            tx.execute(
                "UPDATE plans SET enforcement_enabled = COALESCE($2, enforcement_enabled),
                                  grace_count = COALESCE($3, grace_count),
                                  rollout_percent = COALESCE($4, rollout_percent),
                                  updated_at_ms = $5
                 WHERE id = $1",
                &[&plan_id, &change.enforcement_enabled, &change.grace_count, &change.rollout_percent, &now_ms],
            )?;
            for (key, value) in &change.limits {
                tx.execute(
                    "INSERT INTO plan_entitlements (plan_id, entitlement_key, limit_value) VALUES ($1, $2, $3)
                     ON CONFLICT (plan_id, entitlement_key) DO UPDATE SET limit_value = excluded.limit_value",
                    &[&plan_id, key, value],
                )?;
            }
            for key in &change.remove_limits {
                tx.execute(
                    "DELETE FROM plan_entitlements WHERE plan_id = $1 AND entitlement_key = $2",
                    &[&plan_id, key],
                )?;
            }
            for (key, kind) in &change.periods {
                if *kind == PeriodKind::None {
                    tx.execute(
                        "DELETE FROM plan_periods WHERE plan_id = $1 AND entitlement_key = $2",
                        &[&plan_id, key],
                    )?;
                    continue;
                }
                // A new kind starts a new period now; the same kind keeps its own.
                tx.execute(
                    "INSERT INTO plan_periods (plan_id, entitlement_key, period, since_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (plan_id, entitlement_key) DO UPDATE SET period = excluded.period, since_ms = excluded.since_ms
                     WHERE plan_periods.period <> excluded.period",
                    &[&plan_id, key, &kind.as_str(), &now_ms],
                )?;
            }
            for (key, percents) in &change.thresholds {
                tx.execute(
                    "DELETE FROM plan_thresholds WHERE plan_id = $1 AND entitlement_key = $2",
                    &[&plan_id, key],
                )?;
                for percent in percents {
                    tx.execute(
                        "INSERT INTO plan_thresholds (plan_id, entitlement_key, percent) VALUES ($1, $2, $3)",
                        &[&plan_id, key, percent],
                    )?;
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
                .query("SELECT id FROM plans ORDER BY id", &[])?
                .iter()
                .map(|row| row.get(0))
                .collect();
            let mut plans = Vec::with_capacity(ids.len());
            for id in &ids {
                plans.extend(plan(conn, id)?);
            }
            Ok(plans)
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
                .query_opt(
                    "SELECT limit_value FROM entitlement_defaults WHERE entitlement_key = $1 FOR UPDATE",
                    &[&key],
                )?
                .map(|row| row.get(0));
            tx.execute(
                "INSERT INTO entitlement_defaults (entitlement_key, limit_value, updated_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (entitlement_key) DO UPDATE SET limit_value = excluded.limit_value, updated_at_ms = excluded.updated_at_ms",
                &[&key, &value, &now_ms],
            )?;
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
                .query(
                    "SELECT entitlement_key, limit_value FROM entitlement_defaults ORDER BY entitlement_key",
                    &[],
                )?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })
    }

    fn plan_user_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query(
                    "SELECT p.id, count(u.id) FROM plans p LEFT JOIN users u ON u.plan_id = p.id
                     GROUP BY p.id ORDER BY p.id",
                    &[],
                )?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })
    }
}
