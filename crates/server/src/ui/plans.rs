//! `/ui/plans`: every plan with its limits, enforcement, grace, rollout,
//! periods, thresholds and number of users; a plan's edit form, and a
//! what-if of the edit before saving it.
//!
//! The form becomes the same JSON body `PUT /admin/plans/{id}` takes, so
//! the dashboard checks and changes a plan exactly as the API does.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use quota_store::{Plan, PlanChange};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::session::Posted;
use super::{ACTOR, Chrome, Session, UiError, done, limit_text, render, segment};
use crate::AppState;
use crate::admin::PlanBody;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::wire;
use quota_store::prelude::*;

/// The periods a key can have, as the select offers them.
pub(crate) const PERIODS: [&str; 5] = ["none", "day", "week", "month", "anniversary"];

/// One key of a plan, as the pages show it.
#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    pub(crate) key: String,
    /// Whether the plan sets a limit for the key (else only a period or
    /// thresholds).
    pub(crate) has_limit: bool,
    pub(crate) limit: i64,
    pub(crate) limit_text: String,
    pub(crate) period: String,
    pub(crate) thresholds: String,
    /// Ticked for removal (a what-if shows the form as it was sent).
    pub(crate) removed: bool,
}

/// A plan as the pages show it.
#[derive(Debug, Clone)]
pub(crate) struct PlanRow {
    pub(crate) id: String,
    pub(crate) enforcement_enabled: bool,
    pub(crate) grace_count: i64,
    pub(crate) rollout_percent: i64,
    pub(crate) keys: Vec<KeyRow>,
    pub(crate) users: i64,
    /// A digest of the plan as the form shows it: a save whose plan has
    /// changed since (another admin, the API, another host) is refused
    /// rather than written over it.
    pub(crate) version: String,
}

impl PlanRow {
    fn new(plan: Plan, users: i64) -> Self {
        let version = hex::encode(&Sha256::digest(format!("{plan:?}").as_bytes())[..12]);
        let mut keys: BTreeMap<String, KeyRow> = BTreeMap::new();
        let row = |key: &str| KeyRow {
            key: key.to_owned(),
            has_limit: false,
            limit: 0,
            limit_text: "none (default)".to_owned(),
            period: "none".to_owned(),
            thresholds: String::new(),
            removed: false,
        };
        for (key, limit) in &plan.limits {
            let entry = keys.entry(key.clone()).or_insert_with(|| row(key));
            entry.has_limit = true;
            entry.limit = *limit;
            entry.limit_text = limit_text(*limit);
        }
        for (key, period) in &plan.periods {
            keys.entry(key.clone()).or_insert_with(|| row(key)).period = period.to_string();
        }
        for (key, list) in &plan.thresholds {
            keys.entry(key.clone())
                .or_insert_with(|| row(key))
                .thresholds = list
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
        }
        PlanRow {
            id: plan.id,
            enforcement_enabled: plan.enforcement_enabled,
            grace_count: plan.grace_count,
            rollout_percent: plan.rollout_percent,
            keys: keys.into_values().collect(),
            users,
            version,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/plans.html")]
struct PlansPage {
    chrome: Chrome,
    plans: Vec<PlanRow>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<super::Done>,
) -> Result<Response, UiError> {
    let plans = state
        .blocking(|engine| {
            let store = engine.store();
            let counts: BTreeMap<String, i64> = store.plan_user_counts()?.into_iter().collect();
            Ok(store
                .plans()?
                .into_iter()
                .map(|plan| {
                    let users = counts.get(&plan.id).copied().unwrap_or(0);
                    PlanRow::new(plan, users)
                })
                .collect())
        })
        .await?;
    render(&PlansPage {
        chrome: Chrome::new(&session, "plans").with_done(&query),
        plans,
    })
}

/// The new-plan form.
#[derive(Debug, Deserialize)]
pub(crate) struct NewPlan {
    #[serde(default)]
    plan_id: String,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    posted: Posted<NewPlan>,
) -> Result<Response, UiError> {
    let plan_id = posted.form.plan_id.trim().to_owned();
    crate::extract::id("plan_id", &plan_id)?;
    let id = plan_id.clone();
    state
        .blocking(move |engine| {
            let store = engine.store();
            match store.plan(&id) {
                Ok(_) => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "conflict",
                        format!("the plan `{id}` exists already"),
                    ));
                }
                Err(quota_store::StoreError::UnknownPlan(_)) => {}
                Err(e) => return Err(e.into()),
            }
            store.set_plan(ACTOR, &id, &PlanChange::default(), engine.now_ms())?;
            Ok(())
        })
        .await?;
    Ok(done(
        &format!("/ui/plans/{}", segment(&plan_id)),
        "plan_created",
    ))
}

#[derive(Template)]
#[template(path = "ui/plan.html")]
struct PlanPage {
    chrome: Chrome,
    plan: PlanRow,
    periods: &'static [&'static str],
    report: Option<wire::WhatIf>,
    since: String,
    /// The new key's row as sent (empty on a fresh form).
    new_key: NewKey,
}

