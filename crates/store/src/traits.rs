//! What the layers above need from storage, one trait per subject. A
//! backend implements them all; the engine, the policy lifecycle, the
//! decision log and the HTTP service see storage only through them.
//!
//! The traits are synchronous: they are called from blocking threads (the
//! HTTP service runs them with `spawn_blocking`), a guarded transaction
//! lives inside one such call from its first read to its commit, and the
//! policy it asks runs synchronously in the middle of it. See
//! `docs/storage.md` for why, and for what each backend must guarantee.

use crate::error::StoreError;
use crate::events::{Attempt, Claim, Claimed, Crossing, Delivery, Event, EventKind, Next, Webhook};
use crate::model::{
    AuditEntry, DecisionMinute, Draft, GraceUsed, Invite, Lease, NewLease, Node, OverrideRow, Plan,
    PlanChange, QuotaState, Segment, StoredResponse, UiSession, User,
};
use crate::policy::{
    DECISION_PAGE, DecisionFilter, DecisionLogEntry, LoggedDecision, PolicyAction, PolicyEvent,
    PolicyState, Release, Upload,
};

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
    /// `usage_key` and the grace used on the current plan. When the plan
    /// gives the key a period, usage, grace and reservations are those of
    /// the period counted at `now_ms` (the engine's clock; a backend with
    /// a clock of its own judges by that, and says so in
    /// [`QuotaState::now_ms`]).
    fn quota_state(
        &mut self,
        user_id: &str,
        entitlement_key: &str,
        usage_key: &str,
        now_ms: i64,
    ) -> Result<QuotaState, StoreError>;

    /// Adds `n` to the user's usage counter `usage_key`, and to its
    /// period's counter when `period_start_ms` names one ([`crate::Period`]);
    /// returns the new value the decision reads (the period's, if any).
    fn add_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<i64, StoreError>;

    /// As [`QuotaTx::add_usage`], for a caller that does not need the new
    /// value: a backend may send it with the commit, in one round trip
    /// (PostgreSQL). Then an error it meets (an overflow) comes from the
    /// commit, or from the transaction's next statement, which it goes
    /// ahead of.
    fn record_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<(), StoreError> {
        self.add_usage(user_id, usage_key, period_start_ms, n)
            .map(|_| ())
    }

    /// Adds `n` to the grace used for (user, plan, entitlement), in the
    /// period starting at `period_start_ms` when the key has one, at
    /// `now_ms` (the engine's clock); returns the new value.
    fn add_grace(
        &mut self,
        user_id: &str,
        plan_id: &str,
        entitlement_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
        now_ms: i64,
    ) -> Result<i64, StoreError>;

    /// Writes the threshold events `crossing` gives (the plan's
    /// thresholds for the key it crossed, or `quota.blocked`) to the
    /// outbox, once per (user, key, period, threshold): a repeat is
    /// skipped. Returns how many were new (docs/events.md).
    fn record_thresholds(&mut self, crossing: &Crossing) -> Result<usize, StoreError>;

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

