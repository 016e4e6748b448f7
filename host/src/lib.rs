//! The quota policy runtime: loads policy components and calls them.
//!
//! A narrow facade over wasmtime. Callers pass and get the plain Rust types
//! of `quota-policy-core`; no wasmtime type crosses this API, and nothing
//! here knows about storage (the enforcement engine is `quota-engine`).
//!
//! - [`Runtime`] owns the wasmtime engine, its sandbox [`Limits`] and the
//!   epoch ticker that enforces per-call deadlines, and loads policies:
//!   a component is refused before compiling when it breaks the
//!   [`CompileBudget`], and at load when it is not the
//!   `quota:policy/policy@0.1.0` world or imports anything.
//! - [`PolicyModule`] is a compiled, type-checked component. Cheap to
//!   clone and shared across threads.
//! - [`Evaluator`] is one live instance for one thread. It is reused across
//!   calls, replaced after any trap and after a bounded number of calls, and
//!   checks every decision against the contract (docs/contract.md §3.5),
//!   so a broken policy fails with an error, never a silent allow.
//! - [`ArtifactCache`] keeps precompiled artifacts, tagged with a
//!   [`CacheKey`], so loading a known component again skips compilation
//!   ([`Runtime::load_cached`]).
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
mod error;
mod evaluator;
mod inspect;
mod instance;
mod limits;
mod module;
mod runtime;

pub use budget::CompileBudget;
pub use cache::{ArtifactCache, CacheKey, CacheOutcome};
pub use error::{CallError, LoadError};
pub use evaluator::Evaluator;
pub use inspect::ComponentInfo;
pub use limits::Limits;
pub use module::{PolicyModule, sha256_hex};
pub use runtime::Runtime;

/// The WIT world every policy implements.
pub const WORLD: &str = "quota:policy/policy@0.1.0";
/// The interface a policy exports.
pub const INTERFACE: &str = "quota:policy/engine@0.1.0";
