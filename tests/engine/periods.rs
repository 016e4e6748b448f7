//! Usage periods (docs/periods.md): usage and grace counted per period, a
//! new period from zero at its boundary, anniversaries on short months,
//! changes of period and plan, and leases that end with their period.
//!
//! The boundary tests move the engine's clock, so they run on SQLite; on
//! PostgreSQL the database's clock decides the period, which
//! `on_postgres_the_database_clock_decides_the_period` shows, and the
//! counting rules run on both backends.

use quota_engine::{EnforceError, Engine, Outcome, QuotaRequest};
use quota_metering::{GrantRequest, Granted, SettleRequest, Settled};
use quota_policy_core::Status;
use quota_store::{AnyStore, PeriodKind, PlanChange};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;

const KEY: &str = "exports.max";
const COUNTER: &str = "exports.used";

/// An RFC 3339 instant, in Unix ms.
fn at(text: &str) -> i64 {
    let t = OffsetDateTime::parse(text, &Rfc3339).unwrap();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap()
}

/// The plan `plan`: `KEY` limited to `limit` with `grace` on `period`,
/// enforced; set at `now_ms`.
fn periodic(store: &AnyStore, plan: &str, limit: i64, grace: i64, period: PeriodKind, now: i64) {
    let change = PlanChange {
        limits: vec![(KEY.into(), limit)],
        enforcement_enabled: Some(true),
        grace_count: Some(grace),
        periods: vec![(KEY.into(), period)],
        ..PlanChange::default()
    };
    store.set_plan("test", plan, &change, now).unwrap();
}

/// One unit of `KEY` for `user`, committed when admitted.
fn consume(engine: &Engine<AnyStore>, user: &str) -> Result<Outcome, EnforceError> {
    engine.admit(&QuotaRequest::new(user, KEY, 1))?.commit()
}

fn status(engine: &Engine<AnyStore>, user: &str) -> Status {
    match consume(engine, user) {
        Ok(outcome) => outcome.decision.status,
        Err(EnforceError::QuotaExceeded(_)) => Status::Block,
        Err(e) => panic!("{e}"),
    }
}

fn wall_ms() -> i64 {
    quota_engine::system_now_ms()
}

#[test]
fn a_month_starts_from_zero_at_its_boundary_with_grace_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let boundary = at("2026-02-01T00:00:00Z");
    let clock = Clock::at(boundary - 60_000);
    let engine = engine(Backend::Sqlite, dir.path(), &clock);
    let store = engine.store();
    periodic(store, "pro", 2, 1, PeriodKind::Month, T0);
    store.create_user("test", "ann", "pro", T0).unwrap();

    let walk: Vec<Status> = (0..4).map(|_| status(&engine, "ann")).collect();
    assert_eq!(
        walk,
        [
            Status::Allow,
            Status::Allow,
            Status::AllowGrace,
            Status::Block
        ]
    );
    // One millisecond before the boundary: still January's usage.
    clock.set(boundary - 1);
    assert_eq!(status(&engine, "ann"), Status::Block);
    // At the boundary: February, from zero, grace again.
    clock.set(boundary);
    let first = consume(&engine, "ann").unwrap();
    assert_eq!(first.decision.usage, 0);
    let period = first.period.unwrap();
    assert_eq!(
        (period.kind, period.start_ms, period.end_ms),
        (PeriodKind::Month, boundary, at("2026-03-01T00:00:00Z"))
    );
    let walk: Vec<Status> = (0..3).map(|_| status(&engine, "ann")).collect();
    assert_eq!(walk, [Status::Allow, Status::AllowGrace, Status::Block]);
    // The lifetime counter kept every unit: three in January, three now.
    assert_eq!(usage(store, "ann", COUNTER), 6);
}

