//! The policy lifecycle's records: versions kept, state derived from events,
//! the decision log's filters and retention.

use quota_store::{DecisionFilter, DecisionLogEntry, KEEP_VERSIONS, PolicyAction};

use crate::Backend;

fn sha(n: usize) -> String {
    format!("{n:064x}")
}

pub fn the_active_and_shadow_versions_are_kept_however_old<S: Backend>(store: &S) {
    let record = |action, n: usize| {
        store
            .record_policy_event("admin", action, Some(&sha(n)), Some(&[n as u8]), "", 0)
            .unwrap()
    };
    record(PolicyAction::Activate, 1);
    record(PolicyAction::Shadow, 2);
    for n in 10..10 + KEEP_VERSIONS + 3 {
        record(PolicyAction::Activate, n);
        record(PolicyAction::Rollback, 1);
    }
    // A rejected upload never stores bytes and never counts as a version.
    store
        .record_policy_event(
            "admin",
            PolicyAction::Reject,
            Some(&sha(99)),
            None,
            "compile: bad",
            0,
        )
        .unwrap();
    let state = store.policy_state(5).unwrap();
    assert_eq!(state.active.unwrap().sha256, Some(sha(1)));
    assert_eq!(state.shadow.unwrap().sha256, Some(sha(2)));
    assert_eq!(state.previous, Some(sha(10 + KEEP_VERSIONS + 2)));
    assert_eq!(state.last_rejection.unwrap().detail, "compile: bad");
    assert_eq!(state.history.len(), 5);
    assert_eq!(store.policy_component(&sha(1)).unwrap(), Some(vec![1]));
    assert_eq!(store.policy_component(&sha(2)).unwrap(), Some(vec![2]));
    assert_eq!(
        store.policy_component(&sha(10)).unwrap(),
        None,
        "the oldest went"
    );
    assert_eq!(store.policy_component(&sha(99)).unwrap(), None);
    store
        .record_policy_event("admin", PolicyAction::ClearShadow, None, None, "", 0)
        .unwrap();
    assert!(store.policy_state(0).unwrap().shadow.is_none());
}

fn entry(n: i64, user: &str, status: &str, verdict: Option<&str>) -> DecisionLogEntry {
    DecisionLogEntry {
        id: 0,
        at_ms: n,
        user_id: user.into(),
        plan_id: "free".into(),
        entitlement_key: "drafts.max".into(),
        status: status.into(),
        policy_sha256: sha(1),
        input_json: "{}".into(),
        output_json: "{}".into(),
        shadow_sha256: verdict.map(|_| sha(2)),
        shadow_verdict: verdict.map(str::to_owned),
        shadow_json: None,
    }
}

pub fn the_decision_log_filters_and_prunes<S: Backend>(store: &S) {
    let entries: Vec<_> = (0..20)
        .map(|n| {
            let user = if n % 2 == 0 { "alice" } else { "bob" };
            let status = if n % 5 == 0 { "block" } else { "allow" };
            let verdict = (n % 4 == 0).then_some("diverged");
            entry(n, user, status, verdict)
        })
        .collect();
    store.append_decisions(&entries).unwrap();
    let list = |filter: DecisionFilter| {
        store
            .decisions(&DecisionFilter {
                limit: 100,
                ..filter
            })
            .unwrap()
    };
    let alice = list(DecisionFilter {
        user_id: Some("alice".into()),
        ..DecisionFilter::default()
    });
    assert_eq!(alice.len(), 10);
    assert!(alice.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let blocks = list(DecisionFilter {
        status: Some("block".into()),
        ..DecisionFilter::default()
    });
    assert_eq!(
        blocks.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [15, 10, 5, 0]
    );
    let diverged = list(DecisionFilter {
        diverged: true,
        ..DecisionFilter::default()
    });
    assert_eq!(diverged.len(), 5);
    let page = list(DecisionFilter {
        before_id: Some(alice[0].id),
        ..DecisionFilter::default()
    });
    assert_eq!(page.len(), 18, "ids below alice's newest (at 18): 0..=17");
    // Keep the newest 8, and nothing made before 15.
    assert_eq!(store.prune_decisions(8, 0).unwrap(), 12);
    assert_eq!(store.prune_decisions(100, 15).unwrap(), 3);
    let left = list(DecisionFilter::default());
    assert_eq!(
        left.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [19, 18, 17, 16, 15]
    );
}
