//! The policy lifecycle over a SQLite store: activate an uploaded policy
//! after compiling, type-checking and self-testing it; roll back; set or
//! clear a shadow policy; restore all of it at start.
//!
//! Every change is recorded in the store (the component's bytes and an
//! event) before the engine switches, so the active policy survives a
//! restart. Decisions are not held up by changes.
//!
//! One upload (or rollback) is compiled and self-tested at a time: a second
//! one meanwhile is refused with [`ChangeError::Busy`] rather than queued
//! behind a compile that cannot be cancelled. Compiling happens outside the
//! lock that serializes recording and switching, so clearing the shadow or
//! reading the state never waits for a compile.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use quota_store::{PolicyAction, PolicyState, PolicyStore, QuotaStore, StoreError};

use quota_host::{ArtifactCache, CacheOutcome, LoadError, PolicyModule, Runtime, sha256_hex};

use crate::engine::Engine;
use crate::selftest::{self, SelfTestReport, self_test_within};

/// What the lifecycle needs of a store: the engine's transactions and the
/// policy versions and events.
pub trait Backend: QuotaStore + PolicyStore {}

impl<S: QuotaStore + PolicyStore> Backend for S {}

/// Why the recorded policies could not be put back in place at start.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A recorded version is no longer stored.
    #[error("the recorded policy {0} is not stored")]
    Missing(String),
    /// A recorded version does not load any more (e.g. it breaks a budget
    /// introduced since).
    #[error("the recorded policy {sha256} does not load: {error}")]
    Load {
        /// The version.
        sha256: String,
        /// Why.
        error: LoadError,
    },
}

/// The stage an upload failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The bytes are not a component wasmtime can compile.
    Compile,
    /// A component, but not the policy world (wrong exports, imports, types).
    Interface,
    /// It loads but failed the self-test.
    SelfTest,
    /// It passed, but recording it failed; nothing changed.
    Store,
}

impl Stage {
    /// `compile`, `interface`, `self_test` or `store`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Compile => "compile",
            Stage::Interface => "interface",
            Stage::SelfTest => "self_test",
            Stage::Store => "store",
        }
    }
}

/// Why an upload (or rollback) was refused. The active policy stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy rejected at the {} stage: {message}", stage.as_str())]
pub struct Rejected {
    /// Where it failed.
    pub stage: Stage,
    /// Why.
    pub message: String,
    /// The uploaded component's sha256.
    pub sha256: String,
}

/// Why a change did not happen. The active policy stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Another upload or rollback is being compiled and self-tested.
    #[error("another policy ({0}) is being compiled and self-tested; try again when it is done")]
    Busy(String),
    /// The component failed a stage.
    #[error(transparent)]
    Rejected(#[from] Rejected),
}

/// A policy that passed every stage and is now in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its sha256.
    pub sha256: String,
    /// What the self-test found.
    pub self_test: SelfTestReport,
    /// Whether a precompiled artifact was used.
    pub cache: CacheOutcome,
    /// Time to compile (or load the artifact) and type-check.
    pub load_time: Duration,
    /// Time for the self-test.
    pub self_test_time: Duration,
    /// From receiving the bytes to the switch.
    pub total_time: Duration,
}

/// What this host knows of the policy its fleet records in a shared
/// store, kept by [`Lifecycle::follow`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Following {
    /// The active policy the store records.
    pub recorded_active: Option<String>,
    /// The shadow policy the store records.
    pub recorded_shadow: Option<String>,
    /// A recorded policy this host refused to load: it keeps deciding with
    /// its last good one.
    pub refused: Option<Refused>,
}

/// A recorded policy this host would not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its sha256.
    pub sha256: String,
    /// Why.
    pub reason: String,
}

/// Policy changes for one engine.
#[derive(Debug)]
pub struct Lifecycle {
    runtime: Runtime,
    cache: Option<ArtifactCache>,
    /// The sha256 of the component being compiled and self-tested, if any.
    vetting: Mutex<Option<String>>,
    /// Held while a change is recorded and the engine switches.
    changing: Mutex<()>,
    self_test_budget: Duration,
    following: Mutex<Following>,
}

