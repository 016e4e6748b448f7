//! The report's scenarios: grace walk, warn-only, overrides, plan change.

use quota_engine::EnforceError;
use quota_policy_core::{LimitSource, Status};

use crate::{Backend, Clock, T0, count, engine, grace, plan_with_user, usage};
use quota_domain::Domain;
#[allow(unused_imports)]
use quota_store::prelude::*;

fn three_allowed_two_on_grace_then_blocked_with_nothing_created(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "pro", 3, 2, true, "alice");
    let mut statuses = Vec::new();
    for n in 0..5 {
        let created = engine.create_draft("alice", &format!("draft {n}")).unwrap();
        statuses.push(created.outcome.decision.status);
    }
    assert_eq!(
        statuses,
        [
            Status::Allow,
            Status::Allow,
            Status::Allow,
            Status::AllowGrace,
            Status::AllowGrace
        ]
    );
    let blocked = match engine.create_draft("alice", "sixth") {
        Err(EnforceError::QuotaExceeded(b)) => b,
        other => panic!("expected a block, got {other:?}"),
    };
    let d = &blocked.outcome.decision;
    assert_eq!(blocked.outcome.entitlement_key, "drafts.max");
    assert_eq!(
        (d.status, d.limit, d.usage, d.requested, d.grace_remaining),
        (Status::Block, 3, 5, 1, 0)
    );
    assert!(blocked.to_string().contains("drafts.max"));
    assert_eq!(count(store, "drafts"), 5);
    assert_eq!(usage(store, "alice", "drafts.created"), 5);
    assert_eq!(grace(store, "alice", "pro", "drafts.max"), 2);
    let m = engine.metrics().snapshot();
    assert_eq!(
        (
            m.count(Status::Allow),
            m.count(Status::AllowGrace),
            m.count(Status::Block)
        ),
        (3, 2, 1)
    );
}

fn enforcement_off_allows_warns_and_counts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "free", 1, 0, false, "bob");
    let first = engine.create_draft("bob", "one").unwrap();
    let second = engine.create_draft("bob", "two").unwrap();
    assert_eq!(first.outcome.decision.status, Status::Allow);
    assert_eq!(second.outcome.decision.status, Status::WarnOnly);
    assert_eq!(usage(store, "bob", "drafts.created"), 2);
    assert_eq!(count(store, "drafts"), 2);
    assert_eq!(grace(store, "bob", "free", "drafts.max"), 0);
    assert_eq!(engine.metrics().snapshot().count(Status::WarnOnly), 1);
}

fn enforcement_switched_off_applies_to_the_next_decision(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "pro", 0, 0, true, "carol");
    assert!(matches!(
        engine.create_draft("carol", "x"),
        Err(EnforceError::QuotaExceeded(_))
    ));
    let off = quota_store::PlanChange {
        enforcement_enabled: Some(false),
        ..Default::default()
    };
    store.set_plan("test", "pro", &off, T0).unwrap();
    assert_eq!(
        engine
            .create_draft("carol", "x")
            .unwrap()
            .outcome
            .decision
            .status,
        Status::WarnOnly
    );
}

/// On SQLite: the test moves the engine's clock (on PostgreSQL the
/// database's clock decides, see the next test).
#[test]
fn an_override_wins_until_it_expires_and_is_gone_once_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::at(T0);
    let engine = engine(Backend::Sqlite, dir.path(), &clock);
    let store = engine.store();
    plan_with_user(store, "pro", 1, 0, true, "dave");
    engine.create_draft("dave", "1").unwrap();
    store
        .set_override("support", "dave", "drafts.max", 3, Some(T0 + 1_000), T0)
        .unwrap();
    let d = engine.create_draft("dave", "2").unwrap().outcome.decision;
    assert_eq!(
        (d.limit, d.limit_source, d.override_applied),
        (3, LimitSource::Override, true)
    );
    clock.set(T0 + 1_000);
    match engine.create_draft("dave", "3") {
        Err(EnforceError::QuotaExceeded(b)) => {
            let d = &b.outcome.decision;
            assert_eq!(
                (d.limit, d.limit_source, d.override_expired),
                (1, LimitSource::Plan, true)
            );
        }
        other => panic!("expired override still applied: {other:?}"),
    }
    store
        .set_override("support", "dave", "drafts.max", -1, None, T0)
        .unwrap();
    assert_eq!(
        engine
            .create_draft("dave", "3")
            .unwrap()
            .outcome
            .decision
            .limit,
        -1
    );
    let removed = store
        .clear_override("support", "dave", "drafts.max", T0)
        .unwrap();
    assert_eq!(removed.map(|o| o.value), Some(-1));
    assert!(
        store
            .clear_override("support", "dave", "drafts.max", T0)
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        engine.create_draft("dave", "4"),
        Err(EnforceError::QuotaExceeded(_))
    ));
    let actions: Vec<String> = store
        .audit_log(100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "override.set").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "override.clear").count(), 1);
}

