//! Misbehaving policies fail the call with the right error, never the host,
//! and the next call is served by a fresh instance.

use std::time::{Duration, Instant};

use quota_host::{CallError, Evaluator, Limits, Runtime};
use quota_policy_core::{DecisionInput, PlanInfo, Status};

fn input(key: &str) -> DecisionInput {
    DecisionInput {
        user_id: "mallory".into(),
        plan_id: "pro".into(),
        entitlement_key: key.into(),
        requested: 1,
        now_ms: 0,
        usage: 3,
        r#override: None,
        plan: Some(PlanInfo {
            limit: Some(3),
            enforcement_enabled: true,
            grace_count: 0,
            rollout_percent: 100,
        }),
        default_limit: None,
        grace_used: 0,
    }
}

fn hostile(limits: Limits) -> Evaluator {
    let runtime = Runtime::new(limits).unwrap();
    runtime
        .load(quota_tests::HOSTILE)
        .unwrap()
        .evaluator()
        .unwrap()
}

/// After a failure, an ordinary request is decided correctly by a new instance.
fn still_serves(evaluator: &mut Evaluator, instances_before: u64) {
    let decision = evaluator.decide(&input("drafts.max")).unwrap().unwrap();
    assert_eq!(decision.status, Status::Block);
    assert_eq!(evaluator.instantiations(), instances_before + 1);
}

#[test]
fn an_endless_loop_is_stopped_at_the_deadline() {
    // Long enough that the ordinary call after it is never cut off by a
    // busy machine descheduling this thread; the upper bound stays 10x.
    let deadline = Duration::from_millis(200);
    let mut evaluator = hostile(Limits {
        call_deadline: deadline,
        ..Limits::default()
    });
    let started = Instant::now();
    let err = evaluator.decide(&input("hostile.loop")).unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, CallError::Deadline(d) if d == deadline),
        "{err}"
    );
    assert!(took >= deadline, "stopped after {took:?}");
    assert!(took < Duration::from_secs(2), "stopped only after {took:?}");
    still_serves(&mut evaluator, 1);
}

#[test]
fn a_memory_bomb_hits_the_cap() {
    let mut evaluator = hostile(Limits {
        memory_bytes: 4 << 20,
        ..Limits::default()
    });
    let err = evaluator.decide(&input("hostile.grow")).unwrap_err();
    assert!(
        matches!(err, CallError::MemoryCap(cap) if cap == 4 << 20),
        "{err}"
    );
    still_serves(&mut evaluator, 1);
}

#[test]
fn endless_recursion_hits_the_stack_limit() {
    let mut evaluator = hostile(Limits::default());
    let err = evaluator.decide(&input("hostile.stack")).unwrap_err();
    assert!(
        matches!(&err, CallError::Trap(m) if m.contains("stack")),
        "{err}"
    );
    still_serves(&mut evaluator, 1);
}

#[test]
fn a_trap_fails_the_call_and_the_instance_is_replaced() {
    let mut evaluator = hostile(Limits::default());
    assert!(matches!(
        evaluator.decide(&input("hostile.trap")),
        Err(CallError::Trap(_))
    ));
    still_serves(&mut evaluator, 1);
    assert!(matches!(
        evaluator.usage_key("hostile.trap"),
        Err(CallError::Trap(_))
    ));
    still_serves(&mut evaluator, 2);
}

/// Every lie of the hostile guest (see its table), told where the
/// reference blocks, is refused naming the broken rule; the same lie told
/// for a `liar-` user on an ordinary key too.
#[test]
fn impossible_decisions_are_refused() {
    let mut evaluator = hostile(Limits::default());
    let lies = [
        ("grace", "grace to consume without allow_grace"),
        ("allow", "allow beyond the limit"),
        ("warn", "warn_only within the limit or while enforced"),
        ("free-grace", "not consuming its overage as grace"),
        ("no-overage", "not consuming its overage as grace"),
        (
            "override",
            "an override applied or expired that the input does not have",
        ),
        ("echo", "usage or requested not echoed"),
        ("long-reason", "reason longer than 1024 bytes"),
    ];
    for (lie, words) in lies {
        for mut input in [input(&format!("hostile.lie-{lie}")), input("drafts.max")] {
            if input.entitlement_key == "drafts.max" {
                input.user_id = format!("liar-{lie}");
            }
            let err = evaluator.decide(&input).unwrap_err();
            assert!(
                matches!(&err, CallError::InvalidDecision(m) if m.contains(words)),
                "{lie}: {err}"
            );
        }
    }
    // Within the limit the same liars tell the truth (or nothing checkable).
    let mut within = input("drafts.max");
    within.usage = 0;
    for lie in ["warn", "free-grace", "no-overage"] {
        within.user_id = format!("liar-{lie}");
        let decision = evaluator.decide(&within).unwrap().unwrap();
        assert_eq!(decision.status, Status::Allow, "{lie}");
    }
}

