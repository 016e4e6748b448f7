//! `Idempotency-Key` on mutating POSTs.
//!
//! The response of a successful request is stored in the same transaction
//! as its effects, keyed by (user, key), with the sha256 of the request
//! (method, route, body). A retry with the same key and request gets the
//! stored response and changes nothing; the same key with another request
//! gets 422 `idempotency_mismatch`. Two concurrent requests with one key:
//! the second one's insert of the key fails, its savepoint rolls back,
//! and it answers with the first one's stored response, read through the
//! writer once the group commit holding it is done. Failed requests
//! (a quota block included) store nothing, so a retry is decided afresh.
//! Keys are kept 24 hours ([`KEEP_MS`]) and then expired.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quota_store::{IdempotencyStore, IdempotencyTx, StoreError, StoredResponse};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// How long a stored response is kept.
pub const KEEP_MS: i64 = 24 * 60 * 60 * 1000;

/// The header.
pub const HEADER: &str = "idempotency-key";

/// An idempotent request: who, which key, what request.
#[derive(Debug, Clone)]
pub(crate) struct Idempotency {
    user_id: String,
    key: String,
    request_sha256: String,
}

/// A response of a mutating request: its status and its JSON, as sent
/// and as stored for a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    status: StatusCode,
    json: String,
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.json,
        )
            .into_response()
    }
}

impl Reply {
    /// A reply kept as JSON text elsewhere (a lease's last settle).
    pub(crate) fn kept(status: StatusCode, json: String) -> Self {
        Reply { status, json }
    }
}

/// `value` as JSON text.
fn json_text(value: &impl Serialize) -> Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::internal(e.to_string()))
}

impl Idempotency {
    /// Reads the header; `None` when absent. `route` and `body` identify the request.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        user_id: &str,
        route: &str,
        body: &impl Serialize,
    ) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get(HEADER) else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::invalid("`Idempotency-Key` must be 1 to 255 visible ASCII characters")
            })?;
        let mut hasher = Sha256::new();
        hasher.update(route.as_bytes());
        hasher.update(b"\n");
        hasher.update(json_text(body)?.as_bytes());
        Ok(Some(Idempotency {
            user_id: user_id.to_owned(),
            key: key.to_owned(),
            request_sha256: hex::encode(hasher.finalize()),
        }))
    }

    /// The stored reply for this key, if any: replayed when the request is
    /// the same, 422 when it differs. `stored` is what the store has.
    fn replay(&self, stored: Option<StoredResponse>) -> Result<Option<Reply>, ApiError> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        if stored.request_sha256 != self.request_sha256 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_mismatch",
                format!(
                    "`Idempotency-Key` `{}` was used for a different request",
                    self.key
                ),
            ));
        }
        let status = StatusCode::from_u16(stored.status_code)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Some(Reply {
            status,
            json: stored.response_json,
        }))
    }
}

/// The replies of one request: replayed when stored, stored with the
/// request's effects when it succeeds. Without an `Idempotency-Key` it
/// stores and replays nothing.
#[derive(Debug)]
pub(crate) struct Replies {
    idempotency: Option<Idempotency>,
    status: StatusCode,
}

impl Replies {
    /// Replies with `status` for the request `idempotency` names, if any.
    pub(crate) fn new(idempotency: Option<Idempotency>, status: StatusCode) -> Self {
        Replies {
            idempotency,
            status,
        }
    }

    /// The stored reply of an earlier request with the same key, if any
    /// (422 when that request was a different one).
    pub(crate) fn stored(&self, store: &impl IdempotencyStore) -> Result<Option<Reply>, ApiError> {
        match &self.idempotency {
            Some(idem) => idem.replay(store.idempotent_response(&idem.user_id, &idem.key)?),
            None => Ok(None),
        }
    }

    /// The reply with `body` and another status than the usual one (it
    /// is stored only if passed to [`Replies::store`]).
    pub(crate) fn reply_with(
        &self,
        status: StatusCode,
        body: &impl Serialize,
    ) -> Result<Reply, ApiError> {
        Ok(Reply {
            status,
            json: json_text(body)?,
        })
    }

    /// The reply with `body`.
    pub(crate) fn reply(&self, body: &impl Serialize) -> Result<Reply, ApiError> {
        Ok(Reply {
            status: self.status,
            json: json_text(body)?,
        })
    }

    /// Stores `reply` inside `tx`, the transaction of the request's
    /// effects, so a retry can never apply them twice.
    pub(crate) fn store(
        &self,
        tx: &mut impl IdempotencyTx,
        reply: &Reply,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let Some(idem) = &self.idempotency else {
            return Ok(());
        };
        let stored = StoredResponse {
            request_sha256: idem.request_sha256.clone(),
            status_code: reply.status.as_u16(),
            response_json: reply.json.clone(),
        };
        tx.store_idempotent_response(&idem.user_id, &idem.key, &stored, now_ms)
    }

    /// The answer for `result`, the request's own: its reply with the
    /// status, or its error, unless a concurrent request with the same key
    /// won the race (its insert of the key made this one fail) and stored
    /// a reply, which is then replayed once its commit is done.
    pub(crate) fn answer(
        &self,
        store: &impl IdempotencyStore,
        result: Result<Reply, ApiError>,
    ) -> Result<Reply, ApiError> {
        match result {
            Ok(reply) => Ok(reply),
            Err(e) => {
                if let Some(idem) = &self.idempotency
                    && let Some(reply) =
                        idem.replay(store.idempotent_response_committed(&idem.user_id, &idem.key)?)?
                {
                    return Ok(reply);
                }
                Err(e)
            }
        }
    }
}

/// Deletes stored replies older than [`KEEP_MS`], every `every`, forever.
pub(crate) async fn expire_forever(state: AppState, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let result = state
            .blocking(|engine| {
                Ok(engine
                    .store()
                    .expire_idempotency_keys(engine.now_ms() - KEEP_MS)?)
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = ?e.body, "expiring idempotency keys failed");
        }
    }
}
