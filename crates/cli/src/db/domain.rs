//! `draft`, `segment`, `invite`, `consume`, `check`: the domain and metered
//! entitlements, guarded by the engine.
//!
//! Success prints `{"<thing>": {...}, "outcome": {...}}` and exits 0. A quota
//! block prints the error body of docs/contract.md §4.3 on stdout and exits 3. Any other
//! error goes to stderr with exit 2.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use quota_domain::{Domain, Enforced};
use quota_engine::{EnforceError, QuotaRequest};
use quota_server::wire;
use serde::Serialize;

use super::{DbArgs, print};

/// Exit status of a quota block.
const EXIT_QUOTA_EXCEEDED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum DraftCommand {
    /// Create a draft (uses the user's `drafts.max`).
    Create {
        /// The owner.
        #[arg(long)]
        user: String,
        /// The title.
        #[arg(long)]
        title: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SegmentCommand {
    /// Append a segment to a draft the user owns or collaborates on (uses the user's `segments.max`).
    Append {
        /// The acting user.
        #[arg(long)]
        user: String,
        /// The draft id.
        #[arg(long)]
        draft: i64,
        /// The segment's text.
        #[arg(long)]
        body: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Invite a user to collaborate on your draft (uses no quota).
    Create {
        /// The draft's owner.
        #[arg(long)]
        user: String,
        /// The draft id.
        #[arg(long)]
        draft: i64,
        /// Who to invite.
        #[arg(long)]
        invitee: String,
    },
    /// Accept an invite addressed to you (uses the inviter's `collaborators.max`).
    Accept {
        /// The invitee.
        #[arg(long)]
        user: String,
        /// The invite id.
        #[arg(long)]
        invite: i64,
    },
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The user.
    #[arg(long)]
    user: String,
    /// The entitlement key, e.g. `drafts.max`.
    #[arg(long)]
    key: String,
    /// Units the action would use.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    requested: i64,
}

/// A guarded action's answer: `{"<name>": {...}, "outcome": {...}}`, or
/// the block's error body with exit 3.
fn report<T, W: Serialize + for<'a> From<&'a T>>(
    name: &str,
    result: Result<Enforced<T>, EnforceError>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(enforced) => {
            let mut out = serde_json::Map::new();
            out.insert(
                name.to_owned(),
                serde_json::to_value(W::from(&enforced.value))?,
            );
            out.insert(
                "outcome".to_owned(),
                serde_json::to_value(wire::Outcome::from(&enforced.outcome))?,
            );
            print(&out)
        }
        Err(other) => refused(other),
    }
}

/// A guarded action that failed: a block's error body with exit 3, or the
/// error.
fn refused(error: EnforceError) -> anyhow::Result<ExitCode> {
    match error {
        EnforceError::QuotaExceeded(blocked) => {
            println!(
                "{}",
                serde_json::to_string(&wire::ErrorBody::quota_exceeded(&blocked))?
            );
            Ok(ExitCode::from(EXIT_QUOTA_EXCEEDED))
        }
        other => Err(other.into()),
    }
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The user whose units.
    #[arg(long)]
    user: String,
    /// The metered entitlement key, e.g. `api.calls` (not one a domain
    /// action counts: `drafts.max`, `segments.max`, `collaborators.max`).
    #[arg(long)]
    key: String,
    /// Units to consume.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    requested: i64,
}

/// Consumes units of a metered entitlement: decided with open leases'
/// units counted as used, usage and grace recorded in one transaction.
pub fn consume(db: &DbArgs, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    let consumed = engine
        .guarded(|g| quota_metering::consume(g, &args.user, &args.key, args.requested)?.commit());
    match consumed {
        Ok(outcome) => print(&wire::Consumed {
            user_id: args.user,
            entitlement_key: args.key,
            requested: args.requested,
            outcome: (&outcome).into(),
        }),
        Err(error) => refused(error),
    }
}

pub fn draft(db: &DbArgs, cmd: DraftCommand) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    match cmd {
        DraftCommand::Create { user, title } => {
            report::<_, wire::Draft>("draft", engine.create_draft(&user, &title))
        }
    }
}

pub fn segment(db: &DbArgs, cmd: SegmentCommand) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    match cmd {
        SegmentCommand::Append { user, draft, body } => {
            report::<_, wire::Segment>("segment", engine.append_segment(&user, draft, &body))
        }
    }
}

pub fn invite(db: &DbArgs, cmd: InviteCommand) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    match cmd {
        InviteCommand::Create {
            user,
            draft,
            invitee,
        } => print(&wire::InviteCreated {
            invite: (&engine.create_invite(&user, draft, &invitee)?).into(),
        }),
        InviteCommand::Accept { user, invite } => {
            report::<_, wire::Invite>("invite", engine.accept_invite(invite, &user))
        }
    }
}

pub fn check(db: &DbArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    let checked = engine
        .check(&QuotaRequest::new(args.user, args.key, args.requested))
        .map_err(|e| anyhow!(e.to_string()))?;
    print(&wire::Check::from(&checked))
}
