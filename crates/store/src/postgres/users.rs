//! Users, their plan, their API tokens and their usage, on PostgreSQL;
//! each change audited.

use serde_json::json;
use tokio_postgres::Row;

use super::audit::audit;
use super::leases::revoke;
use super::plans::plan;
use super::{Conn, PgStore};
use crate::checks::id;
use crate::error::StoreError;
use crate::leases::Revoke;
use crate::model::{GraceUsed, User};
use crate::prefix::{PrefixRange, prefix_range};
use crate::snapshot;
use crate::traits::UserStore;

/// The user, its row locked until the transaction ends when `lock`.
pub(crate) fn user(conn: &mut Conn, user_id: &str, lock: bool) -> Result<Option<User>, StoreError> {
    let row = if lock {
        conn.query_opt(
            "SELECT id, plan_id FROM users WHERE id = $1 FOR NO KEY UPDATE",
            &[&user_id],
        )?
    } else {
        conn.query_opt("SELECT id, plan_id FROM users WHERE id = $1", &[&user_id])?
    };
    Ok(row.as_ref().map(read_user))
}

/// A user from a row of `SELECT id, plan_id FROM users`.
pub(crate) fn read_user(row: &Row) -> User {
    User {
        id: row.get(0),
        plan_id: row.get(1),
    }
}

impl PgStore {
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
            // A concurrent creation of the same id waits here and then
            // inserts nothing.
            let inserted = tx.execute(
                "INSERT INTO users (id, plan_id, created_at_ms, updated_at_ms, plan_started_at_ms) VALUES ($1, $2, $3, $3, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&user_id, &plan_id, &now_ms],
            )?;
            if inserted == 0 {
                return Err(StoreError::UserExists(user_id.to_owned()));
            }
            if let Some(token) = token_sha256 {
                tx.execute(
                    "INSERT INTO user_tokens (token_sha256, user_id, created_at_ms) VALUES ($1, $2, $3)",
                    &[&token, &user_id, &now_ms],
                )?;
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

/// Users with ids in [$1, $2) in code point order (`COLLATE "C"`, served
/// by the index `users_by_id_code_points`, whatever the database's own
/// collation), by id, at most $3.
pub(super) const SEARCH_USERS_SQL: &str = r#"SELECT id, plan_id FROM users
     WHERE id COLLATE "C" >= $1 AND id COLLATE "C" < $2
     ORDER BY id COLLATE "C" LIMIT $3"#;
/// Users with ids from $1 on, in code point order, at most $2.
pub(super) const SEARCH_USERS_FROM_SQL: &str = r#"SELECT id, plan_id FROM users
     WHERE id COLLATE "C" >= $1 ORDER BY id COLLATE "C" LIMIT $2"#;

impl UserStore for PgStore {
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
        self.read(|conn| user(conn, user_id, false))?
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
            // The lock a guarded transaction of this user takes: the plan
            // and the grace reset land between two decisions, never inside one.
            let before = user(tx, user_id, true)?
                .ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
            if plan(tx, plan_id)?.is_none() {
                return Err(StoreError::UnknownPlan(plan_id.to_owned()));
            }
            // Another plan starts a new anniversary.
            tx.execute(
                "UPDATE users SET plan_started_at_ms = CASE WHEN plan_id = $2 THEN plan_started_at_ms ELSE $3 END,
                                  plan_id = $2, updated_at_ms = $3
                 WHERE id = $1",
                &[&user_id, &plan_id, &now_ms],
            )?;
            let reset = tx.execute("DELETE FROM grace_usage WHERE user_id = $1", &[&user_id])?
                + tx.execute("DELETE FROM period_grace WHERE user_id = $1", &[&user_id])?;
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
                .query(
                    "SELECT usage_key, value FROM usage_counters WHERE user_id = $1 ORDER BY usage_key",
                    &[&user_id],
                )?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect())
        })
    }

    fn grace(&self, user_id: &str) -> Result<Vec<GraceUsed>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query(
                    "SELECT plan_id, entitlement_key, NULL::bigint, used FROM grace_usage WHERE user_id = $1
                     UNION ALL
                     SELECT plan_id, entitlement_key, period_start_ms, used FROM period_grace g
                     WHERE user_id = $1 AND period_start_ms = (
                         SELECT MAX(period_start_ms) FROM period_grace
                         WHERE user_id = g.user_id AND plan_id = g.plan_id AND entitlement_key = g.entitlement_key)
                     ORDER BY 1, 2",
                    &[&user_id],
                )?
                .iter()
                .map(|row| GraceUsed {
                    plan_id: row.get(0),
                    entitlement_key: row.get(1),
                    period_start_ms: row.get(2),
                    used: row.get(3),
                })
                .collect())
        })
    }

    fn user_for_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT user_id FROM user_tokens WHERE token_sha256 = $1",
                    &[&token_sha256],
                )?
                .map(|row| row.get(0)))
        })
    }

    fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let PrefixRange::From { end } = prefix_range(prefix) else {
            return Ok(Vec::new());
        };
        let rows = self.read(|conn| match &end {
            Some(end) => conn.query(SEARCH_USERS_SQL, &[&prefix, end, &limit]),
            None => conn.query(SEARCH_USERS_FROM_SQL, &[&prefix, &limit]),
        })?;
        Ok(rows.iter().map(read_user).collect())
    }
}
