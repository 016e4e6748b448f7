//! The enforcement engine: state from the store, decision from the policy,
//! mutation only when allowed, all in one write transaction.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use quota_host::{Evaluator, PolicyModule};
use quota_policy_core::{Decision, DecisionInput, LimitSource, Status, names};
use quota_store::{QuotaStore, QuotaTx};

use crate::clock::Clock;
use crate::error::{EnforceError, PolicyFailure};
use crate::loaded::Loaded;
use crate::metrics::{Metrics, Mode};
use crate::record::{DecisionRecord, DecisionSink, ShadowOutcome};
use crate::request::{Checked, FailMode, Outcome, QuotaRequest};
use crate::shadow::{log_shadow, shadow_verdict};
use crate::throttle::Throttle;

/// The engine over a store `S` and the active policy.
pub struct Engine<S: QuotaStore> {
    store: S,
    active: RwLock<Arc<Loaded>>,
    shadow: RwLock<Option<Arc<Loaded>>>,
    sinks: Vec<Arc<dyn DecisionSink>>,
    metrics: Arc<Metrics>,
    clock: Clock,
    fail_mode: FailMode,
    /// Keys without an explicit usage counter are warned about at most
    /// this often: a user can send any key to a soft check.
    fallback_warnings: Throttle,
}

impl<S: QuotaStore + std::fmt::Debug> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("policy", &self.policy())
            .field("fail_mode", &self.fail_mode)
            .finish_non_exhaustive()
    }
}

/// The least time between two warnings about fallback usage keys.
const FALLBACK_WARNING_EVERY_MS: i64 = 10_000;

/// How often [`Engine::guarded`] runs one request at most when the group
/// commits it read from keep failing, or the database keeps being
/// unavailable before the commit.
pub const ATTEMPTS: u32 = 3;

/// How many units a decision is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Units {
    /// Exactly those requested.
    Exactly,
    /// The most, up to those requested, that the policy admits (a lease).
    Most,
}

/// A decision made in a transaction, not reported yet.
#[derive(Debug)]
pub(crate) struct Decided {
    pub(crate) outcome: Outcome,
    pub(crate) input: DecisionInput,
    mode: Mode,
    latency: Duration,
}

