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

fn long_ids(len: usize, n: i64) -> DecisionInput {
    let id = |c: char| c.to_string().repeat(len.max(1));
    DecisionInput {
        user_id: id('u'),
        plan_id: id('p'),
        entitlement_key: format!("{}.max", id('k')),
        requested: 1 + n % 3,
        now_ms: 1_700_000_000_000,
        usage: n % 7,
        r#override: (n % 2 == 0).then_some(Override {
            value: 4,
            expires_at_ms: None,
        }),
        plan: Some(PlanInfo {
            limit: Some(3),
            enforcement_enabled: true,
            grace_count: 2,
            rollout_percent: 100,
        }),
        default_limit: None,
        grace_used: n % 3,
    }
}

/// Ids from one byte to hundreds of KiB, mixed, on one instance: large
/// guest allocations between small ones change no decision.
#[test]
fn ids_of_any_length_decide_like_the_native_core() {
    let mut evaluator = quota_tests::reference().evaluator().unwrap();
    let lengths = [1, 40, 70_000, 3, 300_000, 12, 20_000, 20_000, 1, 65_000];
    for (n, &len) in (0..).zip(lengths.iter().cycle().take(40)) {
        let input = long_ids(len, n);
        assert_eq!(evaluator.decide(&input).unwrap(), decide(&input));
        let key = &input.entitlement_key;
        assert_eq!(evaluator.usage_key(key).unwrap(), usage_key(key));
    }
    assert_eq!(evaluator.instantiations(), 1);
}
