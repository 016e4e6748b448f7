//! The policy lifecycle over HTTP (admin token): activate, roll back,
//! shadow, inspect; and the decision log.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use quota_engine::Engine;
use quota_engine::lifecycle::{ChangeError, Rejected};
use quota_store::DecisionFilter;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Admin, Query};
use crate::wire;
use quota_store::prelude::*;

/// Largest policy component accepted, in bytes.
pub const POLICY_LIMIT: usize = 16 << 20;

/// The actor recorded for admin-token changes.
const ADMIN_ACTOR: &str = "admin";

type JsonResponse<T> = Result<axum::Json<T>, ApiError>;

impl From<Rejected> for ApiError {
    fn from(rejected: Rejected) -> Self {
        let mut error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_rejected",
            rejected.to_string(),
        );
        error.body.error.stage = Some(rejected.stage.as_str().to_owned());
        error.body.error.sha256 = Some(rejected.sha256);
        error
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Busy(_) => {
                ApiError::new(StatusCode::CONFLICT, "upload_in_progress", e.to_string())
            }
            ChangeError::Rejected(rejected) => rejected.into(),
        }
    }
}

/// 409: a rollback with no previous policy.
pub(crate) fn no_previous() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        "there is no previous policy to roll back to",
    )
}

/// The lifecycle's state now.
pub(crate) fn policy_state(
    state: &AppState,
    engine: &Engine<crate::Store>,
) -> Result<wire::PolicyState, ApiError> {
    let lifecycle = state.lifecycle();
    let recorded = lifecycle.state(engine)?;
    let signed = |sha256: String| -> Result<(String, wire::SignedBy), ApiError> {
        let signer = lifecycle.signer(engine, &sha256)?;
        Ok((sha256, signer.into()))
    };
    let active = signed(engine.policy().sha256().to_owned())?;
    let shadow = engine
        .shadow()
        .map(|s| signed(s.sha256().to_owned()))
        .transpose()?;
    let signatures = wire::SignaturePolicy {
        required: lifecycle.signatures().are_required(),
        trusted_keys: lifecycle.signatures().key_ids(),
        refused: lifecycle.following().refused.map(|r| wire::RefusedPolicy {
            sha256: r.sha256,
            reason: r.reason,
        }),
    };
    Ok(wire::PolicyState::new(
        &recorded,
        active,
        shadow,
        lifecycle.vetting(),
        signatures,
        state.fleet_policy(),
    ))
}

/// The detached signature in the `Quota-Policy-Signature` header, if any
/// (docs/signing.md).
fn signature(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get(quota_signing::HEADER)
        .map(|value| {
            value.to_str().map(str::to_owned).map_err(|_| {
                ApiError::invalid(
                    "`Quota-Policy-Signature` must be the ASCII line of a `.sig` file",
                )
            })
        })
        .transpose()
}

/// A component in the body: `application/wasm` or `application/octet-stream`;
/// one over [`POLICY_LIMIT`] gives 413 with the usual error body.
fn component(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<u8>, ApiError> {
    let body = body.map_err(|rejection| {
        if crate::error::body_timed_out(&rejection) {
            ApiError::body_timeout()
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a policy component may have at most {POLICY_LIMIT} bytes"),
            )
        } else {
            ApiError::invalid(rejection.body_text())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(essence, "application/wasm" | "application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the component's bytes as `application/wasm` (or `application/octet-stream`)",
        ));
    }
    if body.is_empty() {
        return Err(ApiError::invalid("the body must be a component, not empty"));
    }
    Ok(body.to_vec())
}

/// Where the policy lifecycle stands: active, previous, shadow, last load error, the upload being compiled (`vetting`), recent events.
#[utoipa::path(get, path = "/admin/policy", tag = "policy", security(("bearer" = [])),
    responses((status = 200, description = "The lifecycle's state", body = crate::wire::PolicyState)))]
async fn get_policy(State(state): State<AppState>, _: Admin) -> JsonResponse<wire::PolicyState> {
    let s = state.clone();
    state
        .blocking(move |engine| Ok(axum::Json(policy_state(&s, engine)?)))
        .await
}

/// Activate a policy component: check its signature (when the host trusts keys; the `Quota-Policy-Signature` header carries the `.sig` line), compile, type-check against the world, self-test with the conformance corpus, then swap atomically. Any failure leaves the active policy in place.
#[utoipa::path(post, path = "/admin/policy", tag = "policy", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component (`application/wasm` is accepted too)"),
    responses((status = 200, description = "Active, with the self-test report", body = crate::wire::Activated),
              (status = 409, description = "`upload_in_progress`: another upload is being compiled", body = crate::wire::ErrorBody),
              (status = 422, description = "`policy_rejected`, with the stage (`signature`, `compile`, `interface`, `self_test`, `store`)", body = crate::wire::ErrorBody)))]
