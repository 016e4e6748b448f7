//! `quota`: entitlement and quota enforcement with a WebAssembly policy.
//!
//! Exit status: 0 success; 1 `policy test` had failing cases; 2 usage error,
//! unreadable file, a component that cannot be loaded, or any other error;
//! 3 a quota block (the error body of docs/contract.md §4.3 is printed on stdout).

mod db;
mod policy;
mod serve;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Entitlement and quota enforcement with a WebAssembly policy component.
#[derive(Debug, Parser)]
#[command(name = "quota", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    db: db::DbArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (user and admin API, the admin dashboard at /ui, /metrics,
    /// /healthz, /openapi.json).
    Serve(serve::ServeArgs),
    /// Policy tooling: write, build, compare, evaluate, test, inspect and replay
    /// policy components (no database needed), and change a running service's
    /// policy.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Move a state between databases: `quota store copy --from FILE.db --to postgres://…`.
    #[command(subcommand)]
    Store(store::StoreCommand),
    #[command(flatten)]
    Db(db::DbCommand),
}

/// Logs (decision events, warnings) go to stderr as JSON lines, filtered by
/// `RUST_LOG` (default: warnings and errors only).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Store(cmd) => store::run(cmd),
        Command::Db(cmd) => db::run(&cli.db, cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
