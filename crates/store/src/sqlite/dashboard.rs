//! What the admin dashboard keeps, on SQLite: its sessions, decisions
//! counted per minute, and the lookups its pages need. Writes go through
//! the process's writer, as every admin write does.

use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::error::StoreError;
use crate::model::{DecisionMinute, UiSession};
use crate::traits::{DecisionCountStore, SessionStore};

impl SessionStore for SqliteStore {
    fn create_ui_session(&self, session: &UiSession, now_ms: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM ui_sessions WHERE expires_ms <= ?1")?
                .execute([now_ms])?;
            tx.prepare_cached(
                "INSERT INTO ui_sessions (id_sha256, csrf_token, admin_sha256, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                session.id_sha256,
                session.csrf_token,
                session.admin_sha256,
                session.created_ms,
                session.expires_ms
            ])?;
            Ok(())
        })
    }

    fn ui_session(&self, id_sha256: &str, now_ms: i64) -> Result<Option<UiSession>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id_sha256, csrf_token, admin_sha256, created_ms, expires_ms
                     FROM ui_sessions WHERE id_sha256 = ?1 AND expires_ms > ?2",
                )?
                .query_row(params![id_sha256, now_ms], |row| {
                    Ok(UiSession {
                        id_sha256: row.get(0)?,
                        csrf_token: row.get(1)?,
                        admin_sha256: row.get(2)?,
                        created_ms: row.get(3)?,
                        expires_ms: row.get(4)?,
                    })
                })
                .optional()?)
        })
    }

    fn delete_ui_session(&self, id_sha256: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM ui_sessions WHERE id_sha256 = ?1")?
                .execute([id_sha256])?
                > 0)
        })
    }

    fn delete_ui_sessions_except(&self, admin_sha256: &str) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM ui_sessions WHERE admin_sha256 <> ?1")?
                .execute([admin_sha256])?)
        })
    }
}

impl DecisionCountStore for SqliteStore {
    fn add_decision_minutes(&self, counts: &[DecisionMinute]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decision_minutes (minute_ms, plan_id, entitlement_key, status, count)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (minute_ms, plan_id, entitlement_key, status)
                 DO UPDATE SET count = count + excluded.count",
            )?;
            for c in counts {
                stmt.execute(params![
                    c.minute_ms,
                    c.plan_id,
                    c.entitlement_key,
                    c.status,
                    c.count
                ])?;
            }
            Ok(())
        })
    }

    fn decision_minutes(&self, since_ms: i64) -> Result<Vec<DecisionMinute>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT minute_ms, plan_id, entitlement_key, status, count FROM decision_minutes
                     WHERE minute_ms >= ?1 ORDER BY minute_ms, plan_id, entitlement_key, status",
                )?
                .query_map([since_ms], |row| {
                    Ok(DecisionMinute {
                        minute_ms: row.get(0)?,
                        plan_id: row.get(1)?,
                        entitlement_key: row.get(2)?,
                        status: row.get(3)?,
                        count: row.get(4)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
    }

    fn prune_decision_minutes(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM decision_minutes WHERE minute_ms < ?1")?
                .execute([before_ms])?)
        })
    }
}