impl<S: QuotaStore> Engine<S> {
    /// An engine deciding with `policy` over `store`, failing closed.
    pub fn new(store: S, policy: PolicyModule) -> Self {
        Engine {
            store,
            active: RwLock::new(Loaded::new(policy)),
            shadow: RwLock::new(None),
            sinks: Vec::new(),
            metrics: Arc::new(Metrics::default()),
            clock: Clock::system(),
            fail_mode: FailMode::Closed,
            fallback_warnings: Throttle::new(FALLBACK_WARNING_EVERY_MS),
        }
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The engine's clock, for everything else that times something.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Sets what happens when the policy cannot decide.
    pub fn with_fail_mode(mut self, fail_mode: FailMode) -> Self {
        self.fail_mode = fail_mode;
        self
    }

    /// Sends every enforce decision to `sink` too (e.g. a decision log,
    /// the per-minute counts), after the sinks given before.
    pub fn with_decision_sink(mut self, sink: Arc<dyn DecisionSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The active policy.
    pub fn policy(&self) -> PolicyModule {
        self.loaded().module.clone()
    }

    /// Makes `policy` the active one at once and returns the one it
    /// replaces. Decisions already started finish with the old one; every
    /// decision after this uses the new one.
    pub fn activate(&self, policy: PolicyModule) -> PolicyModule {
        let new = Loaded::new(policy);
        let old = std::mem::replace(
            &mut *self.active.write().unwrap_or_else(PoisonError::into_inner),
            new,
        );
        tracing::info!(policy_sha256 = %self.policy().sha256(), previous = %old.module.sha256(), "policy activated");
        old.module.clone()
    }

    /// The shadow policy, if one is set.
    pub fn shadow(&self) -> Option<PolicyModule> {
        self.shadow_loaded().map(|loaded| loaded.module.clone())
    }

    fn shadow_loaded(&self) -> Option<Arc<Loaded>> {
        self.shadow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets (or with `None` clears) the shadow policy: evaluated beside the
    /// active one on every decision, compared, counted, never obeyed.
    pub fn set_shadow(&self, policy: Option<PolicyModule>) {
        *self.shadow.write().unwrap_or_else(PoisonError::into_inner) = policy.map(Loaded::new);
    }

    /// Decision counters and latency.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine's current time, Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Reads the state for `request` in `tx` and asks the policy. Nothing
    /// is reported yet: [`Engine::report`] does that once the transaction
    /// is over, outside the writer.
    pub(crate) fn decide(
        &self,
        tx: &mut S::Tx,
        request: &QuotaRequest,
        mode: Mode,
    ) -> Result<Decided, EnforceError> {
        self.decide_units(tx, request, mode, Units::Exactly)
    }

    /// Like [`Engine::decide`] for the most units up to
    /// `request.requested` that the policy admits (see [`Units::Most`]).
    pub(crate) fn decide_most(
        &self,
        tx: &mut S::Tx,
        request: &QuotaRequest,
    ) -> Result<Decided, EnforceError> {
        self.decide_units(tx, request, Mode::Enforce, Units::Most)
    }

    fn decide_units(
        &self,
        tx: &mut S::Tx,
        request: &QuotaRequest,
        mode: Mode,
        units: Units,
    ) -> Result<Decided, EnforceError> {
        if request.requested < 1 {
            return Err(EnforceError::InvalidRequest(format!(
                "`requested` must be at least 1, got {}",
                request.requested
            )));
        }
        names::check_id("user_id", &request.user_id)
            .and_then(|()| names::check_entitlement_key(&request.entitlement_key))
            .map_err(|e| EnforceError::InvalidRequest(e.to_string()))?;
        let started = Instant::now();
        let loaded = self.loaded();
        let mut evaluator = loaded
            .take()
            .map_err(|e| self.policy_failed(&loaded, PolicyFailure::Call(e)))?;
        let result = self.decide_with(&loaded, &mut evaluator, tx, request, units);
        loaded.give_back(evaluator);
        let (outcome, input) = result?;
        Ok(Decided {
            outcome,
            input,
            mode,
            latency: started.elapsed(),
        })
    }

    /// Counts, logs and records a decision (and compares the shadow
    /// policy's), once the transaction it was made in has ended.
    pub(crate) fn report(&self, decided: Decided) {
        let Decided {
            outcome,
            input,
            mode,
            latency,
        } = decided;
        // Only keys the store configures for this user get a label of their
        // own: any other key a user sends is counted as `other`.
        let configured = input.r#override.is_some()
            || input.default_limit.is_some()
            || input.plan.as_ref().is_some_and(|p| p.limit.is_some());
        self.metrics.record(&outcome, configured, mode, latency);
        log_decision(&outcome, mode);
        let shadow = self.shadow_loaded().map(|shadow| {
            let verdict = shadow_verdict(&shadow, &input, &outcome);
            self.metrics.record_shadow(&verdict);
            let shadow = ShadowOutcome {
                policy_sha256: shadow.module.sha256().to_owned(),
                verdict,
            };
            log_shadow(&outcome, &shadow);
            shadow
        });
        if mode == Mode::Enforce
            && let Some((last, others)) = self.sinks.split_last()
        {
            let record = DecisionRecord {
                at_ms: input.now_ms,
                input,
                outcome,
                shadow,
            };
            for sink in others {
                sink.record(record.clone());
            }
            last.record(record);
        }
    }

    fn decide_with(
        &self,
        loaded: &Loaded,
        evaluator: &mut Evaluator,
        tx: &mut S::Tx,
        request: &QuotaRequest,
        units: Units,
    ) -> Result<(Outcome, DecisionInput), EnforceError> {
        let usage_key = evaluator
            .usage_key(&request.entitlement_key)
            .map_err(|e| self.policy_failed(loaded, PolicyFailure::Call(e)))?;
        // The usage key names a counter row: it keeps the key rule too.
        names::check_key("usage_key", &usage_key.usage_key)
            .map_err(|e| self.policy_failed(loaded, PolicyFailure::UsageKey(e.to_string())))?;
        if usage_key.fallback
            && let Some(suppressed) = self.fallback_warnings.permit(self.now_ms())
        {
            tracing::warn!(
                entitlement_key = %request.entitlement_key,
                usage_key = %usage_key.usage_key,
                suppressed,
                "entitlement key has no explicit usage counter; using the fallback"
            );
        }
        // One reading of the clock picks the period and dates the decision.
        let now_ms = self.now_ms();
        let state = tx
            .quota_state(
                &request.user_id,
                &request.entitlement_key,
                &usage_key.usage_key,
                now_ms,
            )
            .map_err(EnforceError::Store)?;
        let mut input = DecisionInput {
            user_id: request.user_id.clone(),
            plan_id: state.plan_id.clone(),
            entitlement_key: request.entitlement_key.clone(),
            requested: request.requested,
            // A store shared by a fleet has one clock for all its hosts.
            now_ms: state.now_ms.unwrap_or(now_ms),
            // Units held by open leases count as used until settled.
            usage: state.usage.saturating_add(state.reserved),
            r#override: state.r#override,
            plan: Some(state.plan),
            default_limit: state.default_limit,
            grace_used: state.grace_used.saturating_add(state.reserved_grace),
        };
        let (decision, failed_open) = match units {
            Units::Most => (self.most_admitted(loaded, evaluator, &mut input)?, false),
            Units::Exactly => self.decide_exactly(loaded, evaluator, &input)?,
        };
        let outcome = Outcome {
            user_id: request.user_id.clone(),
            plan_id: state.plan_id,
            entitlement_key: request.entitlement_key.clone(),
            usage_key,
            decision,
            policy_sha256: loaded.module.sha256().to_owned(),
            failed_open,
            reserved: state.reserved,
            period: state.period,
            has_thresholds: state.has_thresholds,
        };
        Ok((outcome, input))
    }

    /// The policy's decision for `input`, and whether it is the engine's
    /// own admission because the policy failed and the engine fails open.
    fn decide_exactly(
        &self,
        loaded: &Loaded,
        evaluator: &mut Evaluator,
        input: &DecisionInput,
    ) -> Result<(Decision, bool), EnforceError> {
        match evaluator.decide(input) {
            Ok(Ok(decision)) => Ok((decision, false)),
            Ok(Err(policy_error)) => {
                Err(self.policy_failed(loaded, PolicyFailure::Rejected(policy_error)))
            }
            Err(call_error) => match self.fail_mode {
                FailMode::Closed => {
                    Err(self.policy_failed(loaded, PolicyFailure::Call(call_error)))
                }
                FailMode::Open => {
                    self.metrics.record_policy_error();
                    tracing::error!(error = %call_error, "policy unavailable; admitting because the engine fails open");
                    Ok((fail_open_decision(input, &call_error.to_string()), true))
                }
            },
        }
    }

    /// The policy's decision for the most units, from 1 to
    /// `input.requested`, that it admits; its decision for 1 unit when it
    /// admits none. `input.requested` is left at the units decided. The
    /// largest amount is tried first, then a binary search, which assumes
    /// that a policy admitting k units admits fewer; every answer is the
    /// policy's own decision for the units it names. Fails closed: a
    /// failing policy never grants units, whatever the fail mode.
    fn most_admitted(
        &self,
        loaded: &Loaded,
        evaluator: &mut Evaluator,
        input: &mut DecisionInput,
    ) -> Result<Decision, EnforceError> {
        let mut ask = |input: &mut DecisionInput, units: i64| {
            input.requested = units;
            match evaluator.decide(input) {
                Ok(Ok(decision)) => Ok(decision),
                Ok(Err(policy_error)) => {
                    Err(self.policy_failed(loaded, PolicyFailure::Rejected(policy_error)))
                }
                Err(call_error) => Err(self.policy_failed(loaded, PolicyFailure::Call(call_error))),
            }
        };
        let most = input.requested;
        let first = ask(input, most)?;
        if first.status != Status::Block || most == 1 {
            return Ok(first);
        }
        // Admitted at `low` (0: none known), blocked at `high`.
        let (mut low, mut high) = (0, most);
        let (mut admitted, mut blocked) = (None, first);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            let decision = ask(input, middle)?;
            if decision.status == Status::Block {
                high = middle;
                blocked = decision;
            } else {
                low = middle;
                admitted = Some(decision);
            }
        }
        match admitted {
            Some(decision) => {
                input.requested = low;
                Ok(decision)
            }
            // Nothing admitted: the search ended asking for 1 unit.
            None => Ok(blocked),
        }
    }

    pub(crate) fn policy_failed(&self, loaded: &Loaded, failure: PolicyFailure) -> EnforceError {
        self.metrics.record_policy_error();
        tracing::error!(error = %failure, policy_sha256 = %loaded.module.sha256(), "policy unavailable; failing closed");
        EnforceError::PolicyUnavailable(failure)
    }

    /// The soft check: the same decision, read-only, nothing consumed.
    pub fn check(&self, request: &QuotaRequest) -> Result<Checked, EnforceError> {
        let mut tx = self.store.begin_read()?;
        let decided = self.decide(&mut tx, request, Mode::Check)?;
        tx.rollback()?;
        let outcome = decided.outcome.clone();
        self.report(decided);
        let d = &outcome.decision;
        let ok = d.limit == quota_policy_core::UNLIMITED || d.projected_usage <= d.limit;
        Ok(Checked { ok, outcome })
    }
}

fn fail_open_decision(input: &DecisionInput, why: &str) -> Decision {
    Decision {
        status: Status::WarnOnly,
        limit: quota_policy_core::UNLIMITED,
        limit_source: LimitSource::None,
        override_applied: false,
        override_expired: false,
        usage: input.usage,
        requested: input.requested,
        projected_usage: input.usage.saturating_add(input.requested),
        overage: 0,
        enforced: false,
        grace_to_consume: 0,
        grace_remaining: 0,
        reason: format!(
            "{}: the policy is unavailable ({why}); admitted because the engine fails open.",
            input.entitlement_key
        ),
    }
}

fn log_decision(outcome: &Outcome, mode: Mode) {
    let d = &outcome.decision;
    tracing::info!(
        target: "quota::decision",
        mode = mode.as_str(),
        user_id = %outcome.user_id,
        plan_id = %outcome.plan_id,
        entitlement_key = %outcome.entitlement_key,
        usage_key = %outcome.usage_key.usage_key,
        usage = d.usage,
        requested = d.requested,
        limit = d.limit,
        limit_source = d.limit_source.as_str(),
        status = d.status.as_str(),
        grace_to_consume = d.grace_to_consume,
        grace_remaining = d.grace_remaining,
        policy_sha256 = %outcome.policy_sha256,
        failed_open = outcome.failed_open,
        "decision"
    );
}
