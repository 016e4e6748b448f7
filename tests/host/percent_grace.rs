//! The percent-grace example policy (`examples/percent-grace`): a valid
//! policy that differs from the reference exactly in its grace allowance,
//! 20% of the resolved limit rounded up instead of the plan's `grace_count`.

use std::cell::RefCell;

use proptest::prelude::*;
use quota_host::Evaluator;
use quota_policy_core::{
    Decision, DecisionInput, Override, PlanInfo, PolicyError, Status, UNLIMITED, decide, usage_key,
};
use quota_tests::{PERCENT_GRACE, REFERENCE, percent_grace, reference};

const NOW: i64 = 1_700_000_000_000;

/// The limit docs/contract.md §3.2 resolves, restated here so the model does not lean
/// on the code under test.
fn resolved_limit(input: &DecisionInput) -> i64 {
    if let Some(o) = &input.r#override
        && o.expires_at_ms.is_none_or(|expires| input.now_ms < expires)
    {
        return o.value;
    }
    input
        .plan
        .as_ref()
        .and_then(|p| p.limit)
        .or(input.default_limit)
        .unwrap_or(UNLIMITED)
}

/// 20% of `limit`, rounded up; no grace when unlimited.
fn twenty_percent_up(limit: i64) -> i64 {
    if limit == UNLIMITED {
        return 0;
    }
    i64::try_from((i128::from(limit) * 20 + 99) / 100).unwrap()
}

/// The native model: the reference's errors for invalid input, otherwise
/// the reference decision with the plan's `grace_count` replaced.
fn model(input: &DecisionInput) -> Result<Decision, PolicyError> {
    decide(input)?;
    let grace_count = twenty_percent_up(resolved_limit(input));
    let mut input = input.clone();
    if let Some(plan) = &mut input.plan {
        plan.grace_count = grace_count;
    }
    decide(&input)
}

fn input(limit: i64, grace_count: i64, usage: i64, grace_used: i64) -> DecisionInput {
    DecisionInput {
        user_id: "alice".into(),
        plan_id: "pro".into(),
        entitlement_key: "drafts.max".into(),
        requested: 1,
        now_ms: NOW,
        usage,
        r#override: None,
        plan: Some(PlanInfo {
            limit: Some(limit),
            enforcement_enabled: true,
            grace_count,
            rollout_percent: 100,
        }),
        default_limit: None,
        grace_used,
    }
}

fn decided(evaluator: &mut Evaluator, input: &DecisionInput) -> Decision {
    evaluator.decide(input).unwrap().unwrap()
}

#[test]
fn the_percent_grace_policy_is_a_policy_that_imports_nothing() {
    let info = percent_grace().info();
    assert!(info.imports.is_empty(), "{:?}", info.imports);
    assert_eq!(info.package.as_deref(), Some("quota:policy@0.1.0"));
    assert_eq!(info.exports, reference().info().exports);
    assert_eq!(info.size_bytes, PERCENT_GRACE.len());
    assert_ne!(PERCENT_GRACE, REFERENCE);
    assert_ne!(percent_grace().sha256(), reference().sha256());
}

#[test]
fn it_differs_from_the_reference_on_grace() {
    let mut reference = reference().evaluator().unwrap();
    let mut percent = percent_grace().evaluator().unwrap();

    // Limit 10, no grace on the plan: 20% of 10 gives 2 units.
    let over_ten = input(10, 0, 10, 0);
    let r = decided(&mut reference, &over_ten);
    let p = decided(&mut percent, &over_ten);
    assert_eq!(r.status, Status::Block);
    assert_eq!(p.status, Status::AllowGrace);
    assert_eq!((p.grace_to_consume, p.grace_remaining), (1, 1));
    assert_eq!(
        p.reason,
        "drafts.max: usage 10 + 1 requested = 11, limit 10 (plan); 1 over, allowed on grace, 1 grace left."
    );

    // Limit 3 with 2 grace units on the plan, one used: 20% of 3 gives 1.
    let second_grace = input(3, 2, 4, 1);
    let r = decided(&mut reference, &second_grace);
    let p = decided(&mut percent, &second_grace);
    assert_eq!(r.status, Status::AllowGrace);
    assert_eq!(p.status, Status::Block);
    assert_eq!((p.grace_to_consume, p.grace_remaining), (0, 0));
}

