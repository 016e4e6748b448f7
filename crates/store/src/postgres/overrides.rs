//! Per-user overrides of a limit, on PostgreSQL; each change audited.

use tokio_postgres::Row;

use super::audit::audit;
use super::leases::revoke;
use super::users::user;
use super::{Conn, PgStore};
use crate::checks::{id, key, limit_value, non_empty};
use crate::error::StoreError;
use crate::leases::Revoke;
use crate::model::OverrideRow;
use crate::snapshot;
use crate::traits::OverrideStore;

fn override_row(
    conn: &mut Conn,
    user_id: &str,
    key: &str,
) -> Result<Option<OverrideRow>, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms
             FROM overrides WHERE user_id = $1 AND entitlement_key = $2",
            &[&user_id, &key],
        )?
        .as_ref()
        .map(read_override))
}

fn read_override(row: &Row) -> OverrideRow {
    OverrideRow {
        user_id: row.get(0),
        entitlement_key: row.get(1),
        value: row.get(2),
        expires_at_ms: row.get(3),
        created_by: row.get(4),
        created_at_ms: row.get(5),
        updated_at_ms: row.get(6),
    }
}

impl OverrideStore for PgStore {
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
            // The user's lock: the change lands between two decisions.
            if user(tx, user_id, true)?.is_none() {
                return Err(StoreError::UnknownUser(user_id.to_owned()));
            }
            let before = override_row(tx, user_id, key)?;
            tx.execute(
                "INSERT INTO overrides (user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)
                 ON CONFLICT (user_id, entitlement_key) DO UPDATE SET
                     value = excluded.value, expires_at_ms = excluded.expires_at_ms,
                     created_by = excluded.created_by, updated_at_ms = excluded.updated_at_ms",
                &[&user_id, &key, &value, &expires_at_ms, &actor, &now_ms],
            )?;
            let after = override_row(tx, user_id, key)?
                .ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
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
            if user(tx, user_id, true)?.is_none() {
                return Err(StoreError::UnknownUser(user_id.to_owned()));
            }
            let before = override_row(tx, user_id, key)?;
            if let Some(removed) = &before {
                tx.execute(
                    "DELETE FROM overrides WHERE user_id = $1 AND entitlement_key = $2",
                    &[&user_id, &key],
                )?;
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
            Ok(conn
                .query(
                    "SELECT user_id, entitlement_key, value, expires_at_ms, created_by, created_at_ms, updated_at_ms
                     FROM overrides WHERE $1::text IS NULL OR user_id = $1 ORDER BY user_id, entitlement_key",
                    &[&user_id],
                )?
                .iter()
                .map(read_override)
                .collect())
        })
    }
}
