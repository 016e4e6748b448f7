//! What a plan change would have done: the decisions logged under a plan,
//! re-decided in their order with a hypothetical plan, changing nothing.
//!
//! Each user's requests are replayed as they came, and what the
//! hypothetical plan would have changed is carried forward: a request it
//! blocks adds no usage, one it admits that was blocked adds its units, and
//! grace is consumed as it decides, so later requests of the same user (in
//! the same usage period) see the usage and grace they would have seen.
//! This is a replay of logged requests, not a forecast: requests that were
//! never made, or that users would have made differently, are not in it.
//!
//! One evaluator decides every request, on the calling thread: a what-if
//! uses one core.

use std::collections::{BTreeMap, HashMap, HashSet};

use quota_host::{Evaluator, PolicyModule};
use quota_policy_core::json::{Evaluated, input_from_value, input_to_value};
use quota_policy_core::{DecisionInput, Override, PlanInfo, Status};
use quota_store::{DecisionLogStore, LoggedDecision, PlanChange, StoreError};
use serde::Deserialize;
use serde_json::Value;

/// The plan a what-if decides with: the plan as each decision saw it,
/// with these fields changed (as `PUT /admin/plans/{id}` would change them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanHypothesis {
    /// Limits to set, by entitlement key (`-1` unlimited).
    pub limits: Vec<(String, i64)>,
    /// Entitlement keys whose plan limit is removed.
    pub remove_limits: Vec<String>,
    /// Block once grace is used up (false: warn only).
    pub enforcement_enabled: Option<bool>,
    /// Grace units per user and entitlement.
    pub grace_count: Option<i64>,
    /// Share of users (0-100) enforcement applies to.
    pub rollout_percent: Option<i64>,
}

impl PlanHypothesis {
    /// The hypothesis a plan change states. Thresholds never change a
    /// decision and are left out; periods are refused: a replay re-decides
    /// decisions in the usage periods they were made in.
    pub fn from_change(change: PlanChange) -> Result<Self, String> {
        if !change.periods.is_empty() {
            return Err(
                "a what-if replays decisions in the usage periods they were made in: leave out `periods`"
                    .to_owned(),
            );
        }
        Ok(PlanHypothesis {
            limits: change.limits,
            remove_limits: change.remove_limits,
            enforcement_enabled: change.enforcement_enabled,
            grace_count: change.grace_count,
            rollout_percent: change.rollout_percent,
        })
    }

    /// `input` as it would have been under the hypothetical plan.
    fn apply(&self, input: &mut DecisionInput) {
        let key = input.entitlement_key.as_str();
        let limit = self.limits.iter().find(|(k, _)| k == key).map(|(_, l)| *l);
        let removed = self.remove_limits.iter().any(|k| k == key);
        // A decision logged without a plan record (none existed then)
        // sees a new plan's defaults.
        let plan = input.plan.get_or_insert(PlanInfo {
            limit: None,
            enforcement_enabled: false,
            grace_count: 0,
            rollout_percent: 100,
        });
        // As `PUT` applies them: a removal wins over a limit for the same key.
        if removed {
            plan.limit = None;
        } else if let Some(limit) = limit {
            plan.limit = Some(limit);
        }
        if let Some(enforce) = self.enforcement_enabled {
            plan.enforcement_enabled = enforce;
        }
        if let Some(grace) = self.grace_count {
            plan.grace_count = grace;
        }
        if let Some(rollout) = self.rollout_percent {
            plan.rollout_percent = rollout;
        }
    }
}

/// Users a report names, by default.
pub const USERS_LISTED: usize = 20;

/// Which decisions a what-if replays, and how much it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatIfOptions {
    /// The plan whose logged decisions are re-decided.
    pub plan_id: String,
    /// Only decisions made at or after this time (Unix ms).
    pub since_ms: i64,
    /// Examples kept per status transition.
    pub examples: usize,
    /// Users listed by name (those with the most changed decisions).
    pub users_listed: usize,
}

impl WhatIfOptions {
    /// The decisions of `plan_id` logged in the last `since` before
    /// `now_ms` (`None`: the whole log), with `examples` per transition and
    /// [`USERS_LISTED`] users named.
    pub fn new(
        plan_id: String,
        since: Option<std::time::Duration>,
        now_ms: i64,
        examples: usize,
    ) -> Self {
        let since_ms = since.map_or(0, |since| {
            now_ms.saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        });
        WhatIfOptions {
            plan_id,
            since_ms,
            examples,
            users_listed: USERS_LISTED,
        }
    }
}

