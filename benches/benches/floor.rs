//! What a call costs before any policy work, side by side in one run with
//! the reference policy, on an engine configured like the service's runtime
//! and the shared input set:
//!
//! - `native`: `quota_policy_core::decide`, for scale;
//! - `reference`: the reference component through `Evaluator::decide`, as
//!   in the decision bench;
//! - `contract`: the fixture `benches/floor` through `Evaluator::decide`:
//!   the same contract and the same path, but a `decide` that does no work
//!   (it echoes the numbers and returns a constant sentence of typical
//!   length). The difference to `reference` is the policy's own work;
//! - `contract_raw`: the same call through the generated bindings alone,
//!   without the evaluator (input conversion, deadline, invariant check);
//! - `nop`, `one_id`, `three_ids`: one integer, one id, three ids in, one
//!   integer out: the cost of a call, and of each string;
//! - `flat`, `flat_numbers`: the ids and ten integers in (16 flat values,
//!   passed as arguments rather than through guest memory), the whole
//!   decision out, or the decision without its reason: what a contract of
//!   that shape would cost.
//!
//! At the end the run prints each median and its ratio to `reference`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    missing_debug_implementations,
    reason = "benchmark set-up fails loudly; generated bindings"
)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group};
use quota_host::{Limits, Runtime};
use quota_policy_core::DecisionInput;
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

wasmtime::component::bindgen!({
    path: ["../wit", "floor/wit"],
    world: "quota:floor/floor",
    ownership: Borrowing {
        duplicate_if_necessary: false
    },
});

use exports::quota::floor::calls;
use exports::quota::policy::engine;

const NAMES: [&str; 9] = [
    "native",
    "reference",
    "contract",
    "contract_raw",
    "nop",
    "one_id",
    "three_ids",
    "flat",
    "flat_numbers",
];

fn wit_input(i: &DecisionInput) -> engine::DecisionInput<'_> {
    engine::DecisionInput {
        user_id: &i.user_id,
        plan_id: &i.plan_id,
        entitlement_key: &i.entitlement_key,
        requested: i.requested,
        now_ms: i.now_ms,
        usage: i.usage,
        override_: i.r#override.as_ref().map(|o| engine::OverrideInfo {
            value: o.value,
            expires_at_ms: o.expires_at_ms,
        }),
        plan: i.plan.as_ref().map(|p| engine::PlanInfo {
            limit: p.limit,
            enforcement_enabled: p.enforcement_enabled,
            grace_count: p.grace_count,
            rollout_percent: p.rollout_percent,
        }),
        default_limit: i.default_limit,
        grace_used: i.grace_used,
    }
}

fn ids(i: &DecisionInput) -> calls::Ids<'_> {
    calls::Ids {
        user_id: &i.user_id,
        plan_id: &i.plan_id,
        entitlement_key: &i.entitlement_key,
    }
}

fn numbers(i: &DecisionInput) -> calls::Numbers {
    calls::Numbers {
        requested: i.requested,
        now_ms: i.now_ms,
        usage: i.usage,
        grace_used: i.grace_used,
        n4: i.r#override.as_ref().map_or(-2, |o| o.value),
        n5: i.default_limit.unwrap_or(-2),
        n6: i.plan.as_ref().and_then(|p| p.limit).unwrap_or(-2),
        n7: i.plan.as_ref().map_or(0, |p| p.grace_count),
        n8: i.plan.as_ref().map_or(0, |p| p.rollout_percent),
        n9: i64::from(i.plan.as_ref().is_some_and(|p| p.enforcement_enabled)),
    }
}

/// A wasmtime engine configured as `quota_host::Runtime::new` configures
/// its own (which it does not hand out), for the calls of other shapes.
/// Keep the two in step.
fn engine_like_the_runtime() -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        .concurrency_support(false)
        .epoch_interruption(true)
        .max_wasm_stack(Limits::default().stack_bytes)
        .wasm_backtrace_max_frames(None)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    wasmtime::Engine::new(&config).unwrap()
}

