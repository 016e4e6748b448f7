//! The compile budget (`quota_host::CompileBudget`), measured: how long the
//! worst components it admits take to compile here, and how fast it refuses
//! the ones it does not.
//!
//! Each row is a component holding one core module, generated in the
//! shapes that make Cranelift slow, sized to just inside the default
//! budget (the run asserts that each is admitted):
//!
//! - `reference`: the reference policy, for scale;
//! - `locals_across_ifs`: one function whose 2,000 locals are each read
//!   after 2,500 `if`s that may set them (every join needs a value for every
//!   local): the worst single function admitted;
//! - `ten_functions`: ten such functions of 1,000 locals and 1,000 `if`s,
//!   compiled in parallel: near the budget's total;
//! - `straight_code`: 600 functions of plain code, 1.6 MB: near the total
//!   mostly by size.
//!
//! And `refuse_audit_module`: the budget check alone on a 250 KB function
//! of 4,000 locals read after 14,000 `if`s (the kind the audit found taking
//! seconds to minutes to compile; within the size bound, so every operator
//! is read before the estimate refuses it, with no compiling).
//!
//! Each compile runs once per iteration through `Runtime::load` (compile,
//! then the world check, which these components fail: timed up to the
//! refusal, the compile is all of it). The run prints each shape's
//! estimate beside its median.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark set-up fails loudly"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use quota_host::{CompileBudget, Limits, LoadError, Runtime};
use quota_tests::locals_across_ifs;

fn compile_budget(c: &mut Criterion) {
    let runtime = Runtime::new(Limits::default()).unwrap();
    let shapes = [
        ("reference", quota_reference_policy::COMPONENT.to_vec()),
        ("locals_across_ifs", locals_across_ifs(1, 2_000, 2_500)),
        ("ten_functions", locals_across_ifs(10, 1_000, 1_000)),
        ("straight_code", locals_across_ifs(600, 20, 200)),
    ];
    let audit = locals_across_ifs(1, 4_000, 14_000);
    let refused = runtime.load(&audit).unwrap_err();
    assert!(matches!(refused, LoadError::TooCostly(_)), "{refused}");
    eprintln!("refuse_audit_module: {} bytes: {refused}", audit.len());
    for (name, bytes) in &shapes {
        let estimate = CompileBudget::estimate_us(bytes);
        eprintln!(
            "{name}: {} bytes, estimated {:.2} core-seconds of {:.0} allowed",
            bytes.len(),
            estimate as f64 / 1e6,
            Limits::default().compile.max_work_us as f64 / 1e6
        );
        if let Err(e) = runtime.load(bytes) {
            assert!(
                !matches!(e, LoadError::TooCostly(_)),
                "{name} must be admitted: {e}"
            );
        }
    }

    let mut group = c.benchmark_group("compile_budget");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    for (name, bytes) in &shapes {
        group.bench_function(*name, |b| b.iter(|| black_box(runtime.load(bytes).is_ok())));
    }
    group.bench_function("refuse_audit_module", |b| {
        b.iter(|| black_box(runtime.load(&audit).is_err()))
    });
    group.finish();
}

criterion_group!(benches, compile_budget);
criterion_main!(benches);
