//! The admin API (admin token): plans, defaults, users, overrides, audit, stats.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use quota_store::{PeriodKind, PlanChange};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Admin, Json, Path, Query, token_sha256};
use crate::wire;
use quota_store::prelude::*;

/// The actor recorded in the audit log for admin-token changes.
pub(crate) const ADMIN_ACTOR: &str = "admin";

type JsonResponse<T> = Result<axum::Json<T>, ApiError>;

/// A plan change: only the fields given change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBody {
    /// Limits to set, by entitlement key (`-1` unlimited).
    #[serde(default)]
    limits: BTreeMap<String, i64>,
    /// Entitlement keys whose plan limit to remove.
    #[serde(default)]
    remove_limits: Vec<String>,
    /// Block once grace is used up (false: warn only).
    enforcement_enabled: Option<bool>,
    /// Grace units per user and entitlement.
    grace_count: Option<i64>,
    /// Share of users (0-100) enforcement applies to.
    rollout_percent: Option<i64>,
    /// Reset periods to set, by entitlement key: `none` (count for ever),
    /// `day`, `week` (ISO, from Monday 00:00 UTC), `month` (calendar,
    /// UTC) or `anniversary` (monthly from the user's plan start). A key
    /// whose period changes starts a new period at once.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    periods: BTreeMap<String, String>,
    /// Threshold percentages to set, by entitlement key, replacing the
    /// key's list (`[]` removes it): usage reaching each one writes a
    /// `threshold.reached` event, once per period, and a key with
    /// thresholds also gets `quota.blocked` (docs/events.md).
    #[serde(default)]
    thresholds: BTreeMap<String, Vec<i64>>,
}

impl PlanBody {
    /// The change the body asks for (periods parsed; the rest is checked
    /// by the store).
    pub(crate) fn into_change(self) -> Result<PlanChange, ApiError> {
        let periods = self
            .periods
            .iter()
            .map(|(key, kind)| {
                let kind = kind
                    .parse::<PeriodKind>()
                    .map_err(|e| ApiError::invalid(format!("periods.{key}: {e}")))?;
                Ok((key.clone(), kind))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(PlanChange {
            limits: self.limits.into_iter().collect(),
            remove_limits: self.remove_limits,
            enforcement_enabled: self.enforcement_enabled,
            grace_count: self.grace_count,
            rollout_percent: self.rollout_percent,
            periods,
            thresholds: self.thresholds.into_iter().collect(),
        })
    }
}

/// Create a plan, or change only the fields given (a new plan: enforcement off, grace 0, rollout 100).
#[utoipa::path(put, path = "/admin/plans/{plan_id}", tag = "admin", request_body = PlanBody,
    params(("plan_id" = String, Path, description = "The plan")), security(("bearer" = [])),
    responses((status = 200, description = "The plan after the change", body = crate::wire::Plan)))]
async fn put_plan(
    State(state): State<AppState>,
    _: Admin,
    Path(plan_id): Path<String>,
    Json(body): Json<PlanBody>,
) -> JsonResponse<wire::Plan> {
    let change = body.into_change()?;
    state
        .blocking(move |engine| {
            let plan = engine
                .store()
                .set_plan(ADMIN_ACTOR, &plan_id, &change, engine.now_ms())?;
            Ok(axum::Json((&plan).into()))
        })
        .await
}

/// List the plans.
#[utoipa::path(get, path = "/admin/plans", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Plans", body = crate::wire::Plans)))]
async fn list_plans(State(state): State<AppState>, _: Admin) -> JsonResponse<wire::Plans> {
    state
        .blocking(|engine| {
            let plans = engine.store().plans()?;
            Ok(axum::Json(wire::Plans {
                plans: plans.iter().map(wire::Plan::from).collect(),
            }))
        })
        .await
}

/// Show a plan.
#[utoipa::path(get, path = "/admin/plans/{plan_id}", tag = "admin", params(("plan_id" = String, Path, description = "The plan")),
    security(("bearer" = [])), responses((status = 200, description = "The plan", body = crate::wire::Plan), (status = 404, description = "No such plan")))]
async fn get_plan(
    State(state): State<AppState>,
    _: Admin,
    Path(plan_id): Path<String>,
) -> JsonResponse<wire::Plan> {
    crate::extract::id("plan_id", &plan_id)?;
    state
        .blocking(move |engine| Ok(axum::Json((&engine.store().plan(&plan_id)?).into())))
        .await
}

/// A default limit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultBody {
    /// The limit (`-1` unlimited).
    limit: i64,
}

/// Set the global default limit of an entitlement.
#[utoipa::path(put, path = "/admin/defaults/{entitlement_key}", tag = "admin", request_body = DefaultBody,
    params(("entitlement_key" = String, Path, description = "The entitlement")), security(("bearer" = [])),
    responses((status = 200, description = "Set", body = crate::wire::DefaultLimit)))]
