//! One live policy instance: calls with a deadline and a memory cap,
//! replaced after a trap or a bounded number of calls.

use std::collections::HashMap;
use std::sync::Arc;

use quota_policy_core::{
    Decision, DecisionInput, LimitSource, MAX_REASON_BYTES, PolicyError, Status, UNLIMITED,
    UsageKeyInfo,
};
use wasmtime::Store;

use crate::bindings::{self, Policy};
use crate::error::CallError;
use crate::instance::{Compiled, Live, Stage, StoreData, classify};

/// Most usage keys cached per evaluator before the cache starts over.
const USAGE_KEY_CACHE_MAX: usize = 1024;

/// One live instance of a policy, for one thread at a time.
///
/// Reuses its instance across calls (instantiating costs far more than a
/// decision); discards it after any trap, deadline or memory-cap failure,
/// and after [`crate::Limits::calls_per_instance`] calls.
pub struct Evaluator {
    compiled: Arc<Compiled>,
    sha256: String,
    live: Option<Live>,
    usage_keys: HashMap<String, UsageKeyInfo>,
    instantiations: u64,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("policy_sha256", &self.sha256)
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    pub(crate) fn new(compiled: Arc<Compiled>, sha256: String) -> Result<Self, CallError> {
        let mut evaluator = Evaluator {
            compiled,
            sha256,
            live: None,
            usage_keys: HashMap::new(),
            instantiations: 0,
        };
        evaluator.live()?;
        Ok(evaluator)
    }

    /// How many instances this evaluator has created: one at first, one more
    /// after every failed call and every [`crate::Limits::calls_per_instance`] calls.
    pub fn instantiations(&self) -> u64 {
        self.instantiations
    }

    /// The linear memory of the live instance, in bytes (0 when there is
    /// none, e.g. after a failure discarded it).
    pub fn guest_memory_bytes(&self) -> usize {
        self.live
            .as_ref()
            .map_or(0, |live| live.store.data().memory_bytes)
    }

    /// The sha256 of the policy this evaluator runs.
    pub fn policy_sha256(&self) -> &str {
        &self.sha256
    }

    fn live(&mut self) -> Result<&mut Live, CallError> {
        let calls_per_instance = self.compiled.limits.calls_per_instance;
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.calls >= calls_per_instance)
        {
            self.live = None;
        }
        match &mut self.live {
            Some(live) => Ok(live),
            slot @ None => {
                self.instantiations += 1;
                Ok(slot.insert(self.compiled.instantiate()?))
            }
        }
    }

    /// Runs `f` on the live instance with a fresh deadline; discards the
    /// instance if the call fails.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&Policy, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let ticks = self.compiled.limits.deadline_ticks();
        let live = self.live()?;
        live.calls += 1;
        live.store.set_epoch_deadline(ticks);
        match f(&live.policy, &mut live.store) {
            Ok(value) => Ok(value),
            Err(e) => {
                let err = classify(&live.store, e, Stage::Call);
                self.live = None;
                Err(err)
            }
        }
    }

    /// Asks the policy which usage counter `key` reads (cached per evaluator).
    pub fn usage_key(&mut self, key: &str) -> Result<UsageKeyInfo, CallError> {
        if let Some(info) = self.usage_keys.get(key) {
            return Ok(info.clone());
        }
        let info = self
            .call(|policy, store| policy.quota_policy_engine().call_usage_key(store, key))
            .map(bindings::usage_key_from_wit)?;
        if self.usage_keys.len() >= USAGE_KEY_CACHE_MAX {
            self.usage_keys.clear();
        }
        self.usage_keys.insert(key.to_owned(), info.clone());
        Ok(info)
    }

    /// Asks the policy to decide. The outer error is the host's (trap,
    /// deadline, memory, impossible decision); the inner one the policy's.
    pub fn decide(
        &mut self,
        input: &DecisionInput,
    ) -> Result<Result<Decision, PolicyError>, CallError> {
        let outcome = self.call(|policy, store| {
            policy
                .quota_policy_engine()
                .call_decide(store, bindings::input_to_wit(input))
        })?;
        match outcome {
            Ok(decision) => {
                let decision = bindings::decision_from_wit(decision);
                check_invariants(input, &decision).map_err(CallError::InvalidDecision)?;
                Ok(Ok(decision))
            }
            Err(e) => {
                let e = bindings::error_from_wit(e);
                check_error(&e).map_err(CallError::InvalidDecision)?;
                Ok(Err(e))
            }
        }
    }
}

