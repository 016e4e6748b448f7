//! Random inputs: the reference component in wasmtime and the native
//! policy-core must give identical outputs, errors included.

use std::cell::RefCell;

use proptest::prelude::*;
use quota_host::Evaluator;
use quota_policy_core::{DecisionInput, Override, PlanInfo, decide, usage_key};

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -2i64..=12,
        2 => Just(i64::MAX),
        1 => Just(i64::MAX - 1),
        1 => Just(i64::MIN),
        2 => any::<i64>(),
        2 => 0i64..=1_000_000,
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z0-9_-]{1,12}",
        1 => Just(String::new()),
        2 => "\\PC{1,8}",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("drafts.max".to_owned()),
        Just("segments.max".to_owned()),
        Just("collaborators.max".to_owned()),
        "[a-z]{1,6}(\\.max)?",
        "\\PC{0,6}",
    ]
}

fn plan() -> impl Strategy<Value = Option<PlanInfo>> {
    proptest::option::of(
        (
            proptest::option::of(int()),
            any::<bool>(),
            int(),
            prop_oneof![0i64..=100, int()],
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

/// Any input, mostly out of range: every field from the whole `i64` range
/// and odd strings.
pub(crate) fn input() -> impl Strategy<Value = DecisionInput> {
    let ids = (id(), id(), key());
    let numbers = (int(), int(), int(), int());
    let state = (
        proptest::option::of((int(), proptest::option::of(int()))),
        plan(),
        proptest::option::of(int()),
    );
    (ids, numbers, state).prop_map(
        |(
            (user_id, plan_id, entitlement_key),
            (requested, now_ms, usage, grace_used),
            (ov, plan, default_limit),
        )| {
            DecisionInput {
                user_id,
                plan_id,
                entitlement_key,
                requested,
                now_ms,
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
    static EVALUATOR: RefCell<Evaluator> = RefCell::new(quota_tests::reference().evaluator().unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_component_decides_exactly_like_the_native_core(input in input()) {
        let native = decide(&input);
        let (wasm, key) = EVALUATOR.with(|e| {
            let mut e = e.borrow_mut();
            (e.decide(&input), e.usage_key(&input.entitlement_key))
        });
        let wasm = wasm.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(wasm, native);
        prop_assert_eq!(key.map_err(|e| TestCaseError::fail(e.to_string()))?, usage_key(&input.entitlement_key));
    }
}