async fn put_default(
    State(state): State<AppState>,
    _: Admin,
    Path(key): Path<String>,
    Json(body): Json<DefaultBody>,
) -> JsonResponse<wire::DefaultLimit> {
    state
        .blocking(move |engine| {
            engine
                .store()
                .set_default(ADMIN_ACTOR, &key, body.limit, engine.now_ms())?;
            Ok(axum::Json(wire::DefaultLimit {
                entitlement_key: key,
                limit: body.limit,
            }))
        })
        .await
}

/// List the default limits.
#[utoipa::path(get, path = "/admin/defaults", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Defaults", body = crate::wire::Defaults)))]
async fn list_defaults(State(state): State<AppState>, _: Admin) -> JsonResponse<wire::Defaults> {
    state
        .blocking(|engine| {
            Ok(axum::Json(wire::Defaults {
                defaults: engine.store().defaults()?.into_iter().collect(),
            }))
        })
        .await
}

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The user id.
    id: String,
    /// The plan.
    plan_id: String,
}

pub(crate) fn new_token() -> Result<String, ApiError> {
    Ok(format!("qt_{}", random_hex(32)?))
}

/// `n` random bytes, in hex.
pub(crate) fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness for an id or token: {e}")))?;
    Ok(hex::encode(bytes))
}

/// Create a user on a plan. The response carries the user's API token: it is shown once and stored only hashed.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, description = "The user and their token", body = crate::wire::CreatedUser), (status = 409, description = "The user exists")))]
async fn create_user(
    State(state): State<AppState>,
    _: Admin,
    Json(body): Json<CreateUser>,
) -> Result<(StatusCode, axum::Json<wire::CreatedUser>), ApiError> {
    let token = new_token()?;
    state
        .blocking(move |engine| {
            let store = engine.store();
            let now = engine.now_ms();
            let user = store.create_user_with_token(
                ADMIN_ACTOR,
                &body.id,
                &body.plan_id,
                &hex::encode(token_sha256(&token)),
                now,
            )?;
            Ok((
                StatusCode::CREATED,
                axum::Json(wire::CreatedUser {
                    user: (&user).into(),
                    token,
                }),
            ))
        })
        .await
}

/// Show a user: plan, usage counters, grace used.
#[utoipa::path(get, path = "/admin/users/{user_id}", tag = "admin", params(("user_id" = String, Path, description = "The user")),
    security(("bearer" = [])), responses((status = 200, description = "The user", body = crate::wire::UserDetails), (status = 404, description = "No such user")))]
async fn get_user(
    State(state): State<AppState>,
    _: Admin,
    Path(user_id): Path<String>,
) -> JsonResponse<wire::UserDetails> {
    crate::extract::id("user_id", &user_id)?;
    state
        .blocking(move |engine| {
            Ok(axum::Json(wire::UserDetails::read(
                engine.store(),
                &user_id,
            )?))
        })
        .await
}

/// A plan change for a user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    /// The new plan.
    plan_id: String,
}

/// Move a user to another plan (resets their grace usage).
#[utoipa::path(put, path = "/admin/users/{user_id}/plan", tag = "admin", request_body = SetPlan,
    params(("user_id" = String, Path, description = "The user")), security(("bearer" = [])),
    responses((status = 200, description = "The user on the new plan", body = crate::wire::User)))]
async fn set_plan(
    State(state): State<AppState>,
    _: Admin,
    Path(user_id): Path<String>,
    Json(body): Json<SetPlan>,
) -> JsonResponse<wire::User> {
    state
        .blocking(move |engine| {
            let user = engine.store().set_user_plan(
                ADMIN_ACTOR,
                &user_id,
                &body.plan_id,
                engine.now_ms(),
            )?;
            Ok(axum::Json((&user).into()))
        })
        .await
}

/// An override.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    /// The limit (`-1` unlimited).
    value: i64,
    /// When it stops applying, Unix ms; absent: never.
    expires_at_ms: Option<i64>,
    /// Who sets it (default: `admin`).
    created_by: Option<String>,
}

/// Set a user's override for an entitlement (replaces any earlier one).
#[utoipa::path(put, path = "/admin/users/{user_id}/overrides/{entitlement_key}", tag = "admin", request_body = OverrideBody,
    params(("user_id" = String, Path, description = "The user"), ("entitlement_key" = String, Path, description = "The entitlement")),
    security(("bearer" = [])), responses((status = 200, description = "The override", body = crate::wire::Override)))]