/// Domain reads and writes inside a write transaction.
pub trait DomainTx: QuotaTx {
    /// Whether the user exists.
    fn user_exists(&mut self, user_id: &str) -> Result<bool, StoreError>;
    /// A draft by id.
    fn draft(&mut self, draft_id: i64) -> Result<Draft, StoreError>;
    /// Whether `user_id` owns or collaborates on the draft.
    fn can_write(&mut self, user_id: &str, draft: &Draft) -> Result<bool, StoreError>;
    /// Creates a draft.
    fn insert_draft(
        &mut self,
        owner_id: &str,
        title: &str,
        now_ms: i64,
    ) -> Result<Draft, StoreError>;
    /// Appends a segment to a draft.
    fn insert_segment(
        &mut self,
        draft_id: i64,
        author_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError>;
    /// Creates a pending invite.
    fn insert_invite(
        &mut self,
        draft: &Draft,
        invitee_id: &str,
        now_ms: i64,
    ) -> Result<Invite, StoreError>;
    /// An invite by id.
    fn invite(&mut self, invite_id: i64) -> Result<Invite, StoreError>;
    /// Marks a pending invite accepted and adds the invitee as collaborator.
    fn accept_invite(&mut self, invite: &Invite, now_ms: i64) -> Result<Invite, StoreError>;
}

/// Plans and the global default limits. Every change is audited in the
/// transaction that makes it; a change that changes nothing is not.
pub trait PlanStore {
    /// Creates the plan, or changes only the fields given.
    fn set_plan(
        &self,
        actor: &str,
        plan_id: &str,
        change: &PlanChange,
        now_ms: i64,
    ) -> Result<Plan, StoreError>;
    /// A plan with its limits.
    fn plan(&self, plan_id: &str) -> Result<Plan, StoreError>;
    /// Every plan, by id.
    fn plans(&self) -> Result<Vec<Plan>, StoreError>;
    /// Sets the global default limit for an entitlement.
    fn set_default(
        &self,
        actor: &str,
        key: &str,
        value: i64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The global defaults, by key.
    fn defaults(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// How many users each plan has, for every plan (0 included), ordered
    /// by plan id.
    fn plan_user_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;
}

/// Users, their plan, their API tokens (stored only as a sha256) and
/// their usage.
pub trait UserStore {
    /// Creates a user on a plan.
    fn create_user(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError>;
    /// Creates a user on a plan together with their API token's sha256, in
    /// one transaction: there is never a user without their token.
    fn create_user_with_token(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<User, StoreError>;
    /// A user.
    fn user(&self, user_id: &str) -> Result<User, StoreError>;
    /// Moves a user to another plan and resets all their grace usage.
    fn set_user_plan(
        &self,
        actor: &str,
        user_id: &str,
        plan_id: &str,
        now_ms: i64,
    ) -> Result<User, StoreError>;
    /// The user's usage counters, by key.
    fn usage(&self, user_id: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// Grace used by the user on their plans, by plan and key: for a key
    /// with a usage period, that of its latest period with grace used.
    fn grace(&self, user_id: &str) -> Result<Vec<GraceUsed>, StoreError>;
    /// The user a token's sha256 (hex) belongs to.
    fn user_for_token(&self, token_sha256: &str) -> Result<Option<String>, StoreError>;
    /// Users whose id starts with `prefix` (case-sensitive), ordered by
    /// id (in code point order), at most `limit`; an empty prefix lists
    /// the first `limit`. Read as a range of an index in code point order
    /// (`id >= prefix` and below the least string after every string that
    /// starts with it): SQLite's primary key; on PostgreSQL an index of
    /// `id COLLATE "C"`, so the database's own collation does not matter.
    /// `%`, `_` and `\` in the prefix are plain characters.
    fn search_users(&self, prefix: &str, limit: usize) -> Result<Vec<User>, StoreError>;
}

/// Per-user overrides of a limit, optionally expiring.
pub trait OverrideStore {
    /// Sets (creates or replaces) a user's override for one entitlement.
    fn set_override(
        &self,
        actor: &str,
        user_id: &str,
        key: &str,
        value: i64,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<OverrideRow, StoreError>;
    /// Removes a user's override for one entitlement; returns it, or `None`
    /// when there was none (then nothing is written).
    fn clear_override(
        &self,
        actor: &str,
        user_id: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<OverrideRow>, StoreError>;
    /// Overrides, of one user or all, by user then key.
    fn overrides(&self, user_id: Option<&str>) -> Result<Vec<OverrideRow>, StoreError>;
}

/// The outbox of threshold events (docs/events.md).
pub trait EventStore {
    /// Events, of one user or all, newest first, at most `limit`.
    fn events(&self, user_id: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError>;
}

/// Webhook endpoints and the deliveries of the outbox's events
/// (docs/events.md). A new event gets one delivery per endpoint that
/// receives its type, written with the event.
pub trait WebhookStore {
    /// Registers an endpoint; audited without its secret.
    fn create_webhook(
        &self,
        actor: &str,
        id: &str,
        url: &str,
        secret: &str,
        events: &[EventKind],
        now_ms: i64,
    ) -> Result<Webhook, StoreError>;
    /// Every endpoint, by id (without secrets).
    fn webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
    /// Removes an endpoint and its deliveries; audited.
    fn delete_webhook(&self, actor: &str, id: &str, now_ms: i64) -> Result<Webhook, StoreError>;
    /// Claims up to `limit` pending deliveries due at `now_ms` and not in
    /// flight, for `lock_ms`: another claim skips them until then.
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lock_ms: i64,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;
    /// Records an attempt and what follows it, if `claim` still holds the
    /// delivery (false: another claim took it over, or the endpoint was
    /// deleted, and nothing was written). An endpoint failing since
    /// `failing_after_ms` or longer is marked failing, one that answers is
    /// not.
    fn finish_delivery(
        &self,
        claim: &Claim,
        attempt: &Attempt,
        next: Next,
        failing_after_ms: i64,
    ) -> Result<bool, StoreError>;
    /// The deliveries of an event, with their attempts.
    fn deliveries(&self, event_id: &str) -> Result<Vec<Delivery>, StoreError>;
    /// Sends an event again now, to every endpoint that receives its type;
    /// returns how many deliveries were queued.
    fn redeliver(&self, event_id: &str, now_ms: i64) -> Result<usize, StoreError>;
    /// Deletes events of a period created before `before_ms` with no
    /// delivery pending (events of keys without a period are kept: they
    /// hold their threshold as reached); returns how many.
    fn prune_events(&self, before_ms: i64) -> Result<usize, StoreError>;
}

/// The audit log of admin changes.
pub trait AuditStore {
    /// The audit log, newest first, at most `limit` entries.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

/// The admin dashboard's sessions (docs/dashboard.md). The cookie holds a
/// random id; only its sha256 is stored.
pub trait SessionStore {
    /// Stores a new session; deletes sessions expired by `now_ms` in the
    /// same transaction.
    fn create_ui_session(&self, session: &UiSession, now_ms: i64) -> Result<(), StoreError>;
    /// The session with this id hash, unless missing or expired
    /// (`expires_ms <= now_ms`).
    fn ui_session(&self, id_sha256: &str, now_ms: i64) -> Result<Option<UiSession>, StoreError>;
    /// Deletes a session; whether there was one.
    fn delete_ui_session(&self, id_sha256: &str) -> Result<bool, StoreError>;
    /// Deletes every session made under another admin token; how many.
    fn delete_ui_sessions_except(&self, admin_sha256: &str) -> Result<usize, StoreError>;
}

/// Enforce decisions counted per minute, plan, entitlement and status
/// (`quota_engine::stats`, the dashboard's overview).
pub trait DecisionCountStore {
    /// Adds these counts to the stored ones (a row per minute, plan, key
    /// and status; `count = count + excluded.count` upsert), all in one
    /// transaction.
    fn add_decision_minutes(&self, counts: &[DecisionMinute]) -> Result<(), StoreError>;
    /// Every row with `minute_ms >= since_ms`, ordered by `minute_ms`,
    /// `plan_id`, `entitlement_key`, `status`.
    fn decision_minutes(&self, since_ms: i64) -> Result<Vec<DecisionMinute>, StoreError>;
    /// Deletes rows with `minute_ms < before_ms`; how many.
    fn prune_decision_minutes(&self, before_ms: i64) -> Result<usize, StoreError>;
}

/// Policy component versions and the events of the policy lifecycle.
pub trait PolicyStore {
    /// Records a policy event; stores `component` (if given) under its
    /// sha256, and drops component versions beyond
    /// [`crate::KEEP_VERSIONS`] that are neither active nor shadow.
    fn record_policy_event(
        &self,
        actor: &str,
        action: PolicyAction,
        sha256: Option<&str>,
        component: Option<&[u8]>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError>;
    /// Records an upload's event (activate or shadow) with the component,
    /// its signature and, for a verified activation, its release, in one
    /// transaction.
    fn record_policy_upload(
        &self,
        actor: &str,
        action: PolicyAction,
        upload: &Upload<'_>,
        detail: &str,
        now_ms: i64,
    ) -> Result<PolicyEvent, StoreError>;
    /// The stored signature of a component version, if it came with one.
    fn policy_signature(&self, sha256: &str) -> Result<Option<String>, StoreError>;
    /// The highest activated version of the signed policy `name`.
    fn policy_release(&self, name: &str) -> Result<Option<Release>, StoreError>;
    /// Where the lifecycle stands, with the last `history` events.
    fn policy_state(&self, history: usize) -> Result<PolicyState, StoreError>;
    /// A stored component version by its sha256.
    fn policy_component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The bounded decision log.
pub trait DecisionLogStore {
    /// Appends decisions to the log, in one transaction.
    fn append_decisions(&self, entries: &[DecisionLogEntry]) -> Result<(), StoreError>;
    /// Keeps the newest `keep` entries and none from before `before_ms`;
    /// returns how many went.
    fn prune_decisions(&self, keep: usize, before_ms: i64) -> Result<usize, StoreError>;
    /// Logged decisions matching `filter`, newest first.
    fn decisions(&self, filter: &DecisionFilter) -> Result<Vec<DecisionLogEntry>, StoreError>;
    /// Calls `f` with at most [`DECISION_PAGE`] of the decisions logged
    /// under `plan_id` at or after `since_ms` with an id above `after_id`,
    /// oldest first; returns how many.
    fn decision_page(
        &self,
        plan_id: &str,
        since_ms: i64,
        after_id: i64,
        f: &mut dyn FnMut(LoggedDecision<'_>),
    ) -> Result<usize, StoreError>;
    /// Calls `f` with each decision logged under `plan_id` at or after
    /// `since_ms`, oldest first, page by page; returns how many.
    fn each_decision(
        &self,
        plan_id: &str,
        since_ms: i64,
        f: &mut dyn FnMut(LoggedDecision<'_>),
    ) -> Result<u64, StoreError> {
        let (mut after_id, mut count) = (i64::MIN, 0u64);
        loop {
            let read = self.decision_page(plan_id, since_ms, after_id, &mut |decision| {
                after_id = decision.id;
                f(decision);
            })?;
            count += u64::try_from(read).unwrap_or(u64::MAX);
            if read < DECISION_PAGE {
                return Ok(count);
            }
        }
    }
}

/// Responses of idempotent requests, kept for retries.
pub trait IdempotencyStore {
    /// The stored response for (user, key), if any.
    fn idempotent_response(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError>;
    /// The stored response for (user, key) once every transaction that may
    /// be storing it has ended: a concurrent request's response waiting
    /// for its commit is included, and returned only once committed.
    fn idempotent_response_committed(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError>;
    /// Deletes stored responses created before `before_ms`; returns how many.
    fn expire_idempotency_keys(&self, before_ms: i64) -> Result<usize, StoreError>;
}

/// Storing an idempotent response inside the transaction of its effects.
pub trait IdempotencyTx {
    /// Stores the response, so a retry can never apply the effects twice;
    /// [`crate::Conflict::IdempotencyKey`] when the key is taken.
    fn store_idempotent_response(
        &mut self,
        user_id: &str,
        key: &str,
        response: &StoredResponse,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}

/// Leases inside the guarded write transaction: what a grant and a settle
/// read and write beside the decision (docs/leases.md).
pub trait LeaseTx: QuotaTx {
    /// The node, its row locked until the transaction ends, so that two
    /// grants of one node cannot both fit under its `max_outstanding`.
    fn lock_node(&mut self, node_id: &str) -> Result<Node, StoreError>;

    /// Units the node's open leases unexpired at `now_ms` hold, leaving
    /// out the lease `except` (one being renewed).
    fn node_outstanding(
        &mut self,
        node_id: &str,
        now_ms: i64,
        except: Option<i64>,
    ) -> Result<i64, StoreError>;

    /// Records a new lease.
    fn insert_lease(&mut self, lease: &NewLease) -> Result<Lease, StoreError>;

    /// A lease held by `node_id`, with its user's row and its own locked
    /// until the transaction ends ([`StoreError::UnknownLease`] for
    /// another node's).
    fn lease(&mut self, node_id: &str, lease_id: i64) -> Result<Lease, StoreError>;

    /// Writes back what a settle changed: reserved units, totals, seq,
    /// the last settle, expiry, plan and usage key, revocation and end.
    fn update_lease(&mut self, lease: &Lease) -> Result<(), StoreError>;

    /// The store's clock, Unix ms, when the backend has one of its own
    /// (PostgreSQL: the database's, shared by a fleet); `None`: the
    /// engine's.
    fn store_now_ms(&mut self) -> Result<Option<i64>, StoreError>;
}

/// Node credentials and leases outside the guarded transaction: admin
/// changes, views, and ending expired leases.
pub trait LeaseStore {
    /// Creates a node with its token's sha256; audited.
    fn create_node(
        &self,
        actor: &str,
        node_id: &str,
        max_outstanding: i64,
        token_sha256: &str,
        now_ms: i64,
    ) -> Result<Node, StoreError>;
    /// Deletes a node (its token stops working) and ends its open leases
    /// as fully spent, in one transaction; audited. Returns the node and
    /// how many leases ended.
    fn delete_node(
        &self,
        actor: &str,
        node_id: &str,
        now_ms: i64,
    ) -> Result<(Node, usize), StoreError>;
    /// Every node, by id.
    fn nodes(&self) -> Result<Vec<Node>, StoreError>;
    /// The node a token's sha256 (hex) belongs to.
    fn node_for_token(&self, token_sha256: &str) -> Result<Option<Node>, StoreError>;
    /// Open leases of one user, or of one node, or all, by id.
    fn open_leases(
        &self,
        user_id: Option<&str>,
        node_id: Option<&str>,
    ) -> Result<Vec<Lease>, StoreError>;
    /// Ends every open lease whose expiry has passed as fully spent: its
    /// reserved units become usage, its grace units grace. Judged at
    /// `now_ms`, or by the database's clock where the backend has one.
    /// Returns how many ended.
    fn expire_leases(&self, now_ms: i64) -> Result<usize, StoreError>;
}
