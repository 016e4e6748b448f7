//! The decision log: every enforce decision's input, output, policy hash
//! and time, written to SQLite off the request path and kept within a
//! retention by count and age. Best kept in a database file of its own
//! (`quota serve` does), so its writes never wait for, or hold up, the
//! guarded transactions.
//!
//! Decisions are queued (bounded; a full queue drops and counts rather
//! than slow requests down) and written by one background thread in
//! batches. A decision is logged once made, whether its transaction then
//! commits or not: a blocked request is a decision too. A killed process
//! loses at most the decisions still queued.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use quota_policy_core::json::{DecisionJson, input_to_value};
use quota_store::{DecisionLogEntry, DecisionLogStore};

use crate::record::{DecisionRecord, DecisionSink, ShadowVerdict};

/// Decisions waiting to be written before new ones are dropped.
const QUEUE: usize = 65_536;
/// Most decisions written in one transaction.
const BATCH: usize = 1_024;
/// How often old entries are pruned, in ms of the decisions' own time.
const PRUNE_EVERY_MS: i64 = 1_000;

/// How much of the log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest entries kept.
    pub max_entries: usize,
    /// Entries older than this are deleted.
    pub max_age: Duration,
}

impl Default for Retention {
    /// 100,000 entries, 7 days.
    fn default() -> Self {
        Retention {
            max_entries: 100_000,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

enum Message {
    Record(Box<DecisionRecord>),
    Flush(SyncSender<()>),
}

/// The decision log's writer. Give it to [`crate::Engine::with_decision_sink`].
#[derive(Debug)]
pub struct DecisionLog<L> {
    queue: SyncSender<Message>,
    dropped: AtomicU64,
    store: L,
}

impl<L: DecisionLogStore + Clone + Send + Sync + 'static> DecisionLog<L> {
    /// Starts the writer thread over `store`. Retention is measured in
    /// the decisions' own time (the engine's clock when each was made):
    /// the writer prunes right after writing a decision that comes a
    /// second or more (of that time) after the last prune, keeping what
    /// `retention` allows as of that decision. Batches are split at those
    /// decisions, so what is kept depends only on the decisions and their
    /// order, never on how they were batched or when the thread ran.
    pub fn start(store: L, retention: Retention) -> std::io::Result<Self> {
        let (queue, receiver) = sync_channel(QUEUE);
        let writer = store.clone();
        std::thread::Builder::new()
            .name("quota-decision-log".into())
            .spawn(move || write_forever(&writer, retention, &receiver))?;
        Ok(DecisionLog {
            queue,
            dropped: AtomicU64::new(0),
            store,
        })
    }

    /// The database the log is written to (read it with
    /// [`DecisionLogStore::decisions`]).
    pub fn store(&self) -> &L {
        &self.store
    }

    /// Waits (up to `timeout`) until every decision queued so far is
    /// written, and pruned if a prune was due; false when the writer did
    /// not answer in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = sync_channel(1);
        self.queue.send(Message::Flush(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }

    /// Decisions dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl<L: DecisionLogStore + Clone + Send + Sync + 'static> DecisionSink for DecisionLog<L> {
    fn record(&self, record: DecisionRecord) {
        match self.queue.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("the decision log cannot keep up; dropping entries");
                }
            }
        }
    }
}

fn write_forever(
    store: &impl DecisionLogStore,
    retention: Retention,
    receiver: &Receiver<Message>,
) {
    let mut last_prune: Option<i64> = None;
    while let Ok(first) = receiver.recv() {
        let mut entries = Vec::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(record) => entries.push(entry(&record)),
                Message::Flush(ack) => acks.push(ack),
            }
            next = if entries.len() < BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        // Written up to each decision at which a prune is due, then pruned
        // as of it; all before the flushes are answered, so a flush sees
        // the log as retention leaves it.
        let mut rest = entries.as_slice();
        while !rest.is_empty() {
            let due = rest.iter().position(|e| {
                last_prune.is_none_or(|at| e.at_ms.saturating_sub(at) >= PRUNE_EVERY_MS)
            });
            let (now, part) = match due {
                Some(i) => (Some(rest[i].at_ms), &rest[..=i]),
                None => (None, rest),
            };
            rest = &rest[part.len()..];
            if let Err(e) = store.append_decisions(part) {
                tracing::error!(error = %e, lost = part.len(), "cannot write the decision log");
            }
            if let Some(now) = now {
                last_prune = Some(now);
                let age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
                let before = now.saturating_sub(age_ms);
                if let Err(e) = store.prune_decisions(retention.max_entries, before) {
                    tracing::warn!(error = %e, "cannot prune the decision log");
                }
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// A decision as a log row.
pub fn entry(record: &DecisionRecord) -> DecisionLogEntry {
    let outcome = &record.outcome;
    let output = DecisionJson::new(&outcome.decision, &outcome.usage_key).to_value();
    let (shadow_sha256, shadow_verdict, shadow_json) = match &record.shadow {
        None => (None, None, None),
        Some(shadow) => {
            let (verdict, json) = match &shadow.verdict {
                ShadowVerdict::Same => ("same", None),
                ShadowVerdict::Diverged {
                    decision,
                    usage_key,
                } => (
                    "diverged",
                    Some(
                        DecisionJson::new(decision, usage_key)
                            .to_value()
                            .to_string(),
                    ),
                ),
                ShadowVerdict::Failed(why) => (
                    "failed",
                    Some(serde_json::json!({ "error": why }).to_string()),
                ),
            };
            (
                Some(shadow.policy_sha256.clone()),
                Some(verdict.to_owned()),
                json,
            )
        }
    };
    DecisionLogEntry {
        id: 0,
        at_ms: record.at_ms,
        user_id: outcome.user_id.clone(),
        plan_id: outcome.plan_id.clone(),
        entitlement_key: outcome.entitlement_key.clone(),
        status: outcome.decision.status.as_str().to_owned(),
        policy_sha256: outcome.policy_sha256.clone(),
        input_json: input_to_value(&record.input).to_string(),
        output_json: output.to_string(),
        shadow_sha256,
        shadow_verdict,
        shadow_json,
        period_start_ms: outcome.period.map(|p| p.start_ms),
    }
}
