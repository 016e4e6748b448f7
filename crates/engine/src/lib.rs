//! The enforcement engine: the policy decides, the store keeps the state,
//! and a guarded action happens only when the decision allows it, in one
//! write transaction (docs/contract.md §4.2).
//!
//! - [`Engine`] reads what a decision needs from a store and asks the
//!   active policy (a [`quota_host::PolicyModule`]); [`Engine::admit`]
//!   hands back an [`Admitted`] transaction for the guarded mutation (see
//!   its module), and a soft [`Engine::check`] changes nothing. The
//!   application domain (`quota-domain`) is built on it.
//! - [`lifecycle::Lifecycle`] activates, rolls back and shadows the
//!   engine's policy at runtime, after a [`selftest`].
//! - [`log::DecisionLog`] records the decisions; [`metrics`] counts them.
//!
//! ```
//! use quota_engine::{Engine, QuotaRequest};
//! use quota_host::{Limits, Runtime};
//! use quota_store::prelude::*;
//! use quota_store::{PlanChange, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("quota.db"))?;
//! let plan = PlanChange { limits: vec![("drafts.max".into(), 1)], enforcement_enabled: Some(true), ..PlanChange::default() };
//! store.set_plan("admin", "free", &plan, 0)?;
//! store.create_user("admin", "alice", "free", 0)?;
//! let policy = Runtime::new(Limits::default())?.load(quota_reference_policy::COMPONENT)?;
//! let engine = Engine::new(store, policy);
//! let checked = engine.check(&QuotaRequest::new("alice", "drafts.max", 1))?;
//! assert!(checked.ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admit;
mod clock;
mod engine;
mod error;
pub mod lifecycle;
mod loaded;
pub mod log;
pub mod metrics;
mod record;
mod request;
pub mod selftest;
mod shadow;
pub mod signatures;
pub mod stats;
mod throttle;
pub mod whatif;

pub use admit::{Admitted, Guard, Most, Pending};
pub use clock::{Clock, system_now_ms};
pub use engine::{ATTEMPTS, Engine};
pub use error::{EnforceError, PolicyFailure, QuotaExceeded};
pub use record::{DecisionRecord, DecisionSink, ShadowOutcome, ShadowVerdict};
pub use request::{Checked, FailMode, Outcome, QuotaRequest};