impl Evaluator {
    /// Decides and fills in the usage key: the decision, the policy's
    /// error, or why the policy could not be run.
    pub fn evaluate(&mut self, input: &DecisionInput) -> quota_policy_core::json::Evaluated {
        use quota_policy_core::json::Evaluated;
        let decided = self.decide(input).and_then(|outcome| match outcome {
            Ok(decision) => self
                .usage_key(&input.entitlement_key)
                .map(|key| Evaluated::Decision(decision, key)),
            Err(policy_error) => Ok(Evaluated::PolicyError(policy_error)),
        });
        decided.unwrap_or_else(|e| Evaluated::Unavailable(e.to_string()))
    }

    /// Evaluates one decision input in its JSON form (docs/contract.md §2.1) and returns
    /// the JSON output: a decision with its usage key, or an error object.
    pub fn evaluate_json(&mut self, value: &serde_json::Value) -> serde_json::Value {
        use quota_policy_core::json::{Evaluated, input_from_value};
        match input_from_value(value) {
            Ok(input) => self.evaluate(&input).to_value(),
            Err(e) => Evaluated::PolicyError(e).to_value(),
        }
    }
}

/// The checks every decision must pass, whatever policy made it: internally
/// consistent and true to its input. A policy chooses the limit, the grace
/// and whether enforcement applies; it cannot admit past its own numbers.
/// A decision that breaks one is refused: the request fails closed. The
/// list is documented for policy authors in the README ("Writing a policy").
fn check_invariants(input: &DecisionInput, d: &Decision) -> Result<(), String> {
    let over = d.limit != UNLIMITED && d.projected_usage > d.limit;
    let expected_overage = if over {
        d.projected_usage.saturating_sub(d.limit.max(d.usage))
    } else {
        0
    };
    let source_override = d.limit_source == LimitSource::Override;
    let broken = if d.usage != input.usage || d.requested != input.requested {
        "usage or requested not echoed"
    } else if d.projected_usage != input.usage.saturating_add(input.requested) {
        "projected_usage is not usage + requested"
    } else if d.limit < UNLIMITED {
        "limit below -1"
    } else if d.status == Status::Allow && over {
        "allow beyond the limit"
    } else if d.status == Status::WarnOnly && (!over || d.enforced) {
        "warn_only within the limit or while enforced"
    } else if d.status == Status::AllowGrace
        && !(over && d.enforced && d.overage > 0 && d.grace_to_consume == d.overage)
    {
        "allow_grace within the limit, not enforced, or not consuming its overage as grace"
    } else if d.status == Status::Block && !(over && d.enforced) {
        "block within the limit or while not enforced"
    } else if d.overage != expected_overage {
        "overage is not projected_usage - max(limit, usage) over a finite limit, 0 within it"
    } else if d.grace_to_consume < 0 || d.grace_remaining < 0 {
        "negative grace"
    } else if d.status != Status::AllowGrace && d.grace_to_consume != 0 {
        "grace to consume without allow_grace"
    } else if d.override_applied != source_override {
        "override_applied disagrees with limit_source"
    } else if (d.override_applied || d.override_expired) && input.r#override.is_none() {
        "an override applied or expired that the input does not have"
    } else if d.override_applied && d.override_expired {
        "an override both applied and expired"
    } else if d.reason.len() > MAX_REASON_BYTES {
        "reason longer than 1024 bytes"
    } else {
        return Ok(());
    };
    Err(broken.to_owned())
}

/// A policy's error is bounded like a reason.
fn check_error(e: &PolicyError) -> Result<(), String> {
    if e.message.len() > MAX_REASON_BYTES {
        return Err("error message longer than 1024 bytes".to_owned());
    }
    Ok(())
}
