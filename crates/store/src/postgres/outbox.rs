//! The outbox of threshold events, on PostgreSQL (docs/events.md).

use super::PgStore;
use crate::error::StoreError;
use crate::events::{Event, read_kind};
use crate::traits::EventStore;

impl EventStore for PgStore {
    fn events(&self, user_id: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            conn.query(
                "SELECT event_id, type, user_id, entitlement_key, period_start_ms, threshold, payload,
                        created_at_ms
                 FROM events WHERE $1::text IS NULL OR user_id = $1 ORDER BY id DESC LIMIT $2",
                &[&user_id, &limit],
            )?
            .iter()
            .map(|row| {
                Ok(Event {
                    event_id: row.get(0),
                    kind: read_kind(row.get(1))?,
                    user_id: row.get(2),
                    entitlement_key: row.get(3),
                    period_start_ms: row.get(4),
                    threshold: row.get(5),
                    payload: row.get(6),
                    created_at_ms: row.get(7),
                })
            })
            .collect()
        })
    }
}
