//! All SQL of quota: the schema and its migrations, the guarded write
//! transaction the engine decides in, admin operations with their audit
//! log, and the domain tables (drafts, segments, invites, collaborators).
//!
//! The engine sees storage only through [`QuotaStore`] and [`QuotaTx`], so
//! a second backend (PostgreSQL) can slot in without touching it. SQLite is
//! the default: [`SqliteStore`], one file, WAL, foreign keys and a busy
//! timeout on every connection.
//!
//! ```
//! use quota_store::{PlanChange, QuotaStore, QuotaTx, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("quota.db"))?;
//! store.set_plan("admin", "free", &PlanChange { limits: vec![("drafts.max".into(), 3)], ..PlanChange::default() }, 0)?;
//! store.create_user("admin", "alice", "free", 0)?;
//! let mut tx = store.begin_write()?;
//! let state = tx.quota_state("alice", "drafts.max", "drafts.created")?;
//! assert_eq!(state.plan.limit, Some(3));
//! assert_eq!(state.usage, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod admin;
mod domain;
mod error;
mod group;
mod model;
mod policy;
mod schema;
mod sqlite;
mod web;

pub use admin::PlanChange;
pub use domain::DomainTx;
pub use error::StoreError;
pub use group::{GroupCommit, WriteStats};
pub use model::{
    AuditEntry, Draft, Invite, InviteStatus, OverrideRow, Plan, QuotaState, Segment, User,
};
pub use policy::{
    DecisionFilter, DecisionLogEntry, KEEP_VERSIONS, PolicyAction, PolicyEvent, PolicyState,
};
pub use schema::MIGRATIONS;
pub use sqlite::{SqliteOptions, SqliteStore, SqliteTx, Synchronous};
pub use web::StoredResponse;

/// A storage backend: hands out guarded write transactions.
pub trait QuotaStore: Send + Sync + 'static {
    /// The backend's write transaction.
    type Tx: QuotaTx;

    /// Starts a write transaction that holds the write lock from its first
    /// statement (`BEGIN IMMEDIATE` on SQLite), so that what it reads stays
    /// true until it commits. Dropping it without commit rolls back.
    fn begin_write(&self) -> Result<Self::Tx, StoreError>;

    /// Starts a read-only transaction: one consistent snapshot, no write
    /// lock (for soft checks). Only the read methods of [`QuotaTx`] may be
    /// used on it.
    fn begin_read(&self) -> Result<Self::Tx, StoreError>;
}

/// What the engine does inside a write transaction.
pub trait QuotaTx {
    /// Everything the policy needs about (user, entitlement): the user's
    /// plan and its settings, the override, the default, the usage counter
    /// `usage_key` and the grace used on the current plan.
    fn quota_state(
        &mut self,
        user_id: &str,
        entitlement_key: &str,
        usage_key: &str,
    ) -> Result<QuotaState, StoreError>;

    /// Adds `n` to the user's usage counter `usage_key`; returns the new value.
    fn add_usage(&mut self, user_id: &str, usage_key: &str, n: i64) -> Result<i64, StoreError>;

    /// Adds `n` to the grace used for (user, plan, entitlement); returns the new value.
    fn add_grace(
        &mut self,
        user_id: &str,
        plan_id: &str,
        entitlement_key: &str,
        n: i64,
    ) -> Result<i64, StoreError>;

    /// Commits. Until then nothing the transaction did is visible.
    fn commit(self) -> Result<(), StoreError>;

    /// Ends the transaction keeping nothing, and returns once what it read
    /// is durable. Where transactions commit in groups, it may have read
    /// work of others that is not committed yet: then it waits for their
    /// commit, and [`StoreError::Commit`] says that commit failed, so an
    /// answer based on what it read (a block, a conflict) may be wrong and
    /// the caller decides again. Dropping a transaction rolls back without
    /// waiting.
    fn rollback(self) -> Result<(), StoreError>;
}