/// Decisions that went from one status to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The logged status.
    pub from: String,
    /// The hypothetical one (`error` when the policy refused the input).
    pub to: String,
    /// How many decisions.
    pub count: u64,
    /// A few of them.
    pub examples: Vec<Example>,
}

/// One changed decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The logged decision's id.
    pub id: i64,
    /// When it was made (Unix ms).
    pub at_ms: i64,
    /// The input the hypothetical plan decided (usage and grace carried forward).
    pub input: Value,
    /// The logged decision.
    pub logged: Value,
    /// The hypothetical decision.
    pub hypothetical: Value,
}

/// A user whose decisions would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedUser {
    /// The user.
    pub user_id: String,
    /// Their decisions that would change.
    pub changed: u64,
    /// Of those, admitted then and blocked now.
    pub newly_blocked: u64,
    /// Of those, blocked then and admitted now.
    pub newly_admitted: u64,
}

/// What the hypothetical plan would have done to the logged decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatIfReport {
    /// The plan.
    pub plan_id: String,
    /// The policy that re-decided.
    pub policy_sha256: String,
    /// The window asked for (Unix ms, from).
    pub since_ms: i64,
    /// The first and last replayed decision's time.
    pub first_at_ms: Option<i64>,
    /// See `first_at_ms`.
    pub last_at_ms: Option<i64>,
    /// Decisions re-decided.
    pub replayed: u64,
    /// Logged decisions whose input or output could not be read (skipped).
    pub unreadable: u64,
    /// Decisions whose status would stay.
    pub unchanged: u64,
    /// Decisions whose status would change.
    pub changed: u64,
    /// By (logged, hypothetical) status.
    pub transitions: Vec<Transition>,
    /// Users with a replayed decision.
    pub users: u64,
    /// Users with a changed decision.
    pub users_affected: u64,
    /// The most affected users.
    pub affected: Vec<AffectedUser>,
    /// Units admitted then, and under the hypothetical plan.
    pub units_admitted: (i64, i64),
    /// Grace consumed then, and under the hypothetical plan.
    pub grace_consumed: (i64, i64),
}

/// Why a what-if could not run.
#[derive(Debug, thiserror::Error)]
pub enum WhatIfError {
    /// The decision log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy could not be instantiated.
    #[error("the policy cannot run: {0}")]
    Policy(String),
}

/// The parts of a logged decision a replay needs.
#[derive(Deserialize)]
struct LoggedOutput<'a> {
    #[serde(borrow)]
    status: std::borrow::Cow<'a, str>,
    grace_to_consume: i64,
    #[serde(borrow)]
    usage_key: std::borrow::Cow<'a, str>,
}

/// A logged input as the host wrote it (the JSON form of docs/contract.md
/// §2.1), read straight into its fields: a replay reads a million of them,
/// and going through a JSON tree first costs twice the rest of the replay.
/// A row this does not read is read again the general way.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggedInput {
    user_id: String,
    plan_id: String,
    entitlement_key: String,
    requested: i64,
    now_ms: i64,
    usage: i64,
    r#override: Option<LoggedOverride>,
    plan: Option<LoggedPlan>,
    default_limit: Option<i64>,
    grace_used: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggedOverride {
    value: i64,
    expires_at_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoggedPlan {
    limit: Option<i64>,
    enforcement_enabled: bool,
    grace_count: i64,
    rollout_percent: Option<i64>,
}

/// The decision input logged as `text`, if it is one.
fn read_input(text: &str) -> Option<DecisionInput> {
    match serde_json::from_str::<LoggedInput>(text) {
        Ok(i) => Some(DecisionInput {
            user_id: i.user_id,
            plan_id: i.plan_id,
            entitlement_key: i.entitlement_key,
            requested: i.requested,
            now_ms: i.now_ms,
            usage: i.usage,
            r#override: i.r#override.map(|o| Override {
                value: o.value,
                expires_at_ms: o.expires_at_ms,
            }),
            plan: i.plan.map(|p| PlanInfo {
                limit: p.limit,
                enforcement_enabled: p.enforcement_enabled,
                grace_count: p.grace_count,
                rollout_percent: p.rollout_percent.unwrap_or(100),
            }),
            default_limit: i.default_limit,
            grace_used: i.grace_used,
        }),
        Err(_) => serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|value| input_from_value(&value).ok()),
    }
}

