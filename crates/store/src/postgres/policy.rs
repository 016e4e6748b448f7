//! Policy component versions and lifecycle events, on PostgreSQL: shared
//! by the fleet, and announced to it (`NOTIFY`) when they change.

use tokio_postgres::Row;

use super::{Conn, POLICY_CHANNEL, PgStore};
use crate::error::{Conflict, StoreError};
use crate::policy::{KEEP_VERSIONS, PolicyAction, PolicyEvent, PolicyState, Release, Upload};
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

/// Records an event, with the uploaded component (its signature, its
/// release) when given; then prunes old versions and tells the
/// fleet.
fn record(
    tx: &mut Conn,
    actor: &str,
    action: PolicyAction,
    sha256: Option<&str>,
    upload: Option<&Upload<'_>>,
    detail: &str,
    now_ms: i64,
) -> Result<PolicyEvent, StoreError> {
    let keep = i64::try_from(KEEP_VERSIONS).unwrap_or(i64::MAX);
    // One change at a time across the fleet: events are numbered
    // in the order they take effect.
    tx.execute("SELECT pg_advisory_xact_lock(7146054)", &[])?;
    if let Some(&Upload {
        sha256,
        component,
        signature,
        verified,
        ..
    }) = upload
    {
        let size = i64::try_from(component.len()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO policy_versions (sha256, component, size_bytes, added_at_ms, added_by, signature)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (sha256) DO UPDATE SET signature = CASE WHEN $7::boolean
                 THEN coalesce(excluded.signature, policy_versions.signature)
                 ELSE coalesce(policy_versions.signature, excluded.signature) END",
            &[&sha256, &component, &size, &now_ms, &actor, &signature, &verified],
        )?;
    }
    if let Some(change) = upload.and_then(|u| u.release) {
        let r = &change.release;
        let changed = match &change.replaces {
            None => tx.execute(
                "INSERT INTO policy_releases (name, version, sha256, at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING",
                &[&r.name, &r.version, &r.sha256, &now_ms],
            )?,
            Some(old) => tx.execute(
                "UPDATE policy_releases SET version = $2, sha256 = $3, at_ms = $4
                 WHERE name = $1 AND version = $5",
                &[&r.name, &r.version, &r.sha256, &now_ms, old],
            )?,
        };
        if changed == 0 {
            return Err(StoreError::Conflict(Conflict::Release(r.name.clone())));
        }
    }
    let event = tx.query_one(
        "INSERT INTO policy_events (at_ms, actor, action, sha256, detail)
         VALUES ($1, $2, $3, $4, $5) RETURNING id, at_ms, actor, action, sha256, detail",
        &[&now_ms, &actor, &action.as_str(), &sha256, &detail],
    )?;
    let event = event_from_row(&event);
    // Keep the versions most recently named by an event, plus whatever is
    // active or shadow now and the previous active one (what a rollback
    // goes back to: never an older one whose successor was pruned).
    tx.execute(
        "DELETE FROM policy_versions
         WHERE sha256 NOT IN (
             SELECT sha256 FROM policy_events WHERE sha256 IS NOT NULL AND action <> 'reject'
             GROUP BY sha256 ORDER BY max(id) DESC LIMIT $1)
           AND sha256 IS DISTINCT FROM (SELECT sha256 FROM policy_events
             WHERE action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1)
           AND sha256 IS DISTINCT FROM (SELECT sha256 FROM policy_events
             WHERE action IN ('shadow', 'clear_shadow') ORDER BY id DESC LIMIT 1)
           AND sha256 IS DISTINCT FROM (SELECT sha256 FROM policy_events
             WHERE action IN ('activate', 'rollback')
               AND sha256 IS DISTINCT FROM (SELECT sha256 FROM policy_events
                 WHERE action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1)
             ORDER BY id DESC LIMIT 1)",
        &[&keep],
    )?;
    // Delivered to every listening host when this commits.
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&POLICY_CHANNEL, &event.id.to_string()],
    )?;
    Ok(event)
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
        let upload = sha256
            .zip(component)
            .map(|(sha256, component)| Upload::unsigned(sha256, component));
        self.write(|tx| record(tx, actor, action, sha256, upload.as_ref(), detail, now_ms))
    }

    fn record_policy_upload(
        &self,
        actor: &str,
        action: PolicyAction,
        upload: &Upload<'_>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError> {
        self.write(|tx| {
            record(
                tx,
                actor,
                action,
                Some(upload.sha256),
                Some(upload),
                detail,
                now_ms,
            )
        })
    }

    fn policy_signature(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT signature FROM policy_versions WHERE sha256 = $1",
                    &[&sha256],
                )?
                .and_then(|row| row.get(0)))
        })
    }

    fn policy_release(&self, name: &str) -> Result<Option<Release>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT name, version, sha256 FROM policy_releases WHERE name = $1",
                    &[&name],
                )?
                .map(|row| Release {
                    name: row.get(0),
                    version: row.get(1),
                    sha256: row.get(2),
                }))
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
