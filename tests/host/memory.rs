//! Guest memory over many calls, for the reference and the percent-grace
//! example: generated bindings (the result freed by the post-return
//! function) on the opt-in bump arena. Ids of every size go through: short
//! ones stay in the arena, a key of kilobytes makes a long reason, and one
//! of tens of kilobytes does not fit the arena and goes to the system
//! allocator.

use quota_host::{Evaluator, PolicyModule};
use quota_policy_core::{DecisionInput, PlanInfo, decide, usage_key};
use quota_tests::{percent_grace, reference};

fn input(n: usize) -> DecisionInput {
    let key_len = [9, 5_000, 70_000, 12][n % 4];
    let key = format!("{}.max", "k".repeat(key_len));
    DecisionInput {
        // Every fifth input is invalid: the error's message goes back too.
        user_id: if n % 5 == 4 {
            String::new()
        } else {
            format!("user-{n}")
        },
        plan_id: "pro".into(),
        entitlement_key: key,
        requested: 1,
        now_ms: 1_700_000_000_000,
        usage: i64::try_from(n % 7).unwrap(),
        r#override: None,
        plan: Some(PlanInfo {
            limit: Some(3),
            enforcement_enabled: true,
            grace_count: 2,
            rollout_percent: 100,
        }),
        default_limit: None,
        grace_used: i64::try_from(n % 3).unwrap(),
    }
}

/// Decides inputs `range` (and asks a usage key for each), checking each
/// decision against the native core (`check`) or only that it decided.
fn run(evaluator: &mut Evaluator, range: std::ops::Range<usize>, check: bool) {
    for n in range {
        let input = input(n % 20);
        let decided = evaluator.decide(&input).unwrap();
        if check {
            assert_eq!(decided, decide(&input), "input {n}");
        } else if !input.user_id.is_empty() {
            assert!(decided.is_ok(), "input {n}: {decided:?}");
        }
        // A fresh key each time, so the evaluator's cache does not answer.
        let key = format!("{}{n}", input.entitlement_key);
        assert_eq!(evaluator.usage_key(&key).unwrap(), usage_key(&key));
    }
}

/// The guest memory after a warm-up and after `calls` more calls, on one
/// instance.
fn memory_over(module: &PolicyModule, calls: usize, check: bool) -> (usize, usize) {
    let mut evaluator = module.evaluator().unwrap();
    run(&mut evaluator, 0..200, check);
    let warm = evaluator.guest_memory_bytes();
    run(&mut evaluator, 200..200 + calls, check);
    assert_eq!(evaluator.instantiations(), 1, "no call failed");
    (warm, evaluator.guest_memory_bytes())
}

#[test]
fn the_reference_keeps_its_memory_flat() {
    let (warm, end) = memory_over(reference(), 2_000, true);
    assert_eq!(warm, end);
}

#[test]
fn a_guest_with_generated_glue_keeps_its_memory_flat() {
    let (warm, end) = memory_over(percent_grace(), 2_000, false);
    assert_eq!(warm, end);
}
