//! `quota serve`: the HTTP service over a SQLite database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use std::sync::Arc;

use quota_engine::lifecycle::Lifecycle;
use quota_engine::log::{DecisionLog, Retention};
use quota_engine::{Clock, Engine};
use quota_host::{Limits, Runtime};
use quota_server::connections::ConnectionLimits;
use quota_server::state_dir::{StateDir, TokenSource};
use quota_server::{AdminToken, AppState};
use quota_store::prelude::*;
use quota_store::{PlanChange, SqliteOptions, SqliteStore, Synchronous};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The SQLite database (created and migrated if needed). The decision
    /// log goes to `<stem>-decisions.db` beside it.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "var/quota.db",
        env = "QUOTA_DB"
    )]
    db: PathBuf,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A policy component to activate at start (after the same checks as
    /// `POST /admin/policy`); default: the policy last activated in this
    /// database, or the built-in reference policy on a new one.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Decisions the decision log keeps (the newest).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    decision_log_entries: usize,
    /// Days the decision log keeps a decision.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    decision_log_days: u64,
    /// Create the demo plans (free, pro, enterprise) if the database has no plans.
    #[arg(long)]
    demo: bool,
    /// The service's own folder: the admin token (`admin-token`), the key
    /// that tags precompiled policies (`cache-key`) and their cache
    /// (`policy-cache/`). Refused if group or others can write it.
    /// Default: the database's folder.
    #[arg(long, value_name = "DIR", env = "QUOTA_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Time a client has from opening a connection, or from the first byte
    /// of its next request, to the end of the request's headers.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Time a request's body may take to arrive after its headers (408 past it).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    body_read_timeout: Duration,
    /// Connections open at once; at the cap, the one waiting longest with no
    /// request in flight is closed to make room.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
}

fn seed_demo(store: &SqliteStore) -> anyhow::Result<()> {
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
        store.set_plan("demo", id, &change, super::db::now_ms())?;
    }
    Ok(())
}

/// The decision log's database: `<db stem>-decisions.db` beside the database.
pub fn decision_log_path(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map_or_else(|| "quota".to_owned(), |s| s.to_string_lossy().into_owned());
    db.with_file_name(format!("{stem}-decisions.db"))
}

/// The engine with the policy lifecycle (artifacts cached in the state
/// folder) and the decision log; the recorded policies restored; `--policy`
/// activated if given.
fn start_engine(
    args: &ServeArgs,
    state: &StateDir,
    store: SqliteStore,
    token: AdminToken,
) -> anyhow::Result<AppState> {
    let runtime = Runtime::new(Limits::default())?;
    let cache = state.artifact_cache()?;
    let lifecycle = Lifecycle::new(runtime, Some(cache));
    let (reference, _) = lifecycle
        .load(quota_reference_policy::COMPONENT)
        .context("cannot load the built-in reference policy")?;
    let retention = Retention {
        max_entries: args.decision_log_entries,
        max_age: std::time::Duration::from_secs(args.decision_log_days.saturating_mul(86_400)),
    };
    let log_path = decision_log_path(&args.db);
    let log_store = SqliteStore::open_with(
        &log_path,
        SqliteOptions {
            synchronous: Synchronous::Normal,
            ..SqliteOptions::default()
        },
    )
    .with_context(|| format!("cannot open the decision log `{}`", log_path.display()))?;
    let clock = Clock::system();
    let log = Arc::new(DecisionLog::start(log_store, retention, clock.clone())?);
    let engine = Engine::new(store, reference)
        .with_clock(clock)
        .with_decision_sink(log.clone());
    lifecycle
        .restore(&engine)
        .map_err(|e| anyhow::anyhow!("cannot restore the recorded policy: {e}"))?;
    if let Some(path) = &args.policy {
        let bytes = crate::policy::component_bytes(Some(path))?;
        if quota_host::sha256_hex(&bytes) != engine.policy().sha256() {
            lifecycle
                .activate(&engine, "quota serve --policy", &bytes)
                .with_context(|| format!("cannot activate `{}`", path.display()))?;
        }
    }
    Ok(AppState::with_lifecycle(
        engine,
        token,
        lifecycle,
        Some(log),
    ))
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let dir = dir.as_path();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let state_dir = StateDir::open(args.state_dir.as_deref().unwrap_or(dir))?;
    let env_token = std::env::var("QUOTA_ADMIN_TOKEN").ok();
    let (token, token_source) = state_dir.admin_token(env_token.as_deref())?;
    let store = SqliteStore::open(&args.db)
        .with_context(|| format!("cannot open the database `{}`", args.db.display()))?;
    if args.demo {
        seed_demo(&store)?;
    }
    let state = start_engine(&args, &state_dir, store, token)?;
    let log = state.decision_log().cloned();

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!("quota listening on http://{addr}");
        println!("database: {}", args.db.display());
        println!("state: {}", state_dir.path().display());
        match &token_source {
            TokenSource::Environment => {
                println!("admin token: in the QUOTA_ADMIN_TOKEN environment variable");
            }
            TokenSource::File(file) | TokenSource::NewFile(file) => {
                println!("admin token: in {}", file.display());
            }
        }
        println!("try: curl -s http://{addr}/healthz");
        if let TokenSource::File(file) | TokenSource::NewFile(file) = &token_source {
            println!(
                "     curl -s -H \"Authorization: Bearer $(cat {})\" http://{addr}/admin/plans",
                file.display()
            );
        }
        tokio::spawn(quota_server::expire_idempotency_keys(
            state.clone(),
            std::time::Duration::from_secs(600),
        ));
        let limits = ConnectionLimits {
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            body_read_timeout: args.body_read_timeout,
            max_connections: usize::try_from(args.max_connections)?,
        };
        quota_server::connections::serve(listener, state, limits, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    if let Some(log) = log
        && !log.flush(std::time::Duration::from_secs(10))
    {
        eprintln!("warning: the decision log could not be flushed");
    }
    println!("quota stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on ctrl-c or SIGTERM: in-flight requests then finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
