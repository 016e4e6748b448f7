//! `/healthz`, `/metrics`, fallbacks, request counting, OpenAPI bits.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use quota_engine::metrics::LATENCY_BUCKETS_US;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::connections::Closed;
use crate::error::ApiError;
use crate::wire::ErrorBody;

/// Gives every failure of every operation its schema: an error status
/// documented without a body gets [`ErrorBody`], and each operation gets
/// a `default` response (any other status) with it, so every answer the
/// service can give is described.
pub(crate) fn describe_errors(api: &mut OpenApi) {
    let error = || {
        Content::new(Some(Ref::from_schema_name(
            <ErrorBody as utoipa::ToSchema>::name(),
        )))
    };
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            for (status, response) in responses.iter_mut() {
                if let RefOr::T(response) = response
                    && (status.starts_with('4') || status.starts_with('5'))
                    && response.content.is_empty()
                {
                    response
                        .content
                        .insert("application/json".to_owned(), error().into());
                }
            }
            responses.entry("default".to_owned()).or_insert_with(|| {
                ResponseBuilder::new()
                    .description(
                        "Any other failure (400 invalid input, 401, 404, 405, 409, 413, 415, \
                         503 busy or policy unavailable, 500): the error shape with its code",
                    )
                    .content("application/json", error())
                    .into()
            });
        }
    }
}

/// Adds the bearer security scheme to the document.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// HTTP requests counted by route and status; connections open and why
/// the service closed them.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    connections_open: AtomicU64,
    connections_closed: [AtomicU64; Closed::ALL.len()],
}

impl HttpMetrics {
    pub(crate) fn opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self, reason: Closed) {
        self.connections_closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) async fn count_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || "unmatched".to_owned(),
        |p| format!("{} {}", request.method(), p.as_str()),
    );
    let response = next.run(request).await;
    let key = (route, response.status().as_u16());
    *state
        .http()
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(0) += 1;
    response
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Liveness and the active policy.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "The service is up", body = crate::wire::Health)))]
async fn healthz(State(state): State<AppState>) -> axum::Json<crate::wire::Health> {
    axum::Json(crate::wire::Health {
        status: "ok",
        policy_sha256: state.engine().policy().sha256().to_owned(),
    })
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One unlabelled counter in Prometheus text.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

/// Prometheus text: decisions by plan, key and status; decision latency;
/// policy errors; shadow verdicts; HTTP requests by route and status;
/// write transactions and the group commits that made them durable.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let m = state.engine().metrics().snapshot();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP quota_decisions_total Decisions by mode (enforce or check), plan, entitlement and status."
    );
    let _ = writeln!(out, "# TYPE quota_decisions_total counter");
    for c in &m.decisions {
        let _ = writeln!(
            out,
            "quota_decisions_total{{mode=\"{}\",plan=\"{}\",key=\"{}\",status=\"{}\"}} {}",
            c.mode,
            label(&c.plan_id),
            label(&c.entitlement_key),
            c.status,
            c.count
        );
    }
    counter(
        &mut out,
        "quota_policy_errors_total",
        "Calls where the policy could not decide.",
        m.policy_errors,
    );
    let _ = writeln!(
        out,
        "# HELP quota_decision_latency_seconds Time to read state and decide."
    );
    let _ = writeln!(out, "# TYPE quota_decision_latency_seconds histogram");
    for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&m.latency_buckets) {
        #[allow(clippy::cast_precision_loss, reason = "bucket bounds are small")]
        let le = *bound as f64 / 1e6;
        let _ = writeln!(
            out,
            "quota_decision_latency_seconds_bucket{{le=\"{le}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "quota_decision_latency_seconds_bucket{{le=\"+Inf\"}} {}",
        m.latency_count
    );
    #[allow(clippy::cast_precision_loss, reason = "a sum of microseconds")]
    let sum = m.latency_sum_us as f64 / 1e6;
    let _ = writeln!(out, "quota_decision_latency_seconds_sum {sum}");
    let _ = writeln!(
        out,
        "quota_decision_latency_seconds_count {}",
        m.latency_count
    );
    let _ = writeln!(
        out,
        "# HELP quota_http_requests_total HTTP requests by route and status."
    );
    let _ = writeln!(out, "# TYPE quota_http_requests_total counter");
    for ((route, status), count) in state
        .http()
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        let _ = writeln!(
            out,
            "quota_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
            label(route)
        );
    }
    let http = state.http();
    let _ = writeln!(
        out,
        "# HELP quota_http_connections_open Connections open now."
    );
    let _ = writeln!(out, "# TYPE quota_http_connections_open gauge");
    let _ = writeln!(
        out,
        "quota_http_connections_open {}",
        http.connections_open.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP quota_http_connections_closed_total Connections the service closed, by reason."
    );
    let _ = writeln!(out, "# TYPE quota_http_connections_closed_total counter");
    for reason in Closed::ALL {
        let _ = writeln!(
            out,
            "quota_http_connections_closed_total{{reason=\"{}\"}} {}",
            reason.as_str(),
            http.connections_closed[reason.index()].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP quota_shadow_decisions_total Shadow policy evaluations by verdict against the active policy."
    );
    let _ = writeln!(out, "# TYPE quota_shadow_decisions_total counter");
    for (verdict, count) in [
        ("same", m.shadow_same),
        ("diverged", m.shadow_diverged),
        ("failed", m.shadow_errors),
    ] {
        let _ = writeln!(
            out,
            "quota_shadow_decisions_total{{verdict=\"{verdict}\"}} {count}"
        );
    }
    if let Some(log) = state.decision_log() {
        counter(
            &mut out,
            "quota_decision_log_dropped_total",
            "Decisions not logged because the log's queue was full.",
            log.dropped(),
        );
    }
    let writes = state.engine().store().write_stats();
    counter(
        &mut out,
        "quota_db_transactions_total",
        "Write transactions committed.",
        writes.transactions,
    );
    counter(
        &mut out,
        "quota_db_commits_total",
        "Database commits; concurrent write transactions share one (group commit).",
        writes.commits,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}
