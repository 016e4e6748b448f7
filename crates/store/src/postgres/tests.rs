//! What only the PostgreSQL backend's connections do.

use std::time::{Duration, Instant};

use crate::model::PlanChange;
use crate::postgres::{PgOptions, PgStore, PgUrl};
use crate::prelude::*;

fn fresh(max_connections: u32) -> PgStore {
    let url: PgUrl = quota_throwaway_pg::shared()
        .fresh_database()
        .parse()
        .unwrap();
    let options = PgOptions {
        max_connections,
        ..PgOptions::default()
    };
    let store = PgStore::open_with(&url, options).unwrap();
    let change = PlanChange {
        limits: vec![("drafts.max".into(), 5)],
        ..PlanChange::default()
    };
    store.set_plan("test", "pro", &change, 0).unwrap();
    store.create_user("test", "alice", "pro", 0).unwrap();
    store
}

/// Ends every other session of the store's database, as a restart of the
/// server does, and waits until they are gone. The store's idle
/// connections do not know yet: they find out when next used.
fn end_other_sessions(store: &PgStore) {
    let sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let killer = PgStore::open(store.url()).unwrap();
    killer
        .with_client(|conn| conn.query_made(sql, &[]))
        .unwrap();
    let started = Instant::now();
    while crate::testing::other_sessions(&killer).unwrap() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sessions still there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Holds `n` connections of the pool at once, then gives them back idle.
fn fill_pool(store: &PgStore, n: usize) {
    let held: Vec<_> = (0..n).map(|_| store.begin_write().unwrap()).collect();
    for mut tx in held {
        tx.quota_state("alice", "drafts.max", "drafts.created", 0)
            .unwrap();
        tx.rollback().unwrap();
    }
}

#[test]
fn connections_that_died_idle_are_replaced_without_an_error() {
    let store = fresh(3);
    fill_pool(&store, 3);
    end_other_sessions(&store);
    // A guarded transaction: its first statement meets a dead connection,
    // three times, and then gets a new one.
    let mut tx = store.begin_write().unwrap();
    let state = tx
        .quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    assert_eq!(state.usage, 0);
    tx.record_usage("alice", "drafts.created", None, 1).unwrap();
    tx.commit().unwrap();

    fill_pool(&store, 3);
    end_other_sessions(&store);
    // An admin write, the same.
    store.create_user("test", "bob", "pro", 0).unwrap();
    let mut tx = store.begin_read().unwrap();
    let state = tx
        .quota_state("alice", "drafts.max", "drafts.created", 0)
        .unwrap();
    assert_eq!(state.usage, 1);
}