/// Where grace applies, a lie about it is caught as well: `allow_grace`
/// must consume exactly its overage.
#[test]
fn grace_must_be_consumed_as_decided() {
    let mut evaluator = hostile(Limits::default());
    let mut graced = input("drafts.max");
    if let Some(plan) = &mut graced.plan {
        plan.grace_count = 1;
    }
    let decision = evaluator.decide(&graced).unwrap().unwrap();
    assert_eq!(
        (decision.status, decision.grace_to_consume),
        (Status::AllowGrace, 1)
    );
    graced.grace_used = 1;
    graced.user_id = "liar-free-grace".into();
    assert!(matches!(
        evaluator.decide(&graced),
        Err(CallError::InvalidDecision(_))
    ));
}

#[test]
fn instances_are_replaced_after_the_configured_number_of_calls() {
    let mut evaluator = hostile(Limits {
        calls_per_instance: 3,
        ..Limits::default()
    });
    for _ in 0..10 {
        evaluator.decide(&input("drafts.max")).unwrap().unwrap();
    }
    assert_eq!(evaluator.instantiations(), 4);
}

#[test]
fn a_policy_error_is_a_value_not_a_failure() {
    let mut evaluator = hostile(Limits::default());
    let mut bad = input("drafts.max");
    bad.requested = 0;
    let err = evaluator.decide(&bad).unwrap().unwrap_err();
    assert!(err.message.contains("`requested`"), "{}", err.message);
    assert_eq!(evaluator.instantiations(), 1);
}

/// The memory cap holds for an instance as a whole: a policy that adds
/// four core instances of 16 MiB each (filled by a start function) is
/// refused at load, while the same wrapping with one small memory loads and
/// decides like the reference.
#[test]
fn the_memory_cap_covers_every_memory_of_an_instance() {
    let runtime = Runtime::new(Limits::default()).unwrap();
    let small =
        quota_tests::beside_policy(quota_tests::REFERENCE, &quota_tests::memory_filler(1), 1);
    let policy = runtime.load(&small).unwrap();
    let input = input("drafts.max");
    assert_eq!(
        policy.evaluator().unwrap().decide(&input).unwrap(),
        quota_tests::reference()
            .evaluator()
            .unwrap()
            .decide(&input)
            .unwrap()
    );

    let bomb =
        quota_tests::beside_policy(quota_tests::REFERENCE, &quota_tests::memory_filler(256), 4);
    let err = runtime.load(&bomb).unwrap_err();
    assert!(
        matches!(&err, quota_host::LoadError::Start(CallError::MemoryCap(cap)) if *cap == 16 << 20),
        "{err}"
    );
    // Two instances of 7.5 MiB each and the policy's own memory (about
    // 1.2 MiB): over 16 MiB together, each well under it.
    let sum =
        quota_tests::beside_policy(quota_tests::REFERENCE, &quota_tests::memory_filler(120), 2);
    assert!(matches!(
        runtime.load(&sum),
        Err(quota_host::LoadError::Start(CallError::MemoryCap(_)))
    ));
}

/// Core instances, memories and tables per instance are bounded too.
#[test]
fn instances_memories_and_tables_are_counted() {
    let runtime = Runtime::new(Limits::default()).unwrap();
    let empty = wat::parse_str("(module)").unwrap();
    let many = quota_tests::beside_policy(quota_tests::REFERENCE, &empty, 40);
    let err = runtime.load(&many).unwrap_err();
    assert!(err.to_string().contains("count"), "{err}");
}
