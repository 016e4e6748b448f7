//! In-process decision metrics, as Prometheus collectors (the
//! `prometheus` crate): decisions by mode, plan, key and status, policy
//! errors, shadow verdicts and a latency histogram, in one [`Registry`]
//! the HTTP service exports beside its own. A [`MetricsSnapshot`] reads
//! the counts back for `/admin/stats` and tests.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use quota_policy_core::Status;

use crate::record::ShadowVerdict;
use crate::request::Outcome;

const STATUSES: [Status; 4] = [
    Status::Allow,
    Status::AllowGrace,
    Status::WarnOnly,
    Status::Block,
];

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
}

const MODES: [Mode; 2] = [Mode::Enforce, Mode::Check];

/// Decision metrics, shared by every thread of an engine.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `quota_decisions_total{mode, plan, key, status}`.
    decisions: IntCounterVec,
    /// `quota_policy_errors_total`.
    policy_errors: IntCounter,
    /// `quota_shadow_decisions_total{verdict}`.
    shadow: IntCounterVec,
    /// `quota_decision_latency_seconds`.
    latency: Histogram,
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

/// A copy of the counts at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// Decision counts, by plan, key, mode and status.
    pub decisions: Vec<DecisionCount>,
    /// Calls where the policy could not decide.
    pub policy_errors: u64,
    /// Shadow decisions equal to the active policy's.
    pub shadow_same: u64,
    /// Shadow decisions that differed from the active policy's.
    pub shadow_diverged: u64,
    /// Shadow calls that failed (they never affect a request).
    pub shadow_errors: u64,
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

/// The shadow verdict labels, each exported from the start.
const VERDICTS: [&str; 3] = ["same", "diverged", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in a registry of their own.
    #[allow(
        clippy::expect_used,
        reason = "the names, labels and buckets are constants the tests register"
    )]
    pub fn new() -> Self {
        let decisions = IntCounterVec::new(
            Opts::new(
                "quota_decisions_total",
                "Decisions by mode (enforce or check), plan, entitlement and status.",
            ),
            &["mode", "plan", "key", "status"],
        )
        .expect("valid decision counter");
        let policy_errors = IntCounter::new(
            "quota_policy_errors_total",
            "Calls where the policy could not decide.",
        )
        .expect("valid error counter");
        let shadow = IntCounterVec::new(
            Opts::new(
                "quota_shadow_decisions_total",
                "Shadow policy evaluations by verdict against the active policy.",
            ),
            &["verdict"],
        )
        .expect("valid shadow counter");
        for verdict in VERDICTS {
            shadow.with_label_values(&[verdict]);
        }
        #[allow(clippy::cast_precision_loss, reason = "bucket bounds are small")]
        let buckets = LATENCY_BUCKETS_US
            .iter()
            .map(|us| *us as f64 / 1e6)
            .collect();
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "quota_decision_latency_seconds",
                "Time to read state and decide.",
            )
            .buckets(buckets),
        )
        .expect("valid latency histogram");
        let registry = Registry::new();
        let collectors: [Box<dyn Collector>; 4] = [
            Box::new(decisions.clone()),
            Box::new(policy_errors.clone()),
            Box::new(shadow.clone()),
            Box::new(latency.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("distinct metric names");
        }
        Metrics {
            registry,
            decisions,
            policy_errors,
            shadow,
            latency,
        }
    }

    /// The registry holding every decision metric, for an exporter.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts a decision; `configured` says whether the store names its key
    /// for the user (else it is counted under [`OTHER_KEY`]).
    pub(crate) fn record(
        &self,
        outcome: &Outcome,
        configured: bool,
        mode: Mode,
        latency: Duration,
    ) {
        let key = if configured {
            outcome.entitlement_key.as_str()
        } else {
            OTHER_KEY
        };
        self.decisions
            .with_label_values(&[
                mode.as_str(),
                outcome.plan_id.as_str(),
                key,
                outcome.decision.status.as_str(),
            ])
            .inc();
        self.latency.observe(latency.as_secs_f64());
    }

    pub(crate) fn record_shadow(&self, verdict: &ShadowVerdict) {
        let label = match verdict {
            ShadowVerdict::Same => "same",
            ShadowVerdict::Diverged { .. } => "diverged",
            ShadowVerdict::Failed(_) => "failed",
        };
        self.shadow.with_label_values(&[label]).inc();
    }

    pub(crate) fn record_policy_error(&self) {
        self.policy_errors.inc();
    }

    /// The current counts.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut decisions = Vec::new();
        for family in self.decisions.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map_or("", |l| l.value())
                };
                let (Some(mode), Some(status)) = (
                    MODES.into_iter().find(|m| m.as_str() == label("mode")),
                    STATUSES.into_iter().find(|s| s.as_str() == label("status")),
                ) else {
                    continue;
                };
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "an integer counter's value"
                )]
                let count = metric.get_counter().get_value() as u64;
                let order = (mode as usize, status as usize);
                decisions.push((
                    order,
                    DecisionCount {
                        mode: mode.as_str(),
                        plan_id: label("plan").to_owned(),
                        entitlement_key: label("key").to_owned(),
                        status: status.as_str(),
                        count,
                    },
                ));
            }
        }
        // By plan, key, then mode and status in their declared order.
        decisions.sort_by(|(a, x), (b, y)| {
            (&x.plan_id, &x.entitlement_key, a).cmp(&(&y.plan_id, &y.entitlement_key, b))
        });
        let shadow = |verdict: &str| self.shadow.with_label_values(&[verdict]).get();
        MetricsSnapshot {
            decisions: decisions.into_iter().map(|(_, count)| count).collect(),
            policy_errors: self.policy_errors.get(),
            shadow_same: shadow("same"),
            shadow_diverged: shadow("diverged"),
            shadow_errors: shadow("failed"),
        }
    }
}
