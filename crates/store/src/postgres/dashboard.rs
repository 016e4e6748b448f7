//! What the admin dashboard keeps, on PostgreSQL: its sessions, decisions
//! counted per minute, and the lookups its pages need.

use super::PgStore;
use crate::error::StoreError;
use crate::model::{DecisionMinute, UiSession};
use crate::traits::{DecisionCountStore, SessionStore};

fn changed(rows: u64) -> usize {
    usize::try_from(rows).unwrap_or(usize::MAX)
}

impl SessionStore for PgStore {
    fn create_ui_session(&self, session: &UiSession, now_ms: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM ui_sessions WHERE expires_ms <= $1",
                &[&now_ms],
            )?;
            tx.execute(
                "INSERT INTO ui_sessions (id_sha256, csrf_token, admin_sha256, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &session.id_sha256,
                    &session.csrf_token,
                    &session.admin_sha256,
                    &session.created_ms,
                    &session.expires_ms,
                ],
            )?;
            Ok(())
        })
    }

    fn ui_session(&self, id_sha256: &str, now_ms: i64) -> Result<Option<UiSession>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT id_sha256, csrf_token, admin_sha256, created_ms, expires_ms
                     FROM ui_sessions WHERE id_sha256 = $1 AND expires_ms > $2",
                    &[&id_sha256, &now_ms],
                )?
                .map(|row| UiSession {
                    id_sha256: row.get(0),
                    csrf_token: row.get(1),
                    admin_sha256: row.get(2),
                    created_ms: row.get(3),
                    expires_ms: row.get(4),
                }))
        })
    }

    fn delete_ui_session(&self, id_sha256: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM ui_sessions WHERE id_sha256 = $1",
                &[&id_sha256],
            )? > 0)
        })
    }

    fn delete_ui_sessions_except(&self, admin_sha256: &str) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(changed(tx.execute(
                "DELETE FROM ui_sessions WHERE admin_sha256 <> $1",
                &[&admin_sha256],
            )?))
        })
    }
}

impl DecisionCountStore for PgStore {
    fn add_decision_minutes(&self, counts: &[DecisionMinute]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for c in counts {
                tx.execute(
                    "INSERT INTO decision_minutes (minute_ms, plan_id, entitlement_key, status, count)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (minute_ms, plan_id, entitlement_key, status)
                     DO UPDATE SET count = decision_minutes.count + excluded.count",
                    &[
                        &c.minute_ms,
                        &c.plan_id,
                        &c.entitlement_key,
                        &c.status,
                        &c.count,
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn decision_minutes(&self, since_ms: i64) -> Result<Vec<DecisionMinute>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query(
                    "SELECT minute_ms, plan_id, entitlement_key, status, count FROM decision_minutes
                     WHERE minute_ms >= $1 ORDER BY minute_ms, plan_id, entitlement_key, status",
                    &[&since_ms],
                )?
                .iter()
                .map(|row| DecisionMinute {
                    minute_ms: row.get(0),
                    plan_id: row.get(1),
                    entitlement_key: row.get(2),
                    status: row.get(3),
                    count: row.get(4),
                })
                .collect())
        })
    }

    fn prune_decision_minutes(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(changed(tx.execute(
                "DELETE FROM decision_minutes WHERE minute_ms < $1",
                &[&before_ms],
            )?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::PgUrl;

    /// The plan of `sql` with sequential scans made a last resort: an
    /// index that can serve it is used.
    fn plan(
        store: &PgStore,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> String {
        store
            .write(|conn| {
                conn.batch("SET LOCAL enable_seqscan = off")?;
                let rows = conn.query_made(&format!("EXPLAIN {sql}"), params)?;
                Ok(rows
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n"))
            })
            .unwrap()
    }

    #[test]
    fn a_user_search_reads_a_range_of_its_code_point_index() {
        let url: PgUrl = quota_throwaway_pg::shared()
            .fresh_database()
            .parse()
            .unwrap();
        let store = PgStore::open(&url).unwrap();
        // A plain or a bitmap scan of the code point index, bounded by the
        // range.
        let on_index = |plan: &str| {
            plan.contains("Index Scan using users_by_id_code_points")
                || plan.contains("Index Scan on users_by_id_code_points")
        };
        let range = plan(
            &store,
            crate::postgres::users::SEARCH_USERS_SQL,
            &[&"a%", &"a&", &10i64],
        );
        assert!(
            on_index(&range)
                && range.contains(
                    "Index Cond: (((id)::text >= 'a%'::text) AND ((id)::text < 'a&'::text))"
                ),
            "{range}"
        );
        let from = plan(
            &store,
            crate::postgres::users::SEARCH_USERS_FROM_SQL,
            &[&"", &10i64],
        );
        assert!(on_index(&from), "{from}");
    }
}