#[test]
fn it_agrees_with_the_reference_where_grace_does_not_differ() {
    let mut reference = reference().evaluator().unwrap();
    let mut percent = percent_grace().evaluator().unwrap();

    // The plan's grace count is already 20% of the limit.
    for usage in [0, 9, 10, 11, 12] {
        let same = input(10, 2, usage, 0);
        assert_eq!(
            decided(&mut percent, &same),
            decided(&mut reference, &same),
            "usage {usage}"
        );
    }

    // No plan: no grace in either, warn only over the default.
    let no_plan = DecisionInput {
        plan: None,
        default_limit: Some(3),
        ..input(3, 0, 5, 0)
    };
    let p = decided(&mut percent, &no_plan);
    assert_eq!(p.status, Status::WarnOnly);
    assert_eq!(p, decided(&mut reference, &no_plan));

    // Within the limit the status agrees; only the grace left differs.
    let within = input(3, 2, 0, 0);
    let r = decided(&mut reference, &within);
    let p = decided(&mut percent, &within);
    assert_eq!((r.status, p.status), (Status::Allow, Status::Allow));
    assert_eq!((r.grace_remaining, p.grace_remaining), (2, 1));
    assert_eq!(
        p,
        Decision {
            grace_remaining: 1,
            ..r
        }
    );

    // Invalid input: the same error, even though the plan's grace count is
    // not used.
    let invalid = input(10, -1, 0, 0);
    let r = reference.decide(&invalid).unwrap().unwrap_err();
    assert_eq!(percent.decide(&invalid).unwrap().unwrap_err(), r);
    assert!(r.message.contains("plan.grace_count"), "{}", r.message);
}

fn limit() -> impl Strategy<Value = i64> {
    prop_oneof![
        10 => 0i64..=30,
        2 => Just(UNLIMITED),
        1 => Just(i64::MAX),
        1 => Just(-2i64),
    ]
}

fn plan() -> impl Strategy<Value = Option<PlanInfo>> {
    proptest::option::weighted(
        0.9,
        (
            proptest::option::weighted(0.85, limit()),
            prop_oneof![4 => Just(true), 1 => Just(false)],
            prop_oneof![6 => 0i64..=8, 1 => Just(-1i64)],
            prop_oneof![4 => Just(100i64), 2 => 0i64..=100],
        )
            .prop_map(
                |(limit, enforcement_enabled, grace_count, rollout_percent)| PlanInfo {
                    limit,
                    enforcement_enabled,
                    grace_count,
                    rollout_percent,
                },
            ),
    )
}

/// Mostly valid inputs around the limit and the grace, with overrides that
/// are active, expire now or have expired; now and then any input at all.
fn near_grace_input() -> impl Strategy<Value = DecisionInput> {
    let who = (
        "[a-z]{1,6}",
        prop_oneof![Just("free"), Just("pro"), Just("team")],
        prop_oneof![Just("drafts.max"), Just("segments.max"), Just("seats.max")],
    );
    let numbers = (
        prop_oneof![8 => 1i64..=8, 1 => Just(0i64)],
        0i64..=45,
        0i64..=10,
    );
    let state = (
        proptest::option::weighted(
            0.3,
            (
                limit(),
                proptest::option::of(prop_oneof![Just(NOW - 1), Just(NOW), Just(NOW + 1)]),
            ),
        ),
        plan(),
        proptest::option::weighted(0.5, limit()),
    );
    (who, numbers, state).prop_map(
        |((user_id, plan_id, key), (requested, usage, grace_used), (ov, plan, default_limit))| {
            DecisionInput {
                user_id,
                plan_id: plan_id.to_owned(),
                entitlement_key: key.to_owned(),
                requested,
                now_ms: NOW,
                usage,
                r#override: ov.map(|(value, expires_at_ms)| Override {
                    value,
                    expires_at_ms,
                }),
                plan,
                default_limit,
                grace_used,
            }
        },
    )
}

thread_local! {
    static EVALUATOR: RefCell<Evaluator> = RefCell::new(percent_grace().evaluator().unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_component_decides_like_the_native_model(
        input in prop_oneof![9 => near_grace_input(), 1 => super::differential::input()]
    ) {
        let (wasm, key) = EVALUATOR.with(|e| {
            let mut e = e.borrow_mut();
            (e.decide(&input), e.usage_key(&input.entitlement_key))
        });
        let wasm = wasm.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(wasm, model(&input));
        prop_assert_eq!(key.map_err(|e| TestCaseError::fail(e.to_string()))?, usage_key(&input.entitlement_key));
    }
}

#[test]
fn the_model_gives_the_documented_allowances() {
    let table = [
        (UNLIMITED, 0),
        (0, 0),
        (1, 1),
        (3, 1),
        (5, 1),
        (10, 2),
        (11, 3),
    ];
    for (limit, grace) in table {
        assert_eq!(twenty_percent_up(limit), grace, "limit {limit}");
    }
    assert_eq!(twenty_percent_up(i64::MAX), i64::MAX / 5 + 1);
}
