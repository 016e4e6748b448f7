//! One decision, per call, on the same shared input set
//! (`quota_benches::inputs`, 64 inputs cycled), in every engine:
//!
//! - `native`: `quota_policy_core::decide`, plain Rust;
//! - `wasm`: the reference component through `quota_host::Evaluator::decide`
//!   on a reused instance (the input converted to WIT types, the call, the
//!   decision converted back and checked against the contract's invariants);
//! - `regorus_*`: the Rego policy `benches/policies/quota.rego` in each API
//!   style of regorus (interpreter `eval_rule` and `eval_query`,
//!   `CompiledPolicy`, the RVM bytecode VM);
//! - `cedar`: the Cedar policy set `benches/policies/quota.cedar`, the status
//!   read from the determining policies;
//! - `wasm_<name>`: any other component listed in `QUOTA_BENCH_COMPONENTS`
//!   (paths separated by commas), the same way as `wasm`: another build of
//!   the reference, or a policy of one's own.
//!
//! Before anything is timed, every engine decides every input and the run
//! stops if any disagrees with the native decision. Policies are compiled,
//! inputs, requests and entities built beforehand: only evaluation is timed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark set-up fails loudly"
)]

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group};
use quota_benches::peers::{Cedar, Rego, RegoMode};
use quota_policy_core::{DecisionInput, Status};

fn decision(c: &mut Criterion) {
    let inputs = quota_benches::inputs::decision_inputs().unwrap();
    let n = inputs.len();
    let mut evaluator = quota_benches::evaluator().unwrap();
    let mut rego = Rego::new().unwrap();
    let cedar = Cedar::new(&inputs).unwrap();
    if let Err(failures) =
        quota_benches::check_agreement(&inputs, &mut evaluator, &mut rego, &cedar)
    {
        panic!("the engines disagree; nothing timed:\n{failures}");
    }
    let count = |status: Status| {
        inputs
            .iter()
            .filter(|i| quota_policy_core::decide(i).is_ok_and(|d| d.status == status))
            .count()
    };
    eprintln!(
        "decision: all engines agree on {n} inputs (allow {}, allow_grace {}, warn_only {}, \
         block {}): wasm = native on every field; rego on every field but the reason, in {} \
         modes; cedar on the status",
        count(Status::Allow),
        count(Status::AllowGrace),
        count(Status::WarnOnly),
        count(Status::Block),
        RegoMode::ALL.len()
    );
    let rego_inputs: Vec<_> = inputs
        .iter()
        .map(quota_benches::peers::rego_input)
        .collect();
    let requests: Vec<_> = inputs.iter().map(|i| Cedar::request(i).unwrap()).collect();

    let mut group = c.benchmark_group("decision");
    group.bench_function("native", |b| {
        let mut i = 0;
        b.iter(|| {
            let input = &inputs[i % n];
            i += 1;
            black_box(quota_policy_core::decide(black_box(input)).unwrap())
        })
    });
    group.bench_function("wasm", |b| {
        let mut i = 0;
        b.iter(|| {
            let input = &inputs[i % n];
            i += 1;
            black_box(evaluator.decide(black_box(input)).unwrap().unwrap())
        })
    });
    for (name, mut other) in other_components(&inputs) {
        group.bench_function(name, |b| {
            let mut i = 0;
            b.iter(|| {
                let input = &inputs[i % n];
                i += 1;
                black_box(other.decide(black_box(input)).unwrap())
            })
        });
    }
    for mode in RegoMode::ALL {
        group.bench_function(mode.name(), |b| {
            let mut i = 0;
            b.iter(|| {
                let input = &rego_inputs[i % n];
                i += 1;
                black_box(rego.eval(mode, black_box(input)).unwrap())
            })
        });
    }
    group.bench_function("cedar", |b| {
        let mut i = 0;
        b.iter(|| {
            let request = &requests[i % n];
            i += 1;
            black_box(cedar.decide(black_box(request)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, decision);

/// Names the other components a run compares with the reference.
const OTHER_COMPONENTS: &str = "QUOTA_BENCH_COMPONENTS";

/// The paths listed in `QUOTA_BENCH_COMPONENTS` (separated by commas),
/// each with its row's name, `wasm_<file stem>`.
fn other_paths() -> Vec<(String, String)> {
    std::env::var(OTHER_COMPONENTS)
        .unwrap_or_default()
        .split(',')
        .filter(|path| !path.is_empty())
        .map(|path| {
            let stem = std::path::Path::new(path)
                .file_stem()
                .map_or_else(|| path.into(), |s| s.to_string_lossy());
            (path.to_owned(), format!("wasm_{stem}"))
        })
        .collect()
}

/// The components of [`other_paths`], e.g. the reference built from another
/// commit or a policy of one's own: each an evaluator, timed like `wasm`.
/// Their decisions are not compared with native ones (another policy may
/// decide differently), but each must decide every input without a trap.
fn other_components(inputs: &[DecisionInput]) -> Vec<(String, quota_host::Evaluator)> {
    let runtime = quota_host::Runtime::new(quota_host::Limits::default()).unwrap();
    other_paths()
        .into_iter()
        .map(|(path, name)| {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let mut evaluator = runtime
                .load(&bytes)
                .unwrap_or_else(|e| panic!("{path}: {e}"))
                .evaluator()
                .unwrap();
            for input in inputs {
                let _policy_error_or_decision = evaluator
                    .decide(input)
                    .unwrap_or_else(|e| panic!("{path}: {e}"));
            }
            (name, evaluator)
        })
        .collect()
}

fn median_ns(name: &str, since: SystemTime) -> Option<f64> {
    quota_benches::criterion_median_ns("decision", name, since)
}

/// The medians of this run side by side, with the ratios BENCHMARKS.md reports.
fn print_ratios(since: SystemTime) {
    let Some(wasm) = median_ns("wasm", since) else {
        return;
    };
    println!("\nmedians of this run (ratio to wasm; wasm/native for native):");
    let others: Vec<String> = other_paths().into_iter().map(|(_, name)| name).collect();
    let names = ["native", "wasm"]
        .into_iter()
        .chain(others.iter().map(String::as_str))
        .chain(RegoMode::ALL.map(RegoMode::name))
        .chain(["cedar"]);
    for name in names {
        if let Some(ns) = median_ns(name, since) {
            let ratio = if name == "native" {
                wasm / ns
            } else {
                ns / wasm
            };
            println!("  {name:<32} {ns:>12.1} ns  {ratio:>7.2}x");
        }
    }
}

/// Writes the input set as JSON Lines to the file this names, for the
/// JavaScript package's benchmark (`scripts/bench-edge.sh`), and exits.
const DUMP_INPUTS: &str = "QUOTA_BENCH_DUMP_INPUTS";

fn main() {
    if let Ok(path) = std::env::var(DUMP_INPUTS) {
        let inputs = quota_benches::inputs::decision_inputs().unwrap();
        let lines: Vec<String> = inputs
            .iter()
            .map(|input| quota_policy_core::json::input_to_value(input).to_string())
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        return;
    }
    let since = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratios(since);
}
