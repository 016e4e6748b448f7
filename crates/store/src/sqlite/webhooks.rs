//! Webhook endpoints and deliveries, on SQLite (docs/events.md). The one
//! writer makes a claim exclusive; `locked_until_ms` keeps a delivery in
//! flight from being claimed again until its attempt is over or timed out.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::audit::audit;
use crate::error::StoreError;
use crate::events::{
    Attempt, Claim, Claimed, Delivery, DeliveryState, EventKind, Next, Webhook, kinds_column,
    read_kinds, subscribed,
};
use crate::snapshot;
use crate::traits::WebhookStore;

const WEBHOOK_COLUMNS: &str = "id, url, events, created_at_ms, failing_since_ms, failing";

fn read_webhook(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Webhook, String)> {
    Ok((
        Webhook {
            id: row.get(0)?,
            url: row.get(1)?,
            events: Vec::new(),
            created_at_ms: row.get(3)?,
            failing_since_ms: row.get(4)?,
            failing: row.get(5)?,
        },
        row.get(2)?,
    ))
}

fn webhook(conn: &Connection, id: &str) -> Result<Option<Webhook>, StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"
        ))?
        .query_row([id], read_webhook)
        .optional()?;
    found
        .map(|(w, events)| {
            Ok(Webhook {
                events: read_kinds(&events)?,
                ..w
            })
        })
        .transpose()
}

/// Queues the new event `event_id` of `kind` for every endpoint that
/// receives it, in the transaction that wrote it.
pub(crate) fn fan_out(
    conn: &Connection,
    event_id: &str,
    kind: EventKind,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO deliveries (event_id, webhook_id, state, next_attempt_at_ms, created_at_ms)
         SELECT ?1, id, 'pending', ?2, ?2 FROM webhooks WHERE events LIKE ?3",
    )?
    .execute(params![event_id, now_ms, subscribed(kind)])?;
    Ok(())
}

