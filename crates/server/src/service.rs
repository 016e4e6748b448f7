//! The whole service put together: the state folder and its admin token,
//! the database, the policy runtime and its artifact cache, the engine
//! with its clock and decision log, the recorded policies restored, and
//! the HTTP server on a listener until a shutdown signal. `quota serve`
//! is a thin wrapper over [`Service`]; a test can open and serve one the
//! same way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quota_engine::lifecycle::{ChangeError, Lifecycle, RestoreError};
use quota_engine::log::{DecisionLog, Retention};
use quota_engine::signatures::Signatures;
use quota_engine::stats::DecisionStats;
use quota_engine::{Clock, Engine};
use quota_host::{Limits, LoadError, Runtime};
use quota_store::prelude::*;
use quota_store::{
    AnyStore, Location, PgOptions, PlanChange, SqliteOptions, SqliteStore, StoreError, Synchronous,
};
use tokio::net::TcpListener;

use crate::AppState;
use crate::connections::ConnectionLimits;
use crate::state_dir::{StateDir, StateError, TokenSource};

/// How often stored idempotent replies past their time are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(600);

/// How often expired leases are ended as fully spent.
const EXPIRE_LEASES_EVERY: Duration = Duration::from_secs(1);

/// How often due webhook deliveries are looked for.
const DELIVER_EVERY: Duration = Duration::from_secs(1);

/// How often the per-minute decision counts are added to the store.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Per-minute decision counts older than this are deleted.
const STATS_KEEP: Duration = Duration::from_secs(2 * 24 * 3600);

/// Time the decision log has at shutdown to write what it holds.
const FLUSH_AT_STOP: Duration = Duration::from_secs(10);

/// Everything the service is started with.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The database (created and migrated if needed): a SQLite file, or
    /// a PostgreSQL database shared by a fleet. The decision log goes
    /// beside a SQLite file ([`decision_log_path`]), and into the state
    /// folder with PostgreSQL (it is per host).
    pub db: Location,
    /// The state folder; `None`: the SQLite database's folder (required
    /// with PostgreSQL).
    pub state_dir: Option<PathBuf>,
    /// The admin token given by the environment, if any (else the state
    /// folder's `admin-token`, created on first start).
    pub admin_token: Option<String>,
    /// A policy component to activate at start; `None`: the recorded
    /// policy, or the built-in reference on a new database.
    pub policy: Option<StartPolicy>,
    /// What the decision log keeps.
    pub retention: Retention,
    /// Create the demo plans when the database has none.
    pub demo: bool,
    /// Timeouts and the connection cap.
    pub limits: ConnectionLimits,
    /// The sandbox of every policy call on this host (memory, deadline,
    /// compile budget). A component past them is refused here, at upload
    /// or, in a fleet, when this host follows it; the host then keeps its
    /// last good policy.
    pub policy_limits: Limits,
    /// The connection pool on PostgreSQL (unused with SQLite).
    pub postgres: PgOptions,
    /// The longest lease this host grants, ms: how stale a node's view of
    /// a plan or override change can be (docs/leases.md).
    pub lease_max_ms: i64,
    /// How webhook deliveries are made (docs/events.md).
    pub webhooks: quota_webhooks::Options,
    /// The keys a policy must be signed by (docs/signing.md); `None`:
    /// signatures are not required.
    pub trusted_keys: Option<quota_signing::TrustedKeys>,
}

