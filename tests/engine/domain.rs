//! Drafts, segments and invites, each guarded before any row changes.

use quota_engine::EnforceError;
use quota_policy_core::Status;
use quota_store::{InviteStatus, PlanChange, StoreError};

use crate::{Backend, Clock, T0, count, engine, usage};
use quota_domain::Domain;
#[allow(unused_imports)]
use quota_store::prelude::*;

fn setup(store: &(impl PlanStore + UserStore)) {
    let plan = PlanChange {
        limits: vec![
            ("drafts.max".into(), 5),
            ("segments.max".into(), 2),
            ("collaborators.max".into(), 1),
        ],
        enforcement_enabled: Some(true),
        ..PlanChange::default()
    };
    store.set_plan("t", "pro", &plan, T0).unwrap();
    for user in ["owner", "ann", "ben", "eve"] {
        store.create_user("t", user, "pro", T0).unwrap();
    }
}

fn segments_use_the_acting_users_limit_and_need_access(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    setup(store);
    let draft = engine.create_draft("owner", "doc").unwrap().value;
    engine.append_segment("owner", draft.id, "one").unwrap();
    engine.append_segment("owner", draft.id, "two").unwrap();
    assert!(matches!(
        engine.append_segment("owner", draft.id, "three"),
        Err(EnforceError::QuotaExceeded(_))
    ));
    let err = engine
        .append_segment("eve", draft.id, "intrusion")
        .unwrap_err();
    assert!(
        matches!(err, EnforceError::Store(StoreError::Forbidden(_))),
        "{err}"
    );
    assert!(matches!(
        engine.append_segment("owner", 999, "x"),
        Err(EnforceError::Store(StoreError::UnknownDraft(999)))
    ));
    assert_eq!(count(store, "segments"), 2);
    assert_eq!(usage(store, "eve", "segments.appended"), 0);
    // A collaborator appends on their own segments.max.
    let invite = engine.create_invite("owner", draft.id, "ann").unwrap();
    engine.accept_invite(invite.id, "ann").unwrap();
    let seg = engine.append_segment("ann", draft.id, "from ann").unwrap();
    assert_eq!(seg.outcome.user_id, "ann");
    assert_eq!(usage(store, "ann", "segments.appended"), 1);
}

fn accepting_uses_the_inviters_limit_and_a_blocked_accept_stays_pending(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    setup(store);
    let draft = engine.create_draft("owner", "doc").unwrap().value;
    let to_ann = engine.create_invite("owner", draft.id, "ann").unwrap();
    let to_ben = engine.create_invite("owner", draft.id, "ben").unwrap();
    let accepted = engine.accept_invite(to_ann.id, "ann").unwrap();
    assert_eq!(accepted.value.status, InviteStatus::Accepted);
    assert_eq!(
        (
            accepted.outcome.user_id.as_str(),
            accepted.outcome.decision.status
        ),
        ("owner", Status::Allow)
    );
    assert_eq!(usage(store, "owner", "collaborators.accepted"), 1);
    assert_eq!(usage(store, "ann", "collaborators.accepted"), 0);
    match engine.accept_invite(to_ben.id, "ben") {
        Err(EnforceError::QuotaExceeded(b)) => assert_eq!(b.outcome.user_id, "owner"),
        other => panic!("expected the inviter's limit to block, got {other:?}"),
    }
    let status = store
        .begin_read()
        .unwrap()
        .invite(to_ben.id)
        .unwrap()
        .status;
    assert_eq!(status, quota_store::InviteStatus::Pending);
    assert_eq!(count(store, "collaborators"), 1);
}

fn an_invite_is_accepted_once_and_only_by_its_invitee(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    let store = engine.store();
    setup(store);
    let draft = engine.create_draft("owner", "doc").unwrap().value;
    let invite = engine.create_invite("owner", draft.id, "ann").unwrap();
    assert!(matches!(
        engine.accept_invite(invite.id, "eve"),
        Err(EnforceError::Store(StoreError::Forbidden(_)))
    ));
    engine.accept_invite(invite.id, "ann").unwrap();
    assert!(matches!(
        engine.accept_invite(invite.id, "ann"),
        Err(EnforceError::Store(StoreError::Conflict(_)))
    ));
    assert_eq!(usage(store, "owner", "collaborators.accepted"), 1);
    assert!(matches!(
        engine.create_invite("ann", draft.id, "ben"),
        Err(EnforceError::Store(StoreError::Forbidden(_)))
    ));
    assert!(matches!(
        engine.create_invite("owner", draft.id, "ann"),
        Err(EnforceError::Store(StoreError::Conflict(_)))
    ));
    assert!(matches!(
        engine.create_invite("owner", draft.id, "nobody"),
        Err(EnforceError::Store(StoreError::UnknownUser(_)))
    ));
}

quota_tests::on_both_backends!(
    segments_use_the_acting_users_limit_and_need_access,
    accepting_uses_the_inviters_limit_and_a_blocked_accept_stays_pending,
    an_invite_is_accepted_once_and_only_by_its_invitee,
);
