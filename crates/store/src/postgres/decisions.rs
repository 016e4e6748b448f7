//! The decision log, on PostgreSQL: appended in batches, pruned by count
//! and age, listed by filter.

use super::PgStore;
use crate::error::StoreError;
use crate::policy::{DECISION_PAGE, DecisionFilter, DecisionLogEntry, LoggedDecision};
use crate::traits::DecisionLogStore;

impl DecisionLogStore for PgStore {
    fn append_decisions(&self, entries: &[DecisionLogEntry]) -> Result<(), StoreError> {
        self.write(|tx| {
            for e in entries {
                tx.execute(
                    "INSERT INTO decision_log (at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                         input_json, output_json, shadow_sha256, shadow_verdict, shadow_json, period_start_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    &[
                        &e.at_ms,
                        &e.user_id,
                        &e.plan_id,
                        &e.entitlement_key,
                        &e.status,
                        &e.policy_sha256,
                        &e.input_json,
                        &e.output_json,
                        &e.shadow_sha256,
                        &e.shadow_verdict,
                        &e.shadow_json,
                        &e.period_start_ms,
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn prune_decisions(&self, keep: usize, before_ms: i64) -> Result<usize, StoreError> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.write(|tx| {
            let gone = tx.execute(
                "DELETE FROM decision_log
                 WHERE id <= (SELECT max(id) FROM decision_log) - $1 OR at_ms < $2",
                &[&keep, &before_ms],
            )?;
            Ok(usize::try_from(gone).unwrap_or(usize::MAX))
        })
    }

    fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionLogEntry>, StoreError> {
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let rows = conn.query(
                "SELECT id, at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                        input_json, output_json, shadow_sha256, shadow_verdict, shadow_json, period_start_ms
                 FROM decision_log
                 WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR entitlement_key = $2)
                   AND ($3::text IS NULL OR status = $3) AND (NOT $4 OR shadow_verdict = 'diverged')
                   AND ($5::bigint IS NULL OR id < $5)
                 ORDER BY id DESC LIMIT $6",
                &[
                    &filter.user_id,
                    &filter.entitlement_key,
                    &filter.status,
                    &filter.diverged,
                    &filter.before_id,
                    &limit,
                ],
            )?;
            Ok(rows
                .iter()
                .map(|row| DecisionLogEntry {
                    id: row.get(0),
                    at_ms: row.get(1),
                    user_id: row.get(2),
                    plan_id: row.get(3),
                    entitlement_key: row.get(4),
                    status: row.get(5),
                    policy_sha256: row.get(6),
                    input_json: row.get(7),
                    output_json: row.get(8),
                    shadow_sha256: row.get(9),
                    shadow_verdict: row.get(10),
                    shadow_json: row.get(11),
                    period_start_ms: row.get(12),
                })
                .collect())
        })
    }

    fn decision_page(
        &self,
        plan_id: &str,
        since_ms: i64,
        after_id: i64,
        f: &mut dyn FnMut(LoggedDecision<'_>),
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(DECISION_PAGE).unwrap_or(i64::MAX);
        let rows = self.read(|conn| {
            conn.query(
                "SELECT id, at_ms, user_id, entitlement_key, status, input_json, output_json, period_start_ms
                 FROM decision_log WHERE plan_id = $1 AND at_ms >= $2 AND id > $3
                 ORDER BY id LIMIT $4",
                &[&plan_id, &since_ms, &after_id, &limit],
            )
        })?;
        for row in &rows {
            f(LoggedDecision {
                id: row.get(0),
                at_ms: row.get(1),
                user_id: row.get(2),
                entitlement_key: row.get(3),
                status: row.get(4),
                input_json: row.get(5),
                output_json: row.get(6),
                period_start_ms: row.get(7),
            });
        }
        Ok(rows.len())
    }
}
