//! `plan`, `default`, `user`, `override`, `audit`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use quota_engine::whatif::{PlanHypothesis, WhatIfOptions, what_if};
use quota_server::wire;
use quota_store::{PeriodKind, PlanChange};
use serde::Serialize;

use super::{DbArgs, now_ms, print};
use quota_store::prelude::*;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// `KEY=N`, N an integer (`-1` unlimited).
fn key_value(text: &str) -> Result<(String, i64), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=N, got `{text}`"))?;
    let value = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not an integer"))?;
    Ok((key.trim().to_owned(), value))
}

/// `KEY=PERIOD`, PERIOD one of none, day, week, month, anniversary.
fn key_period(text: &str) -> Result<(String, PeriodKind), String> {
    let (key, period) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=PERIOD, got `{text}`"))?;
    let period = period.trim().parse().map_err(|e| format!("{e}"))?;
    Ok((key.trim().to_owned(), period))
}

/// `KEY=P1,P2,...`, percentages; `KEY=` removes the key's thresholds.
fn key_thresholds(text: &str) -> Result<(String, Vec<i64>), String> {
    let (key, list) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=P1,P2,..., got `{text}`"))?;
    let percents = list
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|_| format!("`{p}` is not a percentage")))
        .collect::<Result<_, _>>()?;
    Ok((key.trim().to_owned(), percents))
}

/// The fields of a plan that `plan set` changes and `plan what-if` supposes.
#[derive(Debug, Args)]
pub struct PlanFields {
    /// A limit for an entitlement, e.g. `drafts.max=10` (`-1` unlimited). Repeatable.
    #[arg(long = "limit", value_name = "KEY=N", value_parser = key_value, allow_hyphen_values = true)]
    limits: Vec<(String, i64)>,
    /// Remove the plan's limit for an entitlement (the default applies). Repeatable.
    #[arg(long = "unset-limit", value_name = "KEY")]
    unset_limits: Vec<String>,
    /// Block once grace is used up (`on`), or only warn (`off`).
    #[arg(long, value_enum)]
    enforce: Option<OnOff>,
    /// Grace units per user and entitlement before blocking.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    grace: Option<i64>,
    /// Share of the plan's users (0-100) enforcement applies to.
    #[arg(long, value_name = "PCT", allow_hyphen_values = true)]
    rollout: Option<i64>,
}

impl PlanFields {
    /// The change these fields ask for.
    fn change(self) -> PlanChange {
        PlanChange {
            limits: self.limits,
            remove_limits: self.unset_limits,
            enforcement_enabled: self.enforce.map(|e| matches!(e, OnOff::On)),
            grace_count: self.grace,
            rollout_percent: self.rollout,
            ..PlanChange::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Create a plan, or change only the fields given. A new plan has enforcement off,
    /// grace 0, rollout 100 and no limits.
    Set {
        /// The plan id.
        plan: String,
        #[command(flatten)]
        fields: PlanFields,
        /// How often an entitlement's usage and grace start again from zero, e.g.
        /// `exports.max=month`: none, day, week (from Monday 00:00 UTC), month (calendar,
        /// UTC) or anniversary (monthly from the user's plan start). A new period kind
        /// starts a new period at once. Repeatable.
        #[arg(long = "period", value_name = "KEY=PERIOD", value_parser = key_period)]
        periods: Vec<(String, PeriodKind)>,
        /// Threshold percentages for an entitlement, e.g. `exports.max=80,100`: usage
        /// reaching each writes a `threshold.reached` event once per period, and the key
        /// also gets `quota.blocked`. `KEY=` removes them. Repeatable.
        #[arg(long = "threshold", value_name = "KEY=P1,P2", value_parser = key_thresholds)]
        thresholds: Vec<(String, Vec<i64>)>,
    },
    /// What a plan change would have done: re-decide the decisions logged under PLAN
    /// in their order with the change (carrying forward each user's usage and grace),
    /// changing nothing; print the status transitions, the users affected and examples.
    /// A replay of logged requests, not a forecast (docs/what-if.md).
    WhatIf {
        /// The plan id.
        plan: String,
        #[command(flatten)]
        fields: PlanFields,
        /// Only decisions of the last DURATION (e.g. `24h`, `7d`); default: the whole log.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Examples per status transition (0-20).
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u8).range(0..=20))]
        examples: u8,
        /// The decision log to replay: default, the one beside a SQLite database. A
        /// PostgreSQL host keeps its own in its state folder: give its `decisions.db`.
        #[arg(long, value_name = "FILE")]
        decision_log: Option<std::path::PathBuf>,
    },
    /// Show a plan.
    Show {
        /// The plan id.
        plan: String,
    },
    /// List the plans.
    List,
}

