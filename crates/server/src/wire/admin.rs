//! The admin API's answers: plans, defaults, users, overrides, the audit
//! log and the decision counts.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// A plan with all its limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Plan {
    /// The plan id.
    pub id: String,
    /// Block once grace is used up (false: warn only).
    pub enforcement_enabled: bool,
    /// Grace units per user and entitlement.
    pub grace_count: i64,
    /// Share of users (0-100) enforcement applies to.
    pub rollout_percent: i64,
    /// Limits by entitlement key (`-1` unlimited).
    pub limits: BTreeMap<String, i64>,
    /// Reset periods by entitlement key (`day`, `week`, `month`,
    /// `anniversary`); a key not named counts for ever.
    pub periods: BTreeMap<String, String>,
    /// Threshold percentages by entitlement key (docs/events.md).
    pub thresholds: BTreeMap<String, Vec<i64>>,
}

impl From<&quota_store::Plan> for Plan {
    fn from(p: &quota_store::Plan) -> Self {
        Plan {
            id: p.id.clone(),
            enforcement_enabled: p.enforcement_enabled,
            grace_count: p.grace_count,
            rollout_percent: p.rollout_percent,
            limits: p.limits.iter().cloned().collect(),
            periods: p
                .periods
                .iter()
                .map(|(key, kind)| (key.clone(), kind.as_str().to_owned()))
                .collect(),
            thresholds: p.thresholds.iter().cloned().collect(),
        }
    }
}

/// The plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Plans {
    /// By id.
    pub plans: Vec<Plan>,
}

/// A global default limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DefaultLimit {
    /// The entitlement.
    pub entitlement_key: String,
    /// The limit (`-1` unlimited).
    pub limit: i64,
}

/// The global default limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Defaults {
    /// Limits by entitlement key.
    pub defaults: BTreeMap<String, i64>,
}

/// A user and their plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct User {
    /// The user id.
    pub id: String,
    /// The current plan.
    pub plan_id: String,
}

impl From<&quota_store::User> for User {
    fn from(u: &quota_store::User) -> Self {
        User {
            id: u.id.clone(),
            plan_id: u.plan_id.clone(),
        }
    }
}

/// A new user and their API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreatedUser {
    /// The user.
    pub user: User,
    /// The API token: shown once, stored only hashed.
    pub token: String,
}

/// A user with their usage counters and grace used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserDetails {
    /// The user id.
    pub id: String,
    /// The current plan.
    pub plan_id: String,
    /// Usage counters by key.
    pub usage: BTreeMap<String, i64>,
    /// Grace used, by plan and entitlement.
    pub grace_used: Vec<GraceUsed>,
    /// Open leases of nodes holding the user's units: their `reserved`
    /// units count as used until settled.
    pub leases: Vec<super::Lease>,
}

/// Grace used for one (plan, entitlement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GraceUsed {
    /// The plan.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The start of the usage period it was used in (Unix ms): the key's
    /// latest period with grace used. Absent for a key without a period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start_ms: Option<i64>,
    /// Units used.
    pub used: i64,
}

impl UserDetails {
    /// The user `user_id` as `store` has them now.
    pub fn read(
        store: &(impl quota_store::UserStore + quota_store::LeaseStore),
        user_id: &str,
    ) -> Result<Self, quota_store::StoreError> {
        let user = store.user(user_id)?;
        Ok(UserDetails {
            id: user.id,
            plan_id: user.plan_id,
            usage: store.usage(user_id)?.into_iter().collect(),
            grace_used: store
                .grace(user_id)?
                .into_iter()
                .map(|g| GraceUsed {
                    plan_id: g.plan_id,
                    entitlement_key: g.entitlement_key,
                    period_start_ms: g.period_start_ms,
                    used: g.used,
                })
                .collect(),
            leases: store
                .open_leases(Some(user_id), None)?
                .iter()
                .map(super::Lease::from)
                .collect(),
        })
    }
}

/// An override of one user's limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Override {
    /// The user.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The limit it sets (`-1` unlimited).
    pub value: i64,
    /// When it stops applying, Unix ms; null: never.
    pub expires_at_ms: Option<i64>,
    /// Who set it.
    pub created_by: String,
    /// When it was first set, Unix ms.
    pub created_at_ms: i64,
    /// When it was last changed, Unix ms.
    pub updated_at_ms: i64,
    /// Whether it had expired when this answer was made.
    pub expired: bool,
}

impl Override {
    /// The override `row` as it stands at `now_ms`.
    pub fn at(row: &quota_store::OverrideRow, now_ms: i64) -> Self {
        Override {
            user_id: row.user_id.clone(),
            entitlement_key: row.entitlement_key.clone(),
            value: row.value,
            expires_at_ms: row.expires_at_ms,
            created_by: row.created_by.clone(),
            created_at_ms: row.created_at_ms,
            updated_at_ms: row.updated_at_ms,
            expired: row.expired_at(now_ms),
        }
    }
}

/// Overrides, by user then key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Overrides {
    /// The overrides.
    pub overrides: Vec<Override>,
}

/// The answer to removing an override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClearedOverride {
    /// Whether there was one.
    pub cleared: bool,
    /// The removed override, if there was one.
    pub r#override: Option<Override>,
}

/// The answer to clearing something that may not have been set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Cleared {
    /// Whether it was set.
    pub cleared: bool,
}

/// One admin change.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What, e.g. `plan.update`.
    pub action: String,
    /// On what, e.g. `plan:free`.
    pub subject: String,
    /// The state before: an object, or a number for a default limit
    /// (null when created).
    pub before: serde_json::Value,
    /// The state after (null when removed).
    pub after: serde_json::Value,
}

