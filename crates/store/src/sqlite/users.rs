//! Users, their plan, their API tokens and their usage, on SQLite; each
//! change audited.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::json;

use super::SqliteStore;
use super::audit::audit;
use super::leases::revoke;
use super::plans::plan;
use crate::checks::id;
use crate::error::StoreError;
use crate::leases::Revoke;
use crate::model::{GraceUsed, User};
use crate::prefix::{PrefixRange, prefix_range};
use crate::snapshot;
use crate::traits::UserStore;

/// A user from a row of `SELECT id, plan_id FROM users`.
pub(crate) fn read_user(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        plan_id: row.get(1)?,
    })
}

pub(crate) fn user(conn: &Connection, user_id: &str) -> Result<Option<User>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, plan_id FROM users WHERE id = ?1")?
        .query_row([user_id], read_user)
        .optional()?)
}

impl SqliteStore {
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
            tx.prepare_cached("INSERT INTO users (id, plan_id, created_at_ms, updated_at_ms, plan_started_at_ms) VALUES (?1, ?2, ?3, ?3, ?3)")?
                .execute(params![user_id, plan_id, now_ms])?;
            if let Some(token) = token_sha256 {
                tx.prepare_cached("INSERT INTO user_tokens (token_sha256, user_id, created_at_ms) VALUES (?1, ?2, ?3)")?
                    .execute(params![token, user_id, now_ms])?;
            }
            let created = User {
                id: user_id.to_owned(),
                plan_id: plan_id.to_owned(),
            };
            audit(tx, actor, "user.create", &format!("user:{user_id}"), None, Some(snapshot::user(&created)), now_ms)?;
            Ok(created)
        })
    }
}

/// Users with ids in [?1, ?2), by id, at most ?3: a range of the primary
/// key's index.
pub(super) const SEARCH_USERS_SQL: &str =
    "SELECT id, plan_id FROM users WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3";
/// Users with ids from ?1 on, by id, at most ?2.
pub(super) const SEARCH_USERS_FROM_SQL: &str =
    "SELECT id, plan_id FROM users WHERE id >= ?1 ORDER BY id LIMIT ?2";

impl UserStore for SqliteStore {
    fn create_user(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        self.insert_user(actor, user_id, plan_id, None, now_ms)
    }

    fn create_user_with_token(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        self.insert_user(actor, user_id, plan_id, Some(token_sha256), now_ms)
    }

    fn user(&self, user_id: &str) -> Result<User, StoreError> {
        self.read(|conn| user(conn, user_id))?
            .ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))
    }

    fn set_user_plan(
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
            // Another plan starts a new anniversary.
            tx.prepare_cached(
                "UPDATE users SET plan_started_at_ms = CASE WHEN plan_id = ?2 THEN plan_started_at_ms ELSE ?3 END,
                                  plan_id = ?2, updated_at_ms = ?3
                 WHERE id = ?1",
            )?
            .execute(params![user_id, plan_id, now_ms])?;
            let reset = tx
                .prepare_cached("DELETE FROM grace_usage WHERE user_id = ?1")?
                .execute([user_id])?
                + tx.prepare_cached("DELETE FROM period_grace WHERE user_id = ?1")?
                    .execute([user_id])?;
            let after = User {
                id: user_id.to_owned(),
                plan_id: plan_id.to_owned(),
            };
            let mut after_json = snapshot::user(&after);
            after_json["grace_rows_reset"] = json!(reset);
            audit(
                tx,
                actor,
                "user.set_plan",
                &format!("user:{user_id}"),
                Some(snapshot::user(&before)),
                Some(after_json),
                now_ms,
            )?;
            revoke(tx, Revoke::User(user_id), now_ms)?;
            Ok(after)
        })
    }

    fn usage(&self, user_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT usage_key, value FROM usage_counters WHERE user_id = ?1 ORDER BY usage_key")?
                .query_map([user_id], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?)
        })
    }

    fn grace(&self, user_id: &str) -> Result<Vec<GraceUsed>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT plan_id, entitlement_key, NULL, used FROM grace_usage WHERE user_id = ?1
                     UNION ALL
                     SELECT plan_id, entitlement_key, period_start_ms, used FROM period_grace g
                     WHERE user_id = ?1 AND period_start_ms = (
                         SELECT MAX(period_start_ms) FROM period_grace
                         WHERE user_id = g.user_id AND plan_id = g.plan_id AND entitlement_key = g.entitlement_key)
                     ORDER BY 1, 2",
                )?
                .query_map([user_id], |row| {
                    Ok(GraceUsed {
                        plan_id: row.get(0)?,
                        entitlement_key: row.get(1)?,
                        period_start_ms: row.get(2)?,
                        used: row.get(3)?,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
    }

    /// The user a token hash belongs to.
    fn user_for_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError> {
        let conn = self.connection()?;
        Ok(conn
            .prepare_cached("SELECT user_id FROM user_tokens WHERE token_sha256 = ?1")?
            .query_row([token_sha256], |row| row.get(0))
            .optional()?)
    }

    fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let PrefixRange::From { end } = prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        self.read(|conn| {
            Ok(match &end {
                Some(end) => conn
                    .prepare_cached(SEARCH_USERS_SQL)?
                    .query_map(params![prefix, end, limit], read_user)?
                    .collect::<Result<_, _>>()?,
                None => conn
                    .prepare_cached(SEARCH_USERS_FROM_SQL)?
                    .query_map(params![prefix, limit], read_user)?
                    .collect::<Result<_, _>>()?,
            })
        })
    }
}
