//! What the admin dashboard keeps: sessions, decisions per minute, and the
//! lookups of its pages.

use quota_store::{DecisionMinute, PlanChange, UiSession};

use crate::Backend;

fn session(id: &str, admin: &str, expires_ms: i64) -> UiSession {
    UiSession {
        id_sha256: id.into(),
        csrf_token: format!("csrf-{id}"),
        admin_sha256: admin.into(),
        created_ms: 1_000,
        expires_ms,
    }
}

fn minute(minute_ms: i64, plan: &str, key: &str, status: &str, count: i64) -> DecisionMinute {
    DecisionMinute {
        minute_ms,
        plan_id: plan.into(),
        entitlement_key: key.into(),
        status: status.into(),
        count,
    }
}

pub fn a_session_is_found_until_it_expires<S: Backend>(store: &S) {
    let s = session("s1", "admin-a", 5_000);
    store.create_ui_session(&s, 1_000).unwrap();
    assert_eq!(store.ui_session("s1", 1_000).unwrap(), Some(s.clone()));
    assert_eq!(store.ui_session("s1", 4_999).unwrap(), Some(s));
    // Expiring exactly now is expired.
    assert_eq!(store.ui_session("s1", 5_000).unwrap(), None);
    assert_eq!(store.ui_session("s1", 9_000).unwrap(), None);
    assert_eq!(store.ui_session("missing", 1_000).unwrap(), None);
}

pub fn creating_a_session_deletes_the_expired_ones<S: Backend>(store: &S) {
    // An expired session stays stored until a new one is made...
    store
        .create_ui_session(&session("stale", "admin-a", 2_000), 1_000)
        .unwrap();
    assert_eq!(store.ui_session("stale", 5_000).unwrap(), None);
    assert!(store.delete_ui_session("stale").unwrap());
    // ...which deletes every session expired by its `now_ms`.
    store
        .create_ui_session(&session("old", "admin-a", 2_000), 1_000)
        .unwrap();
    store
        .create_ui_session(&session("edge", "admin-a", 3_000), 1_000)
        .unwrap();
    store
        .create_ui_session(&session("live", "admin-a", 3_001), 1_000)
        .unwrap();
    store
        .create_ui_session(&session("new", "admin-a", 9_000), 3_000)
        .unwrap();
    assert!(!store.delete_ui_session("old").unwrap());
    assert!(!store.delete_ui_session("edge").unwrap());
    assert!(store.ui_session("new", 3_000).unwrap().is_some());
    assert!(store.delete_ui_session("live").unwrap());
    assert!(store.delete_ui_session("new").unwrap());
}

pub fn sessions_are_deleted_one_or_by_admin_token<S: Backend>(store: &S) {
    for (id, admin) in [
        ("s1", "admin-a"),
        ("s2", "admin-a"),
        ("s3", "admin-b"),
        ("s4", "admin-c"),
    ] {
        store
            .create_ui_session(&session(id, admin, 9_000), 1_000)
            .unwrap();
    }
    assert!(store.delete_ui_session("s1").unwrap());
    assert!(!store.delete_ui_session("s1").unwrap());
    assert_eq!(store.ui_session("s1", 1_000).unwrap(), None);
    assert_eq!(store.delete_ui_sessions_except("admin-b").unwrap(), 2);
    assert_eq!(store.ui_session("s2", 1_000).unwrap(), None);
    assert_eq!(store.ui_session("s4", 1_000).unwrap(), None);
    assert_eq!(
        store.ui_session("s3", 1_000).unwrap(),
        Some(session("s3", "admin-b", 9_000))
    );
    assert_eq!(store.delete_ui_sessions_except("admin-b").unwrap(), 0);
}