#[derive(Debug, Subcommand)]
pub enum DefaultCommand {
    /// Set the global default limit for an entitlement (`-1` unlimited).
    Set {
        /// The entitlement key.
        key: String,
        /// The limit.
        #[arg(allow_hyphen_values = true)]
        value: i64,
    },
    /// List the defaults.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user on a plan.
    Create {
        /// The user id.
        user: String,
        /// The plan.
        #[arg(long)]
        plan: String,
    },
    /// Move a user to another plan (resets the user's grace usage).
    SetPlan {
        /// The user id.
        user: String,
        /// The new plan.
        plan: String,
    },
    /// Show a user: plan, usage counters, grace used.
    Show {
        /// The user id.
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Set a user's limit for an entitlement, replacing any earlier override.
    Set {
        /// The user id.
        user: String,
        /// The entitlement key.
        key: String,
        /// The limit (`-1` unlimited).
        #[arg(allow_hyphen_values = true)]
        value: i64,
        /// When the override stops applying (RFC 3339, e.g. 2027-01-31T00:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
        /// Who sets it (recorded with the override and in the audit log).
        #[arg(long = "by", value_name = "WHO")]
        by: String,
    },
    /// Remove a user's override for an entitlement.
    Clear {
        /// The user id.
        user: String,
        /// The entitlement key.
        key: String,
    },
    /// List overrides (expired ones are marked).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// At most this many entries.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

fn rfc3339_ms(text: &str) -> anyhow::Result<i64> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("`{text}` is not an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)"))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).context("the time is out of range")
}

fn ms_rfc3339(ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

pub fn plan(db: &DbArgs, cmd: PlanCommand) -> anyhow::Result<ExitCode> {
    let store = db.store()?;
    match cmd {
        PlanCommand::Set {
            plan,
            fields,
            periods,
            thresholds,
        } => {
            let change = PlanChange {
                periods,
                thresholds,
                ..fields.change()
            };
            print(&wire::Plan::from(&store.set_plan(
                &db.actor,
                &plan,
                &change,
                now_ms(),
            )?))
        }
        PlanCommand::WhatIf {
            plan,
            fields,
            since,
            examples,
            decision_log,
        } => {
            let change = fields.change();
            change.validate()?;
            let hypothesis = PlanHypothesis::from_change(change).map_err(anyhow::Error::msg)?;
            store.plan(&plan)?;
            let (log, covers) = db.decision_log(decision_log.as_deref())?;
            let options = WhatIfOptions::new(plan, since, now_ms(), usize::from(examples));
            let policy = db.engine()?.policy();
            let started = std::time::Instant::now();
            let report = what_if(&log, &policy, &hypothesis, &options)?;
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            println!(
                "{}",
                serde_json::to_string_pretty(&wire::WhatIf::new(report, covers, elapsed_ms))?
            );
            Ok(ExitCode::SUCCESS)
        }
        PlanCommand::Show { plan } => print(&wire::Plan::from(&store.plan(&plan)?)),
        PlanCommand::List => print(&wire::Plans {
            plans: store.plans()?.iter().map(wire::Plan::from).collect(),
        }),
    }
}

pub fn default(db: &DbArgs, cmd: DefaultCommand) -> anyhow::Result<ExitCode> {
    let store = db.store()?;
    match cmd {
        DefaultCommand::Set { key, value } => {
            store.set_default(&db.actor, &key, value, now_ms())?;
            print(&wire::DefaultLimit {
                entitlement_key: key,
                limit: value,
            })
        }
        DefaultCommand::List => print(&wire::Defaults {
            defaults: store.defaults()?.into_iter().collect(),
        }),
    }
}

pub fn user(db: &DbArgs, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let store = db.store()?;
    match cmd {
        UserCommand::Create { user, plan } => print(&wire::User::from(&store.create_user(
            &db.actor,
            &user,
            &plan,
            now_ms(),
        )?)),
        UserCommand::SetPlan { user, plan } => print(&wire::User::from(&store.set_user_plan(
            &db.actor,
            &user,
            &plan,
            now_ms(),
        )?)),
        UserCommand::Show { user } => print(&wire::UserDetails::read(&store, &user)?),
    }
}

/// An override as the service shows it, with its expiry also in RFC 3339.
#[derive(Debug, Serialize)]
struct OverrideOut {
    #[serde(flatten)]
    row: wire::Override,
    expires_at: Option<String>,
}

impl OverrideOut {
    fn at(row: &quota_store::OverrideRow, now: i64) -> Self {
        OverrideOut {
            row: wire::Override::at(row, now),
            expires_at: row.expires_at_ms.and_then(ms_rfc3339),
        }
    }
}

pub fn overrides(db: &DbArgs, cmd: OverrideCommand) -> anyhow::Result<ExitCode> {
    let store = db.store()?;
    let now = now_ms();
    match cmd {
        OverrideCommand::Set {
            user,
            key,
            value,
            expires_at,
            by,
        } => {
            let expires_at_ms = expires_at.as_deref().map(rfc3339_ms).transpose()?;
            if by.trim().is_empty() {
                bail!("`--by` must name who sets the override");
            }
            print(&OverrideOut::at(
                &store.set_override(&by, &user, &key, value, expires_at_ms, now)?,
                now,
            ))
        }
        OverrideCommand::Clear { user, key } => {
            let removed = store.clear_override(&db.actor, &user, &key, now)?;
            #[derive(Serialize)]
            struct Cleared {
                cleared: bool,
                r#override: Option<OverrideOut>,
            }
            print(&Cleared {
                cleared: removed.is_some(),
                r#override: removed.map(|r| OverrideOut::at(&r, now)),
            })
        }
        OverrideCommand::List { user } => {
            let rows = store.overrides(user.as_deref())?;
            #[derive(Serialize)]
            struct Overrides {
                overrides: Vec<OverrideOut>,
            }
            print(&Overrides {
                overrides: rows.iter().map(|r| OverrideOut::at(r, now)).collect(),
            })
        }
    }
}

pub fn audit(db: &DbArgs, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let entries = db.store()?.audit_log(args.limit)?;
    print(&wire::AuditLog {
        entries: entries.iter().map(wire::AuditEntry::from).collect(),
    })
}