/// The right to vet a component, released when dropped.
struct Vetting<'a>(&'a Mutex<Option<String>>);

impl Drop for Vetting<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Policy events listed in [`Lifecycle::state`].
const HISTORY: usize = 20;

impl Lifecycle {
    /// Changes policies loaded by `runtime`, with precompiled artifacts in
    /// `cache` when given.
    pub fn new(runtime: Runtime, cache: Option<ArtifactCache>) -> Self {
        Lifecycle {
            runtime,
            cache,
            vetting: Mutex::new(None),
            changing: Mutex::new(()),
            self_test_budget: selftest::BUDGET,
            following: Mutex::new(Following::default()),
        }
    }

    /// Gives every self-test `budget` instead of [`selftest::BUDGET`].
    pub fn with_self_test_budget(mut self, budget: Duration) -> Self {
        self.self_test_budget = budget;
        self
    }

    /// The sha256 of the component being compiled and self-tested now, if any.
    pub fn vetting(&self) -> Option<String> {
        self.vetting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the right to vet `sha256`, or says who has it.
    fn start_vetting(&self, sha256: &str) -> Result<Vetting<'_>, ChangeError> {
        let mut vetting = self.vetting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = vetting.as_ref() {
            return Err(ChangeError::Busy(other.clone()));
        }
        *vetting = Some(sha256.to_owned());
        Ok(Vetting(&self.vetting))
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Loads `bytes` (through the cache when there is one).
    pub fn load(&self, bytes: &[u8]) -> Result<(PolicyModule, CacheOutcome), LoadError> {
        match &self.cache {
            Some(cache) => self.runtime.load_cached(bytes, cache),
            None => self.runtime.load(bytes).map(|m| (m, CacheOutcome::Miss)),
        }
    }

    /// Compile, type-check, self-test: a policy fit to decide.
    fn vet(&self, bytes: &[u8]) -> Result<(PolicyModule, Accepted), Rejected> {
        let started = Instant::now();
        // The hash names a rejected upload; an accepted one has it already.
        let reject = |stage, message: String| Rejected {
            stage,
            message,
            sha256: sha256_hex(bytes),
        };
        let (module, cache) = self.load(bytes).map_err(|e| match e {
            LoadError::Invalid(_) | LoadError::TooCostly(_) | LoadError::Engine(_) => {
                reject(Stage::Compile, e.to_string())
            }
            LoadError::Imports(_) | LoadError::WrongWorld { .. } | LoadError::Start(_) => {
                reject(Stage::Interface, e.to_string())
            }
        })?;
        let load_time = started.elapsed();
        let test_started = Instant::now();
        let report = self_test_within(&module, self.self_test_budget)
            .map_err(|e| reject(Stage::SelfTest, e.to_string()))?;
        let accepted = Accepted {
            sha256: module.sha256().to_owned(),
            self_test: report,
            cache,
            load_time,
            self_test_time: test_started.elapsed(),
            total_time: Duration::ZERO,
        };
        Ok((module, accepted))
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record_rejection<S: Backend>(engine: &Engine<S>, actor: &str, rejected: &Rejected) {
        let detail = format!("{}: {}", rejected.stage.as_str(), rejected.message);
        let recorded = engine.store().record_policy_event(
            actor,
            PolicyAction::Reject,
            Some(&rejected.sha256),
            None,
            &detail,
            engine.now_ms(),
        );
        if let Err(e) = recorded {
            tracing::error!(error = %e, "cannot record a rejected policy");
        }
        tracing::warn!(sha256 = %rejected.sha256, stage = rejected.stage.as_str(), reason = %rejected.message, "policy upload rejected");
    }

    /// Vets `bytes` and, if they pass, records them and makes them the
    /// engine's active policy (`shadow`: the shadow policy instead).
    fn install<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
        bytes: &[u8],
        action: PolicyAction,
    ) -> Result<Accepted, ChangeError> {
        let started = Instant::now();
        let _vetting = self.start_vetting(&sha256_hex(bytes))?;
        let (module, mut accepted) = self.vet(bytes).inspect_err(|rejected| {
            Self::record_rejection(engine, actor, rejected);
        })?;
        let _changing = self.lock();
        let store_failed = |e: StoreError| Rejected {
            stage: Stage::Store,
            message: e.to_string(),
            sha256: accepted.sha256.clone(),
        };
        Self::ensure_recorded(engine).map_err(store_failed)?;
        let detail = format!(
            "self-test: {} cases, {} differ from the reference",
            accepted.self_test.cases, accepted.self_test.differs_from_reference
        );
        engine
            .store()
            .record_policy_event(
                actor,
                action,
                Some(&accepted.sha256),
                Some(bytes),
                &detail,
                engine.now_ms(),
            )
            .map_err(store_failed)?;
        if action == PolicyAction::Shadow {
            engine.set_shadow(Some(module));
        } else {
            engine.activate(module);
        }
        accepted.total_time = started.elapsed();
        Ok(accepted)
    }

    /// Activates an uploaded component: compile, type-check against the
    /// world, self-test, record, switch. Any failure leaves the active
    /// policy in place and is recorded as the last load error.
    pub fn activate<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
        bytes: &[u8],
    ) -> Result<Accepted, ChangeError> {
        self.install(engine, actor, bytes, PolicyAction::Activate)
    }

