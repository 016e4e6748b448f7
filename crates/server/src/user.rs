//! The user API: a user acts on their own drafts, invites and entitlements.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Json, Path, User};
use crate::idempotency::{Idempotency, Replies, Reply};
use crate::wire;
use quota_store::prelude::*;

fn non_empty(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(format!("`{field}` must not be empty")));
    }
    Ok(())
}

/// A new draft.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDraft {
    /// The title.
    #[schema(min_length = 1)]
    title: String,
}

/// Create a draft (uses your `drafts.max`).
#[utoipa::path(post, path = "/v1/drafts", tag = "user", request_body = CreateDraft, security(("bearer" = [])),
    responses((status = 201, description = "Created, with the decision", body = crate::wire::DraftCreated),
              (status = 403, description = "`quota_exceeded`", body = crate::wire::ErrorBody)))]
async fn create_draft(
    State(state): State<AppState>,
    User(user): User,
    headers: HeaderMap,
    Json(body): Json<CreateDraft>,
) -> Result<Reply, ApiError> {
    non_empty("title", &body.title)?;
    let idem = Idempotency::from_headers(&headers, &user, "POST /v1/drafts", &body)?;
    let replies = Replies::new(idem, StatusCode::CREATED);
    state
        .blocking(move |engine| {
            if let Some(reply) = replies.stored(engine.store())? {
                return Ok(reply);
            }
            let now = engine.now_ms();
            let created = engine.guarded(|g| {
                let (mut admitted, draft) = quota_domain::create_draft(g, &user, &body.title, now)?;
                let reply = replies.reply(&wire::DraftCreated {
                    draft: (&draft).into(),
                    outcome: admitted.outcome().into(),
                })?;
                replies.store(admitted.tx(), &reply, now)?;
                admitted.commit()?;
                Ok(reply)
            });
            replies.answer(engine.store(), created)
        })
        .await
}

/// A new segment.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendSegment {
    /// The text.
    body: String,
}

/// Append a segment to a draft you own or collaborate on (uses your `segments.max`).
#[utoipa::path(post, path = "/v1/drafts/{draft_id}/segments", tag = "user", request_body = AppendSegment,
    params(("draft_id" = i64, Path, description = "The draft")), security(("bearer" = [])),
    responses((status = 201, description = "Appended, with the decision", body = crate::wire::SegmentAppended),
              (status = 403, description = "`quota_exceeded` or `forbidden`", body = crate::wire::ErrorBody)))]
async fn append_segment(
    State(state): State<AppState>,
    User(user): User,
    Path(draft_id): Path<i64>,
    headers: HeaderMap,
    Json(body): Json<AppendSegment>,
) -> Result<Reply, ApiError> {
    let idem = Idempotency::from_headers(
        &headers,
        &user,
        &format!("POST /v1/drafts/{draft_id}/segments"),
        &body,
    )?;
    let replies = Replies::new(idem, StatusCode::CREATED);
    state
        .blocking(move |engine| {
            if let Some(reply) = replies.stored(engine.store())? {
                return Ok(reply);
            }
            let now = engine.now_ms();
            let appended = engine.guarded(|g| {
                let (mut admitted, segment) =
                    quota_domain::append_segment(g, &user, draft_id, &body.body, now)?;
                let reply = replies.reply(&wire::SegmentAppended {
                    segment: (&segment).into(),
                    outcome: admitted.outcome().into(),
                })?;
                replies.store(admitted.tx(), &reply, now)?;
                admitted.commit()?;
                Ok(reply)
            });
            replies.answer(engine.store(), appended)
        })
        .await
}

/// A new invite.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvite {
    /// Who to invite.
    #[schema(min_length = 1)]
    invitee: String,
}

/// Invite a user to collaborate on your draft (uses no quota).
#[utoipa::path(post, path = "/v1/drafts/{draft_id}/invites", tag = "user", request_body = CreateInvite,
    params(("draft_id" = i64, Path, description = "The draft")), security(("bearer" = [])),
    responses((status = 201, description = "The pending invite", body = crate::wire::InviteCreated)))]
async fn create_invite(
    State(state): State<AppState>,
    User(user): User,
    Path(draft_id): Path<i64>,
    headers: HeaderMap,
    Json(body): Json<CreateInvite>,
) -> Result<Reply, ApiError> {
    non_empty("invitee", &body.invitee)?;
    let idem = Idempotency::from_headers(
        &headers,
        &user,
        &format!("POST /v1/drafts/{draft_id}/invites"),
        &body,
    )?;
    let replies = Replies::new(idem, StatusCode::CREATED);
    state
        .blocking(move |engine| {
            if let Some(reply) = replies.stored(engine.store())? {
                return Ok(reply);
            }
            let now = engine.now_ms();
            let invited = engine.guarded(|g| {
                let (mut pending, invite) =
                    quota_domain::create_invite(g, &user, draft_id, &body.invitee, now)?;
                let reply = replies.reply(&wire::InviteCreated {
                    invite: (&invite).into(),
                })?;
                replies.store(pending.tx(), &reply, now)?;
                pending.commit()?;
                Ok(reply)
            });
            replies.answer(engine.store(), invited)
        })
        .await
}