/// The form's row for a key the plan does not have yet.
#[derive(Debug, Clone)]
pub(crate) struct NewKey {
    pub(crate) key: String,
    pub(crate) limit: String,
    pub(crate) period: String,
    pub(crate) thresholds: String,
}

impl Default for NewKey {
    fn default() -> Self {
        NewKey {
            key: String::new(),
            limit: String::new(),
            period: "none".to_owned(),
            thresholds: String::new(),
        }
    }
}

async fn plan_row(state: &AppState, plan_id: String) -> Result<PlanRow, UiError> {
    crate::extract::id("plan_id", &plan_id)?;
    Ok(state
        .blocking(move |engine| {
            let store = engine.store();
            let plan = store.plan(&plan_id)?;
            let users = store
                .plan_user_counts()?
                .into_iter()
                .find(|(id, _)| *id == plan_id)
                .map_or(0, |(_, n)| n);
            Ok(PlanRow::new(plan, users))
        })
        .await?)
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(plan_id): Path<String>,
    Query(query): Query<super::Done>,
) -> Result<Response, UiError> {
    let plan = plan_row(&state, plan_id).await?;
    render(&PlanPage {
        chrome: Chrome::new(&session, "plans").with_done(&query),
        plan,
        periods: &PERIODS,
        report: None,
        since: "7d".to_owned(),
        new_key: NewKey::default(),
    })
}

/// The edit form's fields: `enforcement`, `grace`, `rollout`, and per key
/// `limit.KEY`, `remove.KEY`, `period.KEY`, `thresholds.KEY`; a new key
/// in `new_key`, `new_limit`, `new_period`, `new_thresholds`; `since`
/// for a what-if.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct Fields(BTreeMap<String, String>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim())
    }

    /// `plan` as this form shows it: a what-if answers with the form as
    /// it was sent, so that saving it next saves what was previewed.
    fn shown(&self, mut plan: PlanRow) -> (PlanRow, NewKey) {
        match self.get("enforcement") {
            Some("on") => plan.enforcement_enabled = true,
            Some("off") => plan.enforcement_enabled = false,
            _ => {}
        }
        if let Some(grace) = self.get("grace").and_then(|g| g.parse().ok()) {
            plan.grace_count = grace;
        }
        if let Some(rollout) = self.get("rollout").and_then(|r| r.parse().ok()) {
            plan.rollout_percent = rollout;
        }
        for row in &mut plan.keys {
            let key = row.key.clone();
            if let Some(limit) = self
                .get(&format!("limit.{key}"))
                .and_then(|l| l.parse().ok())
            {
                row.has_limit = true;
                row.limit = limit;
                row.limit_text = limit_text(limit);
            }
            if let Some(period) = self.get(&format!("period.{key}")) {
                period.clone_into(&mut row.period);
            }
            if let Some(list) = self.get(&format!("thresholds.{key}")) {
                row.thresholds = list.replace(' ', "");
            }
            row.removed = self.get(&format!("remove.{key}")).is_some();
        }
        if let Some(version) = self.get("version") {
            version.clone_into(&mut plan.version);
        }
        let text = |name: &str| self.get(name).unwrap_or("").to_owned();
        let new_key = NewKey {
            key: text("new_key"),
            limit: text("new_limit"),
            period: self.get("new_period").unwrap_or("none").to_owned(),
            thresholds: text("new_thresholds"),
        };
        (plan, new_key)
    }
}

fn whole(field: &str, text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("{field} must be a whole number, got `{text}`")))
}

fn thresholds(field: &str, text: &str) -> Result<Vec<i64>, ApiError> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| whole(field, t))
        .collect()
}

/// The per-key parts of a plan change, as the JSON body names them.
#[derive(Default)]
struct KeyChanges {
    limits: Map<String, Value>,
    remove_limits: Vec<Value>,
    periods: Map<String, Value>,
    thresholds: Map<String, Value>,
}

impl KeyChanges {
    /// What the form's fields `names` (limit, period, thresholds) ask for
    /// `key`, against `current` (`None`: a key new to the plan).
    fn key(
        &mut self,
        fields: &Fields,
        key: &str,
        current: Option<&KeyRow>,
        (limit, period, list): (&str, &str, &str),
    ) -> Result<(), ApiError> {
        let limit_text = fields.get(limit).unwrap_or("");
        if !limit_text.is_empty() {
            let value = whole(&format!("the limit of {key}"), limit_text)?;
            if current.is_none_or(|c| !c.has_limit || c.limit != value) {
                self.limits.insert(key.to_owned(), json!(value));
            }
        }
        let period_text = fields.get(period).unwrap_or("");
        if !period_text.is_empty() && current.is_none_or(|c| c.period != period_text) {
            self.periods.insert(key.to_owned(), json!(period_text));
        }
        let list_text = fields.get(list).unwrap_or("").replace(' ', "");
        let changed = match current {
            Some(c) => c.thresholds != list_text,
            None => !list_text.is_empty(),
        };
        if changed {
            let list = thresholds(&format!("the thresholds of {key}"), &list_text)?;
            self.thresholds.insert(key.to_owned(), json!(list));
        }
        Ok(())
    }

