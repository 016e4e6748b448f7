//! A process creating drafts is killed with SIGKILL again and again: the
//! database stays intact and every counter equals the rows it counts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use quota_store::SqliteStore;

use crate::{T0, count, grace, plan_with_user, usage};
use quota_domain::Domain;
#[allow(unused_imports)]
use quota_store::prelude::*;

/// Runs in a child process when `QUOTA_CRASH_DB` is set: creates drafts until killed.
#[test]
fn child_creates_until_killed() {
    let Ok(db) = std::env::var("QUOTA_CRASH_DB") else {
        return;
    };
    let store = SqliteStore::open(&db).unwrap();
    let engine = quota_engine::Engine::new(store, quota_tests::reference().clone())
        .with_clock(quota_engine::Clock::from_fn(|| T0));
    println!("CRASH-READY");
    for n in 0u64.. {
        engine
            .create_draft("victim", &format!("draft {n}"))
            .unwrap();
    }
}

/// Says once the child has printed `CRASH-READY` (a thread reads its
/// output until it ends).
fn ready(child: &mut Child) -> mpsc::Receiver<()> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.is_ok_and(|l| l.contains("CRASH-READY")) {
                let _ = tx.send(());
            }
        }
    });
    rx
}

#[test]
fn sigkill_never_leaves_partial_state() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.db");
    let store = SqliteStore::open(&db).unwrap();
    // Past 40 drafts every create also consumes grace, so grace is checked too.
    plan_with_user(&store, "pro", 40, 1_000_000, true, "victim");
    let exe = std::env::current_exe().unwrap();
    for round in 0..20u64 {
        let mut child = Command::new(&exe)
            .args([
                "crash::child_creates_until_killed",
                "--exact",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("QUOTA_CRASH_DB", &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Every fifth round kills during start-up; the others wait until the
        // child is deciding (however long a busy machine takes to get it
        // there), then vary the moment of the kill.
        if round % 5 != 0 {
            let ready = ready(&mut child);
            assert!(
                ready.recv_timeout(Duration::from_secs(60)).is_ok(),
                "round {round}: the child never became ready"
            );
        }
        std::thread::sleep(Duration::from_millis(5 + (round * 37) % 120));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let integrity = quota_store::testing::integrity_check(&store).unwrap();
    assert_eq!(integrity, "ok");
    let drafts = count(&store, "drafts");
    assert!(
        drafts > 40,
        "the children created only {drafts} drafts; the test proves little"
    );
    assert_eq!(usage(&store, "victim", "drafts.created"), drafts);
    assert_eq!(grace(&store, "victim", "pro", "drafts.max"), drafts - 40);
    let mut tx = store.begin_read().unwrap();
    for id in 1..=drafts {
        assert_eq!(tx.draft(id).unwrap().owner_id, "victim", "draft {id}");
    }
}
