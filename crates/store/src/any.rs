//! One store over either backend, picked by the database named at start:
//! a `postgres://` URL is PostgreSQL, anything else a SQLite file. The
//! service and the command line use it, so they name no backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::StoreError;
use crate::events::{Attempt, Claim, Claimed, Crossing, Delivery, Event, EventKind, Next, Webhook};
use crate::model::{
    AuditEntry, DecisionMinute, Draft, GraceUsed, Invite, Lease, NewLease, Node, OverrideRow, Plan,
    PlanChange, QuotaState, Segment, StoredResponse, UiSession, User,
};
use crate::policy::{
    DecisionFilter, DecisionLogEntry, LoggedDecision, PolicyAction, PolicyEvent, PolicyState,
    Release, Upload,
};
use crate::postgres::{PgOptions, PgStore, PgTx, PgUrl, is_postgres_url};
use crate::sqlite::{SqliteOptions, SqliteStore, SqliteTx};
use crate::traits::{
    AuditStore, DecisionCountStore, DecisionLogStore, DomainTx, EventStore, IdempotencyStore,
    IdempotencyTx, LeaseStore, LeaseTx, OverrideStore, PlanStore, PolicyStore, QuotaStore, QuotaTx,
    SessionStore, UserStore, WebhookStore,
};

/// Where the state lives: a SQLite file or a PostgreSQL database. Shown,
/// a URL's password is hidden.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<PgUrl>),
}

impl Location {
    /// A `postgres://` (or `postgresql://`) URL, else a file path.
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        if is_postgres_url(text) {
            Ok(Location::Postgres(Box::new(text.parse()?)))
        } else {
            Ok(Location::Sqlite(PathBuf::from(text)))
        }
    }

    /// The SQLite file, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// Either backend.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL database.
    Postgres(PgStore),
}

/// A transaction of either backend.
#[derive(Debug)]
pub enum AnyTx {
    /// On SQLite.
    Sqlite(SqliteTx),
    /// On PostgreSQL.
    Postgres(Box<PgTx>),
}

impl AnyStore {
    /// Opens (and migrates) the database at `location` with default
    /// options.
    pub fn open(location: &Location) -> Result<AnyStore, StoreError> {
        Self::open_with(location, SqliteOptions::default(), PgOptions::default())
    }

    /// Opens (and migrates) the database at `location`, SQLite with
    /// `sqlite` options and PostgreSQL with `postgres` ones.
    pub fn open_with(
        location: &Location,
        sqlite: SqliteOptions,
        postgres: PgOptions,
    ) -> Result<AnyStore, StoreError> {
        Ok(match location {
            Location::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open_with(path, sqlite)?),
            Location::Postgres(url) => AnyStore::Postgres(PgStore::open_with(url, postgres)?),
        })
    }

    /// Whether several hosts may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, AnyStore::Postgres(_))
    }

    /// Waits up to `timeout` for news of a policy change made by another
    /// host; true when there may be some. PostgreSQL hears of them at
    /// once (`LISTEN`) and falls back to saying true every `timeout`
    /// when its listening connection is lost; SQLite has no such news
    /// and says true every `timeout` (processes sharing a file poll).
    pub fn wait_for_policy_event(&self, timeout: Duration) -> bool {
        match self {
            AnyStore::Sqlite(_) => {
                std::thread::sleep(timeout);
                true
            }
            AnyStore::Postgres(store) => store.wait_for_policy_event(timeout),
        }
    }
}

/// `$store.$method(args)` on whichever backend it is.
macro_rules! each {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $call,
            AnyStore::Postgres($s) => $call,
        }
    };
}

/// `$tx.$method(args)` on whichever backend it is.
macro_rules! each_tx {
    ($self:expr, $t:ident => $call:expr) => {
        match $self {
            AnyTx::Sqlite($t) => $call,
            AnyTx::Postgres($t) => $call,
        }
    };
}

impl QuotaStore for AnyStore {
    type Tx = AnyTx;

    fn begin_write(&self) -> Result<AnyTx, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => AnyTx::Sqlite(s.begin_write()?),
            AnyStore::Postgres(s) => AnyTx::Postgres(Box::new(s.begin_write()?)),
        })
    }

    fn begin_read(&self) -> Result<AnyTx, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => AnyTx::Sqlite(s.begin_read()?),
            AnyStore::Postgres(s) => AnyTx::Postgres(Box::new(s.begin_read()?)),
        })
    }
}

