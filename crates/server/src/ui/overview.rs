//! `GET /ui`: decisions per minute by status over the last hour and day
//! (from the per-minute counts in the store, so every host of a fleet
//! and every restart is in them), blocked and warned counts per plan and
//! key, the active and shadow policy, and policy errors.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use quota_engine::stats::MINUTE_MS;

use super::chart::{Chart, chart};
use super::{Chrome, Session, UiError, render};
use crate::AppState;
use crate::extract::Query;
use crate::wire;
use quota_store::prelude::*;

const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// Blocked and warned decisions of one plan and key over the last day.
#[derive(Debug, Clone)]
pub(crate) struct Pressure {
    pub(crate) plan_id: String,
    pub(crate) entitlement_key: String,
    pub(crate) block: i64,
    pub(crate) warn_only: i64,
    pub(crate) allow_grace: i64,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct Overview {
    chrome: Chrome,
    /// The last hour by minute, the last day by 15 minutes.
    charts: Vec<Chart>,
    pressure: Vec<Pressure>,
    policy: wire::PolicyState,
    active_signer: String,
    shadow_signer: Option<String>,
    policy_errors: u64,
    shadow_diverged: u64,
    last_error_at: Option<String>,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<super::Done>,
) -> Result<Response, UiError> {
    let s = state.clone();
    let (rows, policy, now) = state
        .blocking(move |engine| {
            let store = engine.store();
            if let Some(stats) = s.decision_stats() {
                stats.flush(store)?;
            }
            let now = engine.now_ms();
            let rows = store.decision_minutes(now - DAY_MS)?;
            Ok((rows, crate::policy::policy_state(&s, engine)?, now))
        })
        .await?;
    let mut by_key: BTreeMap<(String, String), Pressure> = BTreeMap::new();
    for row in &rows {
        let entry = by_key
            .entry((row.plan_id.clone(), row.entitlement_key.clone()))
            .or_insert_with(|| Pressure {
                plan_id: row.plan_id.clone(),
                entitlement_key: row.entitlement_key.clone(),
                block: 0,
                warn_only: 0,
                allow_grace: 0,
            });
        match row.status.as_str() {
            "block" => entry.block += row.count,
            "warn_only" => entry.warn_only += row.count,
            "allow_grace" => entry.allow_grace += row.count,
            _ => {}
        }
    }
    let mut pressure: Vec<Pressure> = by_key
        .into_values()
        .filter(|p| p.block + p.warn_only + p.allow_grace > 0)
        .collect();
    pressure.sort_by_key(|p| std::cmp::Reverse((p.block, p.warn_only)));
    let metrics = state.engine().metrics().snapshot();
    let page = Overview {
        chrome: Chrome::new(&session, "overview").with_done(&query),
        charts: vec![
            chart("Last hour", "minute", &rows, now, 60, 1),
            chart("Last day", "15 minutes", &rows, now, 96, 15),
        ],
        pressure,
        active_signer: super::policy::signer_text(&policy.active.signed_by),
        shadow_signer: policy
            .shadow
            .as_ref()
            .map(|s| super::policy::signer_text(&s.signed_by)),
        last_error_at: policy
            .last_load_error
            .as_ref()
            .map(|e| super::when(e.at_ms)),
        policy,
        policy_errors: metrics.policy_errors,
        shadow_diverged: metrics.shadow_diverged,
    };
    render(&page)
}
