//! Nothing is recorded unless the whole guarded action commits.

use quota_engine::{EnforceError, Engine, FailMode, QuotaRequest};
use quota_host::{Limits, Runtime};
use quota_policy_core::Status;
use quota_store::{AnyStore, DomainTx, StoreError};

use crate::{Backend, Clock, T0, count, engine, grace, plan_with_user, usage};
use quota_domain::Domain;
#[allow(unused_imports)]
use quota_store::prelude::*;

fn a_mutation_that_fails_after_the_decision_records_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    plan_with_user(store, "pro", 0, 3, true, "alice");
    let request = QuotaRequest::new("alice", "drafts.max", 2);
    let result: Result<(), EnforceError> = engine.guarded(|g| {
        let mut admitted = g.admit(&request)?;
        assert_eq!(admitted.outcome().decision.status, Status::AllowGrace);
        assert_eq!(admitted.outcome().decision.grace_to_consume, 2);
        admitted.tx().insert_draft("alice", "half done", T0)?;
        // The mutation fails after writing: the admitted transaction is
        // dropped uncommitted.
        Err(StoreError::Database("the mutation failed after writing".into()).into())
    });
    assert!(matches!(
        result,
        Err(EnforceError::Store(StoreError::Database(_)))
    ));
    assert_eq!(count(store, "drafts"), 0);
    assert_eq!(usage(store, "alice", "drafts.created"), 0);
    assert_eq!(grace(store, "alice", "pro", "drafts.max"), 0);
    // The same request then succeeds: the failed one left nothing behind.
    engine.create_draft("alice", "whole").unwrap();
    assert_eq!(grace(store, "alice", "pro", "drafts.max"), 1);
}

fn an_unknown_user_is_an_error_and_changes_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let err = engine.create_draft("nobody", "x").unwrap_err();
    assert!(
        matches!(err, EnforceError::Store(StoreError::UnknownUser(ref u)) if u == "nobody"),
        "{err}"
    );
    assert_eq!(count(engine.store(), "drafts"), 0);
}

fn a_request_below_one_unit_is_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    plan_with_user(engine.store(), "pro", 5, 0, true, "bob");
    let request = QuotaRequest::new("bob", "drafts.max", 0);
    let err = engine.admit(&request).unwrap_err();
    assert_eq!(err.code(), "invalid_request");
}

fn hostile_engine(
    backend: Backend,
    dir: &std::path::Path,
    fail_mode: FailMode,
) -> Engine<AnyStore> {
    // 200 ms: the endless loop is still stopped, and an ordinary call is
    // never cut off by a busy machine descheduling the thread.
    let runtime = Runtime::new(Limits {
        call_deadline: std::time::Duration::from_millis(200),
        ..Limits::default()
    })
    .unwrap();
    let policy = runtime.load(quota_tests::HOSTILE).unwrap();
    let store = AnyStore::open(&backend.fresh(dir)).unwrap();
    Engine::new(store, policy)
        .with_clock(quota_engine::Clock::from_fn(|| T0))
        .with_fail_mode(fail_mode)
}

fn a_policy_that_fails_blocks_the_action_and_is_counted(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = hostile_engine(backend, dir.path(), FailMode::Closed);
    let store = engine.store();
    let change = quota_store::PlanChange {
        limits: vec![
            ("hostile.loop".into(), 100),
            ("hostile.lie-allow".into(), 0),
        ],
        ..Default::default()
    };
    store.set_plan("t", "pro", &change, T0).unwrap();
    store.create_user("t", "mallory", "pro", T0).unwrap();
    for key in ["hostile.loop", "hostile.lie-allow", "hostile.trap"] {
        let request = QuotaRequest::new("mallory", key, 1);
        let err = engine.admit(&request).unwrap_err();
        assert_eq!(err.code(), "policy_unavailable", "{key}: {err}");
    }
    assert_eq!(count(store, "drafts"), 0);
    assert_eq!(count(store, "usage_counters"), 0);
    assert_eq!(engine.metrics().snapshot().policy_errors, 3);
    // The host is fine: the next ordinary request is decided.
    engine
        .store()
        .set_plan(
            "t",
            "pro",
            &quota_store::PlanChange {
                limits: vec![("drafts.max".into(), 1)],
                ..Default::default()
            },
            T0,
        )
        .unwrap();
    assert_eq!(
        engine
            .create_draft("mallory", "ok")
            .unwrap()
            .outcome
            .decision
            .status,
        Status::Allow
    );
}

fn failing_open_admits_as_warn_only_and_says_so(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = hostile_engine(backend, dir.path(), FailMode::Open);
    let store = engine.store();
    store
        .set_plan("t", "pro", &quota_store::PlanChange::default(), T0)
        .unwrap();
    store.create_user("t", "mallory", "pro", T0).unwrap();
    let request = QuotaRequest::new("mallory", "hostile.loop", 1);
    let mut admitted = engine.admit(&request).unwrap();
    admitted.tx().insert_draft("mallory", "x", T0).unwrap();
    let outcome = admitted.commit().unwrap();
    assert!(outcome.failed_open);
    assert_eq!(outcome.decision.status, Status::WarnOnly);
    assert_eq!(usage(store, "mallory", "hostile.loop"), 1);
    // Without a usage key the engine cannot count: it fails closed even so.
    let request = QuotaRequest::new("mallory", "hostile.trap", 1);
    let err = engine.admit(&request).unwrap_err();
    assert_eq!(err.code(), "policy_unavailable");
    assert_eq!(count(store, "drafts"), 1);
}

quota_tests::on_both_backends!(
    a_mutation_that_fails_after_the_decision_records_nothing,
    an_unknown_user_is_an_error_and_changes_nothing,
    a_request_below_one_unit_is_refused,
    a_policy_that_fails_blocks_the_action_and_is_counted,
    failing_open_admits_as_warn_only_and_says_so,
);
