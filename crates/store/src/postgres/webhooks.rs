//! Webhook endpoints and deliveries, on PostgreSQL (docs/events.md). Hosts
//! of a fleet claim deliveries with `FOR UPDATE SKIP LOCKED` in one
//! statement that sets `locked_until_ms`: no row lock is held while a
//! delivery is in flight, and no two hosts send it at once.

use tokio_postgres::Row;

use super::audit::audit;
use super::{Conn, PgStore};
use crate::error::StoreError;
use crate::events::{
    Attempt, Claim, Claimed, Delivery, DeliveryState, EventKind, Next, Webhook, kinds_column,
    read_kind, read_kinds, subscribed,
};
use crate::snapshot;
use crate::traits::WebhookStore;

/// The columns [`read_webhook`] reads (a macro, for `concat!`).
macro_rules! webhook_columns {
    () => {
        "id, url, events, created_at_ms, failing_since_ms, failing"
    };
}

fn read_webhook(row: &Row) -> Result<Webhook, StoreError> {
    Ok(Webhook {
        id: row.get(0),
        url: row.get(1),
        events: read_kinds(row.get(2))?,
        created_at_ms: row.get(3),
        failing_since_ms: row.get(4),
        failing: row.get(5),
    })
}

fn webhook(conn: &mut Conn, id: &str) -> Result<Option<Webhook>, StoreError> {
    conn.query_opt(
        concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks WHERE id = $1"
        ),
        &[&id],
    )?
    .map(|row| read_webhook(&row))
    .transpose()
}

/// Queues the new event `event_id` of `kind` for every endpoint that
/// receives it, in the transaction that wrote it.
pub(crate) fn fan_out(
    conn: &mut Conn,
    event_id: &str,
    kind: EventKind,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO deliveries (event_id, webhook_id, state, next_attempt_at_ms, created_at_ms)
         SELECT $1, id, 'pending', $2, $2 FROM webhooks WHERE events LIKE $3",
        &[&event_id, &now_ms, &subscribed(kind)],
    )?;
    Ok(())
}

