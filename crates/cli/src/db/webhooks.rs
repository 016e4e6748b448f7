//! `webhook` and `event`: webhook endpoints, threshold events and their
//! deliveries (docs/events.md). The running service sends them.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use quota_server::wire;
use quota_store::EventKind;
use quota_store::prelude::*;
use quota_webhooks::{Secret, check_url};

use super::{DbArgs, now_ms, print};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint; prints it with its secret, shown this once.
    Add {
        /// Where events are POSTed: https, resolving to public addresses.
        #[arg(long)]
        url: String,
        /// Event types to receive, comma-separated: threshold.reached, quota.blocked.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        /// A Standard Webhooks secret (`whsec_…`); default: a new random one.
        #[arg(long)]
        secret: Option<String>,
        /// Accept http and loopback or private addresses (the service must run with
        /// --webhooks-allow-private to send to them).
        #[arg(long)]
        allow_private: bool,
    },
    /// List the endpoints (without secrets).
    List,
    /// Remove an endpoint and its pending deliveries.
    Delete {
        /// The endpoint id (`wh_…`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Threshold events, newest first.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// An event's deliveries, with every attempt.
    Show {
        /// The event id (`msg_…`).
        id: String,
    },
    /// Send an event again, now, to every endpoint that receives its type.
    Redeliver {
        /// The event id (`msg_…`).
        id: String,
    },
}

pub fn webhook(db: &DbArgs, cmd: WebhookCommand) -> anyhow::Result<ExitCode> {
    let store = db.store()?;
    match cmd {
        WebhookCommand::Add {
            url,
            events,
            secret,
            allow_private,
        } => {
            let url = check_url(&url, allow_private)?;
            let secret = match secret {
                Some(secret) => {
                    Secret::parse(&secret)?;
                    secret
                }
                None => Secret::generate().context("no randomness for a secret")?,
            };
            let kinds = EventKind::parse_list(&events)?;
            let id = format!("wh_{:016x}", fastrand::u64(..));
            let webhook =
                store.create_webhook(&db.actor, &id, url.as_str(), &secret, &kinds, now_ms())?;
            print(&wire::CreatedWebhook {
                webhook: (&webhook).into(),
                secret,
            })
        }
        WebhookCommand::List => print(&wire::Webhooks {
            webhooks: store.webhooks()?.iter().map(wire::Webhook::from).collect(),
        }),
        WebhookCommand::Delete { id } => print(&wire::Webhook::from(&store.delete_webhook(
            &db.actor,
            &id,
            now_ms(),
        )?)),
    }
}

pub fn event(db: &DbArgs, cmd: EventCommand) -> anyhow::Result<ExitCode> {
    let store = db.store()?;
    match cmd {
        EventCommand::List { user, limit } => print(&wire::Events {
            events: store
                .events(user.as_deref(), limit)?
                .iter()
                .map(wire::Event::from)
                .collect(),
        }),
        EventCommand::Show { id } => {
            let deliveries = store.deliveries(&id)?;
            print(&wire::EventDeliveries {
                event_id: id,
                deliveries: deliveries.iter().map(wire::Delivery::from).collect(),
            })
        }
        EventCommand::Redeliver { id } => print(&wire::Redelivered {
            queued: store.redeliver(&id, now_ms())?,
        }),
    }
}
