//! The policy lifecycle's records, as values: the events that activated,
//! rolled back, shadowed or rejected a component version, and the entries
//! of the bounded decision log.

/// Component versions kept (besides the active and shadow ones).
pub const KEEP_VERSIONS: usize = 10;

/// What happened to a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Became the active policy after passing every stage.
    Activate,
    /// Became the active policy again by rollback.
    Rollback,
    /// Became the shadow policy.
    Shadow,
    /// The shadow policy was cleared.
    ClearShadow,
    /// An upload failed a stage; the detail says which and why.
    Reject,
}

impl PolicyAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Activate => "activate",
            PolicyAction::Rollback => "rollback",
            PolicyAction::Shadow => "shadow",
            PolicyAction::ClearShadow => "clear_shadow",
            PolicyAction::Reject => "reject",
        }
    }
}

/// An uploaded component recorded with its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload<'a> {
    /// Its sha256.
    pub sha256: &'a str,
    /// Its bytes.
    pub component: &'a [u8],
    /// The detached signature that came with it (docs/signing.md), kept
    /// so that a rollback, a restart or another host can check it again.
    pub signature: Option<&'a str>,
    /// Whether `signature` was verified with a trusted key: a verified one
    /// replaces the stored signature, an unverified one never does.
    pub verified: bool,
    /// For a verified activation: the release it raises.
    pub release: Option<&'a ReleaseChange>,
}

impl<'a> Upload<'a> {
    /// A component with no signature: what a plain policy event stores.
    pub fn unsigned(sha256: &'a str, component: &'a [u8]) -> Self {
        Upload {
            sha256,
            component,
            signature: None,
            verified: false,
            release: None,
        }
    }
}

/// The highest version of a signed policy name activated so far: an
/// upload of that name must have a higher one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The policy's name, from its signed manifest.
    pub name: String,
    /// The version.
    pub version: String,
    /// The component it was.
    pub sha256: String,
}

/// A release to record with an activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseChange {
    /// The release after the change.
    pub release: Release,
    /// The version it replaces, as read before the check (`None`: the
    /// name is new). When another host moved it meanwhile, the record
    /// fails with [`crate::Conflict::Release`] and nothing is kept.
    pub replaces: Option<String>,
}

/// One policy event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEvent {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// `activate`, `rollback`, `shadow`, `clear_shadow` or `reject`.
    pub action: String,
    /// The component's sha256 (none for `clear_shadow`).
    pub sha256: Option<String>,
    /// Free text: a rejection's stage and reason, a self-test summary.
    pub detail: String,
}

/// Where the policy lifecycle stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyState {
    /// The event that made the active policy active (none: the built-in
    /// reference policy, never replaced).
    pub active: Option<PolicyEvent>,
    /// The policy a rollback would restore: the most recently active one
    /// other than the active one.
    pub previous: Option<String>,
    /// The event that set the shadow policy, if one is set.
    pub shadow: Option<PolicyEvent>,
    /// The most recent rejected upload.
    pub last_rejection: Option<PolicyEvent>,
    /// The most recent events, newest first.
    pub history: Vec<PolicyEvent>,
}

/// One logged enforce decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLogEntry {
    /// Increasing id (0 before it is stored).
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The user.
    pub user_id: String,
    /// The user's plan then.
    pub plan_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The decision's status.
    pub status: String,
    /// The deciding policy.
    pub policy_sha256: String,
    /// The policy's input (docs/contract.md §2.1), JSON text.
    pub input_json: String,
    /// The decision (docs/contract.md §2.1 output), JSON text.
    pub output_json: String,
    /// The shadow policy, if one was set.
    pub shadow_sha256: Option<String>,
    /// `same`, `diverged` or `failed`.
    pub shadow_verdict: Option<String>,
    /// The shadow's decision when it diverged, or its error.
    pub shadow_json: Option<String>,
    /// The start of the usage period the decision counted in (Unix ms),
    /// for a key with a period (docs/periods.md).
    pub period_start_ms: Option<i64>,
}

/// Logged decisions a replay reads at a time: each page is read on its
/// own, so a long replay holds neither a transaction nor the whole log.
pub const DECISION_PAGE: usize = 10_000;

/// A logged decision as a replay reads it, borrowed from the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedDecision<'a> {
    /// Increasing id.
    pub id: i64,
    /// When, Unix ms.
    pub at_ms: i64,
    /// The user.
    pub user_id: &'a str,
    /// The entitlement.
    pub entitlement_key: &'a str,
    /// The logged status.
    pub status: &'a str,
    /// The policy's input, JSON text.
    pub input_json: &'a str,
    /// The decision, JSON text.
    pub output_json: &'a str,
    /// The usage period's start, for a key with a period.
    pub period_start_ms: Option<i64>,
}

/// Which logged decisions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only this entitlement's.
    pub entitlement_key: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only those where the shadow diverged.
    pub diverged: bool,
    /// Only ids below this (paging backwards).
    pub before_id: Option<i64>,
    /// At most this many, newest first.
    pub limit: usize,
}
