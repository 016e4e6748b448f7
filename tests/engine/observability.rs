//! One structured event per decision; a warning for fallback usage keys.

use std::io::Write;
use std::sync::{Arc, Mutex};

use quota_store::PlanChange;
use serde_json::Value;

use crate::{Backend, Clock, T0, engine, plan_with_user};
use quota_domain::Domain;
#[allow(unused_imports)]
use quota_store::prelude::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The events (JSON) `run` logs at `level` or above.
fn capture(level: tracing::Level, run: impl FnOnce()) -> Vec<Value> {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .with_max_level(level)
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn every_decision_is_one_structured_event(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    plan_with_user(engine.store(), "pro", 1, 0, true, "alice");
    let change = PlanChange {
        limits: vec![("exports.max".into(), 5)],
        ..PlanChange::default()
    };
    engine.store().set_plan("t", "pro", &change, T0).unwrap();
    let events = capture(tracing::Level::INFO, || {
        engine.create_draft("alice", "one").unwrap();
        engine.create_draft("alice", "two").unwrap_err();
        let request = quota_engine::QuotaRequest::new("alice", "exports.max", 2);
        engine.admit(&request).unwrap().commit().unwrap();
    });
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "quota::decision")
        .collect();
    assert_eq!(decisions.len(), 3, "{events:?}");
    let blocked = decisions[1];
    for (field, want) in [
        ("user_id", "alice"),
        ("plan_id", "pro"),
        ("entitlement_key", "drafts.max"),
        ("limit_source", "plan"),
        ("status", "block"),
        ("policy_sha256", quota_tests::reference().sha256()),
    ] {
        assert_eq!(blocked[field], want, "{field} in {blocked}");
    }
    assert_eq!(
        (
            blocked["usage"].as_i64(),
            blocked["requested"].as_i64(),
            blocked["limit"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(blocked["grace_remaining"], 0);
    let warnings: Vec<&Value> = events.iter().filter(|e| e["level"] == "WARN").collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert_eq!(warnings[0]["usage_key"], "exports.used");
}

/// Any key a user sends to a check without an explicit usage counter would
/// log a warning holding the key on every request; it is written at most
/// once per 10 s of the engine's clock, counting those held back.
fn the_fallback_warning_is_rate_limited(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::at(T0);
    let engine = engine(backend, dir.path(), &clock);
    plan_with_user(engine.store(), "pro", 1, 0, true, "alice");
    let warnings = capture(tracing::Level::WARN, || {
        for n in 0..50 {
            let request = quota_engine::QuotaRequest::new("alice", format!("made.up.{n}"), 1);
            engine.check(&request).unwrap();
        }
        clock.set(T0 + 9_999);
        engine
            .check(&quota_engine::QuotaRequest::new("alice", "one.more", 1))
            .unwrap();
        clock.set(T0 + 10_000);
        engine
            .check(&quota_engine::QuotaRequest::new("alice", "late", 1))
            .unwrap();
    });
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert_eq!(warnings[0]["entitlement_key"], "made.up.0");
    assert_eq!(warnings[0]["suppressed"], 0);
    assert_eq!(warnings[1]["entitlement_key"], "late");
    assert_eq!(warnings[1]["suppressed"], 50);
}

quota_tests::on_both_backends!(
    every_decision_is_one_structured_event,
    the_fallback_warning_is_rate_limited,
);
