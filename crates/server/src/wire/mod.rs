//! Every JSON shape the service answers with, as typed values: each is
//! `Serialize` for the answer and `ToSchema` for `/openapi.json`, so the
//! document describes exactly what is sent. The command line prints the
//! same shapes. The store and the engine hand out domain values; only
//! this module turns them into JSON.

mod admin;
mod decision;
mod lease;
mod policy;
mod whatif;

use serde::Serialize;
use utoipa::ToSchema;

pub use admin::{
    AuditEntry, AuditLog, Cleared, ClearedOverride, CreatedUser, CreatedWebhook, DecisionCount,
    DefaultLimit, Defaults, Delivery, DeliveryAttempt, Event, EventDeliveries, Events, GraceUsed,
    Override, Overrides, Plan, Plans, Redelivered, ShadowCounts, Stats, User, UserDetails, Webhook,
    Webhooks,
};
pub use decision::{Decision, DecisionStatus, LimitSource, Outcome};
pub use lease::{
    Consumed, CreatedNode, DeletedNode, Lease, LeaseGrant, Node, NodeLeases, Nodes, Refused,
    Settlement,
};
pub use policy::{
    Accepted, Activated, ActivePolicy, CacheResult, DecisionLog, DecisionLogEntry, FleetPolicy,
    PolicyEvent, PolicyState, RefusedPolicy, SelfTest, ShadowPolicy, ShadowVerdict, Shadowed,
    SignaturePolicy, SignedBy,
};
pub use whatif::{
    AffectedUser, Compared, Coverage, NOTE as WHAT_IF_NOTE, WhatIf, WhatIfExample, WhatIfTransition,
};

/// The body of every failure: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A failure: a stable code, a sentence, and for some codes the numbers
/// or the stage behind it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `quota_exceeded`, `invalid_request`.
    pub code: String,
    /// One human sentence.
    pub message: String,
    /// `policy_rejected`: the stage that refused the component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// `policy_rejected`: the refused component's sha256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `quota_exceeded`: the entitlement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement_key: Option<String>,
    /// `quota_exceeded`: the effective limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `quota_exceeded`: the usage before the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<i64>,
    /// `quota_exceeded`: the units requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested: Option<i64>,
    /// `quota_exceeded`: grace left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_remaining: Option<i64>,
}

impl ErrorBody {
    /// An error with `code` and `message` only.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: message.into(),
                ..ErrorDetail::default()
            },
        }
    }

    /// The 403 of a blocked request (docs/contract.md §4.3; the CLI's exit 3).
    pub fn quota_exceeded(blocked: &quota_engine::QuotaExceeded) -> Self {
        let d = &blocked.outcome.decision;
        ErrorBody {
            error: ErrorDetail {
                code: "quota_exceeded".to_owned(),
                message: blocked.to_string(),
                entitlement_key: Some(blocked.outcome.entitlement_key.clone()),
                limit: Some(d.limit),
                usage: Some(d.usage),
                requested: Some(d.requested),
                grace_remaining: Some(d.grace_remaining),
                ..ErrorDetail::default()
            },
        }
    }
}

/// Liveness and the active policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The sha256 of the policy this host decides with.
    pub policy_sha256: String,
    /// On a database shared by a fleet: the policy the fleet records, and
    /// whether this host has caught up with it; null on SQLite.
    pub fleet: Option<FleetPolicy>,
}

/// A new draft and the decision that admitted it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DraftCreated {
    /// The draft.
    pub draft: Draft,
    /// The decision.
    pub outcome: Outcome,
}

/// A new segment and the decision that admitted it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SegmentAppended {
    /// The segment.
    pub segment: Segment,
    /// The decision.
    pub outcome: Outcome,
}

/// A new invite (inviting uses no quota).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InviteCreated {
    /// The pending invite.
    pub invite: Invite,
}

/// An accepted invite and the decision that admitted it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InviteAccepted {
    /// The invite, now accepted.
    pub invite: Invite,
    /// The decision.
    pub outcome: Outcome,
}

/// A draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Draft {
    /// The draft id.
    pub id: i64,
    /// Its owner.
    pub owner_id: String,
    /// Its title.
    pub title: String,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
}

impl From<&quota_store::Draft> for Draft {
    fn from(d: &quota_store::Draft) -> Self {
        Draft {
            id: d.id,
            owner_id: d.owner_id.clone(),
            title: d.title.clone(),
            created_at_ms: d.created_at_ms,
        }
    }
}

