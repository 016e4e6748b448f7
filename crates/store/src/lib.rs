//! All storage of quota, and all its SQL: the traits the layers above use
//! ([`QuotaStore`] and [`QuotaTx`] for the engine's guarded transaction,
//! [`DomainTx`] for the application's tables, one trait per admin subject,
//! [`PolicyStore`], [`DecisionLogStore`], [`IdempotencyStore`]) and their
//! backends. SQLite is the one backend today: [`SqliteStore`], one file,
//! WAL, foreign keys and a busy timeout on every connection, its schema
//! versioned by migrations. No database type crosses this crate's API and
//! errors are typed ([`StoreError`]); a second backend implements the same
//! traits and passes the same tests (`tests/backend/`).
//!
//! ```
//! use quota_store::{PlanChange, PlanStore, QuotaStore, QuotaTx, SqliteStore, UserStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("quota.db"))?;
//! store.set_plan("admin", "free", &PlanChange { limits: vec![("drafts.max".into(), 3)], ..PlanChange::default() }, 0)?;
//! store.create_user("admin", "alice", "free", 0)?;
//! let mut tx = store.begin_write()?;
//! let state = tx.quota_state("alice", "drafts.max", "drafts.created", 0)?;
//! assert_eq!(state.plan.limit, Some(3));
//! assert_eq!(state.usage, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod any;
mod checks;
mod copy;
mod error;
mod events;
mod leases;
mod model;
pub mod period;
mod policy;
mod postgres;
mod prefix;
mod snapshot;
mod sqlite;
pub mod testing;
mod traits;

pub use any::{AnyStore, AnyTx, Location};
pub use copy::CopyReport;
pub use error::{Conflict, Forbidden, StoreError};
pub use events::{
    Attempt, Claim, Claimed, Crossing, Delivery, DeliveryState, Event, EventKind, EventKindError,
    MAX_PERCENT, MAX_THRESHOLDS, Next, Webhook,
};
pub use model::{
    AuditEntry, DecisionMinute, Draft, GraceUsed, Invite, InviteStatus, LastSettle, Lease,
    LeaseEnd, NewLease, Node, OverrideRow, Plan, PlanChange, QuotaState, Segment, StoredResponse,
    UiSession, User,
};
pub use period::{Period, PeriodKind, PeriodSetting};
pub use policy::{
    DECISION_PAGE, DecisionFilter, DecisionLogEntry, KEEP_VERSIONS, LoggedDecision, PolicyAction,
    PolicyEvent, PolicyState, Release, ReleaseChange, Upload,
};
pub use postgres::{
    ATTEMPTS as PG_ATTEMPTS, POLICY_CHANNEL, PgOptions, PgStore, PgTx, PgUrl, TlsMode,
    is_postgres_url, redact,
};
pub use sqlite::{
    GroupCommit, MIGRATIONS, SqliteOptions, SqliteStore, SqliteTx, Synchronous, WriteStats,
};
/// Every storage trait, to bring their methods into scope at once.
pub mod prelude {
    pub use crate::traits::{
        AuditStore, DecisionCountStore, DecisionLogStore, DomainTx, EventStore, IdempotencyStore,
        IdempotencyTx, LeaseStore, LeaseTx, OverrideStore, PlanStore, PolicyStore, QuotaStore,
        QuotaTx, SessionStore, UserStore, WebhookStore,
    };
}

pub use traits::{
    AuditStore, DecisionCountStore, DecisionLogStore, DomainTx, EventStore, IdempotencyStore,
    IdempotencyTx, LeaseStore, LeaseTx, OverrideStore, PlanStore, PolicyStore, QuotaStore, QuotaTx,
    SessionStore, UserStore, WebhookStore,
};
