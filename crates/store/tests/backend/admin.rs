//! Admin operations: validation that writes nothing, changes audited.

use quota_store::{PlanChange, StoreError};

use crate::Backend;

pub fn bad_admin_values_are_refused_and_write_nothing<S: Backend>(store: &S) {
    let bad_plans = [
        PlanChange {
            limits: vec![("drafts.max".into(), -2)],
            ..PlanChange::default()
        },
        PlanChange {
            limits: vec![(String::new(), 3)],
            ..PlanChange::default()
        },
        PlanChange {
            grace_count: Some(-1),
            ..PlanChange::default()
        },
        PlanChange {
            rollout_percent: Some(101),
            ..PlanChange::default()
        },
        PlanChange {
            rollout_percent: Some(-1),
            ..PlanChange::default()
        },
    ];
    for change in &bad_plans {
        assert!(
            matches!(
                store.set_plan("a", "free", change, 0),
                Err(StoreError::Invalid { .. })
            ),
            "{change:?}"
        );
    }
    assert!(matches!(
        store.set_plan("a", "", &PlanChange::default(), 0),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.set_default("a", "drafts.max", -2, 0),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.create_user("a", "u", "missing", 0),
        Err(StoreError::UnknownPlan(_))
    ));
    assert_eq!(
        (
            store.plans().unwrap().len(),
            store.audit_log(100).unwrap().len()
        ),
        (0, 0)
    );
    assert!(matches!(store.user("u"), Err(StoreError::UnknownUser(_))));

    store
        .set_plan("a", "free", &PlanChange::default(), 0)
        .unwrap();
    store.create_user("a", "u", "free", 0).unwrap();
    assert!(matches!(
        store.create_user("a", "u", "free", 0),
        Err(StoreError::UserExists(_))
    ));
    assert!(matches!(
        store.set_user_plan("a", "u", "missing", 0),
        Err(StoreError::UnknownPlan(_))
    ));
    assert!(matches!(
        store.set_user_plan("a", "ghost", "free", 0),
        Err(StoreError::UnknownUser(_))
    ));
    assert!(matches!(
        store.set_override("a", "u", "drafts.max", -2, None, 0),
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store.set_override("a", "ghost", "drafts.max", 5, None, 0),
        Err(StoreError::UnknownUser(_))
    ));
    assert!(matches!(
        store.set_override("", "u", "drafts.max", 5, None, 0),
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(
        (
            store.overrides(None).unwrap().len(),
            store.audit_log(100).unwrap().len()
        ),
        (0, 2)
    );
    assert_eq!(store.user("u").unwrap().plan_id, "free");
}

pub fn plan_changes_touch_only_the_fields_given_and_are_audited<S: Backend>(store: &S) {
    let created = store
        .set_plan("ops", "pro", &PlanChange::default(), 10)
        .unwrap();
    assert_eq!(
        (
            created.enforcement_enabled,
            created.grace_count,
            created.rollout_percent
        ),
        (false, 0, 100)
    );
    let change = PlanChange {
        limits: vec![("drafts.max".into(), 10), ("segments.max".into(), -1)],
        grace_count: Some(3),
        ..PlanChange::default()
    };
    store.set_plan("ops", "pro", &change, 20).unwrap();
    let change = PlanChange {
        enforcement_enabled: Some(true),
        remove_limits: vec!["segments.max".into()],
        ..PlanChange::default()
    };
    let plan = store.set_plan("alice", "pro", &change, 30).unwrap();
    assert_eq!(plan.limits, [("drafts.max".to_owned(), 10)]);
    assert_eq!((plan.enforcement_enabled, plan.grace_count), (true, 3));
    // A change that changes nothing is not audited.
    store
        .set_plan("ops", "pro", &PlanChange::default(), 40)
        .unwrap();
    let log = store.audit_log(10).unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("alice", "plan.update"),
            ("ops", "plan.update"),
            ("ops", "plan.create")
        ]
    );
    let json = |text: &Option<String>| -> serde_json::Value {
        serde_json::from_str(text.as_deref().unwrap()).unwrap()
    };
    assert_eq!(json(&log[0].before_json)["enforcement_enabled"], false);
    assert_eq!(json(&log[0].after_json)["enforcement_enabled"], true);
    assert_eq!(log[0].at_ms, 30);
}
