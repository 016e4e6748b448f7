//! The guarded transaction the engine decides in, and the domain's rows.

use quota_store::prelude::*;
use quota_store::{Conflict, PlanChange, StoreError};

use crate::Backend;

fn plan_and_user<S: Backend>(store: &S) {
    let change = PlanChange {
        limits: vec![("drafts.max".into(), 3)],
        enforcement_enabled: Some(true),
        grace_count: Some(2),
        ..PlanChange::default()
    };
    store.set_plan("test", "pro", &change, 0).unwrap();
    store.create_user("test", "alice", "pro", 0).unwrap();
    store.create_user("test", "bob", "pro", 0).unwrap();
}

fn usage<S: Backend>(store: &S) -> (i64, i64) {
    let mut tx = store.begin_read().unwrap();
    let state = tx
        .quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    tx.rollback().unwrap();
    (state.usage, state.grace_used)
}

pub fn a_write_is_seen_by_nobody_else_until_it_commits<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut tx = store.begin_write().unwrap();
    let state = tx
        .quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    assert_eq!(
        (state.plan_id.as_str(), state.plan.limit, state.usage),
        ("pro", Some(3), 0)
    );
    assert_eq!(tx.add_usage("alice", "drafts.created", None, 4).unwrap(), 4);
    assert_eq!(
        tx.add_grace("alice", "pro", "drafts.max", None, 1, 0)
            .unwrap(),
        1
    );
    assert_eq!(usage(store), (0, 0), "seen before its commit");
    tx.commit().unwrap();
    assert_eq!(usage(store), (4, 1));
    assert!(matches!(
        store
            .begin_write()
            .unwrap()
            .quota_state("ghost", "drafts.max", "drafts.created", 0),
        Err(StoreError::UnknownUser(_))
    ));
}

/// A counter that would pass `i64::MAX` is bad input (400 at the edge),
/// not a database failure, and its transaction keeps nothing.
pub fn a_counter_overflow_is_invalid_and_keeps_nothing<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut tx = store.begin_write().unwrap();
    tx.add_usage("alice", "drafts.created", None, 1).unwrap();
    tx.commit().unwrap();
    let mut tx = store.begin_write().unwrap();
    let overflow = tx
        .add_usage("alice", "drafts.created", None, i64::MAX)
        .unwrap_err();
    assert!(
        matches!(&overflow, StoreError::Invalid { field, .. } if field == "requested"),
        "{overflow:?}"
    );
    drop(tx);
    assert_eq!(usage(store), (1, 0));
}

/// Usage recorded without its new value (it may go with the commit) is
/// still seen by the transaction's next read, and kept by its commit.
pub fn recorded_usage_is_read_back_and_committed<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut tx = store.begin_write().unwrap();
    tx.quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    tx.record_usage("alice", "drafts.created", None, 2).unwrap();
    let state = tx
        .quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    assert_eq!(state.usage, 2, "the next read sees it");
    tx.record_usage("alice", "drafts.created", None, 1).unwrap();
    tx.record_usage("alice", "drafts.created", None, 1).unwrap();
    assert_eq!(usage(store), (0, 0), "seen before its commit");
    tx.commit().unwrap();
    assert_eq!(usage(store), (4, 0));
}

/// Recorded usage that the database refuses, whether at once or with the
/// commit, fails the transaction and keeps nothing of it: not the usage,
/// not the draft written before it.
pub fn recorded_usage_refused_at_the_commit_keeps_nothing<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut tx = store.begin_write().unwrap();
    tx.add_usage("alice", "drafts.created", None, 1).unwrap();
    tx.commit().unwrap();
    let mut tx = store.begin_write().unwrap();
    tx.quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    let draft = tx.insert_draft("alice", "not kept", 0).unwrap();
    let refused = match tx.record_usage("alice", "drafts.created", None, i64::MAX) {
        Err(e) => e,
        Ok(()) => tx.commit().unwrap_err(),
    };
    assert!(
        matches!(&refused, StoreError::Invalid { field, .. } if field == "requested"),
        "{refused:?}"
    );
    assert_eq!(usage(store), (1, 0));
    let mut tx = store.begin_read().unwrap();
    assert!(matches!(
        tx.draft(draft.id),
        Err(StoreError::UnknownDraft(_))
    ));
}

