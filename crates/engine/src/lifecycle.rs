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

use quota_store::{PolicyAction, PolicyState, PolicyStore, QuotaStore, StoreError, Upload};

use quota_host::{ArtifactCache, CacheOutcome, LoadError, PolicyModule, Runtime, sha256_hex};

use crate::engine::Engine;
use crate::selftest::{self, SelfTestReport, self_test_within};
use crate::signatures::{Checked, Signatures, Signer, release_change};

mod recorded;

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
    /// Trusted keys are required and the signature is missing, invalid,
    /// untrusted, for other bytes, or its version does not rise.
    Signature,
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
    /// `signature`, `compile`, `interface`, `self_test` or `store`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Signature => "signature",
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
    signatures: Signatures,
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
            signatures: Signatures::default(),
        }
    }

    /// Accepts only what `signatures` admits (by default: everything).
    pub fn with_signatures(mut self, signatures: Signatures) -> Self {
        self.signatures = signatures;
        self
    }

    /// Which components this host accepts.
    pub fn signatures(&self) -> &Signatures {
        &self.signatures
    }

    /// Who signed the stored component `sha256`.
    pub fn signer<S: Backend>(
        &self,
        engine: &Engine<S>,
        sha256: &str,
    ) -> Result<Signer, StoreError> {
        let signature = engine.store().policy_signature(sha256)?;
        Ok(self.signatures.signer(sha256, signature.as_deref()))
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

    /// Records `rejected` as the last load error and hands it back.
    fn reject<S: Backend>(
        engine: &Engine<S>,
        actor: &str,
        stage: Stage,
        message: String,
        sha256: &str,
    ) -> Rejected {
        let rejected = Rejected {
            stage,
            message,
            sha256: sha256.to_owned(),
        };
        Self::record_rejection(engine, actor, &rejected);
        rejected
    }

    /// The signature stage for a stored component: its stored signature
    /// checked against the keys trusted now.
    fn check_stored<S: Backend>(&self, engine: &Engine<S>, sha256: &str) -> Result<(), String> {
        let signature = engine
            .store()
            .policy_signature(sha256)
            .map_err(|e| e.to_string())?;
        self.signatures
            .check(sha256, signature.as_deref())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Forgets a refused recorded policy once another one is in place.
    fn clear_refused(&self) {
        self.following
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused = None;
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

    /// Checks, vets and, if they pass, records `bytes` (with `signature`)
    /// and makes them the engine's active policy (`shadow`: the shadow
    /// policy instead).
    fn install<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
        bytes: &[u8],
        signature: Option<&str>,
        action: PolicyAction,
    ) -> Result<Accepted, ChangeError> {
        let started = Instant::now();
        let sha256 = sha256_hex(bytes);
        let _vetting = self.start_vetting(&sha256)?;
        let refuse =
            |message: String| Self::reject(engine, actor, Stage::Signature, message, &sha256);
        // Before compiling: untrusted bytes are not even compiled.
        let checked = self
            .signatures
            .check(&sha256, signature)
            .map_err(|e| refuse(e.to_string()))?;
        let (module, mut accepted) = self.vet(bytes).inspect_err(|rejected| {
            Self::record_rejection(engine, actor, rejected);
        })?;
        let _changing = self.lock();
        let store_failed = |e: StoreError| Rejected {
            stage: Stage::Store,
            message: e.to_string(),
            sha256: accepted.sha256.clone(),
        };
        let release = match (&checked, action) {
            (Checked::Verified(manifest), PolicyAction::Activate) => {
                let current = engine
                    .store()
                    .policy_release(&manifest.name)
                    .map_err(store_failed)?;
                Some(release_change(manifest, current).map_err(refuse)?)
            }
            _ => None,
        };
        Self::ensure_recorded(engine).map_err(store_failed)?;
        let detail = format!(
            "self-test: {} cases, {} differ from the reference",
            accepted.self_test.cases, accepted.self_test.differs_from_reference
        );
        // What is kept: a verified signature, or an unverified one that
        // names the component (never one that came with the built-in).
        let upload = Upload {
            sha256: &accepted.sha256,
            component: bytes,
            signature: signature.filter(|_| checked != Checked::Unsigned),
            verified: matches!(checked, Checked::Verified(_)),
            release: release.as_ref(),
        };
        engine
            .store()
            .record_policy_upload(actor, action, &upload, &detail, engine.now_ms())
            .map_err(store_failed)?;
        if action == PolicyAction::Shadow {
            engine.set_shadow(Some(module));
        } else {
            engine.activate(module);
            self.clear_refused();
        }
        accepted.total_time = started.elapsed();
        Ok(accepted)
    }

    /// Activates an uploaded component, with its detached `signature` if
    /// one came: check the signature (when keys are trusted), compile,
    /// type-check against the world, self-test, record, switch. Any
    /// failure leaves the active policy in place and is recorded as the
    /// last load error.
    pub fn activate<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Accepted, ChangeError> {
        self.install(engine, actor, bytes, signature, PolicyAction::Activate)
    }

    /// Sets an uploaded component as the shadow policy, after the same
    /// stages as an activation (a shadow's version need not rise: it
    /// never decides).
    pub fn set_shadow<S: Backend>(
        &self,
        engine: &Engine<S>,
        actor: &str,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Accepted, ChangeError> {
        self.install(engine, actor, bytes, signature, PolicyAction::Shadow)
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
        self.check_stored(engine, &previous)
            .map_err(|message| Self::reject(engine, actor, Stage::Signature, message, &previous))?;
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
        self.clear_refused();
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

    /// Where the lifecycle stands, with the last events.
    pub fn state<S: Backend>(&self, engine: &Engine<S>) -> Result<PolicyState, StoreError> {
        engine.store().policy_state(HISTORY)
    }
}
