//! Threads and OS processes racing one user's `drafts.max` on one file:
//! never admitted beyond limit + grace, nothing double-counted, and no
//! "database is locked" reaching a caller.

use std::process::{Command, Stdio};
use std::thread;

use quota_engine::EnforceError;
use quota_store::{AnyStore, SqliteStore, UserStore};

use crate::{Backend, Clock, T0, count, engine, grace, plan_with_user, usage};
use quota_domain::Domain;
#[allow(unused_imports)]
use quota_store::prelude::*;

const LIMIT: i64 = 50;
const GRACE: i64 = 5;

/// Tries `attempts` creates; returns (admitted, blocked). Any other error fails the test.
fn race(engine: &quota_engine::Engine<AnyStore>, attempts: usize) -> (u64, u64) {
    let (mut admitted, mut blocked) = (0, 0);
    for n in 0..attempts {
        match engine.create_draft("racer", &format!("draft {n}")) {
            Ok(_) => admitted += 1,
            Err(EnforceError::QuotaExceeded(_)) => blocked += 1,
            Err(other) => panic!("a caller saw an error other than a block: {other}"),
        }
    }
    (admitted, blocked)
}

fn assert_exactly_limit_plus_grace(store: &(impl quota_store::testing::CountRows + UserStore)) {
    assert_eq!(count(store, "drafts"), LIMIT + GRACE);
    assert_eq!(usage(store, "racer", "drafts.created"), LIMIT + GRACE);
    assert_eq!(grace(store, "racer", "pro", "drafts.max"), GRACE);
}

fn threads_racing_one_limit_admit_exactly_limit_plus_grace(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(backend, dir.path(), &Clock::at(T0));
    plan_with_user(engine.store(), "pro", LIMIT, GRACE, true, "racer");
    let results: Vec<(u64, u64)> = thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| race(&engine, 50))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let admitted: u64 = results.iter().map(|r| r.0).sum();
    let blocked: u64 = results.iter().map(|r| r.1).sum();
    assert_eq!((admitted, blocked), (55, 345));
    assert_exactly_limit_plus_grace(engine.store());
}

/// Runs in a child process when `QUOTA_RACE_DB` is set; otherwise does nothing.
#[test]
fn child_process_worker() {
    let Ok(db) = std::env::var("QUOTA_RACE_DB") else {
        return;
    };
    let attempts: usize = std::env::var("QUOTA_RACE_ATTEMPTS")
        .unwrap()
        .parse()
        .unwrap();
    let store = AnyStore::Sqlite(SqliteStore::open(&db).unwrap());
    let engine = quota_engine::Engine::new(store, quota_tests::reference().clone())
        .with_clock(quota_engine::Clock::from_fn(|| T0));
    let (admitted, blocked) = race(&engine, attempts);
    println!("RACE-RESULT {admitted} {blocked}");
}

#[test]
fn processes_racing_one_limit_admit_exactly_limit_plus_grace() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.db");
    let store = SqliteStore::open(&db).unwrap();
    plan_with_user(&store, "pro", LIMIT, GRACE, true, "racer");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "concurrency::child_process_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("QUOTA_RACE_DB", &db)
                .env("QUOTA_RACE_ATTEMPTS", "100")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut admitted, mut blocked) = (0u64, 0u64);
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let at = text
            .find("RACE-RESULT ")
            .unwrap_or_else(|| panic!("no result:\n{text}"));
        let line = text[at..].lines().next().unwrap_or_default();
        let numbers: Vec<u64> = line
            .split(' ')
            .skip(1)
            .take(2)
            .map(|n| n.parse().unwrap())
            .collect();
        admitted += numbers[0];
        blocked += numbers[1];
    }
    assert_eq!((admitted, blocked), (55, 345));
    assert_exactly_limit_plus_grace(&store);
}

/// A blocked request in a group commit is answered only once the group it
/// read from is durable. Here the group fails to commit (as on a full
/// disk): the usage that blocked the request never became true, so the
/// engine decides again, from committed state, and admits it.
#[test]
fn a_block_read_from_a_group_that_failed_is_decided_again() {
    use std::time::{Duration, Instant};

    use quota_store::{GroupCommit, QuotaStore, QuotaTx, SqliteOptions};

    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        group_commit: GroupCommit {
            max_members: usize::MAX,
            max_age: Duration::from_secs(3600),
        },
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.path().join("quota.db"), options).unwrap();
    plan_with_user(&store, "free", 1, 0, true, "racer");
    let engine = quota_engine::Engine::new(store.clone(), quota_tests::reference().clone())
        .with_clock(quota_engine::Clock::from_fn(|| T0));

    // A writer in the group uses up the limit, then dooms the group.
    let mut a = store.begin_write().unwrap();
    a.add_usage("racer", "drafts.created", None, 1).unwrap();
    quota_store::testing::doom_group(&a).unwrap();
    thread::scope(|s| {
        let b = s.spawn(|| engine.create_draft("racer", "second writer"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.write_stats().writers < 2 {
            assert!(Instant::now() < deadline, "the request never queued");
            thread::sleep(Duration::from_millis(1));
        }
        let a_result = a.commit();
        assert!(
            matches!(a_result, Err(quota_store::StoreError::Commit(_))),
            "{a_result:?}"
        );
        let enforced = b.join().unwrap().unwrap();
        assert_eq!(enforced.outcome.decision.usage, 0);
    });
    let metrics = engine.metrics().snapshot();
    assert_eq!(
        (
            metrics.count(quota_policy_core::Status::Block),
            metrics.count(quota_policy_core::Status::Allow)
        ),
        (1, 1),
        "decided twice: blocked on the doomed group's usage, then admitted"
    );
    assert_eq!(usage(&store, "racer", "drafts.created"), 1);
    assert_eq!(count(&store, "drafts"), 1);
}

quota_tests::on_both_backends!(threads_racing_one_limit_admit_exactly_limit_plus_grace);
