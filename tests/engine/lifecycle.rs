//! The policy lifecycle's own bounds.

use std::time::Duration;

use quota_engine::lifecycle::{ChangeError, Lifecycle, Stage};

use crate::{Backend, Clock, T0, engine};

/// Each call has a deadline, but a policy just under it on every call
/// would hold an upload for minutes: the self-test has a budget in all.
fn a_self_test_past_its_budget_refuses_the_upload(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let lifecycle =
        Lifecycle::new(quota_tests::runtime().clone(), None).with_self_test_budget(Duration::ZERO);
    let err = lifecycle
        .activate(&engine, "test", quota_tests::PERCENT_GRACE, None)
        .unwrap_err();
    let ChangeError::Rejected(rejected) = err else {
        panic!("not a rejection: {err}")
    };
    assert_eq!(rejected.stage, Stage::SelfTest);
    assert!(rejected.message.contains("budget"), "{}", rejected.message);
    assert_eq!(engine.policy().sha256(), quota_tests::reference().sha256());
    assert_eq!(lifecycle.vetting(), None);

    let lifecycle = Lifecycle::new(quota_tests::runtime().clone(), None);
    lifecycle
        .activate(&engine, "test", quota_tests::PERCENT_GRACE, None)
        .unwrap();
    assert_eq!(
        engine.policy().sha256(),
        quota_tests::percent_grace().sha256()
    );
}

quota_tests::on_both_backends!(a_self_test_past_its_budget_refuses_the_upload);
