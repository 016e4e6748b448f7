//! The quota host runtime: loads policy components and calls them.
//!
//! A narrow facade over wasmtime. Callers pass and get the plain Rust types
//! of `quota-policy-core`; no wasmtime type crosses this API.
//!
//! - [`Runtime`] owns the wasmtime engine, its sandbox limits and the epoch
//!   ticker that enforces per-call deadlines.
//! - [`PolicyModule`] is a compiled, type-checked component: loading refuses
//!   anything that is not the `quota:policy/policy@0.1.0` world or that
//!   imports anything. Cheap to clone and shared across threads.
//! - [`Evaluator`] is one live instance for one thread. It is reused across
//!   calls, replaced after any trap and after a bounded number of calls, and
//!   checks every decision against the contract's invariants, so a broken
//!   policy fails with an error, never a silent allow.
//! - [`ArtifactCache`] keeps precompiled artifacts, so loading a known
//!   component again skips compilation ([`Runtime::load_cached`]).
//! - [`Engine`] enforces quotas over a store; [`lifecycle::Lifecycle`]
//!   activates, rolls back and shadows its policy at runtime after a
//!   [`selftest`]; [`engine::log::DecisionLog`] records its decisions.
//!
//! ```
//! use quota_host::{Limits, Runtime};
//! use quota_policy_core::{DecisionInput, Status};
//!
//! let runtime = Runtime::new(Limits::default())?;
//! let policy = runtime.load(quota_reference_policy::COMPONENT)?;
//! let mut evaluator = policy.evaluator()?;
//! let input = DecisionInput {
//!     user_id: "u1".into(),
//!     plan_id: "free".into(),
//!     entitlement_key: "drafts.max".into(),
//!     requested: 1,
//!     now_ms: 0,
//!     usage: 0,
//!     r#override: None,
//!     plan: None,
//!     default_limit: Some(5),
//!     grace_used: 0,
//! };
//! let decision = evaluator.decide(&input)?.expect("valid input");
//! assert_eq!(decision.status, Status::Allow);
//! assert_eq!(evaluator.usage_key("drafts.max")?.usage_key, "drafts.created");
//! assert_eq!(policy.info().imports.len(), 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bindings;
mod budget;
mod cache;
pub mod engine;
mod error;
mod evaluator;
mod inspect;
pub mod lifecycle;
mod module;
mod runtime;
pub mod selftest;

pub use budget::CompileBudget;
pub use cache::{ArtifactCache, CacheKey, CacheOutcome};
pub use engine::{
    Checked, DecisionRecord, DecisionSink, EnforceError, Enforced, Engine, FailMode, Outcome,
    QuotaExceeded, QuotaRequest, ShadowOutcome, ShadowVerdict,
};
pub use error::{CallError, LoadError};
pub use evaluator::Evaluator;
pub use inspect::ComponentInfo;
pub use module::{PolicyModule, sha256_hex};
pub use runtime::{Limits, Runtime};

/// The WIT world every policy implements.
pub const WORLD: &str = "quota:policy/policy@0.1.0";
/// The interface a policy exports.
pub const INTERFACE: &str = "quota:policy/engine@0.1.0";
