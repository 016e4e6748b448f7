//! Loading the reference policy component, side by side in one run, on the
//! same runtime and the same bytes (`quota_reference_policy::COMPONENT`):
//!
//! - `compile`: `Runtime::load`: compile with Cranelift, type-check against
//!   the policy world, make the first instance;
//! - `cached`: `Runtime::load_cached` on a warm artifact cache (every load a
//!   hit): hash the bytes, read the artifact and check its tag, deserialize,
//!   then the same type-check and first instance.
//!
//! The cache is a fresh temporary directory, warmed by one load (a miss)
//! before anything is timed. Each load is timed on its own and the module is
//! dropped outside the timed window. At the end the run prints the median of
//! each and the ratio compile / cached (the target: at least 50x).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark set-up fails loudly"
)]

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group};
use quota_host::{ArtifactCache, CacheKey, CacheOutcome, Limits, Runtime};

/// Every load timed in this run, per benchmark: compile, cached.
#[derive(Debug, Default)]
struct Loads {
    compile: Vec<Duration>,
    cached: Vec<Duration>,
}

thread_local! {
    static LOADS: RefCell<Loads> = RefCell::new(Loads::default());
}

/// Runs `load` `iters` times, each timed on its own (the module it returns is
/// dropped after its time is taken), records every time in `record`, and
/// returns their sum for criterion.
fn timed<T>(
    iters: u64,
    record: fn(&mut Loads) -> &mut Vec<Duration>,
    mut load: impl FnMut() -> T,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let started = Instant::now();
        let module = black_box(load());
        let elapsed = started.elapsed();
        drop(module);
        total += elapsed;
        LOADS.with(|l| record(&mut l.borrow_mut()).push(elapsed));
    }
    total
}

fn policy_load(c: &mut Criterion) {
    let bytes = quota_reference_policy::COMPONENT;
    let runtime = Runtime::new(Limits::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), CacheKey::random().unwrap()).unwrap();
    let (_, first) = runtime.load_cached(bytes, &cache).unwrap();
    assert_eq!(first, CacheOutcome::Miss, "a fresh cache must miss");
    let (warm, outcome) = runtime.load_cached(bytes, &cache).unwrap();
    assert_eq!(outcome, CacheOutcome::Hit, "the warmed cache must hit");
    let compiled = runtime.load(bytes).unwrap();
    assert_eq!(warm.sha256(), compiled.sha256());
    drop((warm, compiled));
    eprintln!(
        "policy_load: reference component, {} bytes, sha256 {}; cache warmed in a temporary directory",
        bytes.len(),
        &quota_host::sha256_hex(bytes)[..12],
    );

    let mut group = c.benchmark_group("policy_load");
    // A compile takes milliseconds: flat sampling, fewer samples.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(20);
    group.bench_function("compile", |b| {
        b.iter_custom(|iters| timed(iters, |l| &mut l.compile, || runtime.load(bytes).unwrap()))
    });
    group.bench_function("cached", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                |l| &mut l.cached,
                || {
                    let (module, outcome) = runtime.load_cached(bytes, &cache).unwrap();
                    assert_eq!(outcome, CacheOutcome::Hit, "the cache went cold");
                    module
                },
            )
        })
    });
    group.finish();
}

criterion_group!(benches, policy_load);

fn median(times: &mut [Duration]) -> Option<Duration> {
    times.sort_unstable();
    times.get(times.len() / 2).copied()
}

/// The medians of every load timed in this run (warm-up included) and
/// their ratio, as BENCHMARKS.md reports them.
fn print_ratio() {
    LOADS.with(|l| {
        let mut l = l.borrow_mut();
        let (n_compile, n_cached) = (l.compile.len(), l.cached.len());
        let (Some(compile), Some(cached)) = (median(&mut l.compile), median(&mut l.cached)) else {
            return;
        };
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("\nmedian of every load in this run:");
        println!(
            "  compile (Runtime::load)          {:>10.3} ms  ({n_compile} loads)",
            ms(compile)
        );
        println!(
            "  cached  (Runtime::load_cached)   {:>10.3} ms  ({n_cached} loads, all hits)",
            ms(cached)
        );
        println!(
            "  compile / cached                 {:>10.1}x  (target: at least 50x)",
            compile.as_secs_f64() / cached.as_secs_f64()
        );
    });
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    print_ratio();
}
