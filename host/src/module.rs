//! A compiled, type-checked policy component.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::PolicyPre;
use crate::error::{CallError, LoadError};
use crate::evaluator::Evaluator;
use crate::inspect::{self, ComponentInfo};
use crate::instance::{Compiled, StoreData};
use crate::limits::Limits;

/// A policy component that passed loading: compiled, importing nothing, and
/// exporting the policy interface with the right types.
///
/// Cheap to clone and `Send + Sync`; each thread makes its own
/// [`Evaluator`] from it.
#[derive(Clone)]
pub struct PolicyModule {
    inner: Arc<Inner>,
}

struct Inner {
    compiled: Arc<Compiled>,
    info: ComponentInfo,
    bytes: Arc<[u8]>,
}

impl std::fmt::Debug for PolicyModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyModule")
            .field("sha256", &self.inner.info.sha256)
            .field("size_bytes", &self.inner.info.size_bytes)
            .finish_non_exhaustive()
    }
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl PolicyModule {
    /// Checks a compiled component (from `bytes`, whose hash is `sha256`)
    /// as a policy whose instances run under `limits`.
    pub(crate) fn from_component(
        engine: &Engine,
        limits: Limits,
        component: Component,
        bytes: &[u8],
        sha256: String,
    ) -> Result<Self, LoadError> {
        let info = inspect::describe(engine, &component, bytes, sha256);
        if !info.imports.is_empty() {
            return Err(LoadError::Imports(info.imports));
        }
        let linker = Linker::<StoreData>::new(engine);
        let instance_pre =
            linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::WrongWorld {
                    reason: format!("{e:#}"),
                })?;
        let pre = PolicyPre::new(instance_pre).map_err(|e| LoadError::WrongWorld {
            reason: format!("{e:#}"),
        })?;
        let module = PolicyModule {
            inner: Arc::new(Inner {
                compiled: Arc::new(Compiled {
                    engine: engine.clone(),
                    limits,
                    pre,
                }),
                info,
                bytes: bytes.into(),
            }),
        };
        // Export names were checked above; the function types are checked
        // when the bindings are looked up in an instance, so make one now
        // rather than at the first decision.
        match module.evaluator() {
            Ok(_) => Ok(module),
            Err(CallError::Instantiate(reason)) => Err(LoadError::WrongWorld { reason }),
            Err(other) => Err(LoadError::Start(other)),
        }
    }

    /// The lowercase hex sha256 of the component's bytes: the policy version.
    pub fn sha256(&self) -> &str {
        &self.inner.info.sha256
    }

    /// The component's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.inner.bytes
    }

    /// What the component is: hash, size, package, exports and imports.
    pub fn info(&self) -> &ComponentInfo {
        &self.inner.info
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> Limits {
        self.inner.compiled.limits
    }

    /// A fresh evaluator (one live instance) for the calling thread.
    pub fn evaluator(&self) -> Result<Evaluator, CallError> {
        Evaluator::new(self.inner.compiled.clone(), self.sha256().to_owned())
    }
}
