//! The audit log of admin changes, on SQLite: written in the transaction
//! of the change it records.

use rusqlite::{Connection, params};
use serde_json::Value;

use super::SqliteStore;
use crate::error::StoreError;
use crate::model::AuditEntry;
use crate::traits::AuditStore;

pub(crate) fn audit(
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

pub(crate) fn json_or_null<T>(value: Option<&T>, f: impl Fn(&T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

impl AuditStore for SqliteStore {
    /// The audit log, newest first, at most `limit` entries.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
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
}
