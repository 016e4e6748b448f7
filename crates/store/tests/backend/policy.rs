//! The policy lifecycle's records: versions kept, state derived from events,
//! the decision log's filters and retention.

use quota_store::{
    Conflict, DecisionFilter, DecisionLogEntry, KEEP_VERSIONS, PolicyAction, Release,
    ReleaseChange, StoreError, Upload,
};

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

/// However many other versions are named since (shadows, say), the
/// previous active version stays stored and stays what a rollback goes
/// back to: never an older one whose successor was pruned.
pub fn the_previous_active_version_is_never_pruned<S: Backend>(store: &S) {
    let record = |action, n: usize| {
        store
            .record_policy_event("admin", action, Some(&sha(n)), Some(&[n as u8]), "", 0)
            .unwrap()
    };
    record(PolicyAction::Activate, 1);
    record(PolicyAction::Activate, 2);
    record(PolicyAction::Activate, 3);
    for n in 10..10 + KEEP_VERSIONS + 2 {
        record(PolicyAction::Shadow, n);
    }
    record(PolicyAction::Shadow, 1);
    let state = store.policy_state(0).unwrap();
    assert_eq!(state.previous, Some(sha(2)));
    assert_eq!(store.policy_component(&sha(2)).unwrap(), Some(vec![2]));
}

/// An unverified signature never replaces a stored one; a verified one does.
pub fn only_a_verified_signature_replaces_a_stored_one<S: Backend>(store: &S) {
    let upload = |signature: &str, verified: bool| {
        let sha256 = sha(7);
        store
            .record_policy_upload(
                "admin",
                PolicyAction::Shadow,
                &Upload {
                    sha256: &sha256,
                    component: &[7],
                    signature: Some(signature),
                    verified,
                    release: None,
                },
                "",
                0,
            )
            .unwrap();
        store.policy_signature(&sha256).unwrap().unwrap()
    };
    assert_eq!(upload("first", false), "first");
    assert_eq!(upload("second", false), "first");
    assert_eq!(upload("third", true), "third");
}

/// The compare-and-set that keeps versions rising across a fleet: a
/// release recorded from a stale read fails with nothing kept, and the
/// signature is stored with the component.
pub fn a_release_rises_only_from_the_version_it_was_read_at<S: Backend>(store: &S) {
    let change = |version: &str, n: usize, replaces: Option<&str>| ReleaseChange {
        release: Release {
            name: "drafts".into(),
            version: version.into(),
            sha256: sha(n),
        },
        replaces: replaces.map(str::to_owned),
    };
    let upload = |n: usize, change: &ReleaseChange| {
        let sha256 = sha(n);
        let signature = format!("sig-{n}");
        store.record_policy_upload(
            "admin",
            PolicyAction::Activate,
            &Upload {
                sha256: &sha256,
                component: &[n as u8],
                signature: Some(&signature),
                verified: true,
                release: Some(change),
            },
            "",
            0,
        )
    };
    assert_eq!(store.policy_release("drafts").unwrap(), None);
    upload(1, &change("1.0.0", 1, None)).unwrap();
    // A second host read "no release" too: it loses.
    let lost = upload(2, &change("1.5.0", 2, None)).unwrap_err();
    assert!(
        matches!(lost, StoreError::Conflict(Conflict::Release(_))),
        "{lost}"
    );
    upload(3, &change("2.0.0", 3, Some("1.0.0"))).unwrap();
    // Read at 1.0.0, recorded after 2.0.0: it loses.
    let lost = upload(4, &change("3.0.0", 4, Some("1.0.0"))).unwrap_err();
    assert!(
        matches!(lost, StoreError::Conflict(Conflict::Release(_))),
        "{lost}"
    );
    let release = store.policy_release("drafts").unwrap().unwrap();
    assert_eq!(
        (release.version.as_str(), release.sha256),
        ("2.0.0", sha(3))
    );
    // The losers left nothing: no event, no component.
    let state = store.policy_state(10).unwrap();
    assert_eq!(state.history.len(), 2);
    assert_eq!(store.policy_component(&sha(2)).unwrap(), None);
    assert_eq!(store.policy_component(&sha(4)).unwrap(), None);
    assert_eq!(
        store.policy_signature(&sha(3)).unwrap().as_deref(),
        Some("sig-3")
    );
    // An event without a signature keeps the stored one.
    store
        .record_policy_event(
            "admin",
            PolicyAction::Activate,
            Some(&sha(3)),
            Some(&[3]),
            "",
            0,
        )
        .unwrap();
    assert_eq!(
        store.policy_signature(&sha(3)).unwrap().as_deref(),
        Some("sig-3")
    );
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
        period_start_ms: None,
    }
}

/// A replay reads one plan's decisions since a time, oldest first, across
/// pages, with none twice and none left out.
pub fn a_replay_reads_every_decision_of_its_plan_across_pages<S: Backend>(store: &S) {
    let total = quota_store::DECISION_PAGE as i64 * 6 / 5;
    let entries: Vec<_> = (0..total)
        .map(|n| DecisionLogEntry {
            plan_id: if n % 7 == 0 { "pro" } else { "free" }.into(),
            period_start_ms: Some(n / 100),
            ..entry(n, "alice", "allow", None)
        })
        .collect();
    store.append_decisions(&entries).unwrap();
    let mut seen = Vec::new();
    let count = store
        .each_decision("free", 2, &mut |d| {
            seen.push((d.at_ms, d.period_start_ms));
        })
        .unwrap();
    let expected: Vec<_> = (2..total)
        .filter(|n| n % 7 != 0)
        .map(|n| (n, Some(n / 100)))
        .collect();
    assert!(
        expected.len() > quota_store::DECISION_PAGE,
        "more than a page"
    );
    assert_eq!(count, expected.len() as u64);
    assert_eq!(seen, expected);
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
