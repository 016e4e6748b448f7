//! Moving a SQLite state into an empty PostgreSQL database, for the user
//! who outgrows one machine: every table but the per-host decision log and
//! the dashboard's sessions and decision counts, row for row, in one
//! PostgreSQL transaction (all or nothing).

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// How a SQLite column's values go into PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    BigInt,
    Int,
    Bool,
    Bytes,
}

use Kind::{BigInt, Bool, Bytes, Int, Text};

/// Every table copied, parents before children, with its columns.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "plans",
        &[
            ("id", Text),
            ("enforcement_enabled", Bool),
            ("grace_count", BigInt),
            ("rollout_percent", BigInt),
            ("created_at_ms", BigInt),
            ("updated_at_ms", BigInt),
        ],
    ),
    (
        "plan_entitlements",
        &[
            ("plan_id", Text),
            ("entitlement_key", Text),
            ("limit_value", BigInt),
        ],
    ),
    (
        "entitlement_defaults",
        &[
            ("entitlement_key", Text),
            ("limit_value", BigInt),
            ("updated_at_ms", BigInt),
        ],
    ),
    (
        "users",
        &[
            ("id", Text),
            ("plan_id", Text),
            ("created_at_ms", BigInt),
            ("updated_at_ms", BigInt),
            ("plan_started_at_ms", BigInt),
        ],
    ),
    (
        "plan_periods",
        &[
            ("plan_id", Text),
            ("entitlement_key", Text),
            ("period", Text),
            ("since_ms", BigInt),
        ],
    ),
    (
        "user_tokens",
        &[
            ("token_sha256", Text),
            ("user_id", Text),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "usage_counters",
        &[("user_id", Text), ("usage_key", Text), ("value", BigInt)],
    ),
    (
        "period_usage",
        &[
            ("user_id", Text),
            ("usage_key", Text),
            ("period_start_ms", BigInt),
            ("value", BigInt),
        ],
    ),
    (
        "overrides",
        &[
            ("user_id", Text),
            ("entitlement_key", Text),
            ("value", BigInt),
            ("expires_at_ms", BigInt),
            ("created_by", Text),
            ("created_at_ms", BigInt),
            ("updated_at_ms", BigInt),
        ],
    ),
    (
        "grace_usage",
        &[
            ("user_id", Text),
            ("plan_id", Text),
            ("entitlement_key", Text),
            ("used", BigInt),
            ("updated_at_ms", BigInt),
        ],
    ),
    (
        "period_grace",
        &[
            ("user_id", Text),
            ("plan_id", Text),
            ("entitlement_key", Text),
            ("period_start_ms", BigInt),
            ("used", BigInt),
            ("updated_at_ms", BigInt),
        ],
    ),
    (
        "audit_log",
        &[
            ("id", BigInt),
            ("at_ms", BigInt),
            ("actor", Text),
            ("action", Text),
            ("subject", Text),
            ("before_json", Text),
            ("after_json", Text),
        ],
    ),
    (
        "drafts",
        &[
            ("id", BigInt),
            ("owner_id", Text),
            ("title", Text),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "segments",
        &[
            ("id", BigInt),
            ("draft_id", BigInt),
            ("author_id", Text),
            ("body", Text),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "invites",
        &[
            ("id", BigInt),
            ("draft_id", BigInt),
            ("inviter_id", Text),
            ("invitee_id", Text),
            ("status", Text),
            ("created_at_ms", BigInt),
            ("accepted_at_ms", BigInt),
        ],
    ),
    (
        "collaborators",
        &[
            ("draft_id", BigInt),
            ("user_id", Text),
            ("added_at_ms", BigInt),
        ],
    ),
    (
        "idempotency_keys",
        &[
            ("user_id", Text),
            ("idempotency_key", Text),
            ("request_sha256", Text),
            ("status_code", Int),
            ("response_json", Text),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "policy_versions",
        &[
            ("sha256", Text),
            ("component", Bytes),
            ("size_bytes", BigInt),
            ("added_at_ms", BigInt),
            ("added_by", Text),
            ("signature", Text),
        ],
    ),
    (
        "policy_releases",
        &[
            ("name", Text),
            ("version", Text),
            ("sha256", Text),
            ("at_ms", BigInt),
        ],
    ),
    (
        "policy_events",
        &[
            ("id", BigInt),
            ("at_ms", BigInt),
            ("actor", Text),
            ("action", Text),
            ("sha256", Text),
            ("detail", Text),
        ],
    ),
    (
        "nodes",
        &[
            ("id", Text),
            ("token_sha256", Text),
            ("max_outstanding", BigInt),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "leases",
        &[
            ("id", BigInt),
            ("node_id", Text),
            ("user_id", Text),
            ("entitlement_key", Text),
            ("usage_key", Text),
            ("plan_id", Text),
            ("reserved", BigInt),
            ("reserved_grace", BigInt),
            ("granted_total", BigInt),
            ("spent_total", BigInt),
            ("seq", BigInt),
            ("last_spent", BigInt),
            ("last_more", BigInt),
            ("last_response", Text),
            ("created_at_ms", BigInt),
            ("expires_at_ms", BigInt),
            ("revoked_at_ms", BigInt),
            ("ended_at_ms", BigInt),
            ("end_reason", Text),
            ("period_kind", Text),
            ("period_start_ms", BigInt),
            ("period_end_ms", BigInt),
            ("decided_limit", BigInt),
        ],
    ),
    (
        "plan_thresholds",
        &[
            ("plan_id", Text),
            ("entitlement_key", Text),
            ("percent", BigInt),
        ],
    ),
    (
        "events",
        &[
            ("id", BigInt),
            ("event_id", Text),
            ("type", Text),
            ("user_id", Text),
            ("entitlement_key", Text),
            ("period_start_ms", BigInt),
            ("threshold", Text),
            ("payload", Text),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "webhooks",
        &[
            ("id", Text),
            ("url", Text),
            ("secret", Text),
            ("events", Text),
            ("created_at_ms", BigInt),
            ("failing_since_ms", BigInt),
            ("failing", Bool),
        ],
    ),
    (
        "deliveries",
        &[
            ("id", BigInt),
            ("event_id", Text),
            ("webhook_id", Text),
            ("state", Text),
            ("attempts", BigInt),
            ("next_attempt_at_ms", BigInt),
            ("locked_until_ms", BigInt),
            ("last_status", BigInt),
            ("last_error", Text),
            ("delivered_at_ms", BigInt),
            ("created_at_ms", BigInt),
        ],
    ),
    (
        "delivery_attempts",
        &[
            ("id", BigInt),
            ("delivery_id", BigInt),
            ("at_ms", BigInt),
            ("status", BigInt),
            ("error", Text),
            ("duration_ms", BigInt),
        ],
    ),
];

/// Every table left behind (the test below holds every table to being
/// copied or named here): none is business state. The decision log is per
/// host; a dashboard session is never carried to another database (one
/// signs in again there); the dashboard's counts per minute chart the
/// decisions, like the log.
#[cfg(test)]
const NOT_COPIED: &[&str] = &["decision_log", "ui_sessions", "decision_minutes"];

/// Tables whose ids PostgreSQL numbers itself: numbering goes on after
/// the copied ones.
const NUMBERED: &[&str] = &[
    "audit_log",
    "drafts",
    "segments",
    "invites",
    "policy_events",
    "leases",
    "events",
    "deliveries",
    "delivery_attempts",
];

/// The rows copied, by table.
pub type CopyReport = Vec<(&'static str, u64)>;

/// One SQLite value as a PostgreSQL parameter of `kind`.
fn param(
    value: Value,
    kind: Kind,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync>, StoreError> {
    let wrong = || StoreError::Database(format!("{table}.{column}: a value of an unexpected type"));
    Ok(match (kind, value) {
        (Text, Value::Null) => Box::new(None::<String>),
        (BigInt, Value::Null) => Box::new(None::<i64>),
        (Int, Value::Null) => Box::new(None::<i32>),
        (Bool, Value::Null) => Box::new(None::<bool>),
        (Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
        (Text, Value::Text(text)) => Box::new(text),
        (BigInt, Value::Integer(n)) => Box::new(n),
        (Int, Value::Integer(n)) => Box::new(i32::try_from(n).map_err(|_| wrong())?),
        (Bool, Value::Integer(n)) => Box::new(n != 0),
        (Bytes, Value::Blob(bytes)) => Box::new(bytes),
        _ => return Err(wrong()),
    })
}

impl PgStore {
    /// Copies the state of `from` into this database, which must hold no
    /// plans, users or policy events yet. All of it or, on any error,
    /// nothing.
    pub fn copy_from_sqlite(&self, from: &SqliteStore) -> Result<CopyReport, StoreError> {
        self.with_transaction(|pg| {
            let taken: i64 = pg.query_one(
                "SELECT (SELECT count(*) FROM plans) + (SELECT count(*) FROM users) + (SELECT count(*) FROM policy_events)",
                &[],
            )?
            .get(0);
            if taken > 0 {
                return Err(StoreError::invalid(
                    "to",
                    "the PostgreSQL database already holds a state (plans, users or policies): copy only into an empty one",
                ));
            }
            let mut report = Vec::new();
            for (table, columns) in TABLES {
                let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
                let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
                let insert = pg.prepare_made(&format!(
                    "INSERT INTO {table} ({}) OVERRIDING SYSTEM VALUE VALUES ({})",
                    names.join(", "),
                    placeholders.join(", ")
                ))?;
                let rows: Vec<Vec<Value>> = from.read(|conn| {
                    let mut stmt = conn.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
                    let rows = stmt.query_map([], |row| {
                        (0..columns.len()).map(|i| row.get::<_, Value>(i)).collect()
                    })?;
                    Ok(rows.collect::<Result<_, _>>()?)
                })?;
                let mut copied = 0;
                for row in rows {
                    let params = row
                        .into_iter()
                        .zip(columns.iter())
                        .map(|(value, (column, kind))| param(value, *kind, table, column))
                        .collect::<Result<Vec<_>, _>>()?;
                    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
                    copied += pg.execute_prepared(&insert, &refs)?;
                }
                report.push((*table, copied));
            }
            for table in NUMBERED {
                pg.query_made(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
                    ),
                    &[],
                )?;
            }
            Ok(report)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table added to the schema is either copied or named as left
    /// behind, never forgotten.
    #[test]
    fn every_table_is_copied_or_left_behind_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("quota.db")).unwrap();
        let tables: Vec<String> = store
            .read(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name",
                )?;
                let names = stmt.query_map([], |row| row.get(0))?;
                Ok(names.collect::<Result<_, _>>()?)
            })
            .unwrap();
        for table in &tables {
            let copied = TABLES.iter().any(|(name, _)| name == table);
            let left = NOT_COPIED.contains(&table.as_str());
            assert!(
                copied != left,
                "{table}: copied {copied}, left behind {left}"
            );
        }
        for name in TABLES
            .iter()
            .map(|(name, _)| *name)
            .chain(NOT_COPIED.iter().copied())
        {
            assert!(tables.iter().any(|t| t == name), "{name} is no table");
        }
    }
}
