use super::*;

fn input() -> DecisionInput {
    DecisionInput {
        user_id: "alice".into(),
        plan_id: "pro".into(),
        entitlement_key: "drafts.max".into(),
        requested: 1,
        now_ms: 1_000,
        usage: 0,
        r#override: None,
        plan: Some(PlanInfo {
            limit: Some(3),
            enforcement_enabled: true,
            grace_count: 2,
            rollout_percent: 100,
        }),
        default_limit: Some(10),
        grace_used: 0,
    }
}

fn plan(i: &mut DecisionInput) -> &mut PlanInfo {
    i.plan.as_mut().unwrap()
}

#[test]
fn the_report_walk_allows_three_then_two_on_grace_then_blocks() {
    let mut i = input();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let d = decide(&i).unwrap();
        statuses.push(d.status);
        if d.status.is_admitted() {
            i.usage += i.requested;
            i.grace_used += d.grace_to_consume;
        }
    }
    use Status::*;
    assert_eq!(
        statuses,
        [Allow, Allow, Allow, AllowGrace, AllowGrace, Block]
    );
    assert_eq!((i.usage, i.grace_used), (5, 2));
}

#[test]
fn an_override_expiring_exactly_now_is_expired() {
    let mut i = input();
    i.r#override = Some(Override {
        value: 100,
        expires_at_ms: Some(1_000),
    });
    let d = decide(&i).unwrap();
    assert_eq!((d.limit, d.limit_source), (3, LimitSource::Plan));
    assert!(d.override_expired && !d.override_applied);
    i.now_ms = 999;
    let d = decide(&i).unwrap();
    assert_eq!((d.limit, d.limit_source), (100, LimitSource::Override));
    assert!(d.override_applied && !d.override_expired);
}

#[test]
fn limits_fall_through_plan_then_default_then_none() {
    let mut i = input();
    plan(&mut i).limit = None;
    let d = decide(&i).unwrap();
    assert_eq!((d.limit, d.limit_source), (10, LimitSource::Default));
    i.default_limit = None;
    let d = decide(&i).unwrap();
    assert_eq!(
        (d.limit, d.limit_source, d.status),
        (-1, LimitSource::None, Status::Allow)
    );
}

#[test]
fn a_request_partly_over_the_limit_counts_only_its_own_overage() {
    let mut i = input();
    i.usage = 2;
    i.requested = 3;
    let d = decide(&i).unwrap();
    assert_eq!(
        (d.projected_usage, d.overage, d.status),
        (5, 2, Status::AllowGrace)
    );
    assert_eq!((d.grace_to_consume, d.grace_remaining), (2, 0));
    i.usage = 7; // already over: the whole request is overage
    i.requested = 1;
    let d = decide(&i).unwrap();
    assert_eq!((d.overage, d.grace_to_consume), (1, 1));
}

#[test]
fn a_block_consumes_no_grace_even_when_some_is_left() {
    let mut i = input();
    i.usage = 3;
    i.requested = 3;
    let d = decide(&i).unwrap();
    assert_eq!(
        (d.status, d.overage, d.grace_to_consume, d.grace_remaining),
        (Status::Block, 3, 0, 2)
    );
}

#[test]
fn enforcement_off_warns_without_consuming_grace() {
    let mut i = input();
    plan(&mut i).enforcement_enabled = false;
    i.usage = 3;
    let d = decide(&i).unwrap();
    assert_eq!(
        (d.status, d.enforced, d.grace_to_consume, d.grace_remaining),
        (Status::WarnOnly, false, 0, 2)
    );
}

#[test]
fn rollout_zero_never_enforces_and_the_bucket_decides_partial_rollouts() {
    let mut i = input();
    i.usage = 3;
    plan(&mut i).rollout_percent = 0;
    assert!(!decide(&i).unwrap().enforced);
    let bucket = i64::from(rollout_bucket("pro", "alice"));
    plan(&mut i).rollout_percent = bucket;
    assert!(!decide(&i).unwrap().enforced);
    plan(&mut i).rollout_percent = bucket + 1;
    assert!(decide(&i).unwrap().enforced);
}