async fn put_override(
    State(state): State<AppState>,
    _: Admin,
    Path((user_id, key)): Path<(String, String)>,
    Json(body): Json<OverrideBody>,
) -> JsonResponse<wire::Override> {
    state
        .blocking(move |engine| {
            let now = engine.now_ms();
            let by = body.created_by.unwrap_or_else(|| ADMIN_ACTOR.to_owned());
            let row = engine.store().set_override(
                &by,
                &user_id,
                &key,
                body.value,
                body.expires_at_ms,
                now,
            )?;
            Ok(axum::Json(wire::Override::at(&row, now)))
        })
        .await
}

/// Remove a user's override for an entitlement.
#[utoipa::path(delete, path = "/admin/users/{user_id}/overrides/{entitlement_key}", tag = "admin",
    params(("user_id" = String, Path, description = "The user"), ("entitlement_key" = String, Path, description = "The entitlement")),
    security(("bearer" = [])), responses((status = 200, description = "Whether one was removed", body = crate::wire::ClearedOverride)))]
async fn delete_override(
    State(state): State<AppState>,
    _: Admin,
    Path((user_id, key)): Path<(String, String)>,
) -> JsonResponse<wire::ClearedOverride> {
    state
        .blocking(move |engine| {
            let now = engine.now_ms();
            let removed = engine
                .store()
                .clear_override(ADMIN_ACTOR, &user_id, &key, now)?;
            Ok(axum::Json(wire::ClearedOverride {
                cleared: removed.is_some(),
                r#override: removed.map(|r| wire::Override::at(&r, now)),
            }))
        })
        .await
}

/// Filters of the override list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OverrideFilter {
    /// Only this user's overrides.
    user: Option<String>,
}

/// List overrides (expired ones are marked).
#[utoipa::path(get, path = "/admin/overrides", tag = "admin", params(OverrideFilter), security(("bearer" = [])),
    responses((status = 200, description = "Overrides", body = crate::wire::Overrides)))]
async fn list_overrides(
    State(state): State<AppState>,
    _: Admin,
    Query(filter): Query<OverrideFilter>,
) -> JsonResponse<wire::Overrides> {
    state
        .blocking(move |engine| {
            let now = engine.now_ms();
            let rows = engine.store().overrides(filter.user.as_deref())?;
            Ok(axum::Json(wire::Overrides {
                overrides: rows.iter().map(|r| wire::Override::at(r, now)).collect(),
            }))
        })
        .await
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// At most this many entries (default 50, at most 1000).
    limit: Option<usize>,
}

/// The audit log of admin changes, newest first.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(AuditParams), security(("bearer" = [])),
    responses((status = 200, description = "Entries", body = crate::wire::AuditLog)))]
async fn audit(
    State(state): State<AppState>,
    _: Admin,
    Query(params): Query<AuditParams>,
) -> JsonResponse<wire::AuditLog> {
    let limit = params.limit.unwrap_or(50).min(1000);
    state
        .blocking(move |engine| {
            let entries = engine.store().audit_log(limit)?;
            Ok(axum::Json(wire::AuditLog {
                entries: entries.iter().map(wire::AuditEntry::from).collect(),
            }))
        })
        .await
}

/// Which threshold events to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only this user's.
    user: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<usize>,
}

/// Threshold events (`threshold.reached`, `quota.blocked`), newest first.
#[utoipa::path(get, path = "/admin/events", tag = "admin", params(EventParams), security(("bearer" = [])),
    responses((status = 200, description = "Events", body = crate::wire::Events)))]
async fn events(
    State(state): State<AppState>,
    _: Admin,
    Query(params): Query<EventParams>,
) -> JsonResponse<wire::Events> {
    if let Some(user) = &params.user {
        crate::extract::id("user", user)?;
    }
    let limit = params.limit.unwrap_or(50).min(1000);
    state
        .blocking(move |engine| {
            let events = engine.store().events(params.user.as_deref(), limit)?;
            Ok(axum::Json(wire::Events {
                events: events.iter().map(wire::Event::from).collect(),
            }))
        })
        .await
}

/// Decision counts by plan, entitlement and status, and policy errors.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Counts", body = crate::wire::Stats)))]
async fn stats(State(state): State<AppState>, _: Admin) -> JsonResponse<wire::Stats> {
    let m = state.engine().metrics().snapshot();
    Ok(axum::Json(wire::Stats::new(
        &m,
        state.engine().policy().sha256().to_owned(),
    )))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_plan, get_plan))
        .routes(routes!(list_plans))
        .routes(routes!(put_default))
        .routes(routes!(list_defaults))
        .routes(routes!(create_user))
        .routes(routes!(get_user))
        .routes(routes!(set_plan))
        .routes(routes!(put_override, delete_override))
        .routes(routes!(list_overrides))
        .routes(routes!(audit))
        .routes(routes!(events))
        .routes(routes!(stats))
}
