//! Responses of idempotent requests, on PostgreSQL: stored in the
//! transaction of the request's effects, shared by every host.

use super::{Conn, PgStore, PgTx};
use crate::error::{Conflict, StoreError};
use crate::model::StoredResponse;
use crate::traits::{IdempotencyStore, IdempotencyTx};

fn stored(conn: &mut Conn, user_id: &str, key: &str) -> Result<Option<StoredResponse>, StoreError> {
    let row = conn.query_opt(
        "SELECT request_sha256, status_code, response_json FROM idempotency_keys WHERE user_id = $1 AND idempotency_key = $2",
        &[&user_id, &key],
    )?;
    row.map(|row| {
        let status: i32 = row.get(1);
        Ok(StoredResponse {
            request_sha256: row.get(0),
            status_code: u16::try_from(status).map_err(|_| {
                StoreError::Database(format!("stored status {status} is not an HTTP status"))
            })?,
            response_json: row.get(2),
        })
    })
    .transpose()
}

impl IdempotencyStore for PgStore {
    fn idempotent_response(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        self.read(|conn| stored(conn, user_id, key))
    }

    /// Only committed responses are visible here; a concurrent request
    /// storing the same key made this one's insert wait for its commit
    /// (see [`IdempotencyTx::store_idempotent_response`]), so by the time
    /// a caller asks, it is.
    fn idempotent_response_committed(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        self.read(|conn| stored(conn, user_id, key))
    }

    fn expire_idempotency_keys(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let gone = tx.execute(
                "DELETE FROM idempotency_keys WHERE created_at_ms < $1",
                &[&before_ms],
            )?;
            Ok(usize::try_from(gone).unwrap_or(usize::MAX))
        })
    }
}

impl IdempotencyTx for PgTx {
    /// A concurrent transaction inserting the same key makes this insert
    /// wait for it; once it commits, nothing is inserted here and the key
    /// is a conflict (`ON CONFLICT DO NOTHING` keeps this transaction
    /// usable for its rollback).
    fn store_idempotent_response(
        &mut self,
        user_id: &str,
        key: &str,
        response: &StoredResponse,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let status = i32::from(response.status_code);
        let inserted = self.run(|conn| {
            conn.execute(
                "INSERT INTO idempotency_keys (user_id, idempotency_key, request_sha256, status_code, response_json, created_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, idempotency_key) DO NOTHING",
                &[&user_id, &key, &response.request_sha256, &status, &response.response_json, &now_ms],
            )
        })?;
        if inserted == 0 {
            return Err(StoreError::Conflict(Conflict::IdempotencyKey(
                key.to_owned(),
            )));
        }
        Ok(())
    }
}