    /// Sets an uploaded component as the shadow policy, after the same
    /// stages as an activation.
    pub fn set_shadow<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
        bytes: &[u8],
    ) -> Result<Accepted, ChangeError> {
        self.install(engine, actor, bytes, PolicyAction::Shadow)
    }

    /// Clears the shadow policy; false when none was set.
    pub fn clear_shadow<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let _changing = self.lock();
        if engine.shadow().is_none() {
            return Ok(false);
        }
        engine.store().record_policy_event(
            actor,
            PolicyAction::ClearShadow,
            None,
            None,
            "",
            engine.now_ms(),
        )?;
        engine.set_shadow(None);
        Ok(true)
    }

    /// Makes the previous policy active again. `Ok(None)` when there is no
    /// previous policy to go back to.
    pub fn rollback<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
    ) -> Result<Option<Accepted>, ChangeError> {
        let started = Instant::now();
        let store_failed = |e: StoreError| Rejected {
            stage: Stage::Store,
            message: e.to_string(),
            sha256: String::new(),
        };
        let state = engine.store().policy_state(0).map_err(store_failed)?;
        let Some(previous) = state.previous else {
            return Ok(None);
        };
        let _vetting = self.start_vetting(&previous)?;
        let bytes = engine
            .store()
            .policy_component(&previous)
            .map_err(store_failed)?
            .ok_or_else(|| Rejected {
                stage: Stage::Store,
                message: format!("the component {previous} is no longer stored"),
                sha256: previous.clone(),
            })?;
        let (module, mut accepted) = self.vet(&bytes).inspect_err(|rejected| {
            Self::record_rejection(engine, actor, rejected);
        })?;
        let _changing = self.lock();
        engine
            .store()
            .record_policy_event(
                actor,
                PolicyAction::Rollback,
                Some(&previous),
                None,
                "",
                engine.now_ms(),
            )
            .map_err(store_failed)?;
        engine.activate(module);
        accepted.total_time = started.elapsed();
        Ok(Some(accepted))
    }

    /// Records the engine's current policy as active when the store has
    /// no active policy yet (a fresh database), so that the first upload
    /// can be rolled back to it.
    fn ensure_recorded<S: Backend>(engine: &Engine<S>) -> Result<(), StoreError> {
        if engine.store().policy_state(0)?.active.is_some() {
            return Ok(());
        }
        let current = engine.policy();
        engine.store().record_policy_event(
            "system",
            PolicyAction::Activate,
            Some(current.sha256()),
            Some(current.bytes()),
            "the policy in place when the lifecycle started",
            engine.now_ms(),
        )?;
        Ok(())
    }

    /// Puts the recorded active and shadow policies in place (at start);
    /// on a fresh database, records the engine's current policy as active.
    /// Returns the active policy's sha256.
    pub fn restore<S: Backend>(&self, engine: &Engine<S>) -> Result<String, RestoreError> {
        let _changing = self.lock();
        Self::ensure_recorded(engine)?;
        let state = engine.store().policy_state(0)?;
        let load = |sha256: &str| -> Result<PolicyModule, RestoreError> {
            let bytes = engine
                .store()
                .policy_component(sha256)?
                .ok_or_else(|| RestoreError::Missing(sha256.to_owned()))?;
            self.load(&bytes)
                .map(|(module, _)| module)
                .map_err(|error| RestoreError::Load {
                    sha256: sha256.to_owned(),
                    error,
                })
        };
        if let Some(shadow) = state.shadow.as_ref().and_then(|e| e.sha256.as_deref()) {
            engine.set_shadow(Some(load(shadow)?));
        }
        if let Some(active) = state.active.as_ref().and_then(|e| e.sha256.as_deref())
            && active != engine.policy().sha256()
        {
            engine.activate(load(active)?);
        }
        Ok(engine.policy().sha256().to_owned())
    }

    /// Puts in place what the store records as active and shadow when
    /// another host changed it: each recorded component is loaded and
    /// self-tested here too, and one that fails is refused (this host
    /// keeps its last good policy, and [`Lifecycle::following`] says
    /// so). Returns whether this host's policies changed.
    pub fn follow<S: Backend>(&self, engine: &Engine<S>) -> Result<bool, StoreError> {
        let _changing = self.lock();
        let state = engine.store().policy_state(0)?;
        let recorded =
            |e: &Option<quota_store::PolicyEvent>| e.as_ref().and_then(|e| e.sha256.clone());
        let (active, shadow) = (recorded(&state.active), recorded(&state.shadow));
        let mut following = self
            .following
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        following.recorded_active = active.clone();
        following.recorded_shadow = shadow.clone();
        let mut changed = false;
        if let Some(sha256) = active
            && sha256 != engine.policy().sha256()
            && following
                .refused
                .as_ref()
                .is_none_or(|r| r.sha256 != sha256)
        {
            match self.vet_recorded(engine, &sha256) {
                Ok(module) => {
                    engine.activate(module);
                    following.refused = None;
                    changed = true;
                }
                Err(reason) => {
                    tracing::error!(%sha256, %reason, "the fleet's active policy does not load here; keeping the last good one");
                    following.refused = Some(Refused { sha256, reason });
                }
            }
        }
        let current_shadow = engine.shadow().map(|m| m.sha256().to_owned());
        if shadow != current_shadow {
            match shadow {
                None => {
                    engine.set_shadow(None);
                    changed = true;
                }
                Some(sha256) => match self.vet_recorded(engine, &sha256) {
                    Ok(module) => {
                        engine.set_shadow(Some(module));
                        changed = true;
                    }
                    Err(reason) => {
                        tracing::error!(%sha256, %reason, "the fleet's shadow policy does not load here");
                    }
                },
            }
        }
        Ok(changed)
    }

    /// A recorded component, loaded and self-tested here.
    fn vet_recorded<S: Backend>(
        &self,
        engine: &Engine<S>,
        sha256: &str,
    ) -> Result<PolicyModule, String> {
        let bytes = engine
            .store()
            .policy_component(sha256)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the component {sha256} is not stored"))?;
        let (module, _) = self.vet(&bytes).map_err(|rejected| rejected.to_string())?;
        Ok(module)
    }

    /// What this host knows of the policy its fleet records (set by
    /// [`Lifecycle::follow`]; empty until it first ran).
    pub fn following(&self) -> Following {
        self.following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the lifecycle stands, with the last events.
    pub fn state<S: Backend>(&self, engine: &Engine<S>) -> Result<PolicyState, StoreError> {
        engine.store().policy_state(HISTORY)
    }
}
