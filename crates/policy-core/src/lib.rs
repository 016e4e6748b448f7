//! The quota decision in plain Rust.
//!
//! This crate is the reference policy: limit resolution (override > plan >
//! default, `-1` unlimited, overrides expire), deterministic enforcement
//! rollout, and grace. It has no WebAssembly in it, so it is compiled twice:
//! natively (for tests, differential checks and the native baseline) and as
//! the policy component through the thin `policy/` guest.
//!
//! Every function is total: arithmetic saturates and no input can panic.
//!
//! ```
//! use quota_policy_core::{decide, DecisionInput, PlanInfo, Status, LimitSource};
//!
//! let input = DecisionInput {
//!     user_id: "u1".into(),
//!     plan_id: "free".into(),
//!     entitlement_key: "drafts.max".into(),
//!     requested: 1,
//!     now_ms: 1_700_000_000_000,
//!     usage: 3,
//!     r#override: None,
//!     plan: Some(PlanInfo { limit: Some(3), enforcement_enabled: true, grace_count: 2, rollout_percent: 100 }),
//!     default_limit: None,
//!     grace_used: 0,
//! };
//! let decision = decide(&input).unwrap();
//! assert_eq!(decision.status, Status::AllowGrace);
//! assert_eq!(decision.limit_source, LimitSource::Plan);
//! assert_eq!(decision.grace_to_consume, 1);
//! assert_eq!(decision.grace_remaining, 1);
//! ```

pub mod names;
mod reason;
mod rollout;
mod usage_key;
mod validate;

#[cfg(feature = "json")]
pub mod json;

pub use rollout::{fnv1a64, rollout_bucket};
pub use usage_key::{USAGE_KEY_TABLE, usage_key};

/// `-1`: the value that means "unlimited" wherever a limit appears.
pub const UNLIMITED: i64 = -1;

/// The longest `reason` a host accepts from a policy, in bytes; the
/// reference's sentence stays within it for any key.
pub const MAX_REASON_BYTES: usize = 1024;

/// An admin override of one user's limit for one entitlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The limit the override sets: `-1` (unlimited) or more.
    pub value: i64,
    /// Unix ms at which the override stops applying; `None` never expires.
    pub expires_at_ms: Option<i64>,
}

/// What the user's current plan says about one entitlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInfo {
    /// The plan's limit for the key (`-1` or more); `None` when the plan does not name it.
    pub limit: Option<i64>,
    /// Whether the plan blocks once grace is used up (off: warn only).
    pub enforcement_enabled: bool,
    /// Grace units per (user, plan, entitlement): 0 or more.
    pub grace_count: i64,
    /// Share of users (0..=100) enforcement applies to.
    pub rollout_percent: i64,
}

/// Everything the policy needs to decide one request (docs/contract.md §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionInput {
    /// The subject; non-empty.
    pub user_id: String,
    /// The subject's current plan; non-empty.
    pub plan_id: String,
    /// The entitlement, e.g. `drafts.max`; non-empty.
    pub entitlement_key: String,
    /// Units this action would use: 1 or more.
    pub requested: i64,
    /// Unix time in milliseconds, supplied by the host.
    pub now_ms: i64,
    /// Current value of the usage counter: 0 or more.
    pub usage: i64,
    /// The user's override for this key, if any.
    pub r#override: Option<Override>,
    /// The plan's settings, if the user has a plan record.
    pub plan: Option<PlanInfo>,
    /// The global default limit for this key (`-1` or more), if any.
    pub default_limit: Option<i64>,
    /// Grace already consumed for (user, plan, key): 0 or more.
    pub grace_used: i64,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Within the limit, or unlimited.
    Allow,
    /// Over the limit, admitted by consuming grace.
    AllowGrace,
    /// Over the limit, admitted because enforcement does not apply.
    WarnOnly,
    /// Over the limit with not enough grace: the action must not happen.
    Block,
}

impl Status {
    /// The snake_case name used in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Allow => "allow",
            Status::AllowGrace => "allow_grace",
            Status::WarnOnly => "warn_only",
            Status::Block => "block",
        }
    }

    /// Whether the host may perform the action.
    pub fn is_admitted(self) -> bool {
        self != Status::Block
    }
}

/// Where the effective limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitSource {
    /// An active override.
    Override,
    /// The plan's limit for the key.
    Plan,
    /// The global default for the key.
    Default,
    /// Nothing configured anywhere: unlimited.
    None,
}

impl LimitSource {
    /// The snake_case name used in JSON, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Override => "override",
            LimitSource::Plan => "plan",
            LimitSource::Default => "default",
            LimitSource::None => "none",
        }
    }
}

