//! Per-user overrides of a limit, on SQLite; each change audited.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::audit::audit;
use super::leases::revoke;
use super::users::user;
use crate::checks::{id, key, limit_value, non_empty};
use crate::error::StoreError;
use crate::leases::Revoke;
use crate::model::OverrideRow;
use crate::snapshot;
use crate::traits::OverrideStore;

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

impl OverrideStore for SqliteStore {
    fn set_override(
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
                before.as_ref().map(|o| snapshot::override_row(o, now_ms)),
                Some(snapshot::override_row(&after, now_ms)),
                now_ms,
            )?;
            revoke(tx, Revoke::UserKey(user_id, key), now_ms)?;
            Ok(after)
        })
    }

    fn clear_override(
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
                    Some(snapshot::override_row(removed, now_ms)),
                    None,
                    now_ms,
                )?;
                revoke(tx, Revoke::UserKey(user_id, key), now_ms)?;
            }
            Ok(before)
        })
    }

    fn overrides(&self, user_id: Option<&str>) -> Result<Vec<OverrideRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms
                 FROM overrides WHERE ?1 IS NULL OR user_id = ?1 ORDER BY user_id, entitlement_key",
            )?;
            Ok(stmt.query_map([user_id], read_override)?.collect::<Result<_, _>>()?)
        })
    }
}