impl QuotaTx for AnyTx {
    fn quota_state(
        &mut self,
        user_id: &str,
        entitlement_key: &str,
        usage_key: &str,
        now_ms: i64,
    ) -> Result<QuotaState, StoreError> {
        each_tx!(self, t => t.quota_state(user_id, entitlement_key, usage_key, now_ms))
    }

    fn add_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<i64, StoreError> {
        each_tx!(self, t => t.add_usage(user_id, usage_key, period_start_ms, n))
    }

    fn record_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<(), StoreError> {
        each_tx!(self, t => t.record_usage(user_id, usage_key, period_start_ms, n))
    }

    fn add_grace(
        &mut self,
        user_id: &str,
        plan_id: &str,
        entitlement_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let key = entitlement_key;
        each_tx!(self, t => t.add_grace(user_id, plan_id, key, period_start_ms, n, now_ms))
    }

    fn record_thresholds(&mut self, crossing: &Crossing) -> Result<usize, StoreError> {
        each_tx!(self, t => t.record_thresholds(crossing))
    }

    fn commit(self) -> Result<(), StoreError> {
        each_tx!(self, t => t.commit())
    }

    fn rollback(self) -> Result<(), StoreError> {
        each_tx!(self, t => t.rollback())
    }
}

impl DomainTx for AnyTx {
    fn user_exists(&mut self, user_id: &str) -> Result<bool, StoreError> {
        each_tx!(self, t => t.user_exists(user_id))
    }
    fn draft(&mut self, draft_id: i64) -> Result<Draft, StoreError> {
        each_tx!(self, t => t.draft(draft_id))
    }
    fn can_write(&mut self, user_id: &str, draft: &Draft) -> Result<bool, StoreError> {
        each_tx!(self, t => t.can_write(user_id, draft))
    }
    fn insert_draft(
        &mut self,
        owner_id: &str,
        title: &str,
        now_ms: i64,
    ) -> Result<Draft, StoreError> {
        each_tx!(self, t => t.insert_draft(owner_id, title, now_ms))
    }
    fn insert_segment(
        &mut self,
        draft_id: i64,
        author_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError> {
        each_tx!(self, t => t.insert_segment(draft_id, author_id, body, now_ms))
    }
    fn insert_invite(
        &mut self,
        draft: &Draft,
        invitee_id: &str,
        now_ms: i64,
    ) -> Result<Invite, StoreError> {
        each_tx!(self, t => t.insert_invite(draft, invitee_id, now_ms))
    }
    fn invite(&mut self, invite_id: i64) -> Result<Invite, StoreError> {
        each_tx!(self, t => t.invite(invite_id))
    }
    fn accept_invite(&mut self, invite: &Invite, now_ms: i64) -> Result<Invite, StoreError> {
        each_tx!(self, t => t.accept_invite(invite, now_ms))
    }
}

impl IdempotencyTx for AnyTx {
    fn store_idempotent_response(
        &mut self,
        user_id: &str,
        key: &str,
        response: &StoredResponse,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        each_tx!(self, t => t.store_idempotent_response(user_id, key, response, now_ms))
    }
}

impl PlanStore for AnyStore {
    fn set_plan(
        &self,
        actor: &str,
        plan_id: &str,
        change: &PlanChange,
        now_ms: i64,
    ) -> Result<Plan, StoreError> {
        each!(self, s => s.set_plan(actor, plan_id, change, now_ms))
    }
    fn plan(&self, plan_id: &str) -> Result<Plan, StoreError> {
        each!(self, s => s.plan(plan_id))
    }
    fn plans(&self) -> Result<Vec<Plan>, StoreError> {
        each!(self, s => s.plans())
    }
    fn set_default(
        &self,
        actor: &str,
        key: &str,
        value: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_default(actor, key, value, now_ms))
    }
    fn defaults(&self) -> Result<Vec<(String, i64)>, StoreError> {
        each!(self, s => s.defaults())
    }
    fn plan_user_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        each!(self, s => s.plan_user_counts())
    }
}