/// A policy component given at start.
#[derive(Debug, Clone)]
pub struct StartPolicy {
    /// Where it came from (a path), for messages.
    pub source: String,
    /// Who is recorded as activating it in the policy history.
    pub actor: String,
    /// The component.
    pub bytes: Vec<u8>,
    /// Its detached signature (the `.sig` file beside it), if any.
    pub signature: Option<String>,
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The state folder, its token or its cache key is unsafe or unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// A database cannot be opened or seeded.
    #[error("cannot use the database `{location}`: {source}")]
    Database {
        /// The database (a URL without its password).
        location: String,
        /// Why.
        source: StoreError,
    },
    /// PostgreSQL needs a state folder named: a URL has no folder to
    /// default to.
    #[error(
        "a postgres:// database needs --state-dir (for the admin token, the cache key and the artifact cache)"
    )]
    NoStateDir,
    /// A folder cannot be created.
    #[error("cannot create `{path}`: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The webhook client cannot start.
    #[error("cannot start webhook deliveries: {0}")]
    Webhooks(quota_webhooks::DeliveryError),
    /// The policy runtime or the built-in reference policy does not load.
    #[error("cannot start the policy runtime: {0}")]
    Runtime(#[from] LoadError),
    /// The decision log's writer cannot start.
    #[error("cannot start the decision log: {0}")]
    DecisionLog(std::io::Error),
    /// The policy recorded in the database cannot be restored.
    #[error("cannot restore the recorded policy: {0}")]
    Restore(#[from] RestoreError),
    /// The policy given at start was refused; the service does not start.
    #[error("cannot activate `{policy}`: {source}")]
    Activate {
        /// Where it came from.
        policy: String,
        /// Why it was refused.
        source: ChangeError,
    },
}

/// The decision log's database: `<db stem>-decisions.db` beside the database.
pub fn decision_log_path(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map_or_else(|| "quota".to_owned(), |s| s.to_string_lossy().into_owned());
    db.with_file_name(format!("{stem}-decisions.db"))
}

/// Creates the demo plans (free, pro, enterprise), enforcing, unless the
/// store has plans already.
pub fn seed_demo(store: &impl PlanStore, now_ms: i64) -> Result<(), StoreError> {
    if !store.plans()?.is_empty() {
        return Ok(());
    }
    let plans: [(&str, [i64; 3], i64); 3] = [
        ("free", [3, 50, 1], 1),
        ("pro", [100, 5_000, 10], 5),
        ("enterprise", [-1, -1, -1], 0),
    ];
    for (id, [drafts, segments, collaborators], grace) in plans {
        let change = PlanChange {
            limits: vec![
                ("drafts.max".into(), drafts),
                ("segments.max".into(), segments),
                ("collaborators.max".into(), collaborators),
            ],
            enforcement_enabled: Some(true),
            grace_count: Some(grace),
            ..PlanChange::default()
        };
        store.set_plan("demo", id, &change, now_ms)?;
    }
    Ok(())
}

/// The service, opened and ready to serve.
#[derive(Debug)]
pub struct Service {
    deliverer: quota_webhooks::Deliverer<AppState>,
    state: AppState,
    state_dir: StateDir,
    token_source: TokenSource,
    limits: ConnectionLimits,
}

impl Service {
    /// Opens everything `config` names: checks the state folder, opens
    /// and migrates the database, seeds the demo plans if asked, starts
    /// the engine with the decision log, restores the recorded policies
    /// and activates `config.policy` (through every stage of an upload).
    pub fn open(config: ServiceConfig) -> Result<Self, ServiceError> {
        // A SQLite file's folder; the state folder defaults to it.
        let db_folder = config.db.file().map(|db| {
            db.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf()
        });
        let dir = match (&config.state_dir, &db_folder) {
            (Some(dir), _) => dir.clone(),
            (None, Some(folder)) => folder.clone(),
            (None, None) => return Err(ServiceError::NoStateDir),
        };
        for folder in db_folder.iter().chain([&dir]) {
            std::fs::create_dir_all(folder).map_err(|source| ServiceError::Folder {
                path: folder.clone(),
                source,
            })?;
        }
        let state_dir = StateDir::open(&dir)?;
        let (token, token_source) = state_dir.admin_token(config.admin_token.as_deref())?;
        let database = |location: &dyn std::fmt::Display| {
            let location = location.to_string();
            move |source| ServiceError::Database { location, source }
        };
        let store = AnyStore::open_with(&config.db, SqliteOptions::default(), config.postgres)
            .map_err(database(&config.db))?;
        let clock = Clock::system();
        if config.demo {
            seed_demo(&store, clock.now_ms()).map_err(database(&config.db))?;
        }
        let runtime = Runtime::new(config.policy_limits)?;
        let builtin = quota_host::sha256_hex(quota_reference_policy::COMPONENT);
        let signatures = match config.trusted_keys {
            Some(trusted) => Signatures::required(trusted, &builtin),
            None => Signatures::not_required(&builtin),
        };
        let lifecycle =
            Lifecycle::new(runtime, Some(state_dir.artifact_cache()?)).with_signatures(signatures);
        let (reference, _) = lifecycle.load(quota_reference_policy::COMPONENT)?;
        let log_path = match &config.db {
            Location::Sqlite(db) => decision_log_path(db),
            Location::Postgres(_) => dir.join("decisions.db"),
        };
        let log_store = SqliteStore::open_with(
            &log_path,
            SqliteOptions {
                synchronous: Synchronous::Normal,
                ..SqliteOptions::default()
            },
        )
        .map_err(database(&log_path.display()))?;
        let log = DecisionLog::start(AnyStore::Sqlite(log_store), config.retention)
            .map_err(ServiceError::DecisionLog)?;
        let log = Arc::new(log);
        let stats = Arc::new(DecisionStats::new());
        // Dashboard sessions made under another admin token end here.
        store
            .delete_ui_sessions_except(&hex::encode(token.sha256()))
            .map_err(database(&config.db))?;
        let engine = Engine::new(store, reference)
            .with_clock(clock)
            .with_decision_sink(stats.clone())
            .with_decision_sink(log.clone());
        lifecycle.restore(&engine)?;
        if let Some(policy) = &config.policy
            && quota_host::sha256_hex(&policy.bytes) != engine.policy().sha256()
        {
            lifecycle
                .activate(
                    &engine,
                    &policy.actor,
                    &policy.bytes,
                    policy.signature.as_deref(),
                )
                .map_err(|source| ServiceError::Activate {
                    policy: policy.source.clone(),
                    source,
                })?;
        }
        let state = AppState::with_lifecycle(engine, token, lifecycle, Some(log))
            .with_decision_stats(stats)
            .with_lease_max_ms(config.lease_max_ms)
            .with_webhooks_allow_private(config.webhooks.allow_private);
        let deliverer = quota_webhooks::Deliverer::new(state.clone(), config.webhooks)
            .map_err(ServiceError::Webhooks)?;
        Ok(Service {
            deliverer,
            state,
            state_dir,
            token_source,
            limits: config.limits,
        })
    }

    /// What every handler shares.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The state folder in use.
    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    /// Where the admin token came from.
    pub fn token_source(&self) -> &TokenSource {
        &self.token_source
    }

    /// Serves on `listener` until `shutdown` resolves, expiring stored
    /// idempotent replies meanwhile; requests in flight then finish and
    /// the decision log writes what it holds. Returns false when it could
    /// not within [`FLUSH_AT_STOP`].
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> bool {
        let expiry = tokio::spawn(crate::idempotency::expire_forever(
            self.state.clone(),
            EXPIRE_EVERY,
        ));
        let leases = tokio::spawn(crate::metering::expire_forever(
            self.state.clone(),
            EXPIRE_LEASES_EVERY,
        ));
        let deliveries = tokio::spawn(crate::webhooks::deliver_forever(
            self.deliverer,
            self.state.clone(),
            DELIVER_EVERY,
        ));
        let following = self
            .state
            .engine()
            .store()
            .is_shared()
            .then(|| crate::follow::Follower::start(self.state.clone()));
        let stats = tokio::spawn(flush_stats_forever(
            self.state.clone(),
            STATS_EVERY,
            STATS_KEEP,
        ));
        let log = self.state.decision_log().cloned();
        let state = self.state.clone();
        crate::connections::serve(listener, self.state, self.limits, shutdown).await;
        stats.abort();
        flush_stats(&state).await;
        expiry.abort();
        leases.abort();
        deliveries.abort();
        drop(following);
        match log {
            Some(log) => tokio::task::spawn_blocking(move || log.flush(FLUSH_AT_STOP))
                .await
                .unwrap_or(false),
            None => true,
        }
    }
}

/// Adds the per-minute decision counts gathered so far to the store.
async fn flush_stats(state: &AppState) {
    let Some(stats) = state.decision_stats().cloned() else {
        return;
    };
    let flushed = state
        .blocking(move |engine| Ok(stats.flush(engine.store())?))
        .await;
    if let Err(e) = flushed {
        tracing::warn!(error = %e.body.error.message, "cannot store the per-minute decision counts; kept for the next try");
    }
}

/// Flushes the per-minute counts every `every`, and deletes those older
/// than `keep` once an hour.
async fn flush_stats_forever(
    state: AppState,
    every: std::time::Duration,
    keep: std::time::Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let prune_every = (3600 / every.as_secs().max(1)).max(1);
    let mut n: u64 = 0;
    loop {
        ticks.tick().await;
        flush_stats(&state).await;
        n += 1;
        if n.is_multiple_of(prune_every) {
            let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
            let pruned = state
                .blocking(move |engine| {
                    let before = engine.now_ms().saturating_sub(keep_ms);
                    Ok(engine.store().prune_decision_minutes(before)?)
                })
                .await;
            if let Err(e) = pruned {
                tracing::warn!(error = %e.body.error.message, "cannot prune the per-minute decision counts");
            }
        }
    }
}
