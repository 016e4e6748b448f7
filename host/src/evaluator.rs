//! One live policy instance: calls with a deadline and a memory cap,
//! replaced after a trap or a bounded number of calls.

use std::collections::HashMap;
use std::time::Duration;

use quota_policy_core::{
    Decision, DecisionInput, LimitSource, MAX_REASON_BYTES, PolicyError, Status, UNLIMITED,
    UsageKeyInfo,
};
use wasmtime::{ResourceLimiter, Store, Trap};

use crate::bindings::{self, Policy};
use crate::error::CallError;
use crate::module::PolicyModule;

/// Most usage keys cached per evaluator before the cache starts over.
const USAGE_KEY_CACHE_MAX: usize = 1024;

/// Core instances, linear memories and tables one policy instance may
/// have. A compiled Rust guest has one memory, a few instances and tables;
/// languages that link several modules need more instances, not more memory.
const MAX_CORE_INSTANCES: usize = 32;
const MAX_MEMORIES: usize = 4;
const MAX_TABLES: usize = 16;
/// Elements one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Per-instance host state: the memory limiter.
pub(crate) struct StoreData {
    memory_cap: usize,
    memory_denied: bool,
    /// Linear memory the instance has, in bytes, over all its memories:
    /// every growth allowed so far.
    memory_bytes: usize,
    deadline: Duration,
}

impl ResourceLimiter for StoreData {
    /// The cap is on the sum of every memory of the instance (a component
    /// may hold several core instances, each with memories of its own).
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_bytes
            .saturating_add(desired.saturating_sub(current));
        if total > self.memory_cap {
            self.memory_denied = true;
            return Ok(false);
        }
        self.memory_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

struct Live {
    store: Store<StoreData>,
    policy: Policy,
    calls: u64,
}

/// One live instance of a policy, for one thread at a time.
///
/// Reuses its instance across calls (instantiating costs far more than a
/// decision); discards it after any trap, deadline or memory-cap failure,
/// and after [`crate::Limits::calls_per_instance`] calls.
pub struct Evaluator {
    module: PolicyModule,
    live: Option<Live>,
    usage_keys: HashMap<String, UsageKeyInfo>,
    instantiations: u64,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("module", &self.module)
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl Evaluator {
    pub(crate) fn new(module: PolicyModule) -> Result<Self, CallError> {
        let mut evaluator = Evaluator {
            module,
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

    /// The module this evaluator runs.
    pub fn module(&self) -> &PolicyModule {
        &self.module
    }

    fn live(&mut self) -> Result<&mut Live, CallError> {
        let limits = self.module.runtime().limits;
        if self
            .live
            .as_ref()
            .is_some_and(|l| l.calls >= limits.calls_per_instance)
        {
            self.live = None;
        }
        match &mut self.live {
            Some(live) => Ok(live),
            slot @ None => {
                let mut store = Store::new(
                    &self.module.runtime().engine,
                    StoreData {
                        memory_cap: limits.memory_bytes,
                        memory_denied: false,
                        memory_bytes: 0,
                        deadline: limits.call_deadline,
                    },
                );
                store.limiter(|data| data as &mut dyn ResourceLimiter);
                store.set_epoch_deadline(limits.deadline_ticks());
                self.instantiations += 1;
                let policy = self
                    .module
                    .pre()
                    .instantiate(&mut store)
                    .map_err(|e| classify(&store, e, Stage::Instantiate))?;
                Ok(slot.insert(Live {
                    store,
                    policy,
                    calls: 0,
                }))
            }
        }
    }

    /// Runs `f` on the live instance with a fresh deadline; discards the
    /// instance if the call fails.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&Policy, &mut Store<StoreData>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let ticks = self.module.runtime().limits.deadline_ticks();
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

/// What failed: making the instance, or a call on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Instantiate,
    Call,
}

fn classify(store: &Store<StoreData>, e: wasmtime::Error, stage: Stage) -> CallError {
    if store.data().memory_denied {
        return CallError::MemoryCap(store.data().memory_cap);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Deadline(store.data().deadline),
        Some(trap) => CallError::Trap(trap.to_string()),
        None if stage == Stage::Instantiate => CallError::Instantiate(format!("{e:#}")),
        None => CallError::Trap(format!("{e:#}")),
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

#[cfg(test)]
mod tests {
    use quota_policy_core::{DecisionInput, Override, PlanInfo, decide, usage_key};

    use crate::{Limits, Runtime};

    fn input(len: usize, n: i64) -> DecisionInput {
        let id = |c: char| c.to_string().repeat(len.max(1));
        DecisionInput {
            user_id: id('u'),
            plan_id: id('p'),
            entitlement_key: format!("{}.max", id('k')),
            requested: 1 + n % 3,
            now_ms: 1_700_000_000_000,
            usage: n % 7,
            r#override: (n % 2 == 0).then_some(Override {
                value: 4,
                expires_at_ms: None,
            }),
            plan: Some(PlanInfo {
                limit: Some(3),
                enforcement_enabled: true,
                grace_count: 2,
                rollout_percent: 100,
            }),
            default_limit: None,
            grace_used: n % 3,
        }
    }

    /// Ids from one byte to hundreds of KiB, mixed, on one instance: large
    /// guest allocations between small ones change no decision.
    #[test]
    fn ids_of_any_length_decide_like_the_native_core() {
        let runtime = Runtime::new(Limits::default()).unwrap();
        let policy = runtime.load(quota_reference_policy::COMPONENT).unwrap();
        let mut evaluator = policy.evaluator().unwrap();
        let lengths = [1, 40, 70_000, 3, 300_000, 12, 20_000, 20_000, 1, 65_000];
        for (n, &len) in (0..).zip(lengths.iter().cycle().take(40)) {
            let input = input(len, n);
            assert_eq!(evaluator.decide(&input).unwrap(), decide(&input));
            let key = &input.entitlement_key;
            assert_eq!(evaluator.usage_key(key).unwrap(), usage_key(key));
        }
        assert_eq!(evaluator.instantiations(), 1);
    }
}
