//! The SQLite backend's own: migrations, connection settings.

use rusqlite::Connection;

use super::{MIGRATIONS, SqliteStore};
use crate::model::PlanChange;
use crate::traits::{PlanStore, QuotaStore, QuotaTx};

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
    assert_eq!(version, 12);
    assert_eq!(count(&store, "ui_sessions"), 0);
    assert_eq!(count(&store, "decision_minutes"), 0);
    assert_eq!(count(&store, "policy_releases"), 0);
    assert_eq!(count(&store, "drafts"), 0);
    assert_eq!(count(&store, "leases"), 0);
    assert_eq!(count(&store, "period_usage"), 0);
    assert_eq!(count(&store, "events"), 0);
    assert_eq!(count(&store, "decision_log"), 0);
    assert_eq!(count(&store, "audit_log"), 0);
    let mut tx = store.begin_write().unwrap();
    let state = tx
        .quota_state("old-user", "drafts.max", "drafts.created", 0)
        .unwrap();
    assert_eq!(
        (state.plan.limit, state.usage, state.plan.grace_count),
        (Some(7), 4, 2)
    );
    assert_eq!(state.period, None);
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
fn a_user_search_reads_a_range_of_the_primary_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("quota.db")).unwrap();
    let plan = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Vec<String> {
        store
            .read(|c| {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = stmt.query_map(params, |r| r.get(3))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap()
    };
    let range = plan(super::users::SEARCH_USERS_SQL, &[&"a%", &"a&", &10]);
    assert_eq!(
        range,
        ["SEARCH users USING INDEX sqlite_autoindex_users_1 (id>? AND id<?)"]
    );
    let from = plan(super::users::SEARCH_USERS_FROM_SQL, &[&"", &10]);
    assert_eq!(
        from,
        ["SEARCH users USING INDEX sqlite_autoindex_users_1 (id>?)"]
    );
}
