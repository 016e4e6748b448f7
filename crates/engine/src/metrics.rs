//! In-process decision metrics: counts per (plan, key, status), policy
//! errors, and a latency histogram. The HTTP service exports them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use quota_policy_core::Status;

use crate::record::ShadowVerdict;
use crate::request::Outcome;

const STATUSES: [Status; 4] = [
    Status::Allow,
    Status::AllowGrace,
    Status::WarnOnly,
    Status::Block,
];

fn status_index(status: Status) -> usize {
    match status {
        Status::Allow => 0,
        Status::AllowGrace => 1,
        Status::WarnOnly => 2,
        Status::Block => 3,
    }
}

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000,
];

/// Why a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// To guard a mutation ([`crate::Engine::enforce_with`]).
    Enforce,
    /// For a soft check ([`crate::Engine::check`]): nothing was applied.
    Check,
}

impl Mode {
    /// `enforce` or `check`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Check => "check",
        }
    }

    fn offset(self) -> usize {
        match self {
            Mode::Enforce => 0,
            Mode::Check => STATUSES.len(),
        }
    }
}

const MODES: [Mode; 2] = [Mode::Enforce, Mode::Check];

/// Decision metrics, shared by every thread of an engine.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Counts by plan, then key, then mode and status (enforce statuses in
    /// [`STATUSES`] order, then check statuses); nested so that recording
    /// looks up borrowed strings without allocating.
    decisions: Mutex<HashMap<String, HashMap<String, [u64; 8]>>>,
    policy_errors: AtomicU64,
    shadow_same: AtomicU64,
    shadow_diverged: AtomicU64,
    shadow_errors: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

/// One counter: decisions with this plan, key, mode and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCount {
    /// `enforce` or `check`.
    pub mode: &'static str,
    /// The plan.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// `allow`, `allow_grace`, `warn_only` or `block`.
    pub status: &'static str,
    /// How many.
    pub count: u64,
}

/// A copy of the metrics at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Decision counts, by plan, key, status.
    pub decisions: Vec<DecisionCount>,
    /// Calls where the policy could not decide.
    pub policy_errors: u64,
    /// Shadow decisions equal to the active policy's.
    pub shadow_same: u64,
    /// Shadow decisions that differed from the active policy's.
    pub shadow_diverged: u64,
    /// Shadow calls that failed (they never affect a request).
    pub shadow_errors: u64,
    /// Cumulative latency bucket counts (`le` = [`LATENCY_BUCKETS_US`]).
    pub latency_buckets: Vec<u64>,
    /// Decisions timed.
    pub latency_count: u64,
    /// Sum of decision latencies, microseconds.
    pub latency_sum_us: u64,
}

impl MetricsSnapshot {
    /// The total of enforce decisions with `status`.
    pub fn count(&self, status: Status) -> u64 {
        self.count_mode(Mode::Enforce, status)
    }

    /// The total of decisions made in `mode` with `status`.
    pub fn count_mode(&self, mode: Mode, status: Status) -> u64 {
        self.decisions
            .iter()
            .filter(|c| c.mode == mode.as_str() && c.status == status.as_str())
            .map(|c| c.count)
            .sum()
    }
}

/// The key label of decisions on keys the store does not configure for
/// the user (no plan limit, default or override): any key a user sends
/// would otherwise become a label of its own.
pub const OTHER_KEY: &str = "other";

impl Metrics {
    /// Counts a decision; `configured` says whether the store names its key
    /// for the user (else it is counted under [`OTHER_KEY`]).
    pub(crate) fn record(
        &self,
        outcome: &Outcome,
        configured: bool,
        mode: Mode,
        latency: Duration,
    ) {
        {
            let key = if configured {
                outcome.entitlement_key.as_str()
            } else {
                OTHER_KEY
            };
            let mut decisions = self
                .decisions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let by_key = match decisions.get_mut(&outcome.plan_id) {
                Some(by_key) => by_key,
                None => decisions.entry(outcome.plan_id.clone()).or_default(),
            };
            let counts = match by_key.get_mut(key) {
                Some(counts) => counts,
                None => by_key.entry(key.to_owned()).or_default(),
            };
            counts[mode.offset() + status_index(outcome.decision.status)] += 1;
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        for (bound, bucket) in LATENCY_BUCKETS_US.iter().zip(&self.latency_buckets) {
            if us <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn record_shadow(&self, verdict: &ShadowVerdict) {
        let counter = match verdict {
            ShadowVerdict::Same => &self.shadow_same,
            ShadowVerdict::Diverged { .. } => &self.shadow_diverged,
            ShadowVerdict::Failed(_) => &self.shadow_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_policy_error(&self) {
        self.policy_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut sorted = BTreeMap::new();
        for (plan_id, by_key) in self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            for (key, counts) in by_key {
                sorted.insert((plan_id.clone(), key.clone()), *counts);
            }
        }
        let decisions = sorted
            .into_iter()
            .flat_map(|((plan_id, entitlement_key), counts)| {
                let labels = MODES
                    .iter()
                    .flat_map(|mode| STATUSES.iter().map(move |status| (*mode, *status)));
                labels
                    .zip(counts)
                    .filter(|(_, count)| *count > 0)
                    .map(move |((mode, status), count)| DecisionCount {
                        mode: mode.as_str(),
                        plan_id: plan_id.clone(),
                        entitlement_key: entitlement_key.clone(),
                        status: status.as_str(),
                        count,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        MetricsSnapshot {
            decisions,
            policy_errors: self.policy_errors.load(Ordering::Relaxed),
            shadow_same: self.shadow_same.load(Ordering::Relaxed),
            shadow_diverged: self.shadow_diverged.load(Ordering::Relaxed),
            shadow_errors: self.shadow_errors.load(Ordering::Relaxed),
            latency_buckets: self
                .latency_buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            latency_count: self.latency_count.load(Ordering::Relaxed),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
        }
    }
}
