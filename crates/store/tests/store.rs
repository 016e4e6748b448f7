//! The SQLite store: migrations, connection settings, admin validation and audit.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use quota_store::{MIGRATIONS, PlanChange, QuotaStore, QuotaTx, SqliteStore, StoreError};
use rusqlite::Connection;

fn schema(store: &SqliteStore) -> (i64, Vec<String>) {
    store
        .read(|c| {
            let version = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let mut stmt =
                c.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")?;
            let sql = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok((version, sql))
        })
        .unwrap()
}

fn count(store: &SqliteStore, table: &str) -> i64 {
    store
        .read(|c| Ok(c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?))
        .unwrap()
}

#[test]
fn opening_a_database_from_an_older_migration_set_upgrades_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        MIGRATIONS.to_version(&mut conn, 1).unwrap();
        conn.execute_batch(
            "INSERT INTO plans (id, enforcement_enabled, grace_count, rollout_percent, created_at_ms, updated_at_ms)
                 VALUES ('legacy', 1, 2, 100, 0, 0);
             INSERT INTO plan_entitlements VALUES ('legacy', 'drafts.max', 7);
             INSERT INTO users VALUES ('old-user', 'legacy', 0, 0);
             INSERT INTO usage_counters VALUES ('old-user', 'drafts.created', 4);",
        )
        .unwrap();
        let has_drafts: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'drafts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_drafts, 0);
    }
    let store = SqliteStore::open(&path).unwrap();
    let (version, _) = schema(&store);
    assert_eq!(version, 5);
    assert_eq!(count(&store, "drafts"), 0);
    assert_eq!(count(&store, "decision_log"), 0);
    assert_eq!(count(&store, "audit_log"), 0);
    let mut tx = store.begin_write().unwrap();
    let state = tx
        .quota_state("old-user", "drafts.max", "drafts.created")
        .unwrap();
    assert_eq!(
        (state.plan.limit, state.usage, state.plan.grace_count),
        (Some(7), 4, 2)
    );
}

#[test]
fn opening_a_current_database_twice_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quota.db");
    let first = SqliteStore::open(&path).unwrap();
    first
        .set_plan("a", "free", &PlanChange::default(), 1)
        .unwrap();
    let before = schema(&first);
    let second = SqliteStore::open(&path).unwrap();
    assert_eq!(schema(&second), before);
    assert_eq!(count(&second, "plans"), 1);
    assert_eq!(count(&second, "audit_log"), 1);
}

#[test]
fn every_connection_has_wal_foreign_keys_and_a_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("quota.db")).unwrap();
    let conns: Vec<_> = (0..3).map(|_| store.connection().unwrap()).collect();
    for conn in &conns {
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        let timeout: i64 = conn
            .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), fk), ("wal", 1));
        assert!(timeout >= 1_000, "{timeout}");
    }
}

#[test]
fn bad_admin_values_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("quota.db")).unwrap();
    let bad_plans = [
        PlanChange {
            limits: vec![("drafts.max".into(), -2)],
            ..PlanChange::default()
        },
        PlanChange {
            limits: vec![(String::new(), 3)],
            ..PlanChange::default()
        },
        PlanChange {
            grace_count: Some(-1),
            ..PlanChange::default()
        },
        PlanChange {
            rollout_percent: Some(101),
            ..PlanChange::default()
        },
        PlanChange {
            rollout_percent: Some(-1),
            ..PlanChange::default()
        },
    ];
    for change in &bad_plans {
        assert!(
            matches!(
                store.set_plan("a", "free", change, 0),
                Err(StoreError::Invalid(_))
            ),
            "{change:?}"
        );
    }
    assert!(matches!(
        store.set_plan("a", "", &PlanChange::default(), 0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_default("a", "drafts.max", -2, 0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_user("a", "u", "missing", 0),
        Err(StoreError::UnknownPlan(_))
    ));
    assert_eq!(
        (
            count(&store, "plans"),
            count(&store, "users"),
            count(&store, "audit_log")
        ),
        (0, 0, 0)
    );

    store
        .set_plan("a", "free", &PlanChange::default(), 0)
        .unwrap();
    store.create_user("a", "u", "free", 0).unwrap();
    assert!(matches!(
        store.create_user("a", "u", "free", 0),
        Err(StoreError::UserExists(_))
    ));
    assert!(matches!(
        store.set_user_plan("a", "u", "missing", 0),
        Err(StoreError::UnknownPlan(_))
    ));
    assert!(matches!(
        store.set_user_plan("a", "ghost", "free", 0),
        Err(StoreError::UnknownUser(_))
    ));
    assert!(matches!(
        store.set_override("a", "u", "drafts.max", -2, None, 0),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_override("a", "ghost", "drafts.max", 5, None, 0),
        Err(StoreError::UnknownUser(_))
    ));
    assert!(matches!(
        store.set_override("", "u", "drafts.max", 5, None, 0),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        (count(&store, "overrides"), count(&store, "audit_log")),
        (0, 2)
    );
    assert_eq!(store.user("u").unwrap().plan_id, "free");
}

#[test]
fn plan_changes_touch_only_the_fields_given_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("quota.db")).unwrap();
    let created = store
        .set_plan("ops", "pro", &PlanChange::default(), 10)
        .unwrap();
    assert_eq!(
        (
            created.enforcement_enabled,
            created.grace_count,
            created.rollout_percent
        ),
        (false, 0, 100)
    );
    let change = PlanChange {
        limits: vec![("drafts.max".into(), 10), ("segments.max".into(), -1)],
        grace_count: Some(3),
        ..PlanChange::default()
    };
    store.set_plan("ops", "pro", &change, 20).unwrap();
    let change = PlanChange {
        enforcement_enabled: Some(true),
        remove_limits: vec!["segments.max".into()],
        ..PlanChange::default()
    };
    let plan = store.set_plan("alice", "pro", &change, 30).unwrap();
    assert_eq!(plan.limits, [("drafts.max".to_owned(), 10)]);
    assert_eq!((plan.enforcement_enabled, plan.grace_count), (true, 3));
    // A change that changes nothing is not audited.
    store
        .set_plan("ops", "pro", &PlanChange::default(), 40)
        .unwrap();
    let log = store.audit_log(10).unwrap();
    let actions: Vec<(&str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("alice", "plan.update"),
            ("ops", "plan.update"),
            ("ops", "plan.create")
        ]
    );
    assert_eq!(log[0].before["enforcement_enabled"], false);
    assert_eq!(log[0].after["enforcement_enabled"], true);
    assert_eq!(log[0].at_ms, 30);
}