    /// `row` leaves the plan: its limit, period and thresholds.
    fn remove(&mut self, row: &KeyRow) {
        if row.has_limit {
            self.remove_limits.push(json!(row.key));
        }
        if row.period != "none" {
            self.periods.insert(row.key.clone(), json!("none"));
        }
        if !row.thresholds.is_empty() {
            self.thresholds.insert(row.key.clone(), json!([]));
        }
    }

    /// Into `body`, leaving out what is empty.
    fn into_body(self, body: &mut Map<String, Value>) {
        if !self.limits.is_empty() {
            body.insert("limits".into(), Value::Object(self.limits));
        }
        if !self.remove_limits.is_empty() {
            body.insert("remove_limits".into(), Value::Array(self.remove_limits));
        }
        if !self.periods.is_empty() {
            body.insert("periods".into(), Value::Object(self.periods));
        }
        if !self.thresholds.is_empty() {
            body.insert("thresholds".into(), Value::Object(self.thresholds));
        }
    }
}

/// The JSON body of `PUT /admin/plans/{id}` the form asks for: only what
/// differs from `plan`.
fn plan_body(fields: &Fields, plan: &PlanRow) -> Result<Map<String, Value>, ApiError> {
    let field = |name: &str| fields.get(name).unwrap_or("");
    let mut body = Map::new();
    let enforcement = match field("enforcement") {
        "on" => Some(true),
        "off" => Some(false),
        "" => None,
        other => {
            return Err(ApiError::invalid(format!(
                "enforcement must be on or off, got `{other}`"
            )));
        }
    };
    if let Some(on) = enforcement.filter(|on| *on != plan.enforcement_enabled) {
        body.insert("enforcement_enabled".into(), json!(on));
    }
    for (name, json_name, current) in [
        ("grace", "grace_count", plan.grace_count),
        ("rollout", "rollout_percent", plan.rollout_percent),
    ] {
        if !field(name).is_empty() {
            let value = whole(name, field(name))?;
            if value != current {
                body.insert(json_name.into(), json!(value));
            }
        }
    }
    let mut changes = KeyChanges::default();
    for row in &plan.keys {
        let key = row.key.as_str();
        if !field(&format!("remove.{key}")).is_empty() {
            changes.remove(row);
            continue;
        }
        let names = (
            format!("limit.{key}"),
            format!("period.{key}"),
            format!("thresholds.{key}"),
        );
        changes.key(fields, key, Some(row), (&names.0, &names.1, &names.2))?;
    }
    let new_key = field("new_key");
    match (new_key.is_empty(), field("new_limit").is_empty()) {
        (true, true) => {}
        (true, false) => return Err(ApiError::invalid("give the new limit a key")),
        (false, true) => {
            return Err(ApiError::invalid(format!(
                "give the new key `{new_key}` a limit"
            )));
        }
        (false, false) => changes.key(
            fields,
            new_key,
            None,
            ("new_limit", "new_period", "new_thresholds"),
        )?,
    }
    changes.into_body(&mut body);
    Ok(body)
}

pub(crate) async fn save(
    State(state): State<AppState>,
    Path(plan_id): Path<String>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let plan = plan_row(&state, plan_id.clone()).await?;
    if posted.form.get("version") != Some(plan.version.as_str()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the plan changed since this form was shown (another admin, the API or another host): \
             reload the page and make the change again; nothing was saved",
        )
        .into());
    }
    let body = plan_body(&posted.form, &plan)?;
    let change = serde_json::from_value::<PlanBody>(Value::Object(body))
        .map_err(|e| ApiError::invalid(e.to_string()))?
        .into_change()?;
    let id = plan_id.clone();
    state
        .blocking(move |engine| {
            engine
                .store()
                .set_plan(ACTOR, &id, &change, engine.now_ms())?;
            Ok(())
        })
        .await?;
    Ok(done(&format!("/ui/plans/{}", segment(&plan_id)), "plan"))
}

pub(crate) async fn what_if(
    State(state): State<AppState>,
    Path(plan_id): Path<String>,
    posted: Posted<Fields>,
) -> Result<Response, UiError> {
    let plan = plan_row(&state, plan_id.clone()).await?;
    let mut body = plan_body(&posted.form, &plan)?;
    let since = posted
        .form
        .0
        .get("since")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "7d".to_owned());
    body.insert("since".into(), json!(since));
    let request = crate::whatif::request(body)?;
    let s = state.clone();
    let id = plan_id.clone();
    let report = state
        .blocking(move |engine| crate::whatif::report(&s, engine, id, request))
        .await?;
    let (plan, new_key) = posted.form.shown(plan);
    render(&PlanPage {
        chrome: Chrome::new(&posted.session, "plans"),
        plan,
        periods: &PERIODS,
        report: Some(report),
        since,
        new_key,
    })
}