async fn post_policy(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> JsonResponse<wire::Activated> {
    let bytes = component(&headers, body)?;
    let signature = signature(&headers)?;
    let s = state.clone();
    state
        .blocking(move |engine| {
            let accepted =
                s.lifecycle()
                    .activate(engine, ADMIN_ACTOR, &bytes, signature.as_deref())?;
            Ok(axum::Json(wire::Activated {
                activated: (&accepted).into(),
                policy: policy_state(&s, engine)?,
            }))
        })
        .await
}

/// Make the previous policy active again (the most recently active one other than the current).
#[utoipa::path(post, path = "/admin/policy/rollback", tag = "policy", security(("bearer" = [])),
    responses((status = 200, description = "Rolled back", body = crate::wire::Activated),
              (status = 409, description = "`conflict`: no previous policy; `upload_in_progress`: an upload is being compiled", body = crate::wire::ErrorBody)))]
async fn rollback(State(state): State<AppState>, _: Admin) -> JsonResponse<wire::Activated> {
    let s = state.clone();
    state
        .blocking(move |engine| {
            let accepted = s
                .lifecycle()
                .rollback(engine, ADMIN_ACTOR)?
                .ok_or_else(no_previous)?;
            Ok(axum::Json(wire::Activated {
                activated: (&accepted).into(),
                policy: policy_state(&s, engine)?,
            }))
        })
        .await
}

/// Set a shadow policy: evaluated beside the active one on every decision, divergences counted and logged, never obeyed. Same stages as an activation.
#[utoipa::path(post, path = "/admin/policy/shadow", tag = "policy", security(("bearer" = [])),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The component (`application/wasm` is accepted too)"),
    responses((status = 200, description = "Shadowing", body = crate::wire::Shadowed),
              (status = 409, description = "`upload_in_progress`: another upload is being compiled", body = crate::wire::ErrorBody),
              (status = 422, description = "`policy_rejected`", body = crate::wire::ErrorBody)))]
async fn post_shadow(
    State(state): State<AppState>,
    _: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> JsonResponse<wire::Shadowed> {
    let bytes = component(&headers, body)?;
    let signature = signature(&headers)?;
    let s = state.clone();
    state
        .blocking(move |engine| {
            let accepted =
                s.lifecycle()
                    .set_shadow(engine, ADMIN_ACTOR, &bytes, signature.as_deref())?;
            Ok(axum::Json(wire::Shadowed {
                shadow: (&accepted).into(),
                policy: policy_state(&s, engine)?,
            }))
        })
        .await
}

/// Clear the shadow policy.
#[utoipa::path(delete, path = "/admin/policy/shadow", tag = "policy", security(("bearer" = [])),
    responses((status = 200, description = "`cleared` says whether one was set", body = crate::wire::Cleared)))]
async fn delete_shadow(State(state): State<AppState>, _: Admin) -> JsonResponse<wire::Cleared> {
    let s = state.clone();
    state
        .blocking(move |engine| {
            let cleared = s.lifecycle().clear_shadow(engine, ADMIN_ACTOR)?;
            Ok(axum::Json(wire::Cleared { cleared }))
        })
        .await
}

/// Filters of the decision log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DecisionQuery {
    /// Only this user's decisions.
    user_id: Option<String>,
    /// Only this entitlement's.
    entitlement_key: Option<String>,
    /// Only this status (`allow`, `allow_grace`, `warn_only`, `block`).
    status: Option<String>,
    /// Only decisions where the shadow policy diverged.
    #[serde(default)]
    diverged: bool,
    /// Only entries with a smaller id (the next page).
    before_id: Option<i64>,
    /// At most this many (1-1000, default 100).
    limit: Option<usize>,
}

/// The decision log, newest first: each enforce decision's input, output, policy and shadow verdict.
#[utoipa::path(get, path = "/admin/decisions", tag = "policy", params(DecisionQuery), security(("bearer" = [])),
    responses((status = 200, description = "Entries, newest first", body = crate::wire::DecisionLog)))]
async fn decisions(
    State(state): State<AppState>,
    _: Admin,
    Query(query): Query<DecisionQuery>,
) -> JsonResponse<wire::DecisionLog> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be between 1 and 1000"));
    }
    if let Some(status) = &query.status
        && !matches!(
            status.as_str(),
            "allow" | "allow_grace" | "warn_only" | "block"
        )
    {
        return Err(ApiError::invalid(
            "`status` must be allow, allow_grace, warn_only or block",
        ));
    }
    let filter = DecisionFilter {
        user_id: query.user_id,
        entitlement_key: query.entitlement_key,
        status: query.status,
        diverged: query.diverged,
        before_id: query.before_id,
        limit,
    };
    let s = state.clone();
    state
        .blocking(move |engine| {
            let entries = read_decisions(&s, engine, &filter)?;
            Ok(axum::Json(wire::DecisionLog {
                entries: entries.iter().map(wire::DecisionLogEntry::from).collect(),
            }))
        })
        .await
}

/// The decision log's entries `filter` picks, after writing what the
/// log holds.
pub(crate) fn read_decisions(
    state: &AppState,
    engine: &Engine<crate::Store>,
    filter: &DecisionFilter,
) -> Result<Vec<quota_store::DecisionLogEntry>, ApiError> {
    Ok(match state.decision_log() {
        Some(log) => {
            log.flush(std::time::Duration::from_secs(5));
            log.store().decisions(filter)?
        }
        None => engine.store().decisions(filter)?,
    })
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(get_policy, post_policy))
        .routes(routes!(post_shadow, delete_shadow))
        .layer(DefaultBodyLimit::max(POLICY_LIMIT));
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(rollback))
        .routes(routes!(decisions))
}
