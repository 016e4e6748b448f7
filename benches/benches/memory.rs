//! The long run: a million decisions through one `Evaluator`, then a million
//! soft checks through the `Engine` (SQLite read, policy, metrics), with the
//! process's resident memory (`/proc/self/statm`) and the guest's linear
//! memory sampled at intervals. After a warm-up, RSS must stay flat: the run
//! exits non-zero if it grows by more than 5%.
//!
//! Not a criterion benchmark (`harness = false`, its own `main`): it measures
//! memory, not time. `cargo bench -p quota-benches --bench memory` runs it;
//! a filter argument that does not match `memory` skips it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "benchmark set-up fails loudly"
)]

use std::hint::black_box;
use std::time::Instant;

use quota_engine::QuotaRequest;
use quota_store::Synchronous;
#[allow(unused_imports)]
use quota_store::prelude::*;

/// Decisions (and checks) per run.
const CALLS: usize = 1_000_000;
/// Calls between samples.
const EVERY: usize = 50_000;
/// Calls before the baseline sample: two instance lifetimes at the default
/// limits (100 000 calls each), so allocator pools, caches and one
/// re-instantiation are all in the baseline.
const WARM_UP: usize = 200_000;
/// Most RSS growth allowed after the warm-up.
const MAX_GROWTH: f64 = 0.05;

/// The page size, from the auxiliary vector (`AT_PAGESZ`); 4 KiB if absent.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    auxv.chunks_exact(16)
        .find_map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
            let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
            (key == AT_PAGESZ).then_some(value)
        })
        .unwrap_or(4096)
}

/// Resident set size in bytes, from `/proc/self/statm` (second field, pages).
fn rss_bytes(page: u64) -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("resident pages in /proc/self/statm");
    pages * page
}

fn kib(bytes: u64) -> u64 {
    bytes / 1024
}

struct Sample {
    calls: usize,
    rss: u64,
    guest: Option<u64>,
    instances: Option<u64>,
}

/// Runs `call` CALLS times, sampling every EVERY calls; prints the samples
/// and returns the growth after the warm-up (largest sample after it,
/// relative to the sample at the end of it).
fn run(name: &str, page: u64, mut call: impl FnMut(usize) -> (Option<u64>, Option<u64>)) -> f64 {
    let started = Instant::now();
    let mut samples = Vec::new();
    let before = rss_bytes(page);
    for i in 1..=CALLS {
        let (guest, instances) = call(i);
        if i % EVERY == 0 {
            samples.push(Sample {
                calls: i,
                rss: rss_bytes(page),
                guest,
                instances,
            });
        }
    }
    let elapsed = started.elapsed();
    println!(
        "\n{name}: {CALLS} calls in {:.2} s ({:.0} ns/call); RSS {} KiB before the first call",
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / CALLS as f64,
        kib(before)
    );
    println!(
        "{:>9}  {:>10}  {:>14}  {:>9}",
        "calls", "RSS KiB", "guest mem KiB", "instances"
    );
    for s in &samples {
        println!(
            "{:>9}  {:>10}  {:>14}  {:>9}",
            s.calls,
            kib(s.rss),
            s.guest.map_or("-".to_owned(), |g| kib(g).to_string()),
            s.instances.map_or("-".to_owned(), |n| n.to_string()),
        );
    }
    let base = samples
        .iter()
        .find(|s| s.calls == WARM_UP)
        .expect("a sample at the end of the warm-up");
    let peak = samples
        .iter()
        .filter(|s| s.calls >= WARM_UP)
        .map(|s| s.rss)
        .max()
        .unwrap_or(base.rss);
    let last = samples.last().map_or(base.rss, |s| s.rss);
    let growth = (peak as f64 - base.rss as f64) / base.rss as f64;
    println!(
        "{name}: RSS after warm-up ({WARM_UP} calls) {} KiB, peak after {} KiB, last {} KiB: \
         growth {:+.2}% (limit {:.0}%)",
        kib(base.rss),
        kib(peak),
        kib(last),
        growth * 100.0,
        MAX_GROWTH * 100.0
    );
    growth
}

fn main() {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "memory".contains(f.as_str())) {
        return;
    }
    let page = page_size();
    let inputs = quota_benches::inputs::decision_inputs().unwrap();
    let n = inputs.len();

    let mut evaluator = quota_benches::evaluator().unwrap();
    let evaluator_growth = run("evaluator.decide", page, |i| {
        let decision = evaluator.decide(&inputs[i % n]).unwrap().unwrap();
        black_box(decision);
        (
            Some(evaluator.guest_memory_bytes() as u64),
            Some(evaluator.instantiations()),
        )
    });
    drop(evaluator);

    let dir = tempfile::tempdir().unwrap();
    let store = quota_benches::store(dir.path(), Synchronous::Normal).unwrap();
    let engine = quota_benches::engine(store).unwrap();
    let requests = [
        QuotaRequest::new("u1", "drafts.max", 1),
        QuotaRequest::new("u1", "segments.max", 1),
        QuotaRequest::new("u1", "exports.max", 2),
    ];
    let engine_growth = run("engine.check", page, |i| {
        black_box(engine.check(&requests[i % requests.len()]).unwrap());
        (None, None)
    });

    let mut failed = false;
    for (name, growth) in [
        ("evaluator.decide", evaluator_growth),
        ("engine.check", engine_growth),
    ] {
        if growth > MAX_GROWTH {
            eprintln!(
                "memory: {name}: RSS grew {:.2}% after the warm-up, more than {:.0}%",
                growth * 100.0,
                MAX_GROWTH * 100.0
            );
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
    println!(
        "\nmemory: flat (RSS growth after warm-up within {:.0}%)",
        MAX_GROWTH * 100.0
    );
}
