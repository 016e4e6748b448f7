//! The outbox of threshold events, on SQLite (docs/events.md).

use rusqlite::params;

use super::SqliteStore;
use crate::error::StoreError;
use crate::events::{Event, read_kind};
use crate::traits::EventStore;

impl EventStore for SqliteStore {
    fn events(&self, user_id: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT event_id, type, user_id, entitlement_key, period_start_ms, threshold, payload,
                        created_at_ms
                 FROM events WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let mut rows = stmt.query(params![user_id, limit])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                let kind: String = row.get(1)?;
                events.push(Event {
                    event_id: row.get(0)?,
                    kind: read_kind(&kind)?,
                    user_id: row.get(2)?,
                    entitlement_key: row.get(3)?,
                    period_start_ms: row.get(4)?,
                    threshold: row.get(5)?,
                    payload: row.get(6)?,
                    created_at_ms: row.get(7)?,
                });
            }
            Ok(events)
        })
    }
}
