//! The quota HTTP service.
//!
//! [`app`] builds the whole service as an axum `Router` over an
//! [`AppState`]: the user API (`/v1/...`, a bearer token per user), the
//! admin API (`/admin/...`, the admin token), `/healthz`, `/metrics`
//! (Prometheus text) and `/openapi.json` (generated from the handlers, so
//! it cannot drift from the routes). Every error is
//! `{"error":{"code","message",...}}` with the right status; database work
//! runs off the async workers. Every answer carries an `x-request-id` (the
//! client's own, or a fresh one), and each request is traced in a span
//! with that id (tower-http; at `debug`, so `RUST_LOG=quota_server=debug`
//! or `tower_http=debug` shows them).

mod admin;
pub mod connections;
mod error;
mod extract;
mod follow;
mod idempotency;
mod metering;
mod nodes;
mod ops;
mod policy;
pub mod service;
pub mod state_dir;
mod ui;
mod user;
mod webhooks;
mod whatif;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use ops::BearerAuth;
use quota_engine::Engine;
use quota_engine::lifecycle::Lifecycle;
use quota_engine::log::DecisionLog;
use quota_engine::stats::DecisionStats;
use quota_host::Runtime;
use quota_store::prelude::*;
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub use extract::{AdminToken, ShortToken, token_sha256};
pub use idempotency::KEEP_MS as IDEMPOTENCY_KEEP_MS;
pub use ops::HttpMetrics;
pub use policy::POLICY_LIMIT;
pub use service::{
    Service, ServiceConfig, ServiceError, StartPolicy, decision_log_path, seed_demo,
};

/// The storage backend this service runs on. Handlers reach storage only
/// through the traits of `quota_store` on it; this alias and
/// [`Service::open`] are the only places the server names a backend, so a
/// second one changes them and nothing else.
pub type Store = quota_store::AnyStore;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

struct Inner {
    engine: Engine<Store>,
    admin_token: AdminToken,
    http: HttpMetrics,
    /// User tokens already looked up: token sha256 (hex) to user id.
    /// Tokens are never revoked or reassigned, so an entry stays true.
    known_tokens: Mutex<HashMap<String, String>>,
    lifecycle: Lifecycle,
    decision_log: Option<Arc<DecisionLog<Store>>>,
    /// The longest lease this host grants, ms.
    lease_max_ms: AtomicI64,
    /// Webhook URLs may be `http` and name loopback and private addresses.
    webhooks_allow_private: AtomicBool,
    /// Decisions counted per minute, not yet in the store.
    stats: std::sync::OnceLock<Arc<DecisionStats>>,
    /// The dashboard's sign-in limits.
    ui: ui::UiState,
}

/// The longest lease a host grants unless told otherwise, ms.
pub const DEFAULT_LEASE_MAX_MS: i64 = 30_000;

/// Known tokens kept in memory before the cache starts over.
const KNOWN_TOKENS_MAX: usize = 100_000;

