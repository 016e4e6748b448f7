//! The runtime: a configured engine, its sandbox limits, the epoch ticker
//! behind call deadlines, and loading policies through it.

use std::thread;
use std::time::Duration;

use wasmtime::{Config, Engine, OptLevel};

use crate::cache::{ArtifactCache, CacheOutcome};
use crate::error::LoadError;
use crate::inspect::{self, ComponentInfo};
use crate::limits::Limits;
use crate::module::{PolicyModule, sha256_hex};

/// The policy runtime: a configured wasmtime engine and its limits.
///
/// Cheap to clone; clones share the engine. A background thread advances
/// the engine's epoch every [`Limits::tick`] and stops by itself once the
/// engine and every module loaded from it are dropped.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    limits: Limits,
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

    /// The limits every call runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles and type-checks a component as a policy.
    pub fn load(&self, bytes: &[u8]) -> Result<PolicyModule, LoadError> {
        let component = inspect::compile(&self.engine, &self.limits.compile, bytes)?;
        PolicyModule::from_component(
            &self.engine,
            self.limits,
            component,
            bytes,
            sha256_hex(bytes),
        )
    }

    /// Loads a policy like [`Runtime::load`], from a precompiled artifact in
    /// `cache` when there is a valid one; otherwise compiles it and writes
    /// the artifact (a failure to write is logged, not an error). The
    /// component's bytes are still hashed and fully type-checked.
    pub fn load_cached(
        &self,
        bytes: &[u8],
        cache: &ArtifactCache,
    ) -> Result<(PolicyModule, CacheOutcome), LoadError> {
        let sha256 = sha256_hex(bytes);
        let (component, outcome) = match cache.get(&self.engine, &sha256) {
            Some(component) => (component, CacheOutcome::Hit),
            None => {
                let component = inspect::compile(&self.engine, &self.limits.compile, bytes)?;
                cache.put(&self.engine, &sha256, &component);
                (component, CacheOutcome::Miss)
            }
        };
        let module =
            PolicyModule::from_component(&self.engine, self.limits, component, bytes, sha256)?;
        Ok((module, outcome))
    }

    /// Describes any component, policy or not (it must compile).
    pub fn inspect(&self, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        let component = inspect::compile(&self.engine, &self.limits.compile, bytes)?;
        Ok(inspect::describe(
            &self.engine,
            &component,
            bytes,
            sha256_hex(bytes),
        ))
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
