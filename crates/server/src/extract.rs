//! Extractors whose rejections are [`ApiError`]s, and the auth extractors.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;

/// A JSON body; malformed, mistyped or unknown fields give 400, a missing
/// content type 415, an oversized body 413.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Path parameters; a malformed one gives 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters; a malformed one gives 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// The token of an `Authorization: Bearer <token>` header; the scheme's
/// case does not matter (RFC 9110: `bearer` and `BEARER` are the same).
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>`"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the `Authorization` header must be `Bearer <token>`")
        })
}

/// The admin token: at least [`AdminToken::MIN_CHARS`] characters. Only
/// its sha256 is kept.
#[derive(Clone)]
pub struct AdminToken([u8; 32]);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// Why a token cannot be the admin token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an admin token must have at least {min} characters, got {0}", min = AdminToken::MIN_CHARS)]
pub struct ShortToken(pub usize);

impl AdminToken {
    /// The fewest characters an admin token may have.
    pub const MIN_CHARS: usize = 32;

    /// The admin token `token`, if it is long enough.
    pub fn new(token: &str) -> Result<Self, ShortToken> {
        let chars = token.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(ShortToken(chars));
        }
        Ok(AdminToken(token_sha256(token)))
    }

    /// The token's sha256.
    pub fn sha256(&self) -> [u8; 32] {
        self.0
    }
}

/// An id from a path, by the rule every edge applies: 400 when broken.
pub(crate) fn id(field: &str, value: &str) -> Result<(), ApiError> {
    quota_policy_core::names::check_id(field, value).map_err(|e| ApiError::invalid(e.to_string()))
}

/// The sha256 of a token.
pub fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests in constant time.
pub(crate) fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The caller holds the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if same_digest(&token_sha256(token), &state.admin_token().sha256()) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("invalid admin token"))
        }
    }
}

/// The caller is this user (by their API token).
#[derive(Debug, Clone)]
pub struct User(pub String);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let digest = hex::encode(token_sha256(bearer(parts)?));
        let user = state.user_for_token(digest).await?;
        user.map(User)
            .ok_or_else(|| ApiError::unauthorized("invalid user token"))
    }
}

/// The caller holds a node credential (`POST /admin/nodes`). Looked up in
/// the store on every request, so a deleted node is refused at once by
/// every host.
#[derive(Debug, Clone)]
pub struct Node(pub String);

impl Node {
    /// The owner of the node's idempotency keys: a user id cannot hold a
    /// control character, so no user shares it.
    pub(crate) fn idempotency_owner(&self) -> String {
        format!("\u{1f}node\u{1f}{}", self.0)
    }
}

async fn node_for(state: &AppState, digest: String) -> Result<Option<String>, ApiError> {
    state
        .blocking(move |engine| {
            Ok(quota_store::LeaseStore::node_for_token(engine.store(), &digest)?.map(|n| n.id))
        })
        .await
}

impl FromRequestParts<AppState> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let digest = hex::encode(token_sha256(bearer(parts)?));
        node_for(state, digest)
            .await?
            .map(Node)
            .ok_or_else(|| ApiError::unauthorized("invalid node token"))
    }
}

/// A user (their token) or a node (its credential), for the routes both
/// may call.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A user acting for themself.
    User(String),
    /// A node acting on a user's behalf.
    Node(Node),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let digest = hex::encode(token_sha256(bearer(parts)?));
        if let Some(user) = state.user_for_token(digest.clone()).await? {
            return Ok(Caller::User(user));
        }
        node_for(state, digest)
            .await?
            .map(|id| Caller::Node(Node(id)))
            .ok_or_else(|| ApiError::unauthorized("invalid user or node token"))
    }
}