/// What every handler shares: the engine (store and policy), the admin
/// token's hash and the HTTP metrics. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("engine", &self.inner.engine)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for an engine and the admin token, with policy changes
    /// compiled by `runtime` afresh each time and no decision log.
    pub fn new(engine: Engine<Store>, runtime: Runtime, admin_token: AdminToken) -> Self {
        let lifecycle = Lifecycle::new(runtime, None);
        Self::with_lifecycle(engine, admin_token, lifecycle, None)
    }

    /// State with the policy lifecycle (`lifecycle`, e.g. with an artifact
    /// cache) and the decision log the engine writes to, if any (listing
    /// decisions flushes it first).
    pub fn with_lifecycle(
        engine: Engine<Store>,
        admin_token: AdminToken,
        lifecycle: Lifecycle,
        decision_log: Option<Arc<DecisionLog<Store>>>,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                engine,
                admin_token,
                http: HttpMetrics::default(),
                known_tokens: Mutex::default(),
                lifecycle,
                decision_log,
                lease_max_ms: AtomicI64::new(DEFAULT_LEASE_MAX_MS),
                webhooks_allow_private: AtomicBool::new(false),
                stats: std::sync::OnceLock::new(),
                ui: ui::UiState::default(),
            }),
        }
    }

    /// Keeps the per-minute decision counts `stats` gathers (the engine
    /// must have it as a decision sink); the dashboard's overview flushes
    /// them before it reads.
    pub fn with_decision_stats(self, stats: Arc<DecisionStats>) -> Self {
        let _ = self.inner.stats.set(stats);
        self
    }

    /// The per-minute decision counts not yet in the store, if kept.
    pub fn decision_stats(&self) -> Option<&Arc<DecisionStats>> {
        self.inner.stats.get()
    }

    pub(crate) fn ui(&self) -> &ui::UiState {
        &self.inner.ui
    }

    /// Accepts webhook URLs that are `http` or name loopback and private
    /// addresses (for tests and on-premises receivers).
    pub fn with_webhooks_allow_private(self, allow: bool) -> Self {
        self.inner
            .webhooks_allow_private
            .store(allow, Ordering::Relaxed);
        self
    }

    /// Whether webhook URLs may name loopback and private addresses.
    pub fn webhooks_allow_private(&self) -> bool {
        self.inner.webhooks_allow_private.load(Ordering::Relaxed)
    }

    /// Grants leases of at most `ms` (1000 to
    /// [`quota_metering::MAX_LEASE_MS`]; clamped).
    pub fn with_lease_max_ms(self, ms: i64) -> Self {
        let ms = ms.clamp(quota_metering::MIN_LEASE_MS, quota_metering::MAX_LEASE_MS);
        self.inner.lease_max_ms.store(ms, Ordering::Relaxed);
        self
    }

    /// The longest lease this host grants, ms.
    pub fn lease_max_ms(&self) -> i64 {
        self.inner.lease_max_ms.load(Ordering::Relaxed)
    }

    /// The policy lifecycle.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// The decision log, if the engine writes one.
    pub fn decision_log(&self) -> Option<&Arc<DecisionLog<Store>>> {
        self.inner.decision_log.as_ref()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine<Store> {
        &self.inner.engine
    }

    /// The policy the fleet records beside this host's, when the database
    /// is shared (PostgreSQL).
    pub fn fleet_policy(&self) -> Option<wire::FleetPolicy> {
        let engine = self.engine();
        engine.store().is_shared().then(|| {
            wire::FleetPolicy::new(
                &self.lifecycle().following(),
                engine.policy().sha256(),
                engine.shadow().as_ref().map(|s| s.sha256()),
            )
        })
    }

    pub(crate) fn admin_token(&self) -> &AdminToken {
        &self.inner.admin_token
    }

    pub(crate) fn http(&self) -> &HttpMetrics {
        &self.inner.http
    }

    /// The user a token hash belongs to, from memory when seen before, so
    /// most requests authenticate without touching the database.
    pub(crate) async fn user_for_token(
        &self,
        token_sha256: String,
    ) -> Result<Option<String>, ApiError> {
        if let Some(user) = self.known_tokens().get(&token_sha256) {
            return Ok(Some(user.clone()));
        }
        let key = token_sha256.clone();
        let user = self
            .blocking(move |engine| Ok(engine.store().user_for_token(&key)?))
            .await?;
        if let Some(user) = &user {
            let mut known = self.known_tokens();
            if known.len() >= KNOWN_TOKENS_MAX {
                known.clear();
            }
            known.insert(token_sha256, user.clone());
        }
        Ok(user)
    }

    fn known_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .known_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs blocking database work on the blocking pool.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Engine<Store>) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(state.engine()))
            .await
            .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))?
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "quota", description = "Entitlement and quota enforcement with a WebAssembly policy."),
    components(schemas(wire::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(user::routes())
        .merge(admin::routes())
        .merge(whatif::routes())
        .merge(metering::routes())
        .merge(nodes::routes())
        .merge(webhooks::routes())
        .merge(policy::routes())
        .merge(ops::routes())
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = routes().split_for_parts().1;
    ops::describe_errors(&mut api);
    api
}

/// The whole service.
pub fn app(state: AppState) -> Router {
    let (router, mut api) = routes().split_for_parts();
    ops::describe_errors(&mut api);
    let api = Arc::new(api);
    router
        .merge(ui::routes())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(ops::RequestIds::new()))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(ops::request_span)
                        .on_body_chunk(())
                        .on_eos(()),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}