impl WebhookStore for SqliteStore {
    fn create_webhook(
        &self,
        actor: &str,
        id: &str,
        url: &str,
        secret: &str,
        events: &[EventKind],
        now_ms: i64,
    ) -> Result<Webhook, StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO webhooks (id, url, secret, events, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![id, url, secret, kinds_column(events), now_ms])?;
            let created = webhook(tx, id)?.ok_or_else(|| StoreError::UnknownWebhook(id.to_owned()))?;
            let after = snapshot::webhook(&created);
            audit(tx, actor, "webhook.create", &format!("webhook:{id}"), None, Some(after), now_ms)?;
            Ok(created)
        })
    }

    fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.read(|conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"
                ))?
                .query_map([], read_webhook)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(w, events)| {
                    Ok(Webhook {
                        events: read_kinds(&events)?,
                        ..w
                    })
                })
                .collect()
        })
    }

    fn delete_webhook(&self, actor: &str, id: &str, now_ms: i64) -> Result<Webhook, StoreError> {
        self.write(|tx| {
            let gone = webhook(tx, id)?.ok_or_else(|| StoreError::UnknownWebhook(id.to_owned()))?;
            tx.prepare_cached("DELETE FROM webhooks WHERE id = ?1")?
                .execute([id])?;
            let before = snapshot::webhook(&gone);
            audit(
                tx,
                actor,
                "webhook.delete",
                &format!("webhook:{id}"),
                Some(before),
                None,
                now_ms,
            )?;
            Ok(gone)
        })
    }

    fn claim_deliveries(
        &self,
        now_ms: i64,
        lock_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(|tx| {
            let ids: Vec<i64> = tx
                .prepare_cached(
                    "UPDATE deliveries SET locked_until_ms = ?1 + ?2
                     WHERE id IN (SELECT id FROM deliveries
                                  WHERE state = 'pending' AND next_attempt_at_ms <= ?1
                                    AND (locked_until_ms IS NULL OR locked_until_ms <= ?1)
                                  ORDER BY next_attempt_at_ms LIMIT ?3)
                     RETURNING id",
                )?
                .query_map(params![now_ms, lock_ms, limit], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                claimed.push(
                    tx.prepare_cached(
                        "SELECT d.id, d.event_id, e.payload, w.url, w.secret, d.attempts
                         FROM deliveries d JOIN events e ON e.event_id = d.event_id
                         JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?1",
                    )?
                    .query_row([id], |row| {
                        Ok(Claimed {
                            delivery_id: row.get(0)?,
                            event_id: row.get(1)?,
                            payload: row.get(2)?,
                            url: row.get(3)?,
                            secret: row.get(4)?,
                            attempts: row.get(5)?,
                            locked_until_ms: now_ms + lock_ms,
                        })
                    })?,
                );
            }
            Ok(claimed)
        })
    }

    fn finish_delivery(
        &self,
        claim: &Claim,
        attempt: &Attempt,
        next: Next,
        failing_after_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let (state, next_at, delivered_at) = next.columns(attempt.at_ms);
            // Only while this claim holds the delivery.
            let webhook_id: Option<String> = tx
                .prepare_cached(
                    "UPDATE deliveries SET state = ?3, attempts = attempts + 1, next_attempt_at_ms = ?4,
                         locked_until_ms = NULL, last_status = ?5, last_error = ?6, delivered_at_ms = ?7
                     WHERE id = ?1 AND locked_until_ms = ?2 RETURNING webhook_id",
                )?
                .query_row(
                    params![claim.delivery_id, claim.locked_until_ms, state, next_at, attempt.status, attempt.error, delivered_at],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(webhook_id) = webhook_id else {
                return Ok(false);
            };
            tx.prepare_cached(
                "INSERT INTO delivery_attempts (delivery_id, at_ms, status, error, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![claim.delivery_id, attempt.at_ms, attempt.status, attempt.error, attempt.duration_ms])?;
            if next == Next::Delivered {
                tx.prepare_cached("UPDATE webhooks SET failing_since_ms = NULL, failing = 0 WHERE id = ?1")?
                    .execute([&webhook_id])?;
            } else {
                tx.prepare_cached(
                    "UPDATE webhooks SET failing_since_ms = COALESCE(failing_since_ms, ?2),
                                         failing = (?2 - COALESCE(failing_since_ms, ?2) >= ?3)
                     WHERE id = ?1",
                )?
                .execute(params![webhook_id, attempt.at_ms, failing_after_ms])?;
            }
            Ok(true)
        })
    }

    fn deliveries(&self, event_id: &str) -> Result<Vec<Delivery>, StoreError> {
        self.read(|conn| {
            let exists: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?
                .query_row([event_id], |row| row.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(StoreError::UnknownEvent(event_id.to_owned()));
            }
            let rows: Vec<(i64, String, String, i64, Option<i64>)> = conn
                .prepare_cached(
                    "SELECT id, webhook_id, state, next_attempt_at_ms, delivered_at_ms
                     FROM deliveries WHERE event_id = ?1 ORDER BY id",
                )?
                .query_map([event_id], |row| {
                    Ok((
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(
                    |(id, webhook_id, state, next_attempt_at_ms, delivered_at_ms)| {
                        let attempts = conn
                            .prepare_cached(
                                "SELECT at_ms, status, error, duration_ms FROM delivery_attempts
                             WHERE delivery_id = ?1 ORDER BY id",
                            )?
                            .query_map([id], |row| {
                                Ok(Attempt {
                                    at_ms: row.get(0)?,
                                    status: row.get(1)?,
                                    error: row.get(2)?,
                                    duration_ms: row.get(3)?,
                                })
                            })?
                            .collect::<Result<_, _>>()?;
                        Ok(Delivery {
                            id,
                            webhook_id,
                            state: DeliveryState::parse(&state)?,
                            next_attempt_at_ms,
                            delivered_at_ms,
                            attempts,
                        })
                    },
                )
                .collect()
        })
    }

    fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let kind: Option<String> = tx
                .prepare_cached("SELECT type FROM events WHERE event_id = ?1")?
                .query_row([event_id], |row| row.get(0))
                .optional()?;
            let kind = kind.ok_or_else(|| StoreError::UnknownEvent(event_id.to_owned()))?;
            let kind = crate::events::read_kind(&kind)?;
            Ok(tx
                .prepare_cached(
                    "INSERT INTO deliveries (event_id, webhook_id, state, next_attempt_at_ms, created_at_ms)
                     SELECT ?1, id, 'pending', ?2, ?2 FROM webhooks WHERE events LIKE ?3
                     ON CONFLICT (event_id, webhook_id)
                     DO UPDATE SET state = 'pending', next_attempt_at_ms = ?2, attempts = 0",
                )?
                .execute(params![event_id, now_ms, subscribed(kind)])?)
        })
    }

    fn prune_events(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached(
                    "DELETE FROM events WHERE created_at_ms < ?1 AND period_start_ms IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM deliveries d
                                       WHERE d.event_id = events.event_id AND d.state = 'pending')",
                )?
                .execute([before_ms])?)
        })
    }
}
