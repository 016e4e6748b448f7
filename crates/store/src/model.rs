//! The rows the store reads and writes, as plain values.

use quota_policy_core::{Override, PlanInfo};

use crate::period::{Period, PeriodKind};

/// What the policy needs about one (user, entitlement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaState {
    /// The user's current plan.
    pub plan_id: String,
    /// The plan's settings and its limit for the key.
    pub plan: PlanInfo,
    /// The user's override for the key, expired or not.
    pub r#override: Option<Override>,
    /// The global default for the key.
    pub default_limit: Option<i64>,
    /// The period the key counts now, when it has one: `usage`,
    /// `grace_used` and the reservations are this period's.
    pub period: Option<Period>,
    /// The usage counter's value (this period's, when the key has one).
    pub usage: i64,
    /// Grace used for (user, current plan, key) (this period).
    pub grace_used: i64,
    /// Units of the usage counter held by open leases: used until settled.
    pub reserved: i64,
    /// Of those, the units held on grace of (current plan, key).
    pub reserved_grace: i64,
    /// The plan names thresholds for the key: a consume may write
    /// events (docs/events.md).
    pub has_thresholds: bool,
    /// The time by the database's clock (Unix ms) when the backend is
    /// shared by a fleet (PostgreSQL): the one clock every host decides
    /// by. `None`: the engine's own clock.
    pub now_ms: Option<i64>,
}

/// A plan with all its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The plan id.
    pub id: String,
    /// Block once grace is used up (off: warn only).
    pub enforcement_enabled: bool,
    /// Grace units per (user, plan, entitlement).
    pub grace_count: i64,
    /// Share of users (0..=100) enforcement applies to.
    pub rollout_percent: i64,
    /// Limits by entitlement key, sorted by key.
    pub limits: Vec<(String, i64)>,
    /// Reset periods by entitlement key, sorted by key: only keys that
    /// have one (the others count for ever).
    pub periods: Vec<(String, PeriodKind)>,
    /// Threshold percentages by entitlement key, each list ascending:
    /// only keys that have some (docs/events.md).
    pub thresholds: Vec<(String, Vec<i64>)>,
}

/// Grace used for one (plan, entitlement), in one period when the key
/// has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraceUsed {
    /// The plan.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The start of the period it was used in; `None`: the key has none.
    pub period_start_ms: Option<i64>,
    /// Units used.
    pub used: i64,
}

/// A user and their plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user id.
    pub id: String,
    /// The current plan.
    pub plan_id: String,
}

/// An override as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRow {
    /// The user.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The limit it sets.
    pub value: i64,
    /// When it stops applying; `None` never.
    pub expires_at_ms: Option<i64>,
    /// Who set it.
    pub created_by: String,
    /// When it was first set.
    pub created_at_ms: i64,
    /// When it was last changed.
    pub updated_at_ms: i64,
}

impl OverrideRow {
    /// Whether it has expired at `now_ms` (expiring exactly now is expired).
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What, e.g. `plan.set`.
    pub action: String,
    /// On what, e.g. `plan:free`.
    pub subject: String,
    /// The state before, JSON text (none when created).
    pub before_json: Option<String>,
    /// The state after, JSON text (none when removed).
    pub after_json: Option<String>,
}

/// A draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The draft id.
    pub id: i64,
    /// Its owner.
    pub owner_id: String,
    /// Its title.
    pub title: String,
    /// When it was created.
    pub created_at_ms: i64,
}

/// A segment appended to a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The segment id.
    pub id: i64,
    /// The draft.
    pub draft_id: i64,
    /// Who appended it.
    pub author_id: String,
    /// Its text.
    pub body: String,
    /// When.
    pub created_at_ms: i64,
}

/// Where an invite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteStatus {
    /// Not accepted yet.
    Pending,
    /// Accepted once; the invitee collaborates on the draft.
    Accepted,
}

/// An invite to collaborate on a draft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// The invite id.
    pub id: i64,
    /// The draft.
    pub draft_id: i64,
    /// Who invited (the draft's owner).
    pub inviter_id: String,
    /// Who is invited.
    pub invitee_id: String,
    /// Pending or accepted.
    pub status: InviteStatus,
    /// When it was created.
    pub created_at_ms: i64,
    /// When it was accepted.
    pub accepted_at_ms: Option<i64>,
}

/// A change to a plan: only the fields given change. A new plan starts with
/// enforcement off, grace 0, rollout 100 and no limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChange {
    /// Limits to set, by entitlement key (`-1` unlimited).
    pub limits: Vec<(String, i64)>,
    /// Entitlement keys whose plan limit to remove (falls back to the default).
    pub remove_limits: Vec<String>,
    /// Enforcement on or off.
    pub enforcement_enabled: Option<bool>,
    /// Grace units per (user, plan, entitlement).
    pub grace_count: Option<i64>,
    /// Share of users (0..=100) enforcement applies to.
    pub rollout_percent: Option<i64>,
    /// Reset periods to set, by entitlement key; [`PeriodKind::None`]
    /// removes a key's period. A key whose kind changes starts a new
    /// period at the change.
    pub periods: Vec<(String, PeriodKind)>,
    /// Threshold percentages to set, by entitlement key, replacing the
    /// key's list; an empty list removes them.
    pub thresholds: Vec<(String, Vec<i64>)>,
}

