//! Policy component versions and lifecycle events, on SQLite.

use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use crate::error::{Conflict, StoreError};
use crate::policy::{KEEP_VERSIONS, PolicyAction, PolicyEvent, PolicyState, Release, Upload};
use crate::traits::PolicyStore;

const EVENT_COLUMNS: &str = "id, at_ms, actor, action, sha256, detail";

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<PolicyEvent> {
    Ok(PolicyEvent {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        sha256: row.get(4)?,
        detail: row.get(5)?,
    })
}

/// Records an event, with the uploaded component (its signature, its
/// release) when given; then prunes old versions.
fn record(
    tx: &rusqlite::Connection,
    actor: &str,
    action: PolicyAction,
    sha256: Option<&str>,
    upload: Option<&Upload<'_>>,
    detail: &str,
    now_ms: i64,
) -> Result<PolicyEvent, StoreError> {
    if let Some(&Upload {
        sha256,
        component,
        signature,
        verified,
        ..
    }) = upload
    {
        tx.prepare_cached(
            "INSERT INTO policy_versions (sha256, component, size_bytes, added_at_ms, added_by, signature)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (sha256) DO UPDATE SET signature = CASE WHEN ?7
                 THEN coalesce(excluded.signature, signature)
                 ELSE coalesce(signature, excluded.signature) END",
        )?
        .execute(params![sha256, component, i64::try_from(component.len()).unwrap_or(i64::MAX), now_ms, actor, signature, verified])?;
    }
    if let Some(change) = upload.and_then(|u| u.release) {
        let r = &change.release;
        let changed = match &change.replaces {
            None => tx
                .prepare_cached(
                    "INSERT INTO policy_releases (name, version, sha256, at_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (name) DO NOTHING",
                )?
                .execute(params![r.name, r.version, r.sha256, now_ms])?,
            Some(old) => tx
                .prepare_cached(
                    "UPDATE policy_releases SET version = ?2, sha256 = ?3, at_ms = ?4
                     WHERE name = ?1 AND version = ?5",
                )?
                .execute(params![r.name, r.version, r.sha256, now_ms, old])?,
        };
        if changed == 0 {
            return Err(StoreError::Conflict(Conflict::Release(r.name.clone())));
        }
    }
    let event = tx
        .prepare_cached(&format!(
            "INSERT INTO policy_events (at_ms, actor, action, sha256, detail)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING {EVENT_COLUMNS}"
        ))?
        .query_row(
            params![now_ms, actor, action.as_str(), sha256, detail],
            event_from_row,
        )?;
    // Keep the versions most recently named by an event, plus whatever is
    // active or shadow now and the previous active one (what a rollback
    // goes back to: never an older one whose successor was pruned).
    tx.prepare_cached(
        "DELETE FROM policy_versions
         WHERE sha256 NOT IN (
             SELECT sha256 FROM policy_events WHERE sha256 IS NOT NULL AND action != 'reject'
             GROUP BY sha256 ORDER BY max(id) DESC LIMIT ?1)
           AND sha256 IS NOT (SELECT sha256 FROM policy_events
             WHERE action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1)
           AND sha256 IS NOT (SELECT sha256 FROM policy_events
             WHERE action IN ('shadow', 'clear_shadow') ORDER BY id DESC LIMIT 1)
           AND sha256 IS NOT (SELECT sha256 FROM policy_events
             WHERE action IN ('activate', 'rollback')
               AND sha256 IS NOT (SELECT sha256 FROM policy_events
                 WHERE action IN ('activate', 'rollback') ORDER BY id DESC LIMIT 1)
             ORDER BY id DESC LIMIT 1)",
    )?
    .execute([i64::try_from(KEEP_VERSIONS).unwrap_or(i64::MAX)])?;
    Ok(event)
}

impl PolicyStore for SqliteStore {
    /// Records a policy event; stores `component` (if given) under its
    /// sha256, and drops component versions beyond [`KEEP_VERSIONS`] that
    /// are neither active nor shadow.
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
                .prepare_cached("SELECT signature FROM policy_versions WHERE sha256 = ?1")?
                .query_row([sha256], |row| row.get(0))
                .optional()?
                .flatten())
        })
    }

    fn policy_release(&self, name: &str) -> Result<Option<Release>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT name, version, sha256 FROM policy_releases WHERE name = ?1",
                )?
                .query_row([name], |row| {
                    Ok(Release {
                        name: row.get(0)?,
                        version: row.get(1)?,
                        sha256: row.get(2)?,
                    })
                })
                .optional()?)
        })
    }

    /// Where the lifecycle stands: active, previous, shadow, last rejection
    /// and the last `history` events.
    fn policy_state(&self, history: usize) -> Result<PolicyState, StoreError> {
        let history = i64::try_from(history).unwrap_or(i64::MAX);
        self.read(|conn| {
            let latest = |actions: &str| -> Result<Option<PolicyEvent>, StoreError> {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {EVENT_COLUMNS} FROM policy_events WHERE action IN ({actions}) ORDER BY id DESC LIMIT 1"
                    ))?
                    .query_row([], event_from_row)
                    .optional()?)
            };
            let active = latest("'activate', 'rollback'")?;
            let shadow = latest("'shadow', 'clear_shadow'")?.filter(|e| e.action == "shadow");
            let last_rejection = latest("'reject'")?;
            let previous = match &active {
                Some(active) => conn
                    .prepare_cached(
                        "SELECT sha256 FROM policy_events
                         WHERE action IN ('activate', 'rollback') AND sha256 IS NOT ?1
                           AND sha256 IN (SELECT sha256 FROM policy_versions)
                         ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([&active.sha256], |row| row.get(0))
                    .optional()?,
                None => None,
            };
            let history = conn
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM policy_events ORDER BY id DESC LIMIT ?1"
                ))?
                .query_map([history], event_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(PolicyState {
                active,
                previous,
                shadow,
                last_rejection,
                history,
            })
        })
    }

    /// A stored component's bytes.
    fn policy_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT component FROM policy_versions WHERE sha256 = ?1")?
                .query_row([sha256], |row| row.get(0))
                .optional()?)
        })
    }
}
