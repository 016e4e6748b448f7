//! The policy lifecycle's records: stored component versions, the events
//! that activated, rolled back, shadowed or rejected them, and the bounded
//! decision log.

use rusqlite::{OptionalExtension, Row, params};
use serde_json::{Value, json};

use crate::error::StoreError;
use crate::sqlite::SqliteStore;

/// Component versions kept (besides the active and shadow ones).
pub const KEEP_VERSIONS: usize = 10;

/// What happened to a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Became the active policy after passing every stage.
    Activate,
    /// Became the active policy again by rollback.
    Rollback,
    /// Became the shadow policy.
    Shadow,
    /// The shadow policy was cleared.
    ClearShadow,
    /// An upload failed a stage; the detail says which and why.
    Reject,
}

impl PolicyAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Activate => "activate",
            PolicyAction::Rollback => "rollback",
            PolicyAction::Shadow => "shadow",
            PolicyAction::ClearShadow => "clear_shadow",
            PolicyAction::Reject => "reject",
        }
    }
}

/// One policy event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEvent {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// `activate`, `rollback`, `shadow`, `clear_shadow` or `reject`.
    pub action: String,
    /// The component's sha256 (none for `clear_shadow`).
    pub sha256: Option<String>,
    /// Free text: a rejection's stage and reason, a self-test summary.
    pub detail: String,
}

impl PolicyEvent {
    /// The JSON form.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "at_ms": self.at_ms,
            "actor": self.actor,
            "action": self.action,
            "sha256": self.sha256,
            "detail": self.detail,
        })
    }

    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(PolicyEvent {
            id: row.get(0)?,
            at_ms: row.get(1)?,
            actor: row.get(2)?,
            action: row.get(3)?,
            sha256: row.get(4)?,
            detail: row.get(5)?,
        })
    }
}

/// Where the policy lifecycle stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyState {
    /// The event that made the active policy active (none: the built-in
    /// reference policy, never replaced).
    pub active: Option<PolicyEvent>,
    /// The policy a rollback would restore: the most recently active one
    /// other than the active one.
    pub previous: Option<String>,
    /// The event that set the shadow policy, if one is set.
    pub shadow: Option<PolicyEvent>,
    /// The most recent rejected upload.
    pub last_rejection: Option<PolicyEvent>,
    /// The most recent events, newest first.
    pub history: Vec<PolicyEvent>,
}

const EVENT_COLUMNS: &str = "id, at_ms, actor, action, sha256, detail";

/// One logged enforce decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLogEntry {
    /// Increasing id (0 before it is stored).
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The user.
    pub user_id: String,
    /// The user's plan then.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The decision's status.
    pub status: String,
    /// The deciding policy.
    pub policy_sha256: String,
    /// The policy's input (docs/contract.md §2.1), JSON text.
    pub input_json: String,
    /// The decision (docs/contract.md §2.1 output), JSON text.
    pub output_json: String,
    /// The shadow policy, if one was set.
    pub shadow_sha256: Option<String>,
    /// `same`, `diverged` or `failed`.
    pub shadow_verdict: Option<String>,
    /// The shadow's decision when it diverged, or its error.
    pub shadow_json: Option<String>,
}

impl DecisionLogEntry {
    /// The JSON form, with input and output as objects.
    pub fn to_json(&self) -> Value {
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
        json!({
            "id": self.id,
            "at_ms": self.at_ms,
            "user_id": self.user_id,
            "plan_id": self.plan_id,
            "entitlement_key": self.entitlement_key,
            "status": self.status,
            "policy_sha256": self.policy_sha256,
            "input": parse(&self.input_json),
            "output": parse(&self.output_json),
            "shadow": self.shadow_sha256.as_ref().map(|sha256| json!({
                "policy_sha256": sha256,
                "verdict": self.shadow_verdict,
                "output": self.shadow_json.as_deref().map(parse),
            })),
        })
    }
}