/// On PostgreSQL every host decides with the database's clock, so an
/// override expires at the same instant on all of them: here the engine's
/// own clock says 2023, the override expired an hour ago by the
/// database's, and the decision says expired.
#[test]
fn on_postgres_the_database_clock_decides() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Backend::Postgres, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "pro", 1, 0, true, "dave");
    let wall = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    store
        .set_override(
            "support",
            "dave",
            "drafts.max",
            3,
            Some(wall - 3_600_000),
            T0,
        )
        .unwrap();
    let d = engine.create_draft("dave", "1").unwrap().outcome.decision;
    assert_eq!(
        (d.limit, d.limit_source, d.override_expired),
        (1, LimitSource::Plan, true)
    );
    // An override that expires in an hour by that clock applies.
    store
        .set_override(
            "support",
            "dave",
            "drafts.max",
            3,
            Some(wall + 3_600_000),
            T0,
        )
        .unwrap();
    let d = engine.create_draft("dave", "2").unwrap().outcome.decision;
    assert_eq!(
        (d.limit, d.limit_source, d.override_applied),
        (3, LimitSource::Override, true)
    );
}

fn a_plan_change_resets_grace(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "pro", 1, 1, true, "erin");
    plan_with_user(store, "team", 1, 1, true, "frank");
    engine.create_draft("erin", "1").unwrap();
    assert_eq!(
        engine
            .create_draft("erin", "2")
            .unwrap()
            .outcome
            .decision
            .status,
        Status::AllowGrace
    );
    assert!(matches!(
        engine.create_draft("erin", "3"),
        Err(EnforceError::QuotaExceeded(_))
    ));
    store.set_user_plan("admin", "erin", "team", T0).unwrap();
    assert!(store.grace("erin").unwrap().is_empty());
    store.set_user_plan("admin", "erin", "pro", T0).unwrap();
    assert_eq!(
        engine
            .create_draft("erin", "3")
            .unwrap()
            .outcome
            .decision
            .status,
        Status::AllowGrace
    );
    let last = store.audit_log(1).unwrap().remove(0);
    let before: serde_json::Value =
        serde_json::from_str(last.before_json.as_deref().unwrap()).unwrap();
    assert_eq!(
        (last.action.as_str(), before["plan_id"].as_str()),
        ("user.set_plan", Some("team"))
    );
}

fn check_is_soft_and_changes_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "pro", 1, 5, true, "gina");
    let request = quota_engine::QuotaRequest::new("gina", "drafts.max", 1);
    let checked = engine.check(&request).unwrap();
    assert_eq!(checked.result(), "ok");
    engine.create_draft("gina", "1").unwrap();
    let checked = engine.check(&request).unwrap();
    assert_eq!(
        (checked.result(), checked.outcome.decision.status),
        ("would_exceed", Status::AllowGrace)
    );
    engine.check(&request).unwrap();
    assert_eq!(grace(store, "gina", "pro", "drafts.max"), 0);
    assert_eq!(usage(store, "gina", "drafts.created"), 1);
    // Checks are counted apart from the decisions that guarded a mutation.
    let m = engine.metrics().snapshot();
    assert_eq!(
        (m.count(Status::Allow), m.count(Status::AllowGrace)),
        (1, 0)
    );
    let checks = quota_engine::metrics::Mode::Check;
    assert_eq!(
        (
            m.count_mode(checks, Status::Allow),
            m.count_mode(checks, Status::AllowGrace)
        ),
        (1, 2)
    );
}

fn every_decision_names_the_policy_version(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    plan_with_user(engine.store(), "pro", 5, 0, true, "hank");
    let outcome = engine.create_draft("hank", "1").unwrap().outcome;
    assert_eq!(outcome.policy_sha256, quota_tests::reference().sha256());
    assert_eq!(outcome.usage_key.usage_key, "drafts.created");
}

quota_tests::on_both_backends!(
    three_allowed_two_on_grace_then_blocked_with_nothing_created,
    enforcement_off_allows_warns_and_counts,
    enforcement_switched_off_applies_to_the_next_decision,
    a_plan_change_resets_grace,
    check_is_soft_and_changes_nothing,
    every_decision_names_the_policy_version,
);