/// A stored response to an idempotent request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// The sha256 of the request (method, path, body) it answered.
    pub request_sha256: String,
    /// The HTTP status.
    pub status_code: u16,
    /// The JSON body.
    pub response_json: String,
}

/// A node credential: a host that decides at the edge from leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The node id.
    pub id: String,
    /// The most units its open, unexpired leases may hold at once, across
    /// users.
    pub max_outstanding: i64,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Its node settled it without asking for more.
    Settled,
    /// Its expiry passed before it was settled: it counted as fully spent.
    Expired,
    /// Its node was deleted: it counted as fully spent.
    NodeDeleted,
}

impl LeaseEnd {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseEnd::Settled => "settled",
            LeaseEnd::Expired => "expired",
            LeaseEnd::NodeDeleted => "node_deleted",
        }
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        [LeaseEnd::Settled, LeaseEnd::Expired, LeaseEnd::NodeDeleted]
            .into_iter()
            .find(|end| end.as_str() == name)
    }
}

/// The last settle applied to a lease, kept so that a retry of it counts
/// once and gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSettle {
    /// Units it reported spent.
    pub spent: i64,
    /// Units it asked for again.
    pub more: i64,
    /// Its answer, as sent.
    pub response: String,
}

/// A lease: units of one user's entitlement reserved for one node. Its
/// `reserved` units count as used until they are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lease id.
    pub id: i64,
    /// The node holding it.
    pub node_id: String,
    /// The user whose units it holds.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The usage counter its spent units go to.
    pub usage_key: String,
    /// The user's plan when it was (last) granted: its grace units are
    /// that plan's.
    pub plan_id: String,
    /// Units held now, unspent as far as the store knows.
    pub reserved: i64,
    /// Of those, the units granted on grace (spent last).
    pub reserved_grace: i64,
    /// Units granted over the lease's life.
    pub granted_total: i64,
    /// Units settled as spent over the lease's life.
    pub spent_total: i64,
    /// The number of the last settle applied (0: none yet).
    pub seq: i64,
    /// The last settle applied, for its retries.
    pub last_settle: Option<LastSettle>,
    /// When it was first granted, Unix ms.
    pub created_at_ms: i64,
    /// When it expires, Unix ms by the store's clock.
    pub expires_at_ms: i64,
    /// When an admin change (plan, override, default) touched what it was
    /// granted on; cleared when it is renewed.
    pub revoked_at_ms: Option<i64>,
    /// The usage period it reserves in, when its key has one: spent
    /// units go to that period's counter, and it expires by the period's
    /// end.
    pub period: Option<Period>,
    /// The limit the decision that granted it (last) used: its settled
    /// units cross thresholds against it.
    pub limit: i64,
    /// When and why it ended; `None` while it is open.
    pub ended: Option<(i64, LeaseEnd)>,
}

/// A lease to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLease {
    /// The node.
    pub node_id: String,
    /// The user.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The usage counter.
    pub usage_key: String,
    /// The user's plan at the grant.
    pub plan_id: String,
    /// Units granted.
    pub reserved: i64,
    /// Of those, units on grace.
    pub reserved_grace: i64,
    /// The time of the grant, Unix ms.
    pub now_ms: i64,
    /// When it expires, Unix ms.
    pub expires_at_ms: i64,
    /// The usage period it reserves in, when its key has one.
    pub period: Option<Period>,
    /// The limit the granting decision used.
    pub limit: i64,
}

impl Lease {
    /// The lease `new` as recorded under `id`: nothing settled yet.
    pub(crate) fn new(id: i64, new: &NewLease) -> Lease {
        Lease {
            id,
            node_id: new.node_id.clone(),
            user_id: new.user_id.clone(),
            entitlement_key: new.entitlement_key.clone(),
            usage_key: new.usage_key.clone(),
            plan_id: new.plan_id.clone(),
            reserved: new.reserved,
            reserved_grace: new.reserved_grace,
            granted_total: new.reserved,
            spent_total: 0,
            seq: 0,
            last_settle: None,
            created_at_ms: new.now_ms,
            expires_at_ms: new.expires_at_ms,
            revoked_at_ms: None,
            period: new.period,
            limit: new.limit,
            ended: None,
        }
    }
}

/// A dashboard session. The cookie holds a random id; only its sha256 is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSession {
    /// The sha256 (hex) of the cookie's random id.
    pub id_sha256: String,
    /// The token the session's forms must send back.
    pub csrf_token: String,
    /// The sha256 (hex) of the admin token the session was made with.
    pub admin_sha256: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it ends (Unix ms): expired from then on.
    pub expires_ms: i64,
}

/// Decisions of one minute (Unix ms, a multiple of 60_000), plan, entitlement and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionMinute {
    /// The minute's start (Unix ms, a multiple of 60_000).
    pub minute_ms: i64,
    /// The plan decided under.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The decision's status.
    pub status: String,
    /// How many decisions.
    pub count: i64,
}
