//! A what-if of a plan change over one million logged decisions
//! (docs/what-if.md): the decision log is written once (10,000 users on
//! plan `pro`, 100 requests each, interleaved, warn-only past a limit of
//! 50), then replayed with enforcement on. Beside it, the same log only
//! read, row by row, and read with both JSON columns parsed: what the
//! replay costs beyond reading.
//!
//! `cargo bench -p quota-benches --bench whatif`; the set-up takes about
//! half a minute, and each replay a few seconds, on one core.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark set-up fails loudly"
)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use quota_engine::whatif::{PlanHypothesis, WhatIfOptions, what_if};
use quota_policy_core::json::{DecisionJson, input_to_value};
use quota_policy_core::{DecisionInput, PlanInfo, Status};
use quota_store::prelude::*;
use quota_store::{DecisionLogEntry, SqliteStore};

const USERS: i64 = 10_000;
const PER_USER: i64 = 100;
const LIMIT: i64 = 50;

/// The log: decisions made as the reference policy made them, warn-only.
fn seed(store: &SqliteStore) {
    let key = quota_policy_core::usage_key("drafts.max");
    let mut batch = Vec::with_capacity(10_000);
    for round in 0..PER_USER {
        for user in 0..USERS {
            let input = DecisionInput {
                user_id: format!("user-{user}"),
                plan_id: "pro".into(),
                entitlement_key: "drafts.max".into(),
                requested: 1,
                now_ms: 1_700_000_000_000 + round * USERS + user,
                usage: round,
                r#override: None,
                plan: Some(PlanInfo {
                    limit: Some(LIMIT),
                    enforcement_enabled: false,
                    grace_count: 0,
                    rollout_percent: 100,
                }),
                default_limit: None,
                grace_used: 0,
            };
            let decision = quota_policy_core::decide(&input).unwrap();
            batch.push(DecisionLogEntry {
                id: 0,
                at_ms: input.now_ms,
                user_id: input.user_id.clone(),
                plan_id: "pro".into(),
                entitlement_key: "drafts.max".into(),
                status: decision.status.as_str().to_owned(),
                policy_sha256: "reference".into(),
                input_json: input_to_value(&input).to_string(),
                output_json: DecisionJson::new(&decision, &key).to_value().to_string(),
                shadow_sha256: None,
                shadow_verdict: None,
                shadow_json: None,
                period_start_ms: None,
            });
            if batch.len() == batch.capacity() {
                store.append_decisions(&batch).unwrap();
                batch.clear();
            }
        }
    }
    store.append_decisions(&batch).unwrap();
}

fn replay(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("decisions.db")).unwrap();
    seed(&store);
    let policy = quota_tests::reference().clone();
    let hypothesis = PlanHypothesis {
        enforcement_enabled: Some(true),
        ..PlanHypothesis::default()
    };
    let options = WhatIfOptions {
        plan_id: "pro".into(),
        since_ms: 0,
        examples: 3,
        users_listed: 20,
    };
    // The replay's answer, checked once: past the limit, every warn-only
    // decision of every user turns into a block.
    let report = what_if(&store, &policy, &hypothesis, &options).unwrap();
    assert_eq!(report.replayed, (USERS * PER_USER) as u64);
    assert_eq!(report.changed, (USERS * (PER_USER - LIMIT)) as u64);
    assert_eq!(report.transitions[0].to, Status::Block.as_str());

    let mut group = c.benchmark_group("what_if/1M");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(60));
    group.warm_up_time(Duration::from_secs(5));
    group.bench_function("read", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            store
                .each_decision("pro", 0, &mut |d| bytes += d.input_json.len())
                .unwrap();
            bytes
        })
    });
    group.bench_function("read_parse", |b| {
        b.iter(|| {
            let mut n = 0usize;
            store
                .each_decision("pro", 0, &mut |d| {
                    let input: serde_json::Value = serde_json::from_str(d.input_json).unwrap();
                    let output: serde_json::Value = serde_json::from_str(d.output_json).unwrap();
                    n += usize::from(input.is_object() && output.is_object());
                })
                .unwrap();
            n
        })
    });
    group.bench_function("replay", |b| {
        b.iter(|| what_if(&store, &policy, &hypothesis, &options).unwrap())
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
