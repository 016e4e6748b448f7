//! The decision log, on SQLite: appended in batches, pruned by count and
//! age, listed by filter.

use rusqlite::params;

use super::SqliteStore;
use crate::error::StoreError;
use crate::policy::{DECISION_PAGE, DecisionFilter, DecisionLogEntry, LoggedDecision};
use crate::traits::DecisionLogStore;

impl DecisionLogStore for SqliteStore {
    fn append_decisions(&self, entries: &[DecisionLogEntry]) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO decision_log (at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                     input_json, output_json, shadow_sha256, shadow_verdict, shadow_json, period_start_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
                    e.shadow_json,
                    e.period_start_ms
                ])?;
            }
            Ok(())
        })
    }

    /// Deletes logged decisions beyond the newest `keep` and those made
    /// before `before_ms`; returns how many.
    fn prune_decisions(&self, keep: usize, before_ms: i64) -> Result<usize, StoreError> {
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

    fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionLogEntry>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                        input_json, output_json, shadow_sha256, shadow_verdict, shadow_json, period_start_ms
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
                        period_start_ms: row.get(12)?,
                    })
                },
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Each page in a read transaction of its own, so a long replay never
    /// holds one snapshot (and the log's write-ahead file) for its length.
    fn decision_page(
        &self,
        plan_id: &str,
        since_ms: i64,
        after_id: i64,
        f: &mut dyn FnMut(LoggedDecision<'_>),
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(DECISION_PAGE).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at_ms, user_id, entitlement_key, status, input_json, output_json, period_start_ms
                 FROM decision_log WHERE plan_id = ?1 AND at_ms >= ?2 AND id > ?3
                 ORDER BY id LIMIT ?4",
            )?;
            let mut rows = stmt.query(params![plan_id, since_ms, after_id, limit])?;
            let mut read = 0;
            while let Some(row) = rows.next()? {
                f(LoggedDecision {
                    id: row.get(0)?,
                    at_ms: row.get(1)?,
                    user_id: text(row, 2)?,
                    entitlement_key: text(row, 3)?,
                    status: text(row, 4)?,
                    input_json: text(row, 5)?,
                    output_json: text(row, 6)?,
                    period_start_ms: row.get(7)?,
                });
                read += 1;
            }
            Ok(read)
        })
    }
}

/// A text column, borrowed from the row.
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r str> {
    row.get_ref(i)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}