pub fn a_rolled_back_write_leaves_nothing<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut tx = store.begin_write().unwrap();
    tx.add_usage("alice", "drafts.created", None, 2).unwrap();
    let gone = tx.insert_draft("alice", "gone", 0).unwrap();
    tx.rollback().unwrap();
    let mut tx = store.begin_write().unwrap();
    tx.add_usage("alice", "drafts.created", None, 1).unwrap();
    drop(tx);
    assert_eq!(usage(store), (0, 0));
    let mut tx = store.begin_write().unwrap();
    assert!(matches!(
        tx.draft(gone.id),
        Err(StoreError::UnknownDraft(_))
    ));
    let draft = tx.insert_draft("alice", "kept", 0).unwrap();
    tx.commit().unwrap();
    let mut tx = store.begin_read().unwrap();
    assert_eq!(tx.draft(draft.id).unwrap().title, "kept");
}

pub fn the_domain_keeps_its_rules<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut tx = store.begin_write().unwrap();
    let draft = tx.insert_draft("alice", "title", 5).unwrap();
    assert_eq!(tx.draft(draft.id).unwrap(), draft);
    assert!(matches!(tx.draft(99), Err(StoreError::UnknownDraft(99))));
    assert!(tx.can_write("alice", &draft).unwrap());
    assert!(!tx.can_write("bob", &draft).unwrap());
    assert!(tx.user_exists("bob").unwrap() && !tx.user_exists("ghost").unwrap());
    let invite = tx.insert_invite(&draft, "bob", 6).unwrap();
    assert!(matches!(
        tx.insert_invite(&draft, "bob", 7),
        Err(StoreError::Conflict(Conflict::AlreadyInvited { .. }))
    ));
    let accepted = tx.accept_invite(&invite, 8).unwrap();
    assert_eq!(accepted.accepted_at_ms, Some(8));
    assert!(tx.can_write("bob", &draft).unwrap());
    assert!(matches!(
        tx.accept_invite(&invite, 9),
        Err(StoreError::Conflict(Conflict::InviteAccepted(_)))
    ));
    assert!(matches!(
        tx.insert_invite(&draft, "bob", 10),
        Err(StoreError::Conflict(Conflict::AlreadyWriter { .. }))
    ));
    let segment = tx.insert_segment(draft.id, "bob", "hello", 11).unwrap();
    assert_eq!(
        (segment.draft_id, segment.author_id.as_str()),
        (draft.id, "bob")
    );
    tx.commit().unwrap();
}

/// Two guarded transactions of one user: the second reads only once the
/// first has ended, and then sees what it committed. This is what keeps
/// two hosts (or threads) from admitting on the same usage.
pub fn a_second_writer_waits_and_sees_the_first<S: Backend>(store: &S) {
    plan_and_user(store);
    let mut first = store.begin_write().unwrap();
    assert_eq!(
        first
            .quota_state("alice", "drafts.max", "drafts.created", 0)
            .unwrap()
            .usage,
        0
    );
    let (started, read) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let second = scope.spawn(move || {
            started.send(()).unwrap();
            let mut tx = store.begin_write().unwrap();
            let state = tx
                .quota_state("alice", "drafts.max", "drafts.created", 0)
                .unwrap();
            tx.add_usage("alice", "drafts.created", None, 1).unwrap();
            tx.commit().unwrap();
            state.usage
        });
        read.recv().unwrap();
        // Give the second every chance to read too early.
        std::thread::sleep(std::time::Duration::from_millis(200));
        first.add_usage("alice", "drafts.created", None, 1).unwrap();
        first.commit().unwrap();
        assert_eq!(
            second.join().unwrap(),
            1,
            "the second read before the first committed"
        );
    });
    assert_eq!(usage(store), (2, 0));
}
