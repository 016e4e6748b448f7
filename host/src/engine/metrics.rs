//! In-process decision metrics: counts per (plan, key, status), policy
//! errors, and a latency histogram. The HTTP service exports them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use quota_policy_core::Status;

use super::Outcome;

/// Upper bounds of the latency buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000,
];

/// Decision metrics, shared by every thread of an engine.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    policy_errors: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

/// One counter: decisions with this plan, key and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionCount {
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
    /// Cumulative latency bucket counts (`le` = [`LATENCY_BUCKETS_US`]).
    pub latency_buckets: Vec<u64>,
    /// Decisions timed.
    pub latency_count: u64,
    /// Sum of decision latencies, microseconds.
    pub latency_sum_us: u64,
}

impl MetricsSnapshot {
    /// The total of decisions with `status`.
    pub fn count(&self, status: Status) -> u64 {
        self.decisions
            .iter()
            .filter(|c| c.status == status.as_str())
            .map(|c| c.count)
            .sum()
    }
}

impl Metrics {
    pub(crate) fn record(&self, outcome: &Outcome, latency: Duration) {
        let key = (
            outcome.plan_id.clone(),
            outcome.entitlement_key.clone(),
            outcome.decision.status.as_str(),
        );
        *self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert(0) += 1;
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        for (bound, bucket) in LATENCY_BUCKETS_US.iter().zip(&self.latency_buckets) {
            if us <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn record_policy_error(&self) {
        self.policy_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let decisions = self
            .decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(
                |((plan_id, entitlement_key, status), count)| DecisionCount {
                    plan_id: plan_id.clone(),
                    entitlement_key: entitlement_key.clone(),
                    status,
                    count: *count,
                },
            )
            .collect();
        MetricsSnapshot {
            decisions,
            policy_errors: self.policy_errors.load(Ordering::Relaxed),
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
