//! Responses of idempotent requests, on SQLite: stored in the transaction
//! of the request's effects.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, SqliteTx};
use crate::error::{Conflict, StoreError};
use crate::model::StoredResponse;
use crate::traits::{IdempotencyStore, IdempotencyTx};

impl IdempotencyStore for SqliteStore {
    fn idempotent_response(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let conn = self.connection()?;
        stored(&conn, user_id, key)
    }

    /// The stored response for (user, key) as the writer sees it: read in
    /// a write transaction, so it includes a concurrent request's response
    /// still waiting for its group commit, and returns only once that is
    /// committed (or fails with it).
    fn idempotent_response_committed(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        self.write(|tx| stored(tx, user_id, key))
    }

    fn expire_idempotency_keys(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM idempotency_keys WHERE created_at_ms < ?1")?
                .execute([before_ms])?)
        })
    }
}

fn stored(
    conn: &rusqlite::Connection,
    user_id: &str,
    key: &str,
) -> Result<Option<StoredResponse>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT request_sha256, status_code, response_json FROM idempotency_keys WHERE user_id = ?1 AND idempotency_key = ?2",
        )?
        .query_row([user_id, key], |row| {
            Ok(StoredResponse {
                request_sha256: row.get(0)?,
                status_code: row.get(1)?,
                response_json: row.get(2)?,
            })
        })
        .optional()?)
}

impl IdempotencyTx for SqliteTx {
    /// Stores the response of an idempotent request in the same transaction
    /// as its effects, so a retry can never apply them twice.
    fn store_idempotent_response(
        &mut self,
        user_id: &str,
        key: &str,
        response: &StoredResponse,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let inserted = self.conn().prepare_cached(
            "INSERT INTO idempotency_keys (user_id, idempotency_key, request_sha256, status_code, response_json, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![user_id, key, response.request_sha256, response.status_code, response.response_json, now_ms]);
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Conflict(Conflict::IdempotencyKey(
                    key.to_owned(),
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}
