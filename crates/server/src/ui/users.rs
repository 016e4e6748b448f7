//! `/ui/users`: search by id prefix; one user's entitlements with usage
//! bars, overrides set and cleared, and a plan change. User tokens never
//! appear here.

use std::time::Duration;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::session::Posted;
use super::{ACTOR, Chrome, Session, UiError, done, limit_text, render, segment, when};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::wire;
use quota_store::prelude::*;

/// Users a search lists at most.
const LISTED: usize = 50;

#[derive(Template)]
#[template(path = "ui/users.html")]
struct UsersPage {
    chrome: Chrome,
    q: String,
    users: Vec<quota_store::User>,
    more: bool,
}

#[derive(Template)]
#[template(path = "ui/user_rows.html")]
struct UserRows {
    q: String,
    users: Vec<quota_store::User>,
    more: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
}

/// `GET /ui/users?q=`: the page, or only its result rows when htmx asks
/// as the search box is typed in. htmx keeps no copies of pages in the
/// browser (`historyCacheSize` 0 in `base.html`): pages hold ids and the
/// anti-forgery token, and are sent `no-store`.
pub(crate) async fn search(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Result<Response, UiError> {
    let q = search.q.trim().to_owned();
    let prefix = q.clone();
    let mut users = state
        .blocking(move |engine| Ok(engine.store().search_users(&prefix, LISTED + 1)?))
        .await?;
    let more = users.len() > LISTED;
    users.truncate(LISTED);
    // htmx asks for the rows as the box is typed in; going back in
    // history it asks for the whole page.
    if headers.contains_key("hx-request") && !headers.contains_key("hx-history-restore-request") {
        return render(&UserRows { q, users, more });
    }
    render(&UsersPage {
        chrome: Chrome::new(&session, "users"),
        q,
        users,
        more,
    })
}

/// One entitlement's row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) key: String,
    pub(crate) usage: i64,
    pub(crate) limit: i64,
    pub(crate) limit_text: String,
    pub(crate) source: &'static str,
    pub(crate) grace_used: i64,
    pub(crate) grace_count: i64,
    pub(crate) reserved: i64,
    pub(crate) period_end: Option<String>,
    /// The bar's maximum: the limit, or the usage when past it.
    pub(crate) bar_max: i64,
    pub(crate) over: bool,
}

/// An override's row.
#[derive(Debug, Clone)]
pub(crate) struct OverrideView {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) expires: String,
    pub(crate) created_by: String,
}

#[derive(Template)]
#[template(path = "ui/user.html")]
struct UserPage {
    chrome: Chrome,
    user_id: String,
    plan_id: String,
    grace_count: i64,
    rows: Vec<Row>,
    overrides: Vec<OverrideView>,
    plans: Vec<String>,
}

fn source(source: wire::LimitSource) -> &'static str {
    match source {
        wire::LimitSource::Override => "override",
        wire::LimitSource::Plan => "plan",
        wire::LimitSource::Default => "default",
        wire::LimitSource::None => "none (unlimited)",
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(user_id): Path<String>,
    Query(query): Query<super::Done>,
) -> Result<Response, UiError> {
    crate::extract::id("user_id", &user_id)?;
    let (entitlements, grace_count, overrides, plans) = state
        .blocking(move |engine| {
            let entitlements = crate::user::entitlements_of(engine, user_id.clone())?;
            let store = engine.store();
            let grace_count = store.plan(&entitlements.plan_id)?.grace_count;
            let overrides = store.overrides(Some(&user_id))?;
            let plans = store.plans()?.into_iter().map(|p| p.id).collect::<Vec<_>>();
            Ok((entitlements, grace_count, overrides, plans))
        })
        .await?;
    let rows = entitlements
        .entitlements
        .iter()
        .map(|e| Row {
            key: e.entitlement_key.clone(),
            usage: e.usage,
            limit: e.limit,
            limit_text: limit_text(e.limit),
            source: source(e.limit_source),
            grace_used: (grace_count - e.grace_remaining).max(0),
            grace_count,
            reserved: e.reserved,
            period_end: e.period.as_ref().map(|p| when(p.end_ms)),
            bar_max: e.limit.max(e.usage).max(1),
            over: e.limit >= 0 && e.usage > e.limit,
        })
        .collect();
    let overrides = overrides
        .into_iter()
        .map(|o| OverrideView {
            key: o.entitlement_key,
            value: limit_text(o.value),
            expires: o.expires_at_ms.map_or_else(|| "never".to_owned(), when),
            created_by: o.created_by,
        })
        .collect();
    render(&UserPage {
        chrome: Chrome::new(&session, "users").with_done(&query),
        user_id: entitlements.user_id,
        plan_id: entitlements.plan_id,
        grace_count,
        rows,
        overrides,
        plans,
    })
}