/// What the hypothetical plan changed so far, per (user, counter, period).
#[derive(Default)]
struct Drift {
    usage: HashMap<String, i64>,
    grace: HashMap<String, i64>,
}

fn drift_key(user: &str, key: &str, period: Option<i64>) -> String {
    match period {
        Some(start) => format!("{user}\u{0}{key}\u{0}{start}"),
        None => format!("{user}\u{0}{key}"),
    }
}

struct Replay<'a> {
    hypothesis: &'a PlanHypothesis,
    options: &'a WhatIfOptions,
    evaluator: Evaluator,
    drift: Drift,
    report: WhatIfReport,
    transitions: BTreeMap<(String, String), Transition>,
    users: HashMap<String, AffectedUser>,
    seen_users: HashSet<String>,
}

impl Replay<'_> {
    fn add(&mut self, logged: LoggedDecision<'_>) {
        let (Some(mut input), Ok(output)) = (
            read_input(logged.input_json),
            serde_json::from_str::<LoggedOutput<'_>>(logged.output_json),
        ) else {
            self.report.unreadable += 1;
            return;
        };
        self.report.replayed += 1;
        self.report.first_at_ms.get_or_insert(logged.at_ms);
        self.report.last_at_ms = Some(logged.at_ms);
        if !self.seen_users.contains(logged.user_id) {
            self.seen_users.insert(logged.user_id.to_owned());
        }

        let period = logged.period_start_ms;
        let usage_key = drift_key(logged.user_id, &output.usage_key, period);
        let grace_key = drift_key(logged.user_id, logged.entitlement_key, period);
        let usage_drift = self.drift.usage.get(&usage_key).copied().unwrap_or(0);
        let grace_drift = self.drift.grace.get(&grace_key).copied().unwrap_or(0);
        input.usage = input.usage.saturating_add(usage_drift).max(0);
        input.grace_used = input.grace_used.saturating_add(grace_drift).max(0);
        self.hypothesis.apply(&mut input);

        let then_admitted = output.status != Status::Block.as_str();
        let then_units = if then_admitted { input.requested } else { 0 };
        let then_grace = if then_admitted {
            output.grace_to_consume
        } else {
            0
        };
        let evaluated = self.evaluator.evaluate(&input);
        let (to, now_units, now_grace) = match &evaluated {
            Evaluated::Decision(decision, _) if decision.status != Status::Block => (
                decision.status.as_str(),
                input.requested,
                decision.grace_to_consume,
            ),
            Evaluated::Decision(decision, _) => (decision.status.as_str(), 0, 0),
            // Refused or failed: a host would not have applied it.
            Evaluated::PolicyError(_) | Evaluated::Unavailable(_) => ("error", 0, 0),
        };
        let add = |total: &mut i64, n: i64| *total = total.saturating_add(n);
        let (units_then, units_now) = &mut self.report.units_admitted;
        add(units_then, then_units);
        add(units_now, now_units);
        let (grace_then, grace_now) = &mut self.report.grace_consumed;
        add(grace_then, then_grace);
        add(grace_now, now_grace);
        if now_units != then_units {
            let drift = self.drift.usage.entry(usage_key).or_insert(0);
            add(drift, now_units.saturating_sub(then_units));
        }
        if now_grace != then_grace {
            let drift = self.drift.grace.entry(grace_key).or_insert(0);
            add(drift, now_grace.saturating_sub(then_grace));
        }

        if to == output.status {
            self.report.unchanged += 1;
            return;
        }
        self.report.changed += 1;
        let user = self
            .users
            .entry(logged.user_id.to_owned())
            .or_insert_with(|| AffectedUser {
                user_id: logged.user_id.to_owned(),
                changed: 0,
                newly_blocked: 0,
                newly_admitted: 0,
            });
        user.changed += 1;
        let now_admitted = to != "block" && to != "error";
        if then_admitted && !now_admitted {
            user.newly_blocked += 1;
        } else if !then_admitted && now_admitted {
            user.newly_admitted += 1;
        }
        let transition = self
            .transitions
            .entry((output.status.to_string(), to.to_owned()))
            .or_insert_with(|| Transition {
                from: output.status.to_string(),
                to: to.to_owned(),
                count: 0,
                examples: Vec::new(),
            });
        transition.count += 1;
        if transition.examples.len() < self.options.examples {
            transition.examples.push(Example {
                id: logged.id,
                at_ms: logged.at_ms,
                input: input_to_value(&input),
                logged: serde_json::from_str(logged.output_json).unwrap_or(Value::Null),
                hypothetical: evaluated.to_value(),
            });
        }
    }

    fn finish(mut self) -> WhatIfReport {
        self.report.users = u64::try_from(self.seen_users.len()).unwrap_or(u64::MAX);
        self.report.users_affected = u64::try_from(self.users.len()).unwrap_or(u64::MAX);
        let mut affected: Vec<AffectedUser> = self.users.into_values().collect();
        affected.sort_by(|a, b| b.changed.cmp(&a.changed).then(a.user_id.cmp(&b.user_id)));
        affected.truncate(self.options.users_listed);
        self.report.affected = affected;
        self.report.transitions = self.transitions.into_values().collect();
        self.report
            .transitions
            .sort_by(|a, b| b.count.cmp(&a.count).then(a.from.cmp(&b.from)));
        self.report
    }
}

