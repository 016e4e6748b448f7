//! The answer of a what-if: what a plan change would have done to the
//! logged decisions (docs/what-if.md).

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use quota_engine::whatif::WhatIfReport;

/// What a hypothetical plan would have done to the decisions logged under
/// the plan, replayed in their order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WhatIf {
    /// What this is, in one sentence: a replay of logged requests, not a forecast.
    pub note: String,
    /// The plan.
    pub plan_id: String,
    /// The policy that re-decided (the active one).
    pub policy_sha256: String,
    /// Whose decisions the replay covers.
    pub covers: Coverage,
    /// The window asked for: decisions from this time (Unix ms; 0: the whole log).
    pub since_ms: i64,
    /// The first replayed decision's time.
    pub first_at_ms: Option<i64>,
    /// The last replayed decision's time.
    pub last_at_ms: Option<i64>,
    /// Decisions re-decided.
    pub replayed: u64,
    /// Logged decisions that could not be read (skipped).
    pub unreadable: u64,
    /// Decisions whose status would stay.
    pub unchanged: u64,
    /// Decisions whose status would change.
    pub changed: u64,
    /// By (logged, hypothetical) status, most first.
    pub transitions: Vec<WhatIfTransition>,
    /// Users with a replayed decision.
    pub users: u64,
    /// Users with a decision that would change.
    pub users_affected: u64,
    /// The most affected users (at most 20).
    pub affected_users: Vec<AffectedUser>,
    /// Units admitted as logged, and under the hypothetical plan.
    pub units_admitted: Compared,
    /// Grace consumed as logged, and under the hypothetical plan.
    pub grace_consumed: Compared,
    /// Time the replay took.
    pub elapsed_ms: u64,
}

/// Whose decisions a what-if covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Coverage {
    /// `service`: the one decision log of this service (SQLite); `this_host`:
    /// this host's own log only (each host of a fleet logs its own decisions).
    pub scope: String,
    /// The host whose log was read.
    pub host: String,
}

/// Decisions that would go from one status to another.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WhatIfTransition {
    /// The logged status.
    pub from: String,
    /// The hypothetical status (`error`: the policy would refuse the input).
    pub to: String,
    /// How many decisions.
    pub count: u64,
    /// A few, oldest first.
    pub examples: Vec<WhatIfExample>,
}

/// One decision that would change.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WhatIfExample {
    /// The logged decision's id (`GET /admin/decisions`).
    pub id: i64,
    /// When it was made (Unix ms).
    pub at_ms: i64,
    /// The input the hypothetical plan decided: the logged one with the
    /// plan changed and usage and grace carried forward.
    #[schema(value_type = Object)]
    pub input: Value,
    /// The logged decision.
    #[schema(value_type = Object)]
    pub logged: Value,
    /// The hypothetical decision.
    #[schema(value_type = Object)]
    pub hypothetical: Value,
}

/// A user whose decisions would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AffectedUser {
    /// The user.
    pub user_id: String,
    /// Decisions that would change.
    pub changed: u64,
    /// Admitted as logged, blocked under the hypothetical plan.
    pub newly_blocked: u64,
    /// Blocked as logged, admitted under the hypothetical plan.
    pub newly_admitted: u64,
}

/// A quantity as logged and under the hypothetical plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Compared {
    /// As logged.
    pub logged: i64,
    /// Under the hypothetical plan.
    pub hypothetical: i64,
}

/// The sentence every report carries.
pub const NOTE: &str = "A replay of the logged requests made under this plan, in their order, \
     re-decided with the hypothetical plan and carrying forward the usage and grace it would \
     have left (a blocked request adds no usage). It is not a forecast: requests that were \
     never made, or that users would have made differently, are not in it.";

impl WhatIf {
    /// The report of the engine's replay, covering `covers`.
    pub fn new(report: WhatIfReport, covers: Coverage, elapsed_ms: u64) -> Self {
        WhatIf {
            note: NOTE.to_owned(),
            plan_id: report.plan_id,
            policy_sha256: report.policy_sha256,
            covers,
            since_ms: report.since_ms,
            first_at_ms: report.first_at_ms,
            last_at_ms: report.last_at_ms,
            replayed: report.replayed,
            unreadable: report.unreadable,
            unchanged: report.unchanged,
            changed: report.changed,
            transitions: report
                .transitions
                .into_iter()
                .map(|t| WhatIfTransition {
                    from: t.from,
                    to: t.to,
                    count: t.count,
                    examples: t
                        .examples
                        .into_iter()
                        .map(|e| WhatIfExample {
                            id: e.id,
                            at_ms: e.at_ms,
                            input: e.input,
                            logged: e.logged,
                            hypothetical: e.hypothetical,
                        })
                        .collect(),
                })
                .collect(),
            users: report.users,
            users_affected: report.users_affected,
            affected_users: report
                .affected
                .into_iter()
                .map(|u| AffectedUser {
                    user_id: u.user_id,
                    changed: u.changed,
                    newly_blocked: u.newly_blocked,
                    newly_admitted: u.newly_admitted,
                })
                .collect(),
            units_admitted: Compared {
                logged: report.units_admitted.0,
                hypothetical: report.units_admitted.1,
            },
            grace_consumed: Compared {
                logged: report.grace_consumed.0,
                hypothetical: report.grace_consumed.1,
            },
            elapsed_ms,
        }
    }
}