/// The override form.
#[derive(Debug, Deserialize)]
pub(crate) struct SetOverride {
    #[serde(default)]
    entitlement_key: String,
    #[serde(default)]
    value: String,
    /// A duration (`7d`, `12h`); empty: never expires.
    #[serde(default)]
    expires_in: String,
}

pub(crate) async fn set_override(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    posted: Posted<SetOverride>,
) -> Result<Response, UiError> {
    crate::extract::id("user_id", &user_id)?;
    let form = posted.form;
    let key = form.entitlement_key.trim().to_owned();
    quota_policy_core::names::check_entitlement_key(&key)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let value: i64 = form.value.trim().parse().map_err(|_| {
        ApiError::invalid(format!(
            "the limit must be a whole number (-1 for unlimited), got `{}`",
            form.value
        ))
    })?;
    let expires_in = match form.expires_in.trim() {
        "" => None,
        text => Some(humantime::parse_duration(text).map_err(|e| {
            ApiError::invalid(format!(
                "`expires in` must be a duration such as `7d` or `12h`: {e}"
            ))
        })?),
    };
    let id = user_id.clone();
    state
        .blocking(move |engine| {
            let now = engine.now_ms();
            let expires_at_ms = expires_in
                .map(|d: Duration| {
                    i64::try_from(d.as_millis())
                        .ok()
                        .and_then(|ms| now.checked_add(ms))
                        .ok_or_else(|| ApiError::invalid("`expires in` is too far away"))
                })
                .transpose()?;
            engine
                .store()
                .set_override(ACTOR, &id, &key, value, expires_at_ms, now)?;
            Ok(())
        })
        .await?;
    Ok(done(
        &format!("/ui/users/{}", segment(&user_id)),
        "override",
    ))
}

/// The clear-override form.
#[derive(Debug, Deserialize)]
pub(crate) struct ClearOverride {
    #[serde(default)]
    entitlement_key: String,
}

pub(crate) async fn clear_override(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    posted: Posted<ClearOverride>,
) -> Result<Response, UiError> {
    crate::extract::id("user_id", &user_id)?;
    let key = posted.form.entitlement_key;
    let id = user_id.clone();
    state
        .blocking(move |engine| {
            engine
                .store()
                .clear_override(ACTOR, &id, &key, engine.now_ms())?;
            Ok(())
        })
        .await?;
    Ok(done(
        &format!("/ui/users/{}", segment(&user_id)),
        "override_cleared",
    ))
}

/// The plan-change form: `confirm` must be ticked, as grace resets.
#[derive(Debug, Deserialize)]
pub(crate) struct SetPlan {
    #[serde(default)]
    plan_id: String,
    #[serde(default)]
    confirm: String,
}

pub(crate) async fn set_plan(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    posted: Posted<SetPlan>,
) -> Result<Response, UiError> {
    crate::extract::id("user_id", &user_id)?;
    let form = posted.form;
    if form.confirm != "on" {
        return Err(ApiError::invalid(
            "tick the box that says the user's grace starts again, then change the plan",
        )
        .into());
    }
    let id = user_id.clone();
    state
        .blocking(move |engine| {
            engine
                .store()
                .set_user_plan(ACTOR, &id, &form.plan_id, engine.now_ms())?;
            Ok(())
        })
        .await?;
    Ok(done(
        &format!("/ui/users/{}", segment(&user_id)),
        "user_plan",
    ))
}