/// A segment of a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Segment {
    /// The segment id.
    pub id: i64,
    /// The draft.
    pub draft_id: i64,
    /// Who appended it.
    pub author_id: String,
    /// Its text.
    pub body: String,
    /// When, Unix ms.
    pub created_at_ms: i64,
}

impl From<&quota_store::Segment> for Segment {
    fn from(s: &quota_store::Segment) -> Self {
        Segment {
            id: s.id,
            draft_id: s.draft_id,
            author_id: s.author_id.clone(),
            body: s.body.clone(),
            created_at_ms: s.created_at_ms,
        }
    }
}

/// Where an invite stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InviteStatus {
    /// Not accepted yet.
    Pending,
    /// Accepted; the invitee collaborates on the draft.
    Accepted,
}

/// An invite to collaborate on a draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
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
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it was accepted, Unix ms.
    pub accepted_at_ms: Option<i64>,
}

impl From<&quota_store::Invite> for Invite {
    fn from(i: &quota_store::Invite) -> Self {
        Invite {
            id: i.id,
            draft_id: i.draft_id,
            inviter_id: i.inviter_id.clone(),
            invitee_id: i.invitee_id.clone(),
            status: match i.status {
                quota_store::InviteStatus::Pending => InviteStatus::Pending,
                quota_store::InviteStatus::Accepted => InviteStatus::Accepted,
            },
            created_at_ms: i.created_at_ms,
            accepted_at_ms: i.accepted_at_ms,
        }
    }
}

/// Your entitlements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Entitlements {
    /// You.
    pub user_id: String,
    /// Your plan.
    pub plan_id: String,
    /// Each key your plan, the defaults or your overrides name, by key.
    pub entitlements: Vec<Entitlement>,
}

/// A usage period: usage and grace start again from zero at its end
/// (docs/periods.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Period {
    /// `day`, `week`, `month` or `anniversary`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    /// Its first instant, Unix ms.
    pub start_ms: i64,
    /// Its end, Unix ms: the next period starts there.
    pub end_ms: i64,
}

impl From<quota_store::Period> for Period {
    fn from(p: quota_store::Period) -> Self {
        Period {
            kind: p.kind.as_str(),
            start_ms: p.start_ms,
            end_ms: p.end_ms,
        }
    }
}

/// One entitlement as enforcing would see it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Entitlement {
    /// The entitlement.
    pub entitlement_key: String,
    /// The usage counter it reads.
    pub usage_key: String,
    /// Units used.
    pub usage: i64,
    /// The effective limit; `-1` unlimited.
    pub limit: i64,
    /// Where the limit comes from.
    pub limit_source: LimitSource,
    /// Grace left.
    pub grace_remaining: i64,
    /// Whether enforcement applies to you.
    pub enforced: bool,
    /// Of `usage`, units held by open leases of nodes deciding at the
    /// edge: used until settled.
    pub reserved: i64,
    /// The usage period counted now, when the plan gives the key one:
    /// `usage`, `grace_remaining` and `reserved` are that period's.
    /// Absent: the key counts for ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

impl From<&quota_engine::Checked> for Entitlement {
    fn from(checked: &quota_engine::Checked) -> Self {
        let d = &checked.outcome.decision;
        Entitlement {
            entitlement_key: checked.outcome.entitlement_key.clone(),
            usage_key: checked.outcome.usage_key.usage_key.clone(),
            usage: d.usage,
            limit: d.limit,
            limit_source: d.limit_source.into(),
            grace_remaining: d.grace_remaining,
            enforced: d.enforced,
            reserved: checked.outcome.reserved,
            period: checked.outcome.period.map(Period::from),
        }
    }
}

/// Whether a request would stay within the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// Within the limit.
    Ok,
    /// Beyond it, whatever grace or enforcement would then do.
    WouldExceed,
}

/// The answer of a soft check.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Check {
    /// `ok` or `would_exceed`.
    pub result: CheckResult,
    /// The decision enforcing would make now.
    pub outcome: Outcome,
}

impl From<&quota_engine::Checked> for Check {
    fn from(checked: &quota_engine::Checked) -> Self {
        Check {
            result: if checked.ok {
                CheckResult::Ok
            } else {
                CheckResult::WouldExceed
            },
            outcome: (&checked.outcome).into(),
        }
    }
}