/// Re-decides the decisions `log` holds for `options.plan_id` since
/// `options.since_ms` with `policy` under `hypothesis`, in their order,
/// carrying forward each user's usage and grace. Reads only.
pub fn what_if<L: DecisionLogStore + ?Sized>(
    log: &L,
    policy: &PolicyModule,
    hypothesis: &PlanHypothesis,
    options: &WhatIfOptions,
) -> Result<WhatIfReport, WhatIfError> {
    let evaluator = policy
        .evaluator()
        .map_err(|e| WhatIfError::Policy(e.to_string()))?;
    let mut replay = Replay {
        hypothesis,
        options,
        evaluator,
        drift: Drift::default(),
        report: WhatIfReport {
            plan_id: options.plan_id.clone(),
            policy_sha256: policy.sha256().to_owned(),
            since_ms: options.since_ms,
            first_at_ms: None,
            last_at_ms: None,
            replayed: 0,
            unreadable: 0,
            unchanged: 0,
            changed: 0,
            transitions: Vec::new(),
            users: 0,
            users_affected: 0,
            affected: Vec::new(),
            units_admitted: (0, 0),
            grace_consumed: (0, 0),
        },
        transitions: BTreeMap::new(),
        users: HashMap::new(),
        seen_users: HashSet::new(),
    };
    log.each_decision(&options.plan_id, options.since_ms, &mut |logged| {
        replay.add(logged);
    })?;
    Ok(replay.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast reader and the contract's reader agree on what a host logs.
    #[test]
    fn a_logged_input_reads_the_same_either_way() {
        let base = DecisionInput {
            user_id: "u\u{e9}\"1".into(),
            plan_id: "pro".into(),
            entitlement_key: "drafts.max".into(),
            requested: 3,
            now_ms: 1_700_000_000_000,
            usage: 7,
            r#override: None,
            plan: None,
            default_limit: None,
            grace_used: 1,
        };
        let with_all = DecisionInput {
            r#override: Some(Override {
                value: -1,
                expires_at_ms: Some(5),
            }),
            plan: Some(PlanInfo {
                limit: None,
                enforcement_enabled: true,
                grace_count: 2,
                rollout_percent: 40,
            }),
            default_limit: Some(9),
            ..base.clone()
        };
        for input in [base, with_all] {
            let text = input_to_value(&input).to_string();
            assert_eq!(read_input(&text), Some(input.clone()));
            let general = input_from_value(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(read_input(&text), Some(general));
        }
        // Omitted fields and a missing rollout read as the contract says.
        let sparse = r#"{"user_id":"u","plan_id":"p","entitlement_key":"k","requested":1,
            "now_ms":0,"usage":0,"grace_used":0,"plan":{"limit":1,"enforcement_enabled":false,"grace_count":0}}"#;
        let read = read_input(sparse).unwrap();
        assert_eq!(read.plan.unwrap().rollout_percent, 100);
        assert_eq!(read.r#override, None);
        assert_eq!(read_input(r#"{"user_id":"u"}"#), None);
    }
}
