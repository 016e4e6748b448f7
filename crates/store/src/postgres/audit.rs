//! The audit log of admin changes, on PostgreSQL: written in the
//! transaction of the change it records.

use serde_json::Value;

use super::{Conn, PgStore};
use crate::error::StoreError;
use crate::model::AuditEntry;
use crate::traits::AuditStore;

pub(crate) fn audit(
    conn: &mut Conn,
    actor: &str,
    action: &str,
    subject: &str,
    before: Option<Value>,
    after: Option<Value>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let text = |v: Option<Value>| v.map(|v| v.to_string());
    conn.execute(
        "INSERT INTO audit_log (at_ms, actor, action, subject, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&now_ms, &actor, &action, &subject, &text(before), &text(after)],
    )?;
    Ok(())
}

impl AuditStore for PgStore {
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let rows = conn.query(
                "SELECT id, at_ms, actor, action, subject, before_json, after_json FROM audit_log ORDER BY id DESC LIMIT $1",
                &[&limit],
            )?;
            Ok(rows
                .iter()
                .map(|row| AuditEntry {
                    id: row.get(0),
                    at_ms: row.get(1),
                    actor: row.get(2),
                    action: row.get(3),
                    subject: row.get(4),
                    before_json: row.get(5),
                    after_json: row.get(6),
                })
                .collect())
        })
    }
}