/// Which logged decisions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only this entitlement's.
    pub entitlement_key: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only those where the shadow diverged.
    pub diverged: bool,
    /// Only ids below this (paging backwards).
    pub before_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl SqliteStore {
    /// Records a policy event; stores `component` (if given) under its
    /// sha256, and drops component versions beyond [`KEEP_VERSIONS`] that
    /// are neither active nor shadow.
    pub fn record_policy_event(
        &self,
        actor: &str,
        action: PolicyAction,
        sha256: Option<&str>,
        component: Option<&[u8]>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError> {
        self.write(|tx| {
            if let (Some(sha256), Some(component)) = (sha256, component) {
                tx.prepare_cached(
                    "INSERT INTO policy_versions (sha256, component, size_bytes, added_at_ms, added_by)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sha256) DO NOTHING",
                )?
                .execute(params![sha256, component, i64::try_from(component.len()).unwrap_or(i64::MAX), now_ms, actor])?;
            }
            let event = tx
                .prepare_cached(&format!(
                    "INSERT INTO policy_events (at_ms, actor, action, sha256, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING {EVENT_COLUMNS}"
                ))?
                .query_row(
                    params![now_ms, actor, action.as_str(), sha256, detail],
                    PolicyEvent::from_row,
                )?;
            // Keep the versions most recently named by an event, plus
            // whatever is active or shadow now.
            tx.prepare_cached(
                "DELETE FROM policy_versions
                 WHERE sha256 NOT IN (
                     SELECT sha256 FROM policy_events WHERE sha256 IS NOT NULL AND action != 'reject'
                     GROUP BY sha256 ORDER BY max(id) DESC LIMIT ?1)
                   AND sha256 IS NOT (SELECT sha256 FROM policy_events
                     WHERE action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1)
                   AND sha256 IS NOT (SELECT sha256 FROM policy_events
                     WHERE action IN ('shadow', 'clear_shadow') ORDER BY id DESC LIMIT 1)",
            )?
            .execute([i64::try_from(KEEP_VERSIONS).unwrap_or(i64::MAX)])?;
            Ok(event)
        })
    }

    /// Where the lifecycle stands: active, previous, shadow, last rejection
    /// and the last `history` events.
    pub fn policy_state(&self, history: usize) -> Result<PolicyState, StoreError> {
        let history = i64::try_from(history).unwrap_or(i64::MAX);
        self.read(|conn| {
            let latest = |actions: &str| -> Result<Option<PolicyEvent>, StoreError> {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM policy_events WHERE action IN ({actions}) ORDER BY id DESC LIMIT 1"
                    ))?
                    .query_row([], PolicyEvent::from_row)
                    .optional()?)
            };
            let active = latest("'activate', 'rollback'")?;
            let shadow = latest("'shadow', 'clear_shadow'")?.filter(|e| e.action == "shadow");
            let last_rejection = latest("'reject'")?;
            let previous = match &active {
                Some(active) => conn
                    .prepare_cached(
                        "SELECT sha256 FROM policy_events
                         WHERE action IN ('activate', 'rollback') AND sha256 IS NOT ?1
                           AND sha256 IN (SELECT sha256 FROM policy_versions)
                         ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([&active.sha256], |row| row.get(0))
                    .optional()?,
                None => None,
            };
            let history = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM policy_events ORDER BY id DESC LIMIT ?1"
                ))?
                .query_map([history], PolicyEvent::from_row)?
                .collect::<Result<_, _>>()?;
            Ok(PolicyState {
                active,
                previous,
                shadow,
                last_rejection,
                history,
            })
        })
    }

    /// A stored component's bytes.
    pub fn policy_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT component FROM policy_versions WHERE sha256 = ?1")?
                .query_row([sha256], |row| row.get(0))
                .optional()?)
        })
    }

    /// Appends decisions to the log, in one transaction.
    pub fn append_decisions(&self, entries: &[DecisionLogEntry]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decision_log (at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                     input_json, output_json, shadow_sha256, shadow_verdict, shadow_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            for e in entries {
                stmt.execute(params![
                    e.at_ms,
                    e.user_id,
                    e.plan_id,
                    e.entitlement_key,
                    e.status,
                    e.policy_sha256,
                    e.input_json,
                    e.output_json,
                    e.shadow_sha256,
                    e.shadow_verdict,
                    e.shadow_json
                ])?;
            }
            Ok(())
        })
    }

    /// Deletes logged decisions beyond the newest `keep` and those made
    /// before `before_ms`; returns how many.
    pub fn prune_decisions(&self, keep: usize, before_ms: i64) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM decision_log
                     WHERE id <= (SELECT max(id) FROM decision_log) - ?1 OR at_ms < ?2",
                )?
                .execute(params![keep, before_ms])?)
        })
    }

    /// Logged decisions matching `filter`, newest first.
    pub fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionLogEntry>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                        input_json, output_json, shadow_sha256, shadow_verdict, shadow_json
                 FROM decision_log
                 WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR entitlement_key = ?2)
                   AND (?3 IS NULL OR status = ?3) AND (?4 = 0 OR shadow_verdict = 'diverged')
                   AND (?5 IS NULL OR id < ?5)
                 ORDER BY id DESC LIMIT ?6",
            )?;
            let rows = stmt.query_map(
                params![
                    filter.user_id,
                    filter.entitlement_key,
                    filter.status,
                    filter.diverged,
                    filter.before_id,
                    limit
                ],
                |row| {
                    Ok(DecisionLogEntry {
                        id: row.get(0)?,
                        at_ms: row.get(1)?,
                        user_id: row.get(2)?,
                        plan_id: row.get(3)?,
                        entitlement_key: row.get(4)?,
                        status: row.get(5)?,
                        policy_sha256: row.get(6)?,
                        input_json: row.get(7)?,
                        output_json: row.get(8)?,
                        shadow_sha256: row.get(9)?,
                        shadow_verdict: row.get(10)?,
                        shadow_json: row.get(11)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}
