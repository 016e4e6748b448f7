//! A compiled policy ready to instantiate, and the per-instance host state
//! that caps its memory, instances and tables.

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, Trap};

use crate::bindings::{Policy, PolicyPre};
use crate::error::CallError;
use crate::limits::Limits;

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
    pub(crate) memory_bytes: usize,
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

/// A policy compiled and type-checked for an engine, with the limits its
/// instances run under. Shared by a module and its evaluators.
pub(crate) struct Compiled {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) pre: PolicyPre<StoreData>,
}

/// One instance and the store it lives in.
pub(crate) struct Live {
    pub(crate) store: Store<StoreData>,
    pub(crate) policy: Policy,
    pub(crate) calls: u64,
}

impl Compiled {
    /// A fresh instance under the limits, with a fresh call deadline.
    pub(crate) fn instantiate(&self) -> Result<Live, CallError> {
        let mut store = Store::new(
            &self.engine,
            StoreData {
                memory_cap: self.limits.memory_bytes,
                memory_denied: false,
                memory_bytes: 0,
                deadline: self.limits.call_deadline,
            },
        );
        store.limiter(|data| data as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(self.limits.deadline_ticks());
        let policy = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, e, Stage::Instantiate))?;
        Ok(Live {
            store,
            policy,
            calls: 0,
        })
    }
}

/// What failed: making the instance, or a call on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Instantiate,
    Call,
}

/// The host's reading of a failure inside `store`.
pub(crate) fn classify(store: &Store<StoreData>, e: wasmtime::Error, stage: Stage) -> CallError {
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
