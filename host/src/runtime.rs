//! The engine, its sandbox limits, and the epoch ticker behind call deadlines.

use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel};

use crate::budget::CompileBudget;
use crate::error::LoadError;
use crate::module::PolicyModule;

/// Sandbox limits for every policy call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock budget of one call, enforced by epoch interruption with a
    /// resolution of [`Limits::tick`].
    pub call_deadline: Duration,
    /// How often the engine's epoch advances.
    pub tick: Duration,
    /// Largest linear memory a guest may grow to, in bytes.
    pub memory_bytes: usize,
    /// Native stack a guest may use, in bytes.
    pub stack_bytes: usize,
    /// Calls after which an instance is discarded for a fresh one, so that
    /// guest heap growth cannot accumulate.
    pub calls_per_instance: u64,
    /// What a component may hold to be compiled at all.
    pub compile: CompileBudget,
}

impl Default for Limits {
    /// 50 ms per call (a decision takes about a microsecond), 1 ms
    /// ticks, 16 MiB of memory over all of an instance's memories, 512 KiB
    /// of stack, 100 000 calls per instance, the default compile budget.
    fn default() -> Self {
        Limits {
            call_deadline: Duration::from_millis(50),
            tick: Duration::from_millis(1),
            memory_bytes: 16 << 20,
            stack_bytes: 512 << 10,
            calls_per_instance: 100_000,
            compile: CompileBudget::default(),
        }
    }
}

impl Limits {
    /// The deadline in epoch ticks, rounded up, plus one for the partial
    /// tick in progress when the call starts.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.tick.as_nanos().max(1);
        let ticks = self.call_deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

/// The policy runtime: a configured wasmtime engine and its limits.
///
/// Cheap to clone; clones share the engine. A background thread advances
/// the engine's epoch every [`Limits::tick`] and stops by itself once the
/// engine and every module loaded from it are dropped.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the given sandbox limits.
    pub fn new(limits: Limits) -> Result<Self, LoadError> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Policies are synchronous and pure: the concurrency machinery
            // only costs time on every call.
            .concurrency_support(false)
            .epoch_interruption(true)
            .max_wasm_stack(limits.stack_bytes)
            // A trap's message is enough; no wasm backtraces.
            .wasm_backtrace_max_frames(None)
            .cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        spawn_ticker(&engine, limits.tick).map_err(|e| LoadError::Engine(e.to_string()))?;
        Ok(Runtime { engine, limits })
    }

    /// The wasmtime engine policies are compiled for, with its
    /// configuration, for a host that runs other components beside them the
    /// same way (a store made on it needs an epoch deadline: the engine
    /// interrupts on epochs).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles and type-checks a component as a policy.
    pub fn load(&self, bytes: &[u8]) -> Result<PolicyModule, LoadError> {
        PolicyModule::load(self, bytes)
    }
}

fn spawn_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    thread::Builder::new()
        .name("quota-policy-epoch".into())
        .spawn(move || {
            loop {
                thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_and_add_the_partial_tick() {
        let limits = Limits {
            call_deadline: Duration::from_micros(2_500),
            tick: Duration::from_millis(1),
            ..Limits::default()
        };
        assert_eq!(limits.deadline_ticks(), 4);
    }
}
