//! Putting recorded policies in place: at start ([`Lifecycle::restore`])
//! and when another host of the fleet changed them
//! ([`Lifecycle::follow`]). Each recorded component is checked here as an
//! upload would be (its stored signature, when keys are trusted; a fleet's
//! component is also self-tested), and one that fails is refused: this host
//! keeps deciding with what it has.

use std::sync::PoisonError;

use quota_host::PolicyModule;
use quota_store::StoreError;

use super::{Backend, Following, Lifecycle, Refused, RestoreError};
use crate::engine::Engine;

impl Lifecycle {
    /// Puts the recorded active and shadow policies in place (at start);
    /// on a fresh database, records the engine's current policy as active.
    /// A recorded policy whose signature no longer verifies (a key was
    /// removed from the trusted set) is not loaded: the engine keeps the
    /// policy it started with (the built-in reference), and
    /// [`Lifecycle::following`] names the refused one. Returns the active
    /// policy's sha256.
    pub fn restore<S: Backend>(&self, engine: &Engine<S>) -> Result<String, RestoreError> {
        let _changing = self.lock();
        Self::ensure_recorded(engine)?;
        let state = engine.store().policy_state(0)?;
        let load = |sha256: &str| -> Result<Result<PolicyModule, String>, RestoreError> {
            if let Err(reason) = self.check_stored(engine, sha256) {
                return Ok(Err(format!("signature: {reason}")));
            }
            let bytes = engine
                .store()
                .policy_component(sha256)?
                .ok_or_else(|| RestoreError::Missing(sha256.to_owned()))?;
            self.load(&bytes)
                .map(|(module, _)| Ok(module))
                .map_err(|error| RestoreError::Load {
                    sha256: sha256.to_owned(),
                    error,
                })
        };
        if let Some(shadow) = state.shadow.as_ref().and_then(|e| e.sha256.as_deref()) {
            match load(shadow)? {
                Ok(module) => engine.set_shadow(Some(module)),
                Err(reason) => {
                    tracing::error!(sha256 = %shadow, %reason, "the recorded shadow policy is not trusted; no shadow");
                }
            }
        }
        if let Some(active) = state.active.as_ref().and_then(|e| e.sha256.as_deref())
            && active != engine.policy().sha256()
        {
            match load(active)? {
                Ok(module) => {
                    engine.activate(module);
                }
                Err(reason) => {
                    tracing::error!(sha256 = %active, %reason, kept = %engine.policy().sha256(), "the recorded policy is not trusted; deciding with the built-in reference policy");
                    self.following
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .refused = Some(Refused {
                        sha256: active.to_owned(),
                        reason,
                    });
                }
            }
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
        self.check_stored(engine, sha256)
            .map_err(|reason| format!("signature: {reason}"))?;
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
}