#[test]
fn an_anniversary_on_the_31st_renews_on_the_last_day_of_february() {
    for (start, renewal, next) in [
        // 2025: not a leap year.
        (
            "2025-01-31T10:30:00Z",
            "2025-02-28T10:30:00Z",
            "2025-03-31T10:30:00Z",
        ),
        // 2028: a leap year.
        (
            "2028-01-31T10:30:00Z",
            "2028-02-29T10:30:00Z",
            "2028-03-31T10:30:00Z",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::at(at(start));
        let engine = engine(Backend::Sqlite, dir.path(), &clock);
        let store = engine.store();
        periodic(store, "pro", 1, 0, PeriodKind::Anniversary, T0);
        store.create_user("test", "ann", "pro", at(start)).unwrap();
        assert_eq!(status(&engine, "ann"), Status::Allow);
        assert_eq!(status(&engine, "ann"), Status::Block);
        clock.set(at(renewal) - 1);
        assert_eq!(status(&engine, "ann"), Status::Block, "{renewal} - 1 ms");
        clock.set(at(renewal));
        let outcome = consume(&engine, "ann").unwrap();
        let period = outcome.period.unwrap();
        assert_eq!(
            (period.start_ms, period.end_ms),
            (at(renewal), at(next)),
            "{start}"
        );
        assert_eq!(status(&engine, "ann"), Status::Block);
    }
}

/// The counting rules, by whatever clock the backend decides with (the
/// wall clock here, which is also PostgreSQL's).
fn periods_restart_on_a_change_of_period_or_plan(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::at(wall_ms());
    let engine = engine(backend, dir.path(), &clock);
    let store = engine.store();
    periodic(store, "pro", 1, 0, PeriodKind::Month, wall_ms() - 1_000);
    periodic(
        store,
        "team",
        1,
        0,
        PeriodKind::Anniversary,
        wall_ms() - 1_000,
    );
    store
        .create_user("test", "ann", "pro", wall_ms() - 1_000)
        .unwrap();
    assert_eq!(status(&engine, "ann"), Status::Allow);
    assert_eq!(status(&engine, "ann"), Status::Block);

    // Another period for the key: a new period from that instant.
    let since = wall_ms();
    clock.set(since);
    periodic(store, "pro", 1, 0, PeriodKind::Week, since);
    let outcome = consume(&engine, "ann").unwrap();
    let period = outcome.period.unwrap();
    assert_eq!((period.kind, period.start_ms), (PeriodKind::Week, since));
    assert_eq!(outcome.decision.usage, 0);
    assert_eq!(status(&engine, "ann"), Status::Block);
    // The same period again changes nothing.
    clock.set(wall_ms());
    periodic(store, "pro", 1, 0, PeriodKind::Week, wall_ms());
    assert_eq!(status(&engine, "ann"), Status::Block);

    // Another plan with an anniversary: a new anniversary from the change
    // (a later instant than the unit counted above: usage from the very
    // instant it was counted would include it).
    let moved = wall_ms().max(since + 1);
    clock.set(moved);
    store.set_user_plan("test", "ann", "team", moved).unwrap();
    let outcome = consume(&engine, "ann").unwrap();
    assert_eq!(outcome.period.unwrap().start_ms, moved);
    assert_eq!(status(&engine, "ann"), Status::Block);

    // No period: the lifetime count, every unit admitted so far.
    periodic(store, "team", 1, 0, PeriodKind::None, wall_ms());
    let plan = store.plan("team").unwrap();
    assert!(plan.periods.is_empty(), "{plan:?}");
    assert_eq!(usage(store, "ann", COUNTER), 3);
    match consume(&engine, "ann") {
        Err(EnforceError::QuotaExceeded(blocked)) => {
            assert_eq!(blocked.outcome.decision.usage, 3);
            assert_eq!(blocked.outcome.period, None);
        }
        other => panic!("{other:?}"),
    }
}

/// On PostgreSQL the database's clock picks the period: the engine's
/// clock says 2023, the period named is the one around the wall clock.
#[test]
fn on_postgres_the_database_clock_decides_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(Backend::Postgres, dir.path(), &Clock::at(T0));
    let store = engine.store();
    periodic(store, "pro", 5, 0, PeriodKind::Day, T0);
    store.create_user("test", "ann", "pro", T0).unwrap();
    let before = wall_ms();
    let period = consume(&engine, "ann").unwrap().period.unwrap();
    let after = wall_ms();
    assert!(
        period.start_ms <= before && after < period.end_ms,
        "{period:?} around {before}..{after}"
    );
    assert_eq!(period.end_ms - period.start_ms, 86_400_000);
}

#[test]
fn a_lease_ends_with_its_period_and_its_units_count_there() {
    let dir = tempfile::tempdir().unwrap();
    let boundary = at("2026-02-01T00:00:00Z");
    let clock = Clock::at(boundary - 10_000);
    let engine = engine(Backend::Sqlite, dir.path(), &clock);
    let store = engine.store();
    periodic(store, "pro", 10, 0, PeriodKind::Month, T0);
    store.create_user("test", "ann", "pro", T0).unwrap();
    store
        .create_node("test", "edge", 100, &"0".repeat(64), T0)
        .unwrap();
    let ask = GrantRequest {
        node_id: "edge".into(),
        user_id: "ann".into(),
        entitlement_key: KEY.into(),
        units: 6,
        ttl_ms: 60_000,
    };
    let lease = engine
        .guarded(
            |guard| match quota_metering::grant(guard, &ask, clock.get())? {
                Granted::Lease(admitted, lease) => {
                    admitted.commit_reserved()?;
                    Ok::<_, EnforceError>(lease)
                }
                Granted::Refused(_, why) => panic!("{why:?}"),
            },
        )
        .unwrap();
    // Asked for a minute, it expires with January.
    assert_eq!(lease.expires_at_ms, boundary);
    assert_eq!(lease.period.map(|p| p.end_ms), Some(boundary));
    // A settle in January counts there, and renews up to the boundary.
    clock.set(boundary - 5_000);
    let settle = SettleRequest {
        node_id: "edge".into(),
        lease_id: lease.id,
        seq: 1,
        spent: 2,
        more: 6,
        ttl_ms: 60_000,
    };
    let renewed = engine
        .guarded(
            |guard| match quota_metering::settle(guard, &settle, clock.get())? {
                Settled::Renewed(admitted, lease, _) => {
                    admitted.commit_reserved()?;
                    Ok::<_, EnforceError>(lease)
                }
                other => panic!("{other:?}"),
            },
        )
        .unwrap();
    assert_eq!(renewed.expires_at_ms, boundary);
    // In February the lease is over: its reservation counts as spent in
    // January, and February starts from zero.
    clock.set(boundary + 1);
    assert_eq!(store.expire_leases(clock.get()).unwrap(), 1);
    assert_eq!(usage(store, "ann", COUNTER), 2 + 6);
    let outcome = consume(&engine, "ann").unwrap();
    assert_eq!(outcome.decision.usage, 0);
    assert_eq!(outcome.period.unwrap().start_ms, boundary);
}

quota_tests::on_both_backends!(periods_restart_on_a_change_of_period_or_plan);
