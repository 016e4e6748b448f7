//! Policy component versions and lifecycle events, on PostgreSQL: shared
//! by the fleet, and announced to it (`NOTIFY`) when they change.

use postgres::Row;

use super::{Conn, POLICY_CHANNEL, PgStore};
use crate::error::StoreError;
use crate::policy::{KEEP_VERSIONS, PolicyAction, PolicyEvent, PolicyState};
use crate::traits::PolicyStore;

fn event_from_row(row: &Row) -> PolicyEvent {
    PolicyEvent {
        id: row.get(0),
        at_ms: row.get(1),
        actor: row.get(2),
        action: row.get(3),
        sha256: row.get(4),
        detail: row.get(5),
    }
}

fn latest(conn: &mut Conn, actions: &[&str]) -> Result<Option<PolicyEvent>, StoreError> {
    let actions: Vec<String> = actions.iter().map(|a| (*a).to_owned()).collect();
    Ok(conn
        .query_opt(
            "SELECT id, at_ms, actor, action, sha256, detail FROM policy_events
             WHERE action = ANY($1) ORDER BY id DESC LIMIT 1",
            &[&actions],
        )?
        .as_ref()
        .map(event_from_row))
}

impl PolicyStore for PgStore {
    fn record_policy_event(
        &self,
        actor: &str,
        action: PolicyAction,
        sha256: Option<&str>,
        component: Option<&[u8]>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError> {
        let keep = i64::try_from(KEEP_VERSIONS).unwrap_or(i64::MAX);
        self.write(|tx| {
            // One change at a time across the fleet: events are numbered
            // in the order they take effect.
            tx.execute("SELECT pg_advisory_xact_lock(7146054)", &[])?;
            if let (Some(sha256), Some(component)) = (sha256, component) {
                let size = i64::try_from(component.len()).unwrap_or(i64::MAX);
                tx.execute(
                    "INSERT INTO policy_versions (sha256, component, size_bytes, added_at_ms, added_by)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING",
                    &[&sha256, &component, &size, &now_ms, &actor],
                )?;
            }
            let event = tx.query_one(
                "INSERT INTO policy_events (at_ms, actor, action, sha256, detail)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id, at_ms, actor, action, sha256, detail",
                &[&now_ms, &actor, &action.as_str(), &sha256, &detail],
            )?;
            let event = event_from_row(&event);
            // Keep the versions most recently named by an event, plus
            // whatever is active or shadow now.
            tx.execute(
                "DELETE FROM policy_versions
                 WHERE sha256 NOT IN (
                     SELECT sha256 FROM policy_events WHERE sha256 IS NOT NULL AND action <> 'reject'
                     GROUP BY sha256 ORDER BY max(id) DESC LIMIT $1)
                   AND sha256 IS DISTINCT FROM (SELECT sha256 FROM policy_events
                     WHERE action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1)
                   AND sha256 IS DISTINCT FROM (SELECT sha256 FROM policy_events
                     WHERE action IN ('shadow', 'clear_shadow') ORDER BY id DESC LIMIT 1)",
                &[&keep],
            )?;
            // Delivered to every listening host when this commits.
            tx.execute("SELECT pg_notify($1, $2)", &[&POLICY_CHANNEL, &event.id.to_string()])?;
            Ok(event)
        })
    }

    fn policy_state(&self, history: usize) -> Result<PolicyState, StoreError> {
        let history = i64::try_from(history).unwrap_or(i64::MAX);
        self.read(|conn| {
            let active = latest(conn, &["activate", "rollback"])?;
            let shadow = latest(conn, &["shadow", "clear_shadow"])?.filter(|e| e.action == "shadow");
            let last_rejection = latest(conn, &["reject"])?;
            let previous = match &active {
                Some(active) => conn
                    .query_opt(
                        "SELECT sha256 FROM policy_events
                         WHERE action IN ('activate', 'rollback') AND sha256 IS DISTINCT FROM $1
                           AND sha256 IN (SELECT sha256 FROM policy_versions)
                         ORDER BY id DESC LIMIT 1",
                        &[&active.sha256],
                    )?
                    .map(|row| row.get(0)),
                None => None,
            };
            let history = conn
                .query(
                    "SELECT id, at_ms, actor, action, sha256, detail FROM policy_events ORDER BY id DESC LIMIT $1",
                    &[&history],
                )?
                .iter()
                .map(event_from_row)
                .collect();
            Ok(PolicyState {
                active,
                previous,
                shadow,
                last_rejection,
                history,
            })
        })
    }

    fn policy_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT component FROM policy_versions WHERE sha256 = $1",
                    &[&sha256],
                )?
                .map(|row| row.get(0)))
        })
    }
}
