//! `draft`, `segment`, `invite`, `check`: the domain, guarded by the engine.
//!
//! Success prints `{"<thing>": {...}, "outcome": {...}}` and exits 0. A quota
//! block prints the error body of docs/contract.md §4.3 on stdout and exits 3. Any other
//! error goes to stderr with exit 2.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use quota_domain::{Domain, Enforced};
use quota_engine::{EnforceError, QuotaRequest};
use serde_json::{Value, json};

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

fn report<T>(
    name: &str,
    to_json: impl Fn(&T) -> Value,
    result: Result<Enforced<T>, EnforceError>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(enforced) => {
            print(&json!({ name: to_json(&enforced.value), "outcome": enforced.outcome.to_json() }))
        }
        Err(EnforceError::QuotaExceeded(blocked)) => {
            println!("{}", blocked.to_json());
            Ok(ExitCode::from(EXIT_QUOTA_EXCEEDED))
        }
        Err(other) => Err(other.into()),
    }
}

pub fn draft(db: &DbArgs, cmd: DraftCommand) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    match cmd {
        DraftCommand::Create { user, title } => report(
            "draft",
            |d: &quota_store::Draft| d.to_json(),
            engine.create_draft(&user, &title),
        ),
    }
}

pub fn segment(db: &DbArgs, cmd: SegmentCommand) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    match cmd {
        SegmentCommand::Append { user, draft, body } => report(
            "segment",
            |s: &quota_store::Segment| s.to_json(),
            engine.append_segment(&user, draft, &body),
        ),
    }
}

pub fn invite(db: &DbArgs, cmd: InviteCommand) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    match cmd {
        InviteCommand::Create {
            user,
            draft,
            invitee,
        } => print(&json!({ "invite": engine.create_invite(&user, draft, &invitee)?.to_json() })),
        InviteCommand::Accept { user, invite } => report(
            "invite",
            |i: &quota_store::Invite| i.to_json(),
            engine.accept_invite(invite, &user),
        ),
    }
}

pub fn check(db: &DbArgs, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let engine = db.engine()?;
    let checked = engine
        .check(&QuotaRequest::new(args.user, args.key, args.requested))
        .map_err(|e| anyhow!(e.to_string()))?;
    print(&json!({ "result": checked.result(), "outcome": checked.outcome.to_json() }))
}