/// A decision, as a value: the host applies it (docs/contract.md §2.1 output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The outcome.
    pub status: Status,
    /// The effective limit; `-1` unlimited.
    pub limit: i64,
    /// Where `limit` came from.
    pub limit_source: LimitSource,
    /// An active override set the limit.
    pub override_applied: bool,
    /// An override was present but had expired.
    pub override_expired: bool,
    /// The input's usage, echoed.
    pub usage: i64,
    /// The input's requested units, echoed.
    pub requested: i64,
    /// `usage + requested`, saturating.
    pub projected_usage: i64,
    /// Units of this request beyond the limit; 0 when within.
    pub overage: i64,
    /// Enforcement applies to this user (plan flag and rollout).
    pub enforced: bool,
    /// Grace units the host must record if it applies this decision.
    pub grace_to_consume: i64,
    /// Grace left after applying this decision.
    pub grace_remaining: i64,
    /// One human sentence naming the entitlement key and the numbers.
    pub reason: String,
}

/// Which usage counter an entitlement reads (docs/contract.md §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKeyInfo {
    /// The usage counter, e.g. `drafts.created`.
    pub usage_key: String,
    /// The key came from the fallback rule, not the explicit table.
    pub fallback: bool,
}

/// The kind of a [`PolicyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The input breaks a documented range; the message names the field.
    InvalidInput,
}

impl ErrorCode {
    /// The snake_case code used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
        }
    }
}

/// Why the policy could not decide. A bug signal, never a silent allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// What kind of error.
    pub code: ErrorCode,
    /// A human message naming the offending field.
    pub message: String,
}

impl PolicyError {
    /// An `invalid_input` error with `message`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        PolicyError {
            code: ErrorCode::InvalidInput,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for PolicyError {}

/// The effective limit and how it was found (docs/contract.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resolved {
    limit: i64,
    source: LimitSource,
    override_applied: bool,
    override_expired: bool,
}

fn resolve_limit(input: &DecisionInput) -> Resolved {
    let mut override_expired = false;
    if let Some(o) = &input.r#override {
        let active = match o.expires_at_ms {
            None => true,
            Some(expires) => input.now_ms < expires,
        };
        if active {
            return Resolved {
                limit: o.value,
                source: LimitSource::Override,
                override_applied: true,
                override_expired: false,
            };
        }
        override_expired = true;
    }
    let (limit, source) = match (
        input.plan.as_ref().and_then(|p| p.limit),
        input.default_limit,
    ) {
        (Some(limit), _) => (limit, LimitSource::Plan),
        (None, Some(limit)) => (limit, LimitSource::Default),
        (None, None) => (UNLIMITED, LimitSource::None),
    };
    Resolved {
        limit,
        source,
        override_applied: false,
        override_expired,
    }
}

/// Whether enforcement applies to this user (docs/contract.md §3.3).
fn is_enforced(input: &DecisionInput) -> bool {
    match &input.plan {
        Some(plan) => {
            plan.enforcement_enabled
                && i64::from(rollout_bucket(&input.plan_id, &input.user_id)) < plan.rollout_percent
        }
        None => false,
    }
}

/// Decide one request (docs/contract.md §3). Total: errors only for out-of-range input.
pub fn decide(input: &DecisionInput) -> Result<Decision, PolicyError> {
    validate::check(input)?;
    let resolved = resolve_limit(input);
    let enforced = is_enforced(input);
    let projected_usage = input.usage.saturating_add(input.requested);
    // Grace still available before this decision; negative when over-consumed.
    let grace_available = input
        .plan
        .as_ref()
        .map_or(0, |p| p.grace_count.saturating_sub(input.grace_used));

    let within = resolved.limit == UNLIMITED || projected_usage <= resolved.limit;
    let (status, overage, grace_to_consume) = if within {
        (Status::Allow, 0, 0)
    } else {
        let overage = projected_usage.saturating_sub(resolved.limit.max(input.usage));
        if !enforced {
            (Status::WarnOnly, overage, 0)
        } else if overage > 0 && overage <= grace_available {
            // An overage of 0 beyond the limit means usage is already at
            // the 64-bit maximum: nothing more can be counted, so an
            // enforced request blocks rather than taking grace for nothing.
            (Status::AllowGrace, overage, overage)
        } else {
            (Status::Block, overage, 0)
        }
    };
    let grace_remaining = if input.plan.is_some() {
        grace_available.saturating_sub(grace_to_consume).max(0)
    } else {
        0
    };

    let mut decision = Decision {
        status,
        limit: resolved.limit,
        limit_source: resolved.source,
        override_applied: resolved.override_applied,
        override_expired: resolved.override_expired,
        usage: input.usage,
        requested: input.requested,
        projected_usage,
        overage,
        enforced,
        grace_to_consume,
        grace_remaining,
        reason: String::new(),
    };
    decision.reason = reason::sentence(&input.entitlement_key, &decision);
    Ok(decision)
}

#[cfg(test)]
mod tests;
