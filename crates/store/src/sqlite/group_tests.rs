//! Group commit: concurrent write transactions share one SQLite commit,
//! each in its own savepoint; a commit returns only once its group is
//! committed; a rolled-back member leaves the others alone.

use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{GroupCommit, SqliteOptions, SqliteStore, SqliteTx, WriteStats};
use crate::error::StoreError;
use crate::traits::{QuotaStore, QuotaTx};

/// A store whose groups commit only when their last member leaves (no
/// size or age bound), so that a test decides who is in a group and a
/// slow machine cannot close a group early.
fn store(dir: &Path) -> SqliteStore {
    let options = SqliteOptions {
        group_commit: GroupCommit {
            max_members: usize::MAX,
            max_age: Duration::from_secs(3600),
        },
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(dir.join("quota.db"), options).unwrap();
    // `orphan` rows name a `parent` checked only at COMMIT: a group with
    // one fails to commit, as a full disk would make it fail.
    store
        .write(|conn| {
            Ok(conn.execute_batch(
                "CREATE TABLE scratch (v INTEGER PRIMARY KEY);
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE orphan (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )?)
        })
        .unwrap();
    store
}

fn insert(tx: &SqliteTx, v: i64) {
    tx.conn()
        .execute("INSERT INTO scratch (v) VALUES (?1)", [v])
        .unwrap();
}

/// The rows as another connection (another process) sees them.
fn committed_rows(path: &Path) -> Vec<i64> {
    let conn = Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT v FROM scratch ORDER BY v").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn wait_for_writers(store: &SqliteStore, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.write_stats().writers < n {
        assert!(Instant::now() < deadline, "the second writer never queued");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Holder A has a write transaction; B queues behind it. A's commit must
/// wait for B (the group commits when its last member leaves), and until
/// then nothing of A is visible outside.
fn two_member_group(b_keeps: bool) -> (WriteStats, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.write_stats();

    let a = store.begin_write().unwrap();
    insert(&a, 1);
    let (b_holds, b_holds_rx) = mpsc::channel();
    let (b_go, b_go_rx) = mpsc::channel::<()>();
    let b_store = store.clone();
    let b = thread::spawn(move || {
        let b = b_store.begin_write().unwrap();
        insert(&b, 2);
        b_holds.send(()).unwrap();
        b_go_rx.recv().unwrap();
        if b_keeps {
            b.commit()
        } else {
            drop(b);
            Ok(())
        }
    });
    wait_for_writers(&store, 2);

    let (a_done, a_done_rx) = mpsc::channel();
    let a_commit = thread::spawn(move || a_done.send(a.commit()).unwrap());
    b_holds_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        a_done_rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "A's commit returned while its group was still open"
    );
    assert_eq!(committed_rows(store.path()), Vec::<i64>::new());

    b_go.send(()).unwrap();
    b.join().unwrap().unwrap();
    a_done_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    a_commit.join().unwrap();
    let after = store.write_stats();
    let delta = WriteStats {
        writers: after.writers,
        transactions: after.transactions - before.transactions,
        commits: after.commits - before.commits,
    };
    (delta, committed_rows(store.path()))
}

#[test]
fn a_queued_writer_joins_the_group_and_one_commit_covers_both() {
    let (delta, rows) = two_member_group(true);
    assert_eq!(rows, vec![1, 2]);
    assert_eq!(
        delta,
        WriteStats {
            writers: 0,
            transactions: 2,
            commits: 1
        }
    );
}

#[test]
fn a_rolled_back_member_undoes_only_its_own_work() {
    let (delta, rows) = two_member_group(false);
    assert_eq!(rows, vec![1]);
    assert_eq!(
        delta,
        WriteStats {
            writers: 0,
            transactions: 1,
            commits: 1
        }
    );
}

#[test]
fn concurrent_writers_lose_nothing_and_keep_nothing_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let before = store.write_stats();
    let threads: Vec<_> = (0..8_i64)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                let outside = Connection::open(store.path()).unwrap();
                let mut kept = Vec::new();
                for i in 0..100_i64 {
                    let v = t * 1000 + i;
                    let tx = store.begin_write().unwrap();
                    insert(&tx, v);
                    if i % 3 == 0 {
                        drop(tx);
                        continue;
                    }
                    tx.commit().unwrap();
                    // Committed means visible to everyone, at once.
                    let seen: i64 = outside
                        .query_row("SELECT count(*) FROM scratch WHERE v = ?1", [v], |r| {
                            r.get(0)
                        })
                        .unwrap();
                    assert_eq!(seen, 1, "row {v} not visible after its commit returned");
                    kept.push(v);
                }
                kept
            })
        })
        .collect();
    let mut kept: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    kept.sort_unstable();
    assert_eq!(committed_rows(store.path()), kept);
    let after = store.write_stats();
    assert_eq!(after.writers, 0);
    assert_eq!(after.transactions - before.transactions, 8 * 66);
    assert!(after.commits - before.commits <= after.transactions - before.transactions);
}

/// A member that keeps nothing (a blocked decision) may still have read
/// the group's uncommitted work. `rollback` returns only once that work is
/// durable, and says so; if the group's commit fails, it says that instead,
/// so the member decides again rather than answer from work that is gone.
fn abandoned_member(group_fails: bool) -> (Result<(), StoreError>, Result<(), StoreError>) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let a = store.begin_write().unwrap();
    insert(&a, 1);
    if group_fails {
        a.conn()
            .execute("INSERT INTO orphan (parent_id) VALUES (7)", [])
            .unwrap();
    }
    let (b_read, b_read_rx) = mpsc::channel();
    let b_store = store.clone();
    let b = thread::spawn(move || {
        let b = b_store.begin_write().unwrap();
        let seen: i64 = b
            .conn()
            .query_row("SELECT count(*) FROM scratch", [], |r| r.get(0))
            .unwrap();
        b_read.send(seen).unwrap();
        b.rollback()
    });
    wait_for_writers(&store, 2);
    let a_result = a.commit();
    // B read A's work before it was committed: that is why it must wait.
    assert_eq!(b_read_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
    let b_result = b.join().unwrap();
    let expected: Vec<i64> = if group_fails { vec![] } else { vec![1] };
    assert_eq!(committed_rows(store.path()), expected);
    assert_eq!(store.write_stats().writers, 0);
    (a_result, b_result)
}

#[test]
fn a_member_that_keeps_nothing_waits_for_the_group_and_hears_it_committed() {
    let (a, b) = abandoned_member(false);
    assert!(a.is_ok(), "{a:?}");
    assert!(b.is_ok(), "{b:?}");
}

#[test]
fn a_member_that_keeps_nothing_hears_when_the_group_it_read_from_failed() {
    let (a, b) = abandoned_member(true);
    assert!(matches!(a, Err(StoreError::Commit(_))), "{a:?}");
    assert!(matches!(b, Err(StoreError::Commit(_))), "{b:?}");
}

/// The next group after a failed one is a fresh transaction.
#[test]
fn a_failed_group_leaves_the_writer_ready_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let tx = store.begin_write().unwrap();
    tx.conn()
        .execute("INSERT INTO orphan (parent_id) VALUES (7)", [])
        .unwrap();
    assert!(matches!(tx.commit(), Err(StoreError::Commit(_))));
    let tx = store.begin_write().unwrap();
    insert(&tx, 5);
    tx.commit().unwrap();
    assert_eq!(committed_rows(store.path()), vec![5]);
}
