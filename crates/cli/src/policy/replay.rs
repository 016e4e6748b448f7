//! `quota policy replay`: re-decide logged decisions with a candidate policy
//! and report what would change.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use quota_policy_core::json::{Evaluated, input_from_value};
use quota_store::prelude::*;
use quota_store::{DecisionFilter, SqliteStore};
use serde_json::Value;

use super::compare::Comparison;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The candidate policy component.
    #[arg(long, value_name = "FILE")]
    candidate: PathBuf,
    /// A SQLite database whose decision log to replay (the log beside it).
    /// A PostgreSQL host keeps its log in its state folder: give that
    /// `decisions.db`.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "log",
        required_unless_present = "log"
    )]
    db: Option<String>,
    /// Or a file of logged decisions: the JSON of `GET /admin/decisions`,
    /// or one entry per line.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Replay at most this many of the newest decisions.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    limit: usize,
    /// Examples kept per status transition.
    #[arg(long, value_name = "N", default_value_t = 3)]
    examples: usize,
}

/// (input, recorded output) pairs.
fn recorded(args: &ReplayArgs) -> anyhow::Result<Vec<(Value, Value)>> {
    if let Some(db) = &args.db {
        anyhow::ensure!(
            !quota_store::is_postgres_url(db),
            "the decision log is per host: give the `decisions.db` in the host's state folder, not the shared database"
        );
        let db = std::path::Path::new(db);
        anyhow::ensure!(db.exists(), "no database at `{}`", db.display());
        let beside = quota_server::decision_log_path(db);
        let db = if beside.exists() { &beside } else { db };
        let store = SqliteStore::open(db)
            .with_context(|| format!("cannot open the database `{}`", db.display()))?;
        let filter = DecisionFilter {
            limit: args.limit,
            ..DecisionFilter::default()
        };
        let mut pairs = Vec::new();
        for entry in store.decisions(&filter)?.into_iter().rev() {
            pairs.push((
                serde_json::from_str(&entry.input_json)?,
                serde_json::from_str(&entry.output_json)?,
            ));
        }
        return Ok(pairs);
    }
    let path = args.log.as_ref().context("give `--db` or `--log`")?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let entries: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(mut doc)) if doc.contains_key("entries") => match doc.remove("entries") {
            Some(Value::Array(entries)) => entries.into_iter().rev().collect(),
            _ => anyhow::bail!("`entries` must be an array"),
        },
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("each line must be a logged decision (JSON)")?,
    };
    let mut pairs: Vec<(Value, Value)> = entries
        .into_iter()
        .map(|mut e| (e["input"].take(), e["output"].take()))
        .collect();
    let keep = pairs.len().saturating_sub(args.limit);
    pairs.drain(..keep);
    Ok(pairs)
}

pub fn run(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let candidate = super::load_policy(Some(&args.candidate))?;
    let mut evaluator = candidate.evaluator()?;
    let pairs = recorded(args)?;
    let mut unreadable = 0usize;
    let mut comparison = Comparison::new(args.examples);
    for (input, old) in &pairs {
        let new = match input_from_value(input) {
            Ok(input) => evaluator.evaluate(&input),
            Err(e) => {
                unreadable += 1;
                Evaluated::PolicyError(e)
            }
        }
        .to_value();
        comparison.add(input, old, &new, ["recorded", "candidate"]);
    }
    let mut head = serde_json::Map::new();
    head.insert("candidate_sha256".into(), candidate.sha256().into());
    head.insert("replayed".into(), pairs.len().into());
    head.insert("unreadable_inputs".into(), unreadable.into());
    println!(
        "{}",
        serde_json::to_string_pretty(&comparison.report(head))?
    );
    Ok(ExitCode::SUCCESS)
}
