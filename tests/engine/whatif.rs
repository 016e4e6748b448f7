//! What-if of a plan change (docs/what-if.md): the logged decisions of a
//! plan re-decided with a hypothetical plan, checked against a direct
//! computation of each user's requests, with the store left as it was.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quota_engine::QuotaRequest;
use quota_engine::log::{DecisionLog, Retention};
use quota_engine::whatif::{PlanHypothesis, WhatIfOptions, what_if};
use quota_policy_core::{DecisionInput, PlanInfo, Status};
use quota_store::{DecisionFilter, PlanChange};

use super::*;

/// The requests made, in order: (user, units). `pro` users first, then a
/// `free` user whose decisions a what-if of `pro` must not touch.
const REQUESTS: [(&str, i64); 16] = [
    ("ann", 1),
    ("bob", 2),
    ("ann", 1),
    ("cat", 1),
    ("ann", 1),
    ("bob", 2),
    ("ann", 1),
    ("bob", 2),
    ("ann", 1),
    ("cat", 1),
    ("bob", 1),
    ("ann", 1),
    ("dan", 5),
    ("dan", 5),
    ("bob", 1),
    ("ann", 1),
];
const LIMIT: i64 = 3;

/// What the hypothetical plan decides for each `pro` request, computed
/// from the requests themselves (not from the log) with the native
/// decision: each user's usage and grace as the hypothetical plan would
/// have left them.
fn direct(plan: &PlanInfo) -> Vec<(String, Status)> {
    let mut usage: BTreeMap<&str, i64> = BTreeMap::new();
    let mut grace: BTreeMap<&str, i64> = BTreeMap::new();
    let mut out = Vec::new();
    for (user, units) in REQUESTS.iter().filter(|(u, _)| *u != "dan") {
        let input = DecisionInput {
            user_id: (*user).to_owned(),
            plan_id: "pro".into(),
            entitlement_key: "drafts.max".into(),
            requested: *units,
            now_ms: T0,
            usage: usage.get(user).copied().unwrap_or(0),
            r#override: None,
            plan: Some(plan.clone()),
            default_limit: None,
            grace_used: grace.get(user).copied().unwrap_or(0),
        };
        let decision = quota_policy_core::decide(&input).unwrap();
        if decision.status != Status::Block {
            *usage.entry(user).or_insert(0) += units;
            *grace.entry(user).or_insert(0) += decision.grace_to_consume;
        }
        out.push(((*user).to_owned(), decision.status));
    }
    out
}

/// Everything a what-if could change, as text.
fn snapshot(store: &AnyStore) -> String {
    let users: Vec<_> = ["ann", "bob", "cat", "dan"]
        .iter()
        .map(|u| (store.usage(u).unwrap(), store.grace(u).unwrap()))
        .collect();
    format!(
        "{users:?} {:?} {:?} {}",
        store.plans().unwrap(),
        store.audit_log(100).unwrap(),
        store
            .decisions(&DecisionFilter {
                limit: 1000,
                ..DecisionFilter::default()
            })
            .unwrap()
            .len()
    )
}

