//! `/ui/policy`: the active, previous and shadow policies with their
//! hashes and signers, the last rejected upload, recent events and shadow
//! divergences; upload (active or shadow, with a signature line),
//! rollback and clearing the shadow, through the same lifecycle as the
//! API.

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use quota_store::DecisionFilter;

use super::session::{Plain, Posted};
use super::{ACTOR, Chrome, Session, UiError, done, render, when};
use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;
use crate::wire;

/// The largest upload form: a component at the API's limit, and room for
/// the other fields.
pub(crate) const UPLOAD_LIMIT: usize = crate::POLICY_LIMIT + 64 * 1024;

/// Divergences the page lists.
const DIVERGENCES: usize = 20;

/// Who signed a policy, in words.
pub(crate) fn signer_text(signed: &wire::SignedBy) -> String {
    let release = || {
        format!(
            "{} {} (key {})",
            signed.name.as_deref().unwrap_or("?"),
            signed.version.as_deref().unwrap_or("?"),
            signed.key_id.as_deref().unwrap_or("?"),
        )
    };
    match signed.kind.as_str() {
        "built_in" => "built into this binary".to_owned(),
        "trusted_key" => format!("signed: {}", release()),
        "unverified" => format!("signature not verified: {}", release()),
        _ => match &signed.problem {
            Some(problem) => format!("unsigned ({problem})"),
            None => "unsigned".to_owned(),
        },
    }
}

/// A policy event as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub(crate) at: String,
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) sha256: String,
    pub(crate) detail: String,
}

impl From<&wire::PolicyEvent> for EventRow {
    fn from(e: &wire::PolicyEvent) -> Self {
        EventRow {
            at: when(e.at_ms),
            actor: e.actor.clone(),
            action: e.action.clone(),
            sha256: e.sha256.clone().unwrap_or_default(),
            detail: e.detail.clone(),
        }
    }
}

/// A divergence as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct Divergence {
    pub(crate) at: String,
    pub(crate) user_id: String,
    pub(crate) entitlement_key: String,
    pub(crate) active: String,
    pub(crate) shadow: String,
}

#[derive(Template)]
#[template(path = "ui/policy.html")]
struct PolicyPage {
    chrome: Chrome,
    policy: wire::PolicyState,
    active_signer: String,
    active_since: Option<String>,
    shadow_signer: Option<String>,
    last_error: Option<EventRow>,
    history: Vec<EventRow>,
    divergences: Vec<Divergence>,
}

fn status_of(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<super::Done>,
) -> Result<Response, UiError> {
    let s = state.clone();
    let (policy, diverged) = state
        .blocking(move |engine| {
            let filter = DecisionFilter {
                diverged: true,
                limit: DIVERGENCES,
                ..DecisionFilter::default()
            };
            Ok((
                crate::policy::policy_state(&s, engine)?,
                crate::policy::read_decisions(&s, engine, &filter)?,
            ))
        })
        .await?;
    let divergences = diverged
        .iter()
        .map(|d| Divergence {
            at: when(d.at_ms),
            user_id: d.user_id.clone(),
            entitlement_key: d.entitlement_key.clone(),
            active: d.status.clone(),
            shadow: d
                .shadow_json
                .as_deref()
                .map_or_else(|| "?".to_owned(), status_of),
        })
        .collect();
    render(&PolicyPage {
        chrome: Chrome::new(&session, "policy").with_done(&query),
        active_signer: signer_text(&policy.active.signed_by),
        active_since: policy.active.since.as_ref().map(|e| when(e.at_ms)),
        shadow_signer: policy.shadow.as_ref().map(|s| signer_text(&s.signed_by)),
        last_error: policy.last_load_error.as_ref().map(EventRow::from),
        history: policy.history.iter().map(EventRow::from).collect(),
        divergences,
        policy,
    })
}

/// The upload form, read in full before anything is done with it.
#[derive(Debug, Default)]
struct Upload {
    csrf: String,
    target: String,
    signature: String,
    component: Vec<u8>,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, UiError> {
    let mut upload = Upload::default();
    let invalid = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "a policy component may have at most {} bytes",
                    crate::POLICY_LIMIT
                ),
            )
        } else {
            ApiError::invalid(e.body_text())
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(invalid)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "component" => upload.component = field.bytes().await.map_err(invalid)?.to_vec(),
            "csrf" => upload.csrf = field.text().await.map_err(invalid)?,
            "target" => upload.target = field.text().await.map_err(invalid)?,
            "signature" => upload.signature = field.text().await.map_err(invalid)?,
            _ => {}
        }
    }
    Ok(upload)
}

/// `POST /ui/policy`: a component to activate or shadow.
pub(crate) async fn upload(
    State(state): State<AppState>,
    session: Session,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, UiError> {
    let multipart = multipart.map_err(|e| ApiError::invalid(e.body_text()))?;
    let upload = read_upload(multipart).await?;
    session.check(&upload.csrf)?;
    if upload.component.is_empty() {
        return Err(ApiError::invalid("choose a component file (.wasm) to upload").into());
    }
    let shadow = match upload.target.as_str() {
        "shadow" => true,
        "active" | "" => false,
        other => {
            return Err(ApiError::invalid(format!(
                "target must be active or shadow, got `{other}`"
            ))
            .into());
        }
    };
    let signature = Some(upload.signature.trim().to_owned()).filter(|s| !s.is_empty());
    let s = state.clone();
    state
        .blocking(move |engine| {
            let lifecycle = s.lifecycle();
            let bytes = &upload.component;
            if shadow {
                lifecycle.set_shadow(engine, ACTOR, bytes, signature.as_deref())?;
            } else {
                lifecycle.activate(engine, ACTOR, bytes, signature.as_deref())?;
            }
            Ok(())
        })
        .await?;
    Ok(done("/ui/policy", if shadow { "shadow" } else { "policy" }))
}

/// `POST /ui/policy/rollback`.
pub(crate) async fn rollback(
    State(state): State<AppState>,
    _: Posted<Plain>,
) -> Result<Response, UiError> {
    let s = state.clone();
    state
        .blocking(move |engine| {
            s.lifecycle()
                .rollback(engine, ACTOR)?
                .ok_or_else(crate::policy::no_previous)?;
            Ok(())
        })
        .await?;
    Ok(done("/ui/policy", "rollback"))
}

/// `POST /ui/policy/shadow/clear`.
pub(crate) async fn clear_shadow(
    State(state): State<AppState>,
    _: Posted<Plain>,
) -> Result<Response, UiError> {
    let s = state.clone();
    state
        .blocking(move |engine| {
            s.lifecycle().clear_shadow(engine, ACTOR)?;
            Ok(())
        })
        .await?;
    Ok(done("/ui/policy", "shadow_cleared"))
}
