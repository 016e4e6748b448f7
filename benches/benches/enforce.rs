//! Guarded `create_draft` against the same insert in a bare transaction with
//! the same pragmas, at `synchronous=NORMAL` and `FULL`, side by side in one
//! run. Two steps in between show where the difference goes:
//!
//! - `bare`: `BEGIN IMMEDIATE`, insert the draft, `COMMIT`;
//! - `bare_counter`: the same plus the usage counter upsert (one more page);
//! - `bare_counter_state`: plus the read of the quota state (plan, override,
//!   default, usage, grace);
//! - `guarded`: `Engine::create_draft`, i.e. all of that plus the policy
//!   call through wasmtime, the decision log event and the metrics.
//!
//! Two more show what the service adds after the decision: `logged` sends
//! each decision to a decision log (its own file, as `quota serve` keeps
//! it), and `logged_counted` to the per-minute counts of the dashboard's
//! overview as well (`quota_engine::stats`), as `quota serve` does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark set-up fails loudly"
)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use quota_domain::Domain;
use quota_engine::log::{DecisionLog, Retention};
use quota_engine::stats::DecisionStats;
#[allow(unused_imports)]
use quota_store::prelude::*;
use quota_store::{DomainTx, QuotaStore, QuotaTx, SqliteStore, Synchronous};

fn bare(store: &SqliteStore, counter: bool, state: bool) {
    let mut tx = store.begin_write().unwrap();
    if state {
        tx.quota_state("u1", "drafts.max", "drafts.created", 0)
            .unwrap();
    }
    tx.insert_draft("u1", "title", 0).unwrap();
    if counter {
        tx.add_usage("u1", "drafts.created", None, 1).unwrap();
    }
    tx.commit().unwrap();
}

fn create_draft(c: &mut Criterion) {
    for (name, synchronous) in [("normal", Synchronous::Normal), ("full", Synchronous::Full)] {
        let mut group = c.benchmark_group(format!("create_draft/{name}"));
        let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
        let stores: Vec<_> = dirs
            .iter()
            .map(|d| quota_benches::store(d.path(), synchronous).unwrap())
            .collect();
        group.bench_function("bare", |b| b.iter(|| bare(&stores[0], false, false)));
        group.bench_function("bare_counter", |b| b.iter(|| bare(&stores[1], true, false)));
        group.bench_function("bare_counter_state", |b| {
            b.iter(|| bare(&stores[2], true, true))
        });
        let engine = quota_benches::engine(stores[3].clone()).unwrap();
        group.bench_function("guarded", |b| {
            b.iter(|| engine.create_draft("u1", "title").unwrap())
        });
        let log_dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let logs: Vec<_> = log_dirs
            .iter()
            .map(|d| {
                let store = SqliteStore::open(d.path().join("decisions.db")).unwrap();
                Arc::new(DecisionLog::start(store, Retention::default()).unwrap())
            })
            .collect();
        let logged = quota_benches::engine(stores[4].clone())
            .unwrap()
            .with_decision_sink(logs[0].clone());
        group.bench_function("logged", |b| {
            b.iter(|| logged.create_draft("u1", "title").unwrap())
        });
        let counted = quota_benches::engine(stores[5].clone())
            .unwrap()
            .with_decision_sink(Arc::new(DecisionStats::new()))
            .with_decision_sink(logs[1].clone());
        group.bench_function("logged_counted", |b| {
            b.iter(|| counted.create_draft("u1", "title").unwrap())
        });
        group.finish();
    }
}

criterion_group!(benches, create_draft);
criterion_main!(benches);