impl UserStore for AnyStore {
    fn create_user(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        each!(self, s => s.create_user(actor, user_id, plan_id, now_ms))
    }
    fn create_user_with_token(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        each!(self, s => s.create_user_with_token(actor, user_id, plan_id, token_sha256, now_ms))
    }
    fn user(&self, user_id: &str) -> Result<User, StoreError> {
        each!(self, s => s.user(user_id))
    }
    fn set_user_plan(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError> {
        each!(self, s => s.set_user_plan(actor, user_id, plan_id, now_ms))
    }
    fn usage(&self, user_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        each!(self, s => s.usage(user_id))
    }
    fn grace(&self, user_id: &str) -> Result<Vec<GraceUsed>, StoreError> {
        each!(self, s => s.grace(user_id))
    }
    fn user_for_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.user_for_token(token_sha256))
    }
    fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>, StoreError> {
        each!(self, s => s.search_users(prefix, limit))
    }
}

impl OverrideStore for AnyStore {
    fn set_override(
        &self,
        actor: &str,
        user_id: &str,
        key: &str,
        value: i64,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<OverrideRow, StoreError> {
        each!(self, s => s.set_override(actor, user_id, key, value, expires_at_ms, now_ms))
    }
    fn clear_override(
        &self,
        actor: &str,
        user_id: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<OverrideRow>, StoreError> {
        each!(self, s => s.clear_override(actor, user_id, key, now_ms))
    }
    fn overrides(&self, user_id: Option<&str>) -> Result<Vec<OverrideRow>, StoreError> {
        each!(self, s => s.overrides(user_id))
    }
}

impl EventStore for AnyStore {
    fn events(&self, user_id: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        each!(self, s => s.events(user_id, limit))
    }
}

impl WebhookStore for AnyStore {
    fn create_webhook(
        &self,
        actor: &str,
        id: &str,
        url: &str,
        secret: &str,
        events: &[EventKind],
        now_ms: i64,
    ) -> Result<Webhook, StoreError> {
        each!(self, s => s.create_webhook(actor, id, url, secret, events, now_ms))
    }
    fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        each!(self, s => s.webhooks())
    }
    fn delete_webhook(&self, actor: &str, id: &str, now_ms: i64) -> Result<Webhook, StoreError> {
        each!(self, s => s.delete_webhook(actor, id, now_ms))
    }
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lock_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        each!(self, s => s.claim_deliveries(now_ms, lock_ms, limit))
    }
    fn finish_delivery(
        &self,
        claim: &Claim,
        attempt: &Attempt,
        next: Next,
        failing_after_ms: i64,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.finish_delivery(claim, attempt, next, failing_after_ms))
    }
    fn deliveries(&self, event_id: &str) -> Result<Vec<Delivery>, StoreError> {
        each!(self, s => s.deliveries(event_id))
    }
    fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.redeliver(event_id, now_ms))
    }
    fn prune_events(&self, before_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.prune_events(before_ms))
    }
}

impl AuditStore for AnyStore {
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        each!(self, s => s.audit_log(limit))
    }
}

impl SessionStore for AnyStore {
    fn create_ui_session(&self, session: &UiSession, now_ms: i64) -> Result<(), StoreError> {
        each!(self, s => s.create_ui_session(session, now_ms))
    }
    fn ui_session(&self, id_sha256: &str, now_ms: i64) -> Result<Option<UiSession>, StoreError> {
        each!(self, s => s.ui_session(id_sha256, now_ms))
    }
    fn delete_ui_session(&self, id_sha256: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete_ui_session(id_sha256))
    }
    fn delete_ui_sessions_except(&self, admin_sha256: &str) -> Result<usize, StoreError> {
        each!(self, s => s.delete_ui_sessions_except(admin_sha256))
    }
}

impl DecisionCountStore for AnyStore {
    fn add_decision_minutes(&self, counts: &[DecisionMinute]) -> Result<(), StoreError> {
        each!(self, s => s.add_decision_minutes(counts))
    }
    fn decision_minutes(&self, since_ms: i64) -> Result<Vec<DecisionMinute>, StoreError> {
        each!(self, s => s.decision_minutes(since_ms))
    }
    fn prune_decision_minutes(&self, before_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.prune_decision_minutes(before_ms))
    }
}