impl From<&quota_store::AuditEntry> for AuditEntry {
    fn from(e: &quota_store::AuditEntry) -> Self {
        AuditEntry {
            id: e.id,
            at_ms: e.at_ms,
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            before: json_text(e.before_json.as_deref()),
            after: json_text(e.after_json.as_deref()),
        }
    }
}

/// JSON text from a column, as a value; null when absent or unreadable.
pub(crate) fn json_text(text: Option<&str>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The audit log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditLog {
    /// The entries.
    pub entries: Vec<AuditEntry>,
}

/// Threshold events, newest first (docs/events.md).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Events {
    /// The events.
    pub events: Vec<Event>,
}

/// A threshold event: what a webhook receives, and where it belongs.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Event {
    /// Its id, the same in every delivery (`webhook-id`).
    pub event_id: String,
    /// `threshold.reached` or `quota.blocked`.
    #[schema(value_type = String)]
    pub r#type: &'static str,
    /// The user.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The start of its usage period (Unix ms); absent for a key without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_start_ms: Option<i64>,
    /// The threshold percentage, or `blocked`.
    pub threshold: String,
    /// When, Unix ms.
    pub created_at_ms: i64,
    /// The body a webhook receives.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<&quota_store::Event> for Event {
    fn from(e: &quota_store::Event) -> Self {
        Event {
            event_id: e.event_id.clone(),
            r#type: e.kind.as_str(),
            user_id: e.user_id.clone(),
            entitlement_key: e.entitlement_key.clone(),
            period_start_ms: e.period_start_ms,
            threshold: e.threshold.clone(),
            created_at_ms: e.created_at_ms,
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A webhook endpoint (its secret is never shown again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<String>,
    /// When it was registered, Unix ms.
    pub created_at_ms: i64,
    /// Since when its deliveries have been failing, if they are (Unix ms).
    pub failing_since_ms: Option<i64>,
    /// Failing for a day or more.
    pub failing: bool,
}

impl From<&quota_store::Webhook> for Webhook {
    fn from(w: &quota_store::Webhook) -> Self {
        Webhook {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.iter().map(|k| k.as_str().to_owned()).collect(),
            created_at_ms: w.created_at_ms,
            failing_since_ms: w.failing_since_ms,
            failing: w.failing,
        }
    }
}

/// A webhook endpoint just registered, with its secret: shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The endpoint.
    pub webhook: Webhook,
    /// Its Standard Webhooks secret (`whsec_…`), for verifying signatures.
    pub secret: String,
}

/// The webhook endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Webhooks {
    /// By id.
    pub webhooks: Vec<Webhook>,
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    /// When, Unix ms.
    pub at_ms: i64,
    /// The status the endpoint answered, if it answered.
    pub status: Option<i64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// How long it took, ms.
    pub duration_ms: i64,
}

/// An event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Delivery {
    /// The endpoint.
    pub webhook_id: String,
    /// `pending`, `delivered` or `failed` (every retry failed).
    pub state: String,
    /// The next attempt while pending, Unix ms.
    pub next_attempt_at_ms: i64,
    /// When it was delivered.
    pub delivered_at_ms: Option<i64>,
    /// Every attempt, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
}

impl From<&quota_store::Delivery> for Delivery {
    fn from(d: &quota_store::Delivery) -> Self {
        Delivery {
            webhook_id: d.webhook_id.clone(),
            state: d.state.as_str().to_owned(),
            next_attempt_at_ms: d.next_attempt_at_ms,
            delivered_at_ms: d.delivered_at_ms,
            attempts: d
                .attempts
                .iter()
                .map(|a| DeliveryAttempt {
                    at_ms: a.at_ms,
                    status: a.status,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}

/// An event's deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EventDeliveries {
    /// The event.
    pub event_id: String,
    /// One per endpoint it was sent to.
    pub deliveries: Vec<Delivery>,
}

/// Deliveries queued by a redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Redelivered {
    /// How many.
    pub queued: usize,
}

/// Decision counts since the service started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stats {
    /// By mode, plan, entitlement and status.
    pub decisions: Vec<DecisionCount>,
    /// Calls where the policy could not decide.
    pub policy_errors: u64,
    /// Shadow verdicts.
    pub shadow: ShadowCounts,
    /// The active policy's sha256.
    pub policy_sha256: String,
}

/// Decisions of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DecisionCount {
    /// `enforce` or `check`.
    pub mode: String,
    /// The plan.
    pub plan_id: String,
    /// The entitlement (`other` for keys no plan, default or override names).
    pub entitlement_key: String,
    /// `allow`, `allow_grace`, `warn_only` or `block`.
    pub status: String,
    /// How many.
    pub count: u64,
}

/// Shadow policy verdicts against the active policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct ShadowCounts {
    /// The same decision.
    pub same: u64,
    /// A different decision.
    pub diverged: u64,
    /// The shadow could not decide.
    pub failed: u64,
}

impl Stats {
    /// The counts of `m`, under the active policy `policy_sha256`.
    pub fn new(m: &quota_engine::metrics::MetricsSnapshot, policy_sha256: String) -> Self {
        Stats {
            decisions: m
                .decisions
                .iter()
                .map(|c| DecisionCount {
                    mode: c.mode.to_owned(),
                    plan_id: c.plan_id.clone(),
                    entitlement_key: c.entitlement_key.clone(),
                    status: c.status.to_owned(),
                    count: c.count,
                })
                .collect(),
            policy_errors: m.policy_errors,
            shadow: ShadowCounts {
                same: m.shadow_same,
                diverged: m.shadow_diverged,
                failed: m.shadow_errors,
            },
            policy_sha256,
        }
    }
}
