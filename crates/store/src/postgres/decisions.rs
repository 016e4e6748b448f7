//! The decision log, on PostgreSQL: appended in batches, pruned by count
//! and age, listed by filter.

use super::PgStore;
use crate::error::StoreError;
use crate::policy::{DecisionFilter, DecisionLogEntry};
use crate::traits::DecisionLogStore;

impl DecisionLogStore for PgStore {
    fn append_decisions(&self, entries: &[DecisionLogEntry]) -> Result<(), StoreError> {
        self.write(|tx| {
            for e in entries {
                tx.execute(
                    "INSERT INTO decision_log (at_ms, user_id, plan_id, entitlement_key, status, policy_sha256,
                         input_json, output_json, shadow_sha256, shadow_verdict, shadow_json)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                        input_json, output_json, shadow_sha256, shadow_verdict, shadow_json
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
                })
                .collect())
        })
    }
}