#[test]
fn grace_used_above_grace_count_leaves_zero_remaining() {
    let mut i = input();
    i.usage = 3;
    i.grace_used = 9;
    let d = decide(&i).unwrap();
    assert_eq!((d.status, d.grace_remaining), (Status::Block, 0));
}

#[test]
fn no_plan_means_not_enforced_and_no_grace() {
    let mut i = input();
    i.plan = None;
    i.usage = 10;
    let d = decide(&i).unwrap();
    assert_eq!(
        (d.status, d.limit_source, d.enforced, d.grace_remaining),
        (Status::WarnOnly, LimitSource::Default, false, 0)
    );
}

#[test]
fn arithmetic_saturates_at_the_i64_maximum() {
    let mut i = input();
    i.usage = i64::MAX;
    i.requested = i64::MAX;
    let d = decide(&i).unwrap();
    assert_eq!((d.projected_usage, d.overage), (i64::MAX, 0));
    // Usage at the maximum cannot grow: an enforced request blocks
    // instead of taking grace for an overage of 0.
    assert_eq!((d.status, d.grace_to_consume), (Status::Block, 0));
    i.usage = 0;
    plan(&mut i).grace_count = i64::MAX;
    let d = decide(&i).unwrap();
    assert_eq!((d.overage, d.status), (i64::MAX - 3, Status::AllowGrace));
}

type Breaker = Box<dyn Fn(&mut DecisionInput)>;

#[test]
fn out_of_range_inputs_are_rejected_naming_the_field() {
    let cases: Vec<(&str, Breaker)> = vec![
        ("user_id", Box::new(|i| i.user_id.clear())),
        ("plan_id", Box::new(|i| i.plan_id.clear())),
        ("entitlement_key", Box::new(|i| i.entitlement_key.clear())),
        ("requested", Box::new(|i| i.requested = 0)),
        ("usage", Box::new(|i| i.usage = -1)),
        ("grace_used", Box::new(|i| i.grace_used = -1)),
        ("default_limit", Box::new(|i| i.default_limit = Some(-2))),
        (
            "override.value",
            Box::new(|i| {
                i.r#override = Some(Override {
                    value: -2,
                    expires_at_ms: None,
                })
            }),
        ),
        ("plan.limit", Box::new(|i| plan(i).limit = Some(-2))),
        ("plan.grace_count", Box::new(|i| plan(i).grace_count = -1)),
        (
            "plan.rollout_percent",
            Box::new(|i| plan(i).rollout_percent = 101),
        ),
        (
            "plan.rollout_percent",
            Box::new(|i| plan(i).rollout_percent = -1),
        ),
    ];
    for (field, break_it) in cases {
        let mut i = input();
        break_it(&mut i);
        let err = decide(&i).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(
            err.message.contains(&format!("`{field}`")),
            "{field}: {}",
            err.message
        );
    }
}

#[test]
fn the_reason_names_the_key_and_the_numbers() {
    let mut i = input();
    i.usage = 3;
    let d = decide(&i).unwrap();
    assert_eq!(
        d.reason,
        "drafts.max: usage 3 + 1 requested = 4, limit 3 (plan); 1 over, allowed on grace, 1 grace left."
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn edge() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(i64::MIN),
            Just(-2i64),
            Just(-1i64),
            Just(0i64),
            Just(1i64),
            Just(i64::MAX),
            any::<i64>()
        ]
    }

    proptest! {
        #[test]
        fn decide_is_total(usage in edge(), requested in edge(), limit in edge(), grace in edge(), used in edge(), now in edge(), exp in edge(), rollout in edge()) {
            let i = DecisionInput {
                user_id: "u".into(), plan_id: "p".into(), entitlement_key: "k".into(),
                requested, now_ms: now, usage,
                r#override: Some(Override { value: limit, expires_at_ms: Some(exp) }),
                plan: Some(PlanInfo { limit: Some(limit), enforcement_enabled: true, grace_count: grace, rollout_percent: rollout }),
                default_limit: Some(limit), grace_used: used,
            };
            if let Ok(d) = decide(&i) {
                prop_assert!(d.grace_remaining >= 0 && d.overage >= 0 && d.grace_to_consume >= 0);
                prop_assert!(d.status != Status::Block || d.grace_to_consume == 0);
            }
        }
    }
}
