//! `/healthz`, `/metrics`, fallbacks, request counting, OpenAPI bits.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tower_http::request_id::{MakeRequestId, RequestId};
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
/// the service closed them. Prometheus collectors in a registry of their
/// own, exported beside the engine's.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    connections_open: IntGauge,
    connections_closed: IntCounterVec,
}

impl Default for HttpMetrics {
    #[allow(
        clippy::expect_used,
        reason = "the names and labels are constants the tests register"
    )]
    fn default() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "quota_http_requests_total",
                "HTTP requests by route and status.",
            ),
            &["route", "status"],
        )
        .expect("valid request counter");
        let connections_open =
            IntGauge::new("quota_http_connections_open", "Connections open now.")
                .expect("valid connection gauge");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "quota_http_connections_closed_total",
                "Connections the service closed, by reason.",
            ),
            &["reason"],
        )
        .expect("valid close counter");
        for reason in Closed::ALL {
            connections_closed.with_label_values(&[reason.as_str()]);
        }
        let registry = Registry::new();
        let collectors: [Box<dyn Collector>; 3] = [
            Box::new(requests.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_closed.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("distinct metric names");
        }
        HttpMetrics {
            registry,
            requests,
            connections_open,
            connections_closed,
        }
    }
}

impl HttpMetrics {
    pub(crate) fn opened(&self) {
        self.connections_open.inc();
    }

    pub(crate) fn finished(&self) {
        self.connections_open.dec();
    }

    pub(crate) fn closed(&self, reason: Closed) {
        self.connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
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
    state
        .http()
        .requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}

/// Request ids for requests that bring none: a random prefix drawn once per
/// process and a counter, e.g. `3f9a0c1d-42`. Unique across restarts
/// without a system call per request (a UUID per request cost 2.6% of a
/// `/healthz` answer in its random number alone).
#[derive(Debug, Clone)]
pub(crate) struct RequestIds {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    pub(crate) fn new() -> Self {
        let mut bytes = [0u8; 4];
        if getrandom::fill(&mut bytes).is_err() {
            bytes = std::process::id().to_le_bytes();
        }
        RequestIds {
            prefix: hex::encode(bytes).into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.prefix);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// The tracing span of one request: method, path and request id.
pub(crate) fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    )
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
        fleet: state.fleet_policy(),
    })
}

/// A counter whose value is read from elsewhere at scrape time.
fn pulled(name: &str, help: &str, value: u64) -> Vec<MetricFamily> {
    match IntCounter::new(name, help) {
        Ok(counter) => {
            counter.inc_by(value);
            counter.collect()
        }
        Err(e) => {
            tracing::error!(error = %e, name, "an invalid metric");
            Vec::new()
        }
    }
}

/// Prometheus text: decisions by plan, key and status; decision latency;
/// policy errors; shadow verdicts; HTTP requests by route and status;
/// connections; write transactions and the group commits that made them
/// durable.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut families = state.engine().metrics().registry().gather();
    families.extend(state.http().registry.gather());
    if let Some(log) = state.decision_log() {
        families.extend(pulled(
            "quota_decision_log_dropped_total",
            "Decisions not logged because the log's queue was full.",
            log.dropped(),
        ));
    }
    // SQLite's group commit; PostgreSQL commits each transaction itself.
    if let quota_store::AnyStore::Sqlite(store) = state.engine().store() {
        let writes = store.write_stats();
        families.extend(pulled(
            "quota_db_transactions_total",
            "Write transactions committed.",
            writes.transactions,
        ));
        families.extend(pulled(
            "quota_db_commits_total",
            "Database commits; concurrent write transactions share one (group commit).",
            writes.commits,
        ));
    }
    let encoder = TextEncoder::new();
    let mut out = String::new();
    encoder
        .encode_utf8(&families, &mut out)
        .map_err(|e| ApiError::internal(format!("the metrics could not be written: {e}")))?;
    Ok((
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        out,
    ))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics))
}
