//! `quota serve`: the HTTP service over a SQLite or PostgreSQL database. The options
//! become a [`ServiceConfig`]; the server crate's [`Service`] does the rest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use quota_engine::log::Retention;
use quota_host::Limits;
use quota_server::connections::ConnectionLimits;
use quota_server::state_dir::TokenSource;
use quota_server::{Service, ServiceConfig, StartPolicy};
use quota_store::PgOptions;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The database (created and migrated if needed): a SQLite file, whose
    /// decision log goes to `<stem>-decisions.db` beside it; or a
    /// PostgreSQL database shared by several hosts,
    /// `postgres://user@host:port/db?sslmode=…` (the password from the URL,
    /// PGPASSWORD or ~/.pgpass, never printed), which needs --state-dir.
    #[arg(
        long,
        value_name = "FILE|URL",
        default_value = "var/quota.db",
        env = "QUOTA_DB"
    )]
    db: String,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A policy component to activate at start (after the same checks as
    /// `POST /admin/policy`); default: the policy last activated in this
    /// database, or the built-in reference policy on a new one.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Require signed policies: a file of one or more Ed25519 public keys
    /// (PEM, from `quota policy keygen`). An upload, a shadow, a rollback
    /// and the policy restored at start need a valid signature by one of
    /// them, and a rising version per name; the built-in reference policy
    /// is trusted. Without it, signatures are not required.
    #[arg(long, value_name = "FILE", env = "QUOTA_TRUSTED_KEYS")]
    trusted_keys: Option<PathBuf>,
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
    /// Default: the SQLite database's folder; required with PostgreSQL
    /// (each host its own; the decision log goes here too).
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
    /// Memory a policy instance may use, over all its memories, in MiB. A
    /// component that needs more is refused on this host: at upload, or
    /// when this host follows the fleet's policy (it then keeps its last
    /// good one and says so in /healthz).
    #[arg(long, value_name = "MIB", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    policy_memory: u32,
    /// Connections to PostgreSQL this host keeps open at most (its pool;
    /// unused with SQLite). A request waits up to 3 s for one, then gets
    /// 503 `store_unavailable`.
    #[arg(long, value_name = "N", default_value_t = PgOptions::default().max_connections, value_parser = clap::value_parser!(u32).range(1..=1000))]
    db_pool: u32,
    /// The longest lease this host grants to a node deciding at the edge,
    /// in ms (1000 to 300000): the bound on how stale a node's view of a
    /// plan or override change can be, and on what a dead node can hold.
    #[arg(long, value_name = "MS", default_value_t = quota_server::DEFAULT_LEASE_MAX_MS, value_parser = clap::value_parser!(i64).range(1000..=300_000))]
    lease_max_ms: i64,
    /// Let webhook URLs use http and reach loopback and private addresses (tests,
    /// on-premises receivers). Without it only https URLs resolving to public
    /// addresses are registered or sent to.
    #[arg(long)]
    webhooks_allow_private: bool,
    /// The longest a webhook request may take, connecting included (1s to 5m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    webhook_timeout: Duration,
    /// How long threshold events of a usage period are kept once delivered,
    /// in days (at least 32, so that an event outlives its period and is
    /// never sent twice).
    #[arg(long, value_name = "DAYS", default_value_t = 35, value_parser = clap::value_parser!(u64).range(32..=3650))]
    event_retention_days: u64,
}

impl ServeArgs {
    /// What the service is started with.
    fn config(&self) -> anyhow::Result<ServiceConfig> {
        let policy = match &self.policy {
            Some(path) => Some(StartPolicy {
                source: path.display().to_string(),
                actor: "quota serve --policy".to_owned(),
                bytes: crate::policy::component_bytes(Some(path))?,
                signature: crate::policy::signature_beside(path)?,
            }),
            None => None,
        };
        if !(Duration::from_secs(1)..=Duration::from_secs(300)).contains(&self.webhook_timeout) {
            anyhow::bail!(
                "--webhook-timeout must be from 1s to 5m, got {}",
                humantime::format_duration(self.webhook_timeout)
            );
        }
        let trusted_keys = self
            .trusted_keys
            .as_deref()
            .map(crate::db::trusted_keys)
            .transpose()?;
        Ok(ServiceConfig {
            db: quota_store::Location::parse(&self.db)?,
            state_dir: self.state_dir.clone(),
            admin_token: std::env::var("QUOTA_ADMIN_TOKEN").ok(),
            policy,
            retention: Retention {
                max_entries: self.decision_log_entries,
                max_age: Duration::from_secs(self.decision_log_days.saturating_mul(86_400)),
            },
            demo: self.demo,
            limits: ConnectionLimits {
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                body_read_timeout: self.body_read_timeout,
                max_connections: usize::try_from(self.max_connections)?,
            },
            policy_limits: Limits {
                memory_bytes: usize::try_from(self.policy_memory)? << 20,
                ..Limits::default()
            },
            postgres: PgOptions {
                max_connections: self.db_pool,
                ..PgOptions::default()
            },
            lease_max_ms: self.lease_max_ms,
            webhooks: quota_webhooks::Options {
                allow_private: self.webhooks_allow_private,
                timeout: self.webhook_timeout,
                retention: Duration::from_secs(self.event_retention_days.saturating_mul(86_400)),
                ..quota_webhooks::Options::default()
            },
            trusted_keys,
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let service = Service::open(args.config()?)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let flushed = tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!("quota listening on http://{addr}");
        println!("database: {}", quota_store::Location::parse(&args.db)?);
        println!("state: {}", service.state_dir().display());
        match service.token_source() {
            TokenSource::Environment => {
                println!("admin token: in the QUOTA_ADMIN_TOKEN environment variable");
            }
            TokenSource::File(file) | TokenSource::NewFile(file) => {
                println!("admin token: in {}", file.display());
            }
        }
        println!("dashboard: http://{addr}/ui (sign in with the admin token)");
        println!("try: curl -s http://{addr}/healthz");
        if let TokenSource::File(file) | TokenSource::NewFile(file) = service.token_source() {
            println!(
                "     curl -s -H \"Authorization: Bearer $(cat {})\" http://{addr}/admin/plans",
                file.display()
            );
        }
        anyhow::Ok(service.serve(listener, shutdown_signal()).await)
    })?;
    if !flushed {
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