impl PolicyStore for AnyStore {
    fn record_policy_event(
        &self,
        actor: &str,
        action: PolicyAction,
        sha256: Option<&str>,
        component: Option<&[u8]>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError> {
        each!(self, s => s.record_policy_event(actor, action, sha256, component, detail, now_ms))
    }
    fn record_policy_upload(
        &self,
        actor: &str,
        action: PolicyAction,
        upload: &Upload<'_>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError> {
        each!(self, s => s.record_policy_upload(actor, action, upload, detail, now_ms))
    }
    fn policy_signature(&self, sha256: &str) -> Result<Option<String>, StoreError> {
        each!(self, s => s.policy_signature(sha256))
    }
    fn policy_release(&self, name: &str) -> Result<Option<Release>, StoreError> {
        each!(self, s => s.policy_release(name))
    }
    fn policy_state(&self, history: usize) -> Result<PolicyState, StoreError> {
        each!(self, s => s.policy_state(history))
    }
    fn policy_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.policy_component(sha256))
    }
}

impl DecisionLogStore for AnyStore {
    fn append_decisions(&self, entries: &[DecisionLogEntry]) -> Result<(), StoreError> {
        each!(self, s => s.append_decisions(entries))
    }
    fn prune_decisions(&self, keep: usize, before_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.prune_decisions(keep, before_ms))
    }
    fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionLogEntry>, StoreError> {
        each!(self, s => s.decisions(filter))
    }
    fn decision_page(
        &self,
        plan_id: &str,
        since_ms: i64,
        after_id: i64,
        f: &mut dyn FnMut(LoggedDecision<'_>),
    ) -> Result<usize, StoreError> {
        each!(self, s => s.decision_page(plan_id, since_ms, after_id, f))
    }
}

impl IdempotencyStore for AnyStore {
    fn idempotent_response(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        each!(self, s => s.idempotent_response(user_id, key))
    }
    fn idempotent_response_committed(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        each!(self, s => s.idempotent_response_committed(user_id, key))
    }
    fn expire_idempotency_keys(&self, before_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.expire_idempotency_keys(before_ms))
    }
}

impl LeaseTx for AnyTx {
    fn lock_node(&mut self, node_id: &str) -> Result<Node, StoreError> {
        each_tx!(self, t => t.lock_node(node_id))
    }
    fn node_outstanding(
        &mut self,
        node_id: &str,
        now_ms: i64,
        except: Option<i64>,
    ) -> Result<i64, StoreError> {
        each_tx!(self, t => t.node_outstanding(node_id, now_ms, except))
    }
    fn insert_lease(&mut self, lease: &NewLease) -> Result<Lease, StoreError> {
        each_tx!(self, t => t.insert_lease(lease))
    }
    fn lease(&mut self, node_id: &str, lease_id: i64) -> Result<Lease, StoreError> {
        each_tx!(self, t => t.lease(node_id, lease_id))
    }
    fn update_lease(&mut self, lease: &Lease) -> Result<(), StoreError> {
        each_tx!(self, t => t.update_lease(lease))
    }
    fn store_now_ms(&mut self) -> Result<Option<i64>, StoreError> {
        each_tx!(self, t => t.store_now_ms())
    }
}

impl LeaseStore for AnyStore {
    fn create_node(
        &self,
        actor: &str,
        node_id: &str,
        max_outstanding: i64,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<Node, StoreError> {
        each!(self, s => s.create_node(actor, node_id, max_outstanding, token_sha256, now_ms))
    }
    fn delete_node(
        &self,
        actor: &str,
        node_id: &str,
        now_ms: i64,
    ) -> Result<(Node, usize), StoreError> {
        each!(self, s => s.delete_node(actor, node_id, now_ms))
    }
    fn nodes(&self) -> Result<Vec<Node>, StoreError> {
        each!(self, s => s.nodes())
    }
    fn node_for_token(&self, token_sha256: &str) -> Result<Option<Node>, StoreError> {
        each!(self, s => s.node_for_token(token_sha256))
    }
    fn open_leases(
        &self,
        user_id: Option<&str>,
        node_id: Option<&str>,
    ) -> Result<Vec<Lease>, StoreError> {
        each!(self, s => s.open_leases(user_id, node_id))
    }
    fn expire_leases(&self, now_ms: i64) -> Result<usize, StoreError> {
        each!(self, s => s.expire_leases(now_ms))
    }
}