impl WebhookStore for PgStore {
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
            tx.execute(
                "INSERT INTO webhooks (id, url, secret, events, created_at_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &url, &secret, &kinds_column(events), &now_ms],
            )?;
            let created = webhook(tx, id)?.ok_or_else(|| StoreError::UnknownWebhook(id.to_owned()))?;
            let after = snapshot::webhook(&created);
            audit(tx, actor, "webhook.create", &format!("webhook:{id}"), None, Some(after), now_ms)?;
            Ok(created)
        })
    }

    fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.read(|conn| {
            conn.query(
                concat!("SELECT ", webhook_columns!(), " FROM webhooks ORDER BY id"),
                &[],
            )?
            .iter()
            .map(read_webhook)
            .collect()
        })
    }

    fn delete_webhook(&self, actor: &str, id: &str, now_ms: i64) -> Result<Webhook, StoreError> {
        self.write(|tx| {
            let gone = webhook(tx, id)?.ok_or_else(|| StoreError::UnknownWebhook(id.to_owned()))?;
            tx.execute("DELETE FROM webhooks WHERE id = $1", &[&id])?;
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
            let rows = tx.query(
                "WITH due AS (
                     SELECT id FROM deliveries
                     WHERE state = 'pending' AND next_attempt_at_ms <= $1
                       AND (locked_until_ms IS NULL OR locked_until_ms <= $1)
                     ORDER BY next_attempt_at_ms LIMIT $3
                     FOR UPDATE SKIP LOCKED),
                 claimed AS (
                     UPDATE deliveries d SET locked_until_ms = $1 + $2
                     FROM due WHERE d.id = due.id
                     RETURNING d.id, d.event_id, d.webhook_id, d.attempts)
                 SELECT c.id, c.event_id, e.payload, w.url, w.secret, c.attempts
                 FROM claimed c JOIN events e ON e.event_id = c.event_id
                 JOIN webhooks w ON w.id = c.webhook_id
                 ORDER BY c.id",
                &[&now_ms, &lock_ms, &limit],
            )?;
            Ok(rows
                .iter()
                .map(|row| Claimed {
                    delivery_id: row.get(0),
                    event_id: row.get(1),
                    payload: row.get(2),
                    url: row.get(3),
                    secret: row.get(4),
                    attempts: row.get(5),
                    locked_until_ms: now_ms + lock_ms,
                })
                .collect())
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
            let Some(row) = tx.query_opt(
                "UPDATE deliveries SET state = $3, attempts = attempts + 1, next_attempt_at_ms = $4,
                     locked_until_ms = NULL, last_status = $5, last_error = $6, delivered_at_ms = $7
                 WHERE id = $1 AND locked_until_ms = $2 RETURNING webhook_id",
                &[&claim.delivery_id, &claim.locked_until_ms, &state, &next_at, &attempt.status, &attempt.error, &delivered_at],
            )?
            else {
                return Ok(false);
            };
            tx.execute(
                "INSERT INTO delivery_attempts (delivery_id, at_ms, status, error, duration_ms) VALUES ($1, $2, $3, $4, $5)",
                &[&claim.delivery_id, &attempt.at_ms, &attempt.status, &attempt.error, &attempt.duration_ms],
            )?;
            let webhook_id: String = row.get(0);
            if next == Next::Delivered {
                tx.execute(
                    "UPDATE webhooks SET failing_since_ms = NULL, failing = FALSE WHERE id = $1",
                    &[&webhook_id],
                )?;
            } else {
                tx.execute(
                    "UPDATE webhooks SET failing_since_ms = COALESCE(failing_since_ms, $2),
                                         failing = ($2 - COALESCE(failing_since_ms, $2) >= $3)
                     WHERE id = $1",
                    &[&webhook_id, &attempt.at_ms, &failing_after_ms],
                )?;
            }
            Ok(true)
        })
    }

    fn deliveries(&self, event_id: &str) -> Result<Vec<Delivery>, StoreError> {
        self.read(|conn| {
            if conn
                .query_opt("SELECT 1 FROM events WHERE event_id = $1", &[&event_id])?
                .is_none()
            {
                return Err(StoreError::UnknownEvent(event_id.to_owned()));
            }
            let rows = conn.query(
                "SELECT id, webhook_id, state, next_attempt_at_ms, delivered_at_ms
                 FROM deliveries WHERE event_id = $1 ORDER BY id",
                &[&event_id],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let id: i64 = row.get(0);
                let attempts = conn
                    .query(
                        "SELECT at_ms, status, error, duration_ms FROM delivery_attempts
                         WHERE delivery_id = $1 ORDER BY id",
                        &[&id],
                    )?
                    .iter()
                    .map(|a| Attempt {
                        at_ms: a.get(0),
                        status: a.get(1),
                        error: a.get(2),
                        duration_ms: a.get(3),
                    })
                    .collect();
                out.push(Delivery {
                    id,
                    webhook_id: row.get(1),
                    state: DeliveryState::parse(row.get(2))?,
                    next_attempt_at_ms: row.get(3),
                    delivered_at_ms: row.get(4),
                    attempts,
                });
            }
            Ok(out)
        })
    }

    fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let row = tx
                .query_opt("SELECT type FROM events WHERE event_id = $1", &[&event_id])?
                .ok_or_else(|| StoreError::UnknownEvent(event_id.to_owned()))?;
            let kind = read_kind(row.get(0))?;
            let n = tx.execute(
                "INSERT INTO deliveries (event_id, webhook_id, state, next_attempt_at_ms, created_at_ms)
                 SELECT $1, id, 'pending', $2, $2 FROM webhooks WHERE events LIKE $3
                 ON CONFLICT (event_id, webhook_id)
                 DO UPDATE SET state = 'pending', next_attempt_at_ms = $2, attempts = 0",
                &[&event_id, &now_ms, &subscribed(kind)],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    fn prune_events(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM events WHERE created_at_ms < $1 AND period_start_ms IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM deliveries d
                                   WHERE d.event_id = events.event_id AND d.state = 'pending')",
                &[&before_ms],
            )?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        })
    }
}