fn turning_enforcement_on_blocks_exactly_what_a_direct_computation_blocks(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let log = Arc::new(DecisionLog::start(engine.store().clone(), Retention::default()).unwrap());
    let engine = engine.with_decision_sink(log.clone());
    let store = engine.store();
    // Warn-only: every request is admitted, the ones over the limit as `warn_only`.
    plan_with_user(store, "pro", LIMIT, 0, false, "ann");
    store.create_user("test", "bob", "pro", T0).unwrap();
    store.create_user("test", "cat", "pro", T0).unwrap();
    plan_with_user(store, "free", 1, 0, false, "dan");
    for (user, units) in REQUESTS {
        let request = QuotaRequest::new(user, "drafts.max", units);
        engine.admit(&request).unwrap().commit().unwrap();
    }
    assert!(log.flush(Duration::from_secs(10)));
    let logged: Vec<String> = store
        .decisions(&DecisionFilter {
            limit: 100,
            ..DecisionFilter::default()
        })
        .unwrap()
        .into_iter()
        .rev()
        .filter(|e| e.plan_id == "pro")
        .map(|e| e.status)
        .collect();
    assert!(logged.iter().any(|s| s == "warn_only"), "{logged:?}");
    assert!(logged.iter().all(|s| s != "block"), "{logged:?}");
    let before = snapshot(store);

    for grace in [0, 2] {
        let hypothesis = PlanHypothesis {
            enforcement_enabled: Some(true),
            grace_count: Some(grace),
            ..PlanHypothesis::default()
        };
        let options = WhatIfOptions {
            plan_id: "pro".into(),
            since_ms: 0,
            examples: 100,
            users_listed: 10,
        };
        let report = what_if(store, &engine.policy(), &hypothesis, &options).unwrap();

        let plan = PlanInfo {
            limit: Some(LIMIT),
            enforcement_enabled: true,
            grace_count: grace,
            rollout_percent: 100,
        };
        let expected = direct(&plan);
        assert_eq!(report.replayed, expected.len() as u64);
        let mut transitions: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut affected: BTreeMap<String, u64> = BTreeMap::new();
        for (then, (user, now)) in logged.iter().zip(&expected) {
            if then != now.as_str() {
                *transitions
                    .entry((then.clone(), now.as_str().to_owned()))
                    .or_default() += 1;
                *affected.entry(user.clone()).or_default() += 1;
            }
        }
        let reported: BTreeMap<(String, String), u64> = report
            .transitions
            .iter()
            .map(|t| ((t.from.clone(), t.to.clone()), t.count))
            .collect();
        assert_eq!(reported, transitions, "grace {grace}");
        // Only warn-only decisions turn into blocks, and the knock-on
        // effect shows: a blocked request adds no usage, so fewer are
        // blocked than were warned.
        let warned = logged.iter().filter(|s| *s == "warn_only").count() as u64;
        let blocked = transitions
            .iter()
            .filter(|((_, to), _)| to == "block")
            .map(|(_, n)| n)
            .sum::<u64>();
        assert!(
            transitions.keys().all(|(from, _)| from == "warn_only"),
            "{transitions:?}"
        );
        assert!(blocked > 0 && blocked <= warned, "{blocked} of {warned}");
        let reported_users: BTreeMap<String, u64> = report
            .affected
            .iter()
            .map(|u| (u.user_id.clone(), u.changed))
            .collect();
        assert_eq!(reported_users, affected);
        assert_eq!(report.users, 3, "dan is on another plan");
        assert_eq!(report.changed, transitions.values().sum::<u64>());
        let examples: u64 = report
            .transitions
            .iter()
            .map(|t| t.examples.len() as u64)
            .sum();
        assert_eq!(examples, report.changed, "every change is an example here");
        let admitted_then: i64 = REQUESTS
            .iter()
            .filter(|(u, _)| *u != "dan")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(report.units_admitted.0, admitted_then);
        assert!(report.units_admitted.1 < admitted_then);
    }
    // The usage, grace, plans, audit log and decision log are as they were.
    assert_eq!(snapshot(store), before);
}

/// A period the decisions were made in carries nothing into the next:
/// what the hypothetical plan changed is carried forward per period. On
/// SQLite, whose engine clock the test moves (PostgreSQL picks periods by
/// its own clock).
#[test]
fn drift_stays_in_its_period() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::at(T0);
    let engine = engine(Backend::Sqlite, dir.path(), &clock);
    let log = Arc::new(DecisionLog::start(engine.store().clone(), Retention::default()).unwrap());
    let engine = engine.with_decision_sink(log.clone());
    let store = engine.store();
    plan_with_user(store, "pro", 1, 0, true, "ann");
    let change = PlanChange {
        periods: vec![("drafts.max".into(), quota_store::PeriodKind::Day)],
        ..PlanChange::default()
    };
    store.set_plan("test", "pro", &change, T0).unwrap();
    let day = 86_400_000;
    let request = QuotaRequest::new("ann", "drafts.max", 1);
    // Two a day on two days: the second one blocked each day.
    for at in [T0 + 1, T0 + 2, T0 + day + 1, T0 + day + 2] {
        clock.set(at);
        if let Ok(admitted) = engine.admit(&request) {
            admitted.commit().unwrap();
        }
    }
    assert!(log.flush(Duration::from_secs(10)));
    // A limit of 2 admits both each day; carried across the day, the
    // first day's extra unit would block the second day's second request.
    let hypothesis = PlanHypothesis {
        limits: vec![("drafts.max".into(), 2)],
        ..PlanHypothesis::default()
    };
    let options = WhatIfOptions {
        plan_id: "pro".into(),
        since_ms: 0,
        examples: 0,
        users_listed: 10,
    };
    let report = what_if(store, &engine.policy(), &hypothesis, &options).unwrap();
    let counts: Vec<_> = report
        .transitions
        .iter()
        .map(|t| (t.from.as_str(), t.to.as_str(), t.count))
        .collect();
    assert_eq!(counts, [("block", "allow", 2)]);
}

quota_tests::on_both_backends!(
    turning_enforcement_on_blocks_exactly_what_a_direct_computation_blocks
);
