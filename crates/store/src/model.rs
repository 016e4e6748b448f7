//! The rows the store reads and writes, as plain values.

use quota_policy_core::{Override, PlanInfo};

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
    /// The usage counter's value.
    pub usage: i64,
    /// Grace used for (user, current plan, key).
    pub grace_used: i64,
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