/// Accept an invite addressed to you (uses the inviter's `collaborators.max`).
#[utoipa::path(post, path = "/v1/invites/{invite_id}/accept", tag = "user",
    params(("invite_id" = i64, Path, description = "The invite")), security(("bearer" = [])),
    responses((status = 200, description = "Accepted, with the decision", body = crate::wire::InviteAccepted),
              (status = 403, description = "`quota_exceeded` (the invite stays pending) or `forbidden`", body = crate::wire::ErrorBody)))]
async fn accept_invite(
    State(state): State<AppState>,
    User(user): User,
    Path(invite_id): Path<i64>,
    headers: HeaderMap,
) -> Result<Reply, ApiError> {
    let idem = Idempotency::from_headers(
        &headers,
        &user,
        &format!("POST /v1/invites/{invite_id}/accept"),
        &(),
    )?;
    let replies = Replies::new(idem, StatusCode::OK);
    state
        .blocking(move |engine| {
            if let Some(reply) = replies.stored(engine.store())? {
                return Ok(reply);
            }
            let now = engine.now_ms();
            let accepted = engine.guarded(|g| {
                let (mut admitted, invite) = quota_domain::accept_invite(g, invite_id, &user, now)?;
                let reply = replies.reply(&wire::InviteAccepted {
                    invite: (&invite).into(),
                    outcome: admitted.outcome().into(),
                })?;
                replies.store(admitted.tx(), &reply, now)?;
                admitted.commit()?;
                Ok(reply)
            });
            replies.answer(engine.store(), accepted)
        })
        .await
}

/// Your entitlements: each key your plan, the defaults or your overrides
/// name, with usage, limit, source, grace remaining and enforcement.
#[utoipa::path(get, path = "/v1/me/entitlements", tag = "user", security(("bearer" = [])),
    responses((status = 200, description = "Entitlements", body = crate::wire::Entitlements)))]
async fn entitlements(
    State(state): State<AppState>,
    User(user): User,
) -> Result<axum::Json<wire::Entitlements>, ApiError> {
    state
        .blocking(move |engine| Ok(axum::Json(entitlements_of(engine, user)?)))
        .await
}

/// A user's entitlements: each key their plan, the defaults or their
/// overrides name, checked now (nothing changes).
pub(crate) fn entitlements_of(
    engine: &quota_engine::Engine<crate::Store>,
    user: String,
) -> Result<wire::Entitlements, ApiError> {
    let store = engine.store();
    let me = store.user(&user)?;
    let mut keys: Vec<String> = store
        .plan(&me.plan_id)?
        .limits
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.extend(store.defaults()?.into_iter().map(|(k, _)| k));
    keys.extend(
        store
            .overrides(Some(&user))?
            .into_iter()
            .map(|o| o.entitlement_key),
    );
    keys.sort();
    keys.dedup();
    let mut list = Vec::with_capacity(keys.len());
    for key in keys {
        let checked = engine.check(&quota_engine::QuotaRequest::new(user.clone(), key, 1))?;
        list.push(wire::Entitlement::from(&checked));
    }
    Ok(wire::Entitlements {
        user_id: user,
        plan_id: me.plan_id,
        entitlements: list,
    })
}

/// A soft check.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckBody {
    /// The entitlement, e.g. `drafts.max`.
    #[schema(min_length = 1)]
    entitlement_key: String,
    /// Units the action would use (default 1).
    #[serde(default = "one")]
    #[schema(minimum = 1)]
    requested: i64,
}

fn one() -> i64 {
    1
}

/// Would `requested` more units stay within your limit? Changes nothing.
#[utoipa::path(post, path = "/v1/me/check", tag = "user", request_body = CheckBody, security(("bearer" = [])),
    responses((status = 200, description = "`ok` or `would_exceed`, with the decision enforcing would make", body = crate::wire::Check)))]
async fn check(
    State(state): State<AppState>,
    User(user): User,
    Json(body): Json<CheckBody>,
) -> Result<axum::Json<wire::Check>, ApiError> {
    quota_policy_core::names::check_entitlement_key(&body.entitlement_key)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if body.requested < 1 {
        return Err(ApiError::invalid(format!(
            "`requested` must be at least 1, got {}",
            body.requested
        )));
    }
    state
        .blocking(move |engine| {
            let request =
                quota_engine::QuotaRequest::new(user, body.entitlement_key, body.requested);
            let checked = engine.check(&request)?;
            Ok(axum::Json(wire::Check::from(&checked)))
        })
        .await
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_draft))
        .routes(routes!(append_segment))
        .routes(routes!(create_invite))
        .routes(routes!(accept_invite))
        .routes(routes!(entitlements))
        .routes(routes!(check))
}
