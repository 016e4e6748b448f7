//! Webhook endpoints and event deliveries (admin token), and the loop
//! that delivers the outbox's events (docs/events.md).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use quota_store::{EventKind, WebhookStore};
use quota_webhooks::{Deliverer, Secret, StoreHandle, check_url};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::admin::ADMIN_ACTOR;
use crate::error::ApiError;
use crate::extract::{Admin, Json, Path};
use crate::{AppState, Store, wire};

/// A new webhook endpoint.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: `https`, resolving to public addresses
    /// (unless the service runs with `--webhooks-allow-private`).
    url: String,
    /// A Standard Webhooks secret (`whsec_` and base64 of 24 to 64 bytes)
    /// to sign with; absent: one is made. Returned once, never again.
    secret: Option<String>,
    /// The event types to receive: `threshold.reached`, `quota.blocked`.
    events: Vec<String>,
}

/// Register a webhook endpoint. The response carries its secret: shown once.
#[utoipa::path(post, path = "/admin/webhooks", tag = "admin", request_body = CreateWebhook, security(("bearer" = [])),
    responses((status = 201, description = "The endpoint and its secret", body = crate::wire::CreatedWebhook),
              (status = 400, description = "A URL, secret or event type refused", body = crate::wire::ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    _: Admin,
    Json(body): Json<CreateWebhook>,
) -> Result<(StatusCode, axum::Json<wire::CreatedWebhook>), ApiError> {
    let url = check_url(&body.url, state.webhooks_allow_private())
        .map_err(|e| ApiError::invalid(format!("`url`: {e}")))?;
    let secret = match body.secret {
        Some(secret) => {
            Secret::parse(&secret).map_err(|e| ApiError::invalid(format!("`secret`: {e}")))?;
            secret
        }
        None => {
            Secret::generate().map_err(|e| ApiError::internal(format!("no randomness: {e}")))?
        }
    };
    let events = event_kinds(&body.events)?;
    let id = format!("wh_{}", crate::admin::random_hex(8)?);
    state
        .blocking(move |engine| {
            let webhook = engine.store().create_webhook(
                ADMIN_ACTOR,
                &id,
                url.as_str(),
                &secret,
                &events,
                engine.now_ms(),
            )?;
            Ok((
                StatusCode::CREATED,
                axum::Json(wire::CreatedWebhook {
                    webhook: (&webhook).into(),
                    secret,
                }),
            ))
        })
        .await
}

/// Event types by name: at least one, each known, none twice.
fn event_kinds(names: &[String]) -> Result<Vec<EventKind>, ApiError> {
    EventKind::parse_list(names).map_err(|e| ApiError::invalid(format!("`events`: {e}")))
}

/// List the webhook endpoints (without their secrets).
#[utoipa::path(get, path = "/admin/webhooks", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Endpoints", body = crate::wire::Webhooks)))]
async fn list_webhooks(
    State(state): State<AppState>,
    _: Admin,
) -> Result<axum::Json<wire::Webhooks>, ApiError> {
    state
        .blocking(|engine| {
            let webhooks = engine.store().webhooks()?;
            Ok(axum::Json(wire::Webhooks {
                webhooks: webhooks.iter().map(wire::Webhook::from).collect(),
            }))
        })
        .await
}

/// Remove a webhook endpoint and its pending deliveries.
#[utoipa::path(delete, path = "/admin/webhooks/{webhook_id}", tag = "admin",
    params(("webhook_id" = String, Path, description = "The endpoint")), security(("bearer" = [])),
    responses((status = 200, description = "The endpoint removed", body = crate::wire::Webhook),
              (status = 404, description = "No such endpoint", body = crate::wire::ErrorBody)))]
async fn delete_webhook(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<wire::Webhook>, ApiError> {
    crate::extract::id("webhook_id", &id)?;
    state
        .blocking(move |engine| {
            let gone = engine
                .store()
                .delete_webhook(ADMIN_ACTOR, &id, engine.now_ms())?;
            Ok(axum::Json((&gone).into()))
        })
        .await
}

/// An event with its deliveries and every attempt.
#[utoipa::path(get, path = "/admin/events/{event_id}", tag = "admin",
    params(("event_id" = String, Path, description = "The event")), security(("bearer" = [])),
    responses((status = 200, description = "The event's deliveries", body = crate::wire::EventDeliveries),
              (status = 404, description = "No such event", body = crate::wire::ErrorBody)))]
async fn event_deliveries(
    State(state): State<AppState>,
    _: Admin,
    Path(event_id): Path<String>,
) -> Result<axum::Json<wire::EventDeliveries>, ApiError> {
    crate::extract::id("event_id", &event_id)?;
    state
        .blocking(move |engine| {
            let deliveries = engine.store().deliveries(&event_id)?;
            Ok(axum::Json(wire::EventDeliveries {
                event_id,
                deliveries: deliveries.iter().map(wire::Delivery::from).collect(),
            }))
        })
        .await
}

/// Send an event again now, to every endpoint that receives its type.
#[utoipa::path(post, path = "/admin/events/{event_id}/redeliver", tag = "admin",
    params(("event_id" = String, Path, description = "The event")), security(("bearer" = [])),
    responses((status = 202, description = "Deliveries queued", body = crate::wire::Redelivered),
              (status = 404, description = "No such event", body = crate::wire::ErrorBody)))]
async fn redeliver(
    State(state): State<AppState>,
    _: Admin,
    Path(event_id): Path<String>,
) -> Result<(StatusCode, axum::Json<wire::Redelivered>), ApiError> {
    crate::extract::id("event_id", &event_id)?;
    state
        .blocking(move |engine| {
            let queued = engine.store().redeliver(&event_id, engine.now_ms())?;
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(wire::Redelivered { queued }),
            ))
        })
        .await
}

impl StoreHandle for AppState {
    type Store = Store;
    fn store(&self) -> &Store {
        self.engine().store()
    }
}

/// Delivers due events every `every`, draining full batches at once, and
/// prunes old events hourly, until aborted.
pub(crate) async fn deliver_forever(
    deliverer: Deliverer<AppState>,
    state: AppState,
    every: Duration,
) {
    const PRUNE_EVERY_MS: i64 = 3_600_000;
    let mut ticker = tokio::time::interval(every);
    let mut pruned_at = i64::MIN;
    loop {
        ticker.tick().await;
        loop {
            match deliverer.run_once(state.engine().now_ms()).await {
                Ok(n) if n == deliverer.options().batch => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook deliveries failed");
                    break;
                }
            }
        }
        let now = state.engine().now_ms();
        if now.saturating_sub(pruned_at) >= PRUNE_EVERY_MS {
            pruned_at = now;
            match deliverer.prune(now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, "old threshold events pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning threshold events failed"),
            }
        }
    }
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(event_deliveries))
        .routes(routes!(redeliver))
}