fn floor(c: &mut Criterion) {
    let inputs = quota_benches::inputs::decision_inputs().unwrap();
    let n = inputs.len();
    let runtime = Runtime::new(Limits::default()).unwrap();
    let mut reference = runtime
        .load(quota_reference_policy::COMPONENT)
        .unwrap()
        .evaluator()
        .unwrap();
    let mut contract = runtime
        .load(quota_benches::FLOOR_COMPONENT)
        .unwrap()
        .evaluator()
        .unwrap();

    let engine = engine_like_the_runtime();
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    let component = Component::new(&engine, quota_benches::FLOOR_COMPONENT).unwrap();
    let fixture = Floor::instantiate(&mut store, &component, &Linker::new(&engine)).unwrap();
    let (raw, calls) = (fixture.quota_policy_engine(), fixture.quota_floor_calls());

    // Every call answers what it should before anything is timed.
    for input in &inputs {
        let native = quota_policy_core::decide(input).unwrap();
        assert_eq!(reference.decide(input).unwrap().unwrap(), native);
        let fixed = contract.decide(input).unwrap().unwrap();
        assert_eq!(fixed.projected_usage, native.projected_usage);
        let d = raw
            .call_decide(&mut store, wit_input(input))
            .unwrap()
            .unwrap();
        assert_eq!((d.usage, d.reason), (input.usage, fixed.reason.clone()));
        let d = calls
            .call_decide_flat(&mut store, ids(input), numbers(input))
            .unwrap()
            .unwrap();
        assert_eq!((d.usage, d.reason), (input.usage, fixed.reason));
        let d = calls
            .call_decide_flat_numbers(&mut store, ids(input), numbers(input))
            .unwrap()
            .unwrap();
        assert_eq!(d.requested, input.requested);
        let lengths = input.user_id.len() + input.plan_id.len() + input.entitlement_key.len();
        assert_eq!(
            calls.call_three_ids(&mut store, ids(input)).unwrap(),
            lengths as i64
        );
        let id = &input.user_id;
        assert_eq!(calls.call_one_id(&mut store, id).unwrap(), id.len() as i64);
        assert_eq!(
            calls.call_nop(&mut store, input.usage).unwrap(),
            input.usage
        );
    }

    let mut group = c.benchmark_group("floor");
    // One closure per row, each cycling through the inputs.
    macro_rules! row {
        ($name:expr, |$input:ident| $call:expr) => {
            group.bench_function($name, |b| {
                let mut i = 0;
                b.iter(|| {
                    let $input = black_box(&inputs[i % n]);
                    i += 1;
                    black_box($call)
                })
            });
        };
    }
    row!("native", |input| quota_policy_core::decide(input).unwrap());
    row!("reference", |input| reference
        .decide(input)
        .unwrap()
        .unwrap());
    row!("contract", |input| contract.decide(input).unwrap().unwrap());
    row!("contract_raw", |input| raw
        .call_decide(&mut store, wit_input(input))
        .unwrap()
        .unwrap());
    row!("nop", |input| calls
        .call_nop(&mut store, input.usage)
        .unwrap());
    row!("one_id", |input| calls
        .call_one_id(&mut store, &input.user_id)
        .unwrap());
    row!("three_ids", |input| calls
        .call_three_ids(&mut store, ids(input))
        .unwrap());
    row!("flat", |input| calls
        .call_decide_flat(&mut store, ids(input), numbers(input))
        .unwrap()
        .unwrap());
    row!("flat_numbers", |input| calls
        .call_decide_flat_numbers(&mut store, ids(input), numbers(input))
        .unwrap()
        .unwrap());
    group.finish();
}

criterion_group!(benches, floor);

fn main() {
    let since = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    let median = |name| quota_benches::criterion_median_ns("floor", name, since);
    let Some(reference) = median("reference") else {
        return;
    };
    println!("\nmedians of this run (ratio to reference):");
    for name in NAMES {
        if let Some(ns) = median(name) {
            println!("  {name:<14} {ns:>10.1} ns  {:>6.2}x", ns / reference);
        }
    }
}
