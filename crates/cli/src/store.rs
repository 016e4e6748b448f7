//! `quota store`: moving a state between backends.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use quota_store::{PgStore, PgUrl, SqliteStore};

/// Commands over whole databases.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a SQLite state (plans, users and tokens, overrides, usage,
    /// grace, drafts and the rest of the domain, audit log, idempotent
    /// replies, policy versions and events) into an empty PostgreSQL
    /// database, in one transaction. The decision log stays behind: it is
    /// per host; so do the dashboard's sessions and per-minute decision
    /// counts. Stop the service on the SQLite file first.
    Copy {
        /// The SQLite database file.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The PostgreSQL database (migrated if needed; must be empty).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

pub fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::Copy { from, to } => {
            anyhow::ensure!(from.is_file(), "no database at `{}`", from.display());
            let source = SqliteStore::open(&from)
                .with_context(|| format!("cannot open `{}`", from.display()))?;
            let url: PgUrl = to.parse()?;
            let target = PgStore::open(&url).with_context(|| format!("cannot open `{url}`"))?;
            let report = target.copy_from_sqlite(&source)?;
            let rows: serde_json::Map<String, serde_json::Value> = report
                .into_iter()
                .map(|(table, n)| (table.to_owned(), n.into()))
                .collect();
            println!(
                "{}",
                serde_json::json!({ "from": from.display().to_string(), "to": url.to_string(), "rows": rows })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
