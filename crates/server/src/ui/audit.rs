//! `/ui/audit`: the audit log, newest first. `/ui/events`: the webhook
//! endpoints and the newest events; one event's deliveries with every
//! attempt, and redelivery.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::session::{Plain, Posted};
use super::{Chrome, Session, UiError, done, render, segment, when};
use crate::AppState;
use crate::extract::{Path, Query};
use quota_store::prelude::*;

/// Audit entries and events a page lists.
const LISTED: usize = 200;

/// An audit entry as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) subject: String,
    pub(crate) before: String,
    pub(crate) after: String,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<AuditRow>,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, UiError> {
    let entries = state
        .blocking(|engine| Ok(engine.store().audit_log(LISTED)?))
        .await?;
    let entries = entries
        .into_iter()
        .map(|e| AuditRow {
            at: when(e.at_ms),
            actor: e.actor,
            action: e.action,
            subject: e.subject,
            before: e.before_json.unwrap_or_default(),
            after: e.after_json.unwrap_or_default(),
        })
        .collect();
    render(&AuditPage {
        chrome: Chrome::new(&session, "audit"),
        entries,
    })
}

/// An endpoint as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct EndpointRow {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) events: String,
    pub(crate) failing: String,
}

/// An event as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) id: String,
    pub(crate) at: String,
    pub(crate) kind: &'static str,
    pub(crate) user_id: String,
    pub(crate) entitlement_key: String,
    pub(crate) threshold: String,
}

#[derive(Template)]
#[template(path = "ui/events.html")]
struct EventsPage {
    chrome: Chrome,
    endpoints: Vec<EndpointRow>,
    events: Vec<EventRow>,
}

pub(crate) async fn events(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, UiError> {
    let (webhooks, events) = state
        .blocking(|engine| {
            let store = engine.store();
            Ok((store.webhooks()?, store.events(None, LISTED)?))
        })
        .await?;
    let endpoints = webhooks
        .into_iter()
        .map(|w| EndpointRow {
            id: w.id,
            url: w.url,
            events: w
                .events
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            failing: match (w.failing, w.failing_since_ms) {
                (true, Some(since)) => format!("failing since {}", when(since)),
                (false, Some(since)) => format!("failures since {}", when(since)),
                _ => "healthy".to_owned(),
            },
        })
        .collect();
    let events = events
        .into_iter()
        .map(|e| EventRow {
            id: e.event_id,
            at: when(e.created_at_ms),
            kind: e.kind.as_str(),
            user_id: e.user_id,
            entitlement_key: e.entitlement_key,
            threshold: e.threshold,
        })
        .collect();
    render(&EventsPage {
        chrome: Chrome::new(&session, "events"),
        endpoints,
        events,
    })
}

/// One attempt as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct AttemptRow {
    pub(crate) at: String,
    pub(crate) status: String,
    pub(crate) error: String,
    pub(crate) duration_ms: i64,
}

/// One delivery as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryRow {
    pub(crate) webhook_id: String,
    pub(crate) state: &'static str,
    pub(crate) next: String,
    pub(crate) attempts: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "ui/event.html")]
struct EventPage {
    chrome: Chrome,
    event_id: String,
    deliveries: Vec<DeliveryRow>,
}

pub(crate) async fn event(
    State(state): State<AppState>,
    session: Session,
    Path(event_id): Path<String>,
    Query(query): Query<super::Done>,
) -> Result<Response, UiError> {
    crate::extract::id("event_id", &event_id)?;
    let id = event_id.clone();
    let deliveries = state
        .blocking(move |engine| Ok(engine.store().deliveries(&id)?))
        .await?;
    let deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryRow {
            webhook_id: d.webhook_id,
            state: d.state.as_str(),
            next: match d.delivered_at_ms {
                Some(at) => format!("delivered {}", when(at)),
                None if d.state == quota_store::DeliveryState::Pending => {
                    format!("next attempt {}", when(d.next_attempt_at_ms))
                }
                None => String::new(),
            },
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptRow {
                    at: when(a.at_ms),
                    status: a
                        .status
                        .map_or_else(|| "no answer".to_owned(), |s| s.to_string()),
                    error: a.error.unwrap_or_default(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        })
        .collect();
    render(&EventPage {
        chrome: Chrome::new(&session, "events").with_done(&query),
        event_id,
        deliveries,
    })
}

pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    _: Posted<Plain>,
) -> Result<Response, UiError> {
    crate::extract::id("event_id", &event_id)?;
    let id = event_id.clone();
    state
        .blocking(move |engine| Ok(engine.store().redeliver(&id, engine.now_ms())?))
        .await?;
    Ok(done(
        &format!("/ui/events/{}", segment(&event_id)),
        "redeliver",
    ))
}