pub fn decision_minutes_add_up_list_and_prune<S: Backend>(store: &S) {
    store.add_decision_minutes(&[]).unwrap();
    store
        .add_decision_minutes(&[
            minute(120_000, "pro", "drafts.max", "allowed", 3),
            minute(120_000, "pro", "drafts.max", "blocked", 1),
            minute(60_000, "free", "drafts.max", "allowed", 2),
        ])
        .unwrap();
    store
        .add_decision_minutes(&[
            minute(120_000, "pro", "drafts.max", "allowed", 4),
            minute(120_000, "free", "drafts.max", "allowed", 5),
            minute(120_000, "pro", "invites.max", "allowed", 6),
            minute(180_000, "free", "drafts.max", "allowed", 1),
        ])
        .unwrap();
    assert_eq!(
        store.decision_minutes(0).unwrap(),
        [
            minute(60_000, "free", "drafts.max", "allowed", 2),
            minute(120_000, "free", "drafts.max", "allowed", 5),
            minute(120_000, "pro", "drafts.max", "allowed", 7),
            minute(120_000, "pro", "drafts.max", "blocked", 1),
            minute(120_000, "pro", "invites.max", "allowed", 6),
            minute(180_000, "free", "drafts.max", "allowed", 1),
        ]
    );
    assert_eq!(
        store.decision_minutes(120_000).unwrap(),
        [
            minute(120_000, "free", "drafts.max", "allowed", 5),
            minute(120_000, "pro", "drafts.max", "allowed", 7),
            minute(120_000, "pro", "drafts.max", "blocked", 1),
            minute(120_000, "pro", "invites.max", "allowed", 6),
            minute(180_000, "free", "drafts.max", "allowed", 1),
        ]
    );
    assert_eq!(
        store.decision_minutes(120_001).unwrap(),
        [minute(180_000, "free", "drafts.max", "allowed", 1)]
    );
    assert_eq!(store.prune_decision_minutes(120_000).unwrap(), 1);
    assert_eq!(store.prune_decision_minutes(120_000).unwrap(), 0);
    assert_eq!(store.decision_minutes(0).unwrap().len(), 5);
    assert_eq!(store.prune_decision_minutes(180_001).unwrap(), 5);
    assert_eq!(store.decision_minutes(0).unwrap(), []);
}

fn ids(users: &[quota_store::User]) -> Vec<&str> {
    users.iter().map(|u| u.id.as_str()).collect()
}

pub fn a_user_search_matches_the_prefix_literally<S: Backend>(store: &S) {
    store
        .set_plan("a", "free", &PlanChange::default(), 0)
        .unwrap();
    store
        .set_plan("a", "pro", &PlanChange::default(), 0)
        .unwrap();
    for id in ["aab", "a_b", "axb", "a%b", "a", "b", "A", "ab\\c", "abc"] {
        store.create_user("a", id, "free", 0).unwrap();
    }
    store.create_user("a", "a%", "pro", 0).unwrap();
    let search = |prefix: &str, limit: usize| {
        let users = store.search_users(prefix, limit).unwrap();
        ids(&users)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        search("a", 100),
        ["a", "a%", "a%b", "a_b", "aab", "ab\\c", "abc", "axb"]
    );
    assert_eq!(search("a", 3), ["a", "a%", "a%b"]);
    assert_eq!(search("a%", 100), ["a%", "a%b"]);
    assert_eq!(search("a_", 100), ["a_b"]);
    assert_eq!(search("ab\\", 100), ["ab\\c"]);
    assert_eq!(search("ab", 100), ["ab\\c", "abc"]);
    assert_eq!(search("axb", 100), ["axb"]);
    assert_eq!(search("B", 100), Vec::<String>::new());
    assert_eq!(search("c", 100), Vec::<String>::new());
    assert_eq!(search("a", 0), Vec::<String>::new());
    assert_eq!(search("a\n", 100), Vec::<String>::new());
    assert_eq!(search("", 3), ["A", "a", "a%"]);
    assert_eq!(search("", 100).len(), 10);
    let found = store.search_users("a%", 1).unwrap();
    assert_eq!(found, [store.user("a%").unwrap()]);
    assert_eq!(found[0].plan_id, "pro");
}

pub fn every_plan_is_counted_with_its_users<S: Backend>(store: &S) {
    assert_eq!(store.plan_user_counts().unwrap(), []);
    for plan in ["pro", "free", "empty"] {
        store
            .set_plan("a", plan, &PlanChange::default(), 0)
            .unwrap();
    }
    for (user, plan) in [("u1", "free"), ("u2", "free"), ("u3", "pro")] {
        store.create_user("a", user, plan, 0).unwrap();
    }
    assert_eq!(
        store.plan_user_counts().unwrap(),
        [
            ("empty".to_owned(), 0),
            ("free".to_owned(), 2),
            ("pro".to_owned(), 1)
        ]
    );
    store.set_user_plan("a", "u1", "empty", 1).unwrap();
    assert_eq!(
        store.plan_user_counts().unwrap(),
        [
            ("empty".to_owned(), 1),
            ("free".to_owned(), 1),
            ("pro".to_owned(), 1)
        ]
    );
}
