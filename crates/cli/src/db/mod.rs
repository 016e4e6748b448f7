//! Commands over a database (`--db FILE`): admin operations and the domain.

mod admin;
mod domain;
mod webhooks;

use std::path::PathBuf;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use quota_engine::Engine;
use quota_host::{Limits, Runtime};
use quota_store::prelude::*;
use quota_store::{AnyStore, Location};

pub use admin::{DefaultCommand, OverrideCommand, PlanCommand, UserCommand};
pub use domain::{DraftCommand, InviteCommand, SegmentCommand};
pub use webhooks::{EventCommand, WebhookCommand};

/// Where the state lives and who acts.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The database: a SQLite file (created and migrated if needed), or a
    /// PostgreSQL database as `postgres://user@host:port/db?sslmode=…` (the
    /// password from the URL, PGPASSWORD or ~/.pgpass; never printed).
    #[arg(long, global = true, value_name = "FILE|URL", env = "QUOTA_DB")]
    db: Option<String>,
    /// Who is acting, for the audit log.
    #[arg(long, global = true, value_name = "NAME", default_value = "cli")]
    actor: String,
    /// A policy component to decide with; default: the policy last activated
    /// in the database (by the service), else the built-in reference policy.
    #[arg(long, global = true, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Decide only with a recorded policy signed by one of these public keys
    /// (PEM), as `quota serve --trusted-keys` does: one that does not verify is
    /// set aside for the built-in reference policy, with a warning.
    #[arg(long, global = true, value_name = "FILE", env = "QUOTA_TRUSTED_KEYS")]
    trusted_keys: Option<PathBuf>,
}

impl DbArgs {
    fn store(&self) -> anyhow::Result<AnyStore> {
        let db = self
            .db
            .as_deref()
            .context("this command needs a database: pass `--db FILE|URL` or set QUOTA_DB")?;
        let location = Location::parse(db)?;
        AnyStore::open(&location).with_context(|| format!("cannot open the database `{location}`"))
    }

    fn engine(&self) -> anyhow::Result<Engine<AnyStore>> {
        let store = self.store()?;
        let recorded = match &self.policy {
            Some(_) => None,
            None => store.policy_state(0)?.active.and_then(|event| event.sha256),
        };
        let recorded = match (recorded, &self.trusted_keys) {
            (Some(sha256), Some(path)) => {
                let builtin = quota_host::sha256_hex(quota_reference_policy::COMPONENT);
                let signatures =
                    quota_engine::signatures::Signatures::required(trusted_keys(path)?, &builtin);
                let signature = store.policy_signature(&sha256)?;
                match signatures.check(&sha256, signature.as_deref()) {
                    Ok(_) => Some(sha256),
                    Err(e) => {
                        eprintln!(
                            "warning: the recorded policy {sha256} is not trusted ({e}); deciding with the built-in reference policy"
                        );
                        None
                    }
                }
            }
            (recorded, _) => recorded,
        };
        let policy = match recorded {
            Some(sha256) => {
                let bytes = store
                    .policy_component(&sha256)?
                    .with_context(|| format!("the active policy {sha256} is not stored"))?;
                Runtime::new(Limits::default())?
                    .load(&bytes)
                    .with_context(|| format!("cannot load the active policy {sha256}"))?
            }
            None => crate::policy::load_policy(self.policy.as_deref())?,
        };
        Ok(Engine::new(store, policy))
    }
}

/// The public keys in the PEM file at `path`.
pub fn trusted_keys(path: &std::path::Path) -> anyhow::Result<quota_signing::TrustedKeys> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    quota_signing::TrustedKeys::from_pem(&text)
        .with_context(|| format!("cannot read the trusted keys in `{}`", path.display()))
}

impl DbArgs {
    /// The decision log to read: `file`, or the one beside the SQLite
    /// database; and what it covers.
    fn decision_log(
        &self,
        file: Option<&std::path::Path>,
    ) -> anyhow::Result<(quota_store::SqliteStore, quota_server::wire::Coverage)> {
        let path = match file {
            Some(file) => file.to_owned(),
            None => {
                let db = self
                    .db
                    .as_deref()
                    .context("this command needs a database")?;
                anyhow::ensure!(
                    !quota_store::is_postgres_url(db),
                    "each PostgreSQL host keeps its own decision log: give the host's `decisions.db` (in its state folder) with `--decision-log`"
                );
                // `quota serve` logs beside the database; the database
                // itself when nothing is beside it.
                let beside = quota_server::decision_log_path(std::path::Path::new(db));
                if beside.exists() {
                    beside
                } else {
                    std::path::PathBuf::from(db)
                }
            }
        };
        anyhow::ensure!(path.exists(), "no decision log at `{}`", path.display());
        let store = quota_store::SqliteStore::open(&path)
            .with_context(|| format!("cannot open the decision log `{}`", path.display()))?;
        let covers = quota_server::wire::Coverage {
            scope: if file.is_some() {
                "log_file"
            } else {
                "service"
            }
            .to_owned(),
            host: path.display().to_string(),
        };
        Ok((store, covers))
    }
}

/// Prints one JSON object on stdout.
fn print(value: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string(value)?);
    Ok(ExitCode::SUCCESS)
}

pub use quota_engine::system_now_ms as now_ms;

/// Admin and domain commands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or change plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Global default limits per entitlement.
    #[command(subcommand)]
    Default(DefaultCommand),
    /// Create users and move them between plans.
    #[command(subcommand)]
    User(UserCommand),
    /// Per-user limit overrides, optionally expiring.
    #[command(subcommand)]
    Override(OverrideCommand),
    /// The audit log of admin changes, newest first.
    Audit(admin::AuditArgs),
    /// Webhook endpoints that receive threshold events (docs/events.md).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Threshold events and their deliveries.
    #[command(subcommand)]
    Event(EventCommand),
    /// Drafts (guarded by `drafts.max`).
    #[command(subcommand)]
    Draft(DraftCommand),
    /// Segments of drafts (guarded by `segments.max`).
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// Invites to collaborate (accepting is guarded by the inviter's `collaborators.max`).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Consume units of a metered entitlement (API calls, exports, tokens): decided by the policy, usage and grace recorded; exit 3 when blocked.
    Consume(domain::ConsumeArgs),
    /// Soft check: would `requested` more units stay within the limit? Changes nothing.
    Check(domain::CheckArgs),
}

pub fn run(db: &DbArgs, command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Plan(cmd) => admin::plan(db, cmd),
        DbCommand::Default(cmd) => admin::default(db, cmd),
        DbCommand::User(cmd) => admin::user(db, cmd),
        DbCommand::Override(cmd) => admin::overrides(db, cmd),
        DbCommand::Audit(args) => admin::audit(db, args),
        DbCommand::Webhook(cmd) => webhooks::webhook(db, cmd),
        DbCommand::Event(cmd) => webhooks::event(db, cmd),
        DbCommand::Draft(cmd) => domain::draft(db, cmd),
        DbCommand::Segment(cmd) => domain::segment(db, cmd),
        DbCommand::Invite(cmd) => domain::invite(db, cmd),
        DbCommand::Consume(args) => domain::consume(db, args),
        DbCommand::Check(args) => domain::check(db, args),
    }
}
