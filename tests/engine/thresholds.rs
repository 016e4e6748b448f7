//! Threshold events (docs/events.md): written in the consuming
//! transaction, once per (user, key, period, threshold) however requests
//! race; settled usage crosses thresholds, lease reservations do not.

use std::sync::Arc;

use quota_engine::{EnforceError, Engine, QuotaRequest};
use quota_metering::{GrantRequest, Granted, SettleRequest, Settled};
use quota_store::{AnyStore, Event, EventKind, EventStore, PeriodKind, PlanChange};

use super::*;

const KEY: &str = "exports.max";

/// Plan `pro`: `KEY` limited to `limit`, enforced, no grace, monthly, with
/// thresholds at 80% and 100%; user ann on it.
fn seeded(engine: &Engine<AnyStore>, limit: i64) {
    let change = PlanChange {
        limits: vec![(KEY.into(), limit)],
        enforcement_enabled: Some(true),
        grace_count: Some(0),
        periods: vec![(KEY.into(), PeriodKind::Month)],
        thresholds: vec![(KEY.into(), vec![80, 100])],
        ..PlanChange::default()
    };
    let store = engine.store();
    store.set_plan("test", "pro", &change, T0).unwrap();
    store.create_user("test", "ann", "pro", T0).unwrap();
}

fn consume(engine: &Engine<AnyStore>, n: i64) -> Result<(), EnforceError> {
    engine
        .guarded(|g| g.admit(&QuotaRequest::new("ann", KEY, n))?.commit())
        .map(drop)
}

/// ann's events as (type, threshold), oldest first.
fn events(store: &AnyStore) -> Vec<(EventKind, String)> {
    let mut events: Vec<Event> = store.events(Some("ann"), 100).unwrap();
    events.reverse();
    events.into_iter().map(|e| (e.kind, e.threshold)).collect()
}

fn wall_clock() -> Clock {
    Clock::at(quota_engine::system_now_ms())
}

fn sixteen_racing_clients_write_one_event_per_threshold(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(engine(backend, dir.path(), &wall_clock()));
    seeded(&engine, 20);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                let mut admitted = 0;
                for _ in 0..3 {
                    match consume(&engine, 1) {
                        Ok(()) => admitted += 1,
                        Err(EnforceError::QuotaExceeded(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: i64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(admitted, 20);
    let mut seen = events(engine.store());
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        seen,
        [
            (EventKind::ThresholdReached, "100".to_owned()),
            (EventKind::ThresholdReached, "80".to_owned()),
            (EventKind::QuotaBlocked, "blocked".to_owned()),
        ]
    );
    // Blocked again and again: still one `quota.blocked` this period.
    for _ in 0..3 {
        assert!(consume(&engine, 1).is_err());
    }
    assert_eq!(events(engine.store()).len(), 3);
}

fn an_event_is_written_only_with_the_usage_that_crossed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &wall_clock());
    seeded(&engine, 10);
    consume(&engine, 7).unwrap();
    assert_eq!(events(engine.store()), []);
    // Admitted but never committed (the action failed): no event.
    drop(engine.admit(&QuotaRequest::new("ann", KEY, 1)).unwrap());
    assert_eq!(events(engine.store()), []);
    consume(&engine, 1).unwrap();
    assert_eq!(
        events(engine.store()),
        [(EventKind::ThresholdReached, "80".to_owned())]
    );
    let event = &engine.store().events(Some("ann"), 1).unwrap()[0];
    let body: serde_json::Value = serde_json::from_str(&event.payload).unwrap();
    assert_eq!(body["type"], "threshold.reached");
    let data = &body["data"];
    assert_eq!(
        (&data["threshold"], &data["usage"], &data["limit"]),
        (
            &serde_json::json!(80),
            &serde_json::json!(8),
            &serde_json::json!(10)
        ),
        "{body}"
    );
    assert_eq!(data["period"]["kind"], "month");
    assert_eq!(data["event_id"], event.event_id.as_str());
    assert_eq!(event.period_start_ms, data["period"]["start_ms"].as_i64());
}

fn settled_units_cross_thresholds_reservations_do_not(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &wall_clock());
    seeded(&engine, 10);
    let store = engine.store();
    store
        .create_node("test", "edge", 100, &"1".repeat(64), T0)
        .unwrap();
    let now = quota_engine::system_now_ms();
    let ask = GrantRequest {
        node_id: "edge".into(),
        user_id: "ann".into(),
        entitlement_key: KEY.into(),
        units: 10,
        ttl_ms: 60_000,
    };
    let lease = engine
        .guarded(|g| match quota_metering::grant(g, &ask, now)? {
            Granted::Lease(admitted, lease) => {
                admitted.commit_reserved()?;
                Ok::<_, EnforceError>(lease)
            }
            Granted::Refused(_, why) => panic!("{why:?}"),
        })
        .unwrap();
    assert_eq!(lease.reserved, 10);
    assert_eq!(events(store), [], "a reservation is not usage");
    let settle = SettleRequest {
        node_id: "edge".into(),
        lease_id: lease.id,
        seq: 1,
        spent: 8,
        more: 0,
        ttl_ms: 60_000,
    };
    engine
        .guarded(|g| match quota_metering::settle(g, &settle, now)? {
            Settled::Ended(pending, ..) => pending.commit(),
            other => panic!("{other:?}"),
        })
        .unwrap();
    assert_eq!(
        events(store),
        [(EventKind::ThresholdReached, "80".to_owned())]
    );
}

quota_tests::on_both_backends!(
    sixteen_racing_clients_write_one_event_per_threshold,
    an_event_is_written_only_with_the_usage_that_crossed,
    settled_units_cross_thresholds_reservations_do_not,
);
