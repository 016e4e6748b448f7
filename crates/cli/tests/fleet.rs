//! A fleet: several `quota serve` processes on one PostgreSQL database (a
//! throwaway one of the tests' own), driven over loopback HTTP. One state
//! and one policy across hosts, through killed hosts and a restarted
//! database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use quota_store::testing::CountRows as _;
use serde_json::{Value, json};
use support::*;

/// A host on the database `url` with a state folder of its own in `dir`.
fn host(url: &str, dir: &Path, name: &str) -> Server {
    start_on(url, &dir.join(name), &[])
}

fn put_plan(addr: &str, id: &str, plan: &Value) {
    let (status, body) = http(
        addr,
        "PUT",
        &format!("/admin/plans/{id}"),
        ADMIN,
        Some(plan),
    );
    assert_eq!(status, 200, "{body}");
}

fn kill(server: &mut Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// The user's usage counter for drafts as host `addr` reports it, and
/// the drafts the database holds.
fn usage_and_rows(addr: &str, url: &str, user: &str) -> (i64, i64) {
    let (status, body) = http(addr, "GET", &format!("/admin/users/{user}"), ADMIN, None);
    assert_eq!(status, 200, "{body}");
    let usage = body["usage"]["drafts.created"].as_i64().unwrap_or(0);
    let store = quota_store::PgStore::open(&url.parse().unwrap()).unwrap();
    (
        usage,
        quota_store::testing::count_rows(&store, "drafts").unwrap(),
    )
}

#[test]
fn two_hosts_racing_one_users_limit_admit_exactly_limit_plus_grace() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let a = host(&url, dir.path(), "a");
    let b = host(&url, dir.path(), "b");
    put_plan(
        &a.addr,
        "pro",
        &json!({"limits": {"drafts.max": 5}, "enforcement_enabled": true, "grace_count": 2}),
    );
    let token = user(&a.addr, "alice", "pro");
    let addrs = [a.addr.clone(), b.addr.clone()];
    let codes: Vec<u16> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|i| {
                let addr = addrs[i % 2].clone();
                let token = token.clone();
                scope.spawn(move || (0..4).map(|_| create(&addr, &token).0).collect::<Vec<_>>())
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let admitted = codes.iter().filter(|&&c| c == 201).count();
    let blocked = codes.iter().filter(|&&c| c == 403).count();
    assert_eq!(admitted, 7, "limit 5 + grace 2 across two hosts: {codes:?}");
    assert_eq!(blocked, 64 - 7, "every other request is a block: {codes:?}");
    for addr in &addrs {
        assert_eq!(usage_and_rows(addr, &url, "alice"), (7, 7));
        let (_, body) = http(addr, "GET", "/admin/users/alice", ADMIN, None);
        assert_eq!(body["grace_used"][0]["used"], 2, "{body}");
    }
    terminate(a);
    terminate(b);
}

#[test]
fn a_change_through_one_host_decides_the_next_request_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let a = host(&url, dir.path(), "a");
    let b = host(&url, dir.path(), "b");
    put_plan(
        &a.addr,
        "free",
        &json!({"limits": {"drafts.max": 1}, "enforcement_enabled": true}),
    );
    let token = user(&a.addr, "bob", "free");
    assert_eq!(create(&b.addr, &token).0, 201);
    assert_eq!(create(&b.addr, &token).0, 403);
    put_plan(&a.addr, "free", &json!({"limits": {"drafts.max": 2}}));
    assert_eq!(
        create(&b.addr, &token).0,
        201,
        "host B decided by the old plan"
    );
    assert_eq!(create(&b.addr, &token).0, 403);
    let (status, body) = http(
        &a.addr,
        "PUT",
        "/admin/users/bob/overrides/drafts.max",
        ADMIN,
        Some(&json!({"value": 3})),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = create(&b.addr, &token);
    assert_eq!(status, 201, "host B decided without the override: {body}");
    assert_eq!(
        body["outcome"]["decision"]["limit_source"], "override",
        "{body}"
    );
    terminate(a);
    terminate(b);
}

fn health(addr: &str) -> Value {
    let (status, body) = http(addr, "GET", "/healthz", "", None);
    assert_eq!(status, 200);
    body
}

/// Waits until `addr` decides with `sha256`; how long it took.
fn converges(addr: &str, sha256: &str, limit: Duration) -> Duration {
    within(limit, || health(addr)["policy_sha256"] == sha256).unwrap_or_else(|| {
        panic!(
            "{addr} still decides with {} after {limit:?}",
            health(addr)["policy_sha256"]
        )
    })
}

/// `POST /admin/policy` with a component.
fn upload(addr: &str, bytes: &[u8]) -> (u16, Value) {
    request(
        addr,
        ("POST", "/admin/policy"),
        ADMIN,
        ("application/wasm", bytes),
        Duration::from_secs(30),
    )
}

/// A host that trusts keys follows only what verifies there
/// (docs/signing.md): an unsigned policy activated through a host without
/// keys is refused (the keyed host keeps its last good policy and says
/// why), a signed one is followed.
#[test]
fn a_host_with_trusted_keys_follows_only_signed_policies() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let quota = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_quota"))
            .args(args)
            .env("QUOTA_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    quota(&["policy", "keygen", "--out", &path("release")]);
    let a = host(&url, dir.path(), "a");
    let b = start_on(
        &url,
        &dir.path().join("b"),
        &["--trusted-keys", &path("release.pub")],
    );
    let reference = health(&b.addr)["policy_sha256"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = upload(&a.addr, quota_tests::percent_grace().bytes());
    assert_eq!(status, 200, "{body}");
    let unsigned = body["activated"]["sha256"].as_str().unwrap().to_owned();
    let refused = || health(&b.addr)["fleet"]["refused"]["sha256"] == unsigned.as_str();
    assert!(
        within(Duration::from_secs(2), refused).is_some(),
        "B never refused: {}",
        health(&b.addr)["fleet"]
    );
    let reason = health(&b.addr)["fleet"]["refused"]["reason"].clone();
    assert!(reason.as_str().unwrap().contains("not signed"), "{reason}");
    assert_eq!(health(&b.addr)["policy_sha256"], reference.as_str());

    // The same policy as other bytes, signed: B follows it.
    let mut bytes = quota_tests::percent_grace().bytes().to_vec();
    bytes.extend_from_slice(&[0, 4, 3, b'f', b'l', b't']);
    std::fs::write(path("signed.wasm"), &bytes).unwrap();
    quota(&[
        "policy",
        "sign",
        "--key",
        &path("release.key"),
        "--name",
        "grace",
        "--version",
        "1.0.0",
        &path("signed.wasm"),
    ]);
    quota(&[
        "policy",
        "activate",
        "--server",
        &format!("http://{}", a.addr),
        &path("signed.wasm"),
    ]);
    let signed = quota_host::sha256_hex(&bytes);
    converges(&b.addr, &signed, Duration::from_secs(2));
    let (_, state) = http(&b.addr, "GET", "/admin/policy", ADMIN, None);
    assert_eq!(
        state["active"]["signed_by"]["kind"], "trusted_key",
        "{state}"
    );
}

/// `quota store copy --from file --to url`.
fn store_copy(file: &Path, url: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quota"))
        .args([
            "store",
            "copy",
            "--from",
            file.to_str().unwrap(),
            "--to",
            url,
        ])
        .output()
        .unwrap()
}

#[test]
fn a_policy_activated_on_one_host_decides_on_the_others_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let a = host(&url, dir.path(), "a");
    let b = start_on(&url, &dir.path().join("b"), &["--policy-memory", "8"]);
    let reference = health(&a.addr)["policy_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(health(&b.addr)["policy_sha256"], reference);
    let (status, body) = upload(&a.addr, quota_tests::percent_grace().bytes());
    assert_eq!(status, 200, "{body}");
    let sha = body["activated"]["sha256"].as_str().unwrap().to_owned();
    assert_ne!(sha, reference);
    let took = converges(&b.addr, &sha, Duration::from_secs(1));
    eprintln!("host B followed in {took:?}");
    let fleet = &health(&b.addr)["fleet"];
    assert_eq!(fleet["recorded_sha256"], sha.as_str(), "{fleet}");
    assert_eq!(fleet["in_sync"], true, "{fleet}");

    // A rollback through B reaches A the same way.
    let (status, body) = http(&b.addr, "POST", "/admin/policy/rollback", ADMIN, None);
    assert_eq!(status, 200, "{body}");
    converges(&a.addr, &reference, Duration::from_secs(1));

    // A component that A accepts and B, which gives a policy 8 MiB where A
    // gives 16, refuses: A decides with it, B keeps its last good policy
    // and says why, and both show the fleet out of step.
    let big =
        quota_tests::beside_policy(quota_tests::REFERENCE, &quota_tests::memory_filler(120), 1);
    let (status, body) = upload(&a.addr, &big);
    assert_eq!(status, 200, "{body}");
    let big_sha = body["activated"]["sha256"].as_str().unwrap().to_owned();
    let refused = || health(&b.addr)["fleet"]["refused"]["sha256"] == big_sha.as_str();
    assert!(
        within(Duration::from_secs(2), refused).is_some(),
        "B never refused: {}",
        health(&b.addr)["fleet"]
    );
    let fleet = health(&b.addr)["fleet"].clone();
    assert_eq!(fleet["recorded_sha256"], big_sha.as_str(), "{fleet}");
    assert_eq!(fleet["in_sync"], false, "{fleet}");
    let reason = fleet["refused"]["reason"].as_str().unwrap();
    assert!(reason.contains("memory"), "{fleet}");
    assert_eq!(health(&a.addr)["policy_sha256"], big_sha.as_str());
    assert_eq!(health(&a.addr)["fleet"]["in_sync"], true);
    let (status, state) = http(&b.addr, "GET", "/admin/policy", ADMIN, None);
    assert_eq!(status, 200);
    assert_eq!(state["active"]["sha256"], reference.as_str(), "{state}");
    assert_eq!(state["fleet"]["refused"]["sha256"], big_sha.as_str());
    // B still decides, with its last good policy.
    put_plan(
        &b.addr,
        "pro",
        &json!({"limits": {"drafts.max": 10}, "enforcement_enabled": true}),
    );
    let token = user(&b.addr, "carol", "pro");
    let (status, body) = create(&b.addr, &token);
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["outcome"]["policy_sha256"],
        reference.as_str(),
        "{body}"
    );
    // A rollback through A brings the fleet back into step.
    let (status, body) = http(&a.addr, "POST", "/admin/policy/rollback", ADMIN, None);
    assert_eq!(status, 200, "{body}");
    converges(&a.addr, &reference, Duration::from_secs(1));
    let in_step = || health(&b.addr)["fleet"]["in_sync"] == true;
    assert!(
        within(Duration::from_secs(2), in_step).is_some(),
        "B stays out of step"
    );
    assert_eq!(health(&b.addr)["policy_sha256"], reference.as_str());
    terminate(a);
    terminate(b);
}

/// A policy swapped through one host while both take creates. No request
/// fails, each decision names one of the two policies, from a second after
/// the activation answered every decision on either host names the new
/// one, and every admitted create is one row and one unit, no more.
#[test]
fn a_policy_swapped_mid_burst_reaches_both_hosts_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let a = host(&url, dir.path(), "a");
    let b = host(&url, dir.path(), "b");
    let reference = health(&a.addr)["policy_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let percent = quota_host::sha256_hex(quota_tests::PERCENT_GRACE);
    put_plan(
        &a.addr,
        "big",
        &json!({"limits": {"drafts.max": -1}, "enforcement_enabled": true}),
    );
    let users: Vec<(String, String)> = (0..8)
        .map(|i| (format!("s{i}"), user(&a.addr, &format!("s{i}"), "big")))
        .collect();
    let addrs = [a.addr.clone(), b.addr.clone()];
    let start = Instant::now();
    let done = AtomicBool::new(false);
    // (sent, host, status, the policy that decided)
    let (seen, activated) = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let (addrs, users, done) = (&addrs, &users, &done);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for round in 0..4_000 {
                        if done.load(Ordering::SeqCst) {
                            break;
                        }
                        let (_, token) = &users[c];
                        let host = (c + round) % addrs.len();
                        let sent = start.elapsed();
                        let (status, body) = create(&addrs[host], token);
                        let sha = body["outcome"]["policy_sha256"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        seen.push((sent, host, status, sha));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = upload(&a.addr, quota_tests::PERCENT_GRACE);
        assert_eq!(status, 200, "{body}");
        let activated = start.elapsed();
        std::thread::sleep(Duration::from_millis(1_500));
        done.store(true, Ordering::SeqCst);
        let seen: Vec<_> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        (seen, activated)
    });
    let mut late = [0, 0];
    for (sent, host, status, sha) in &seen {
        assert_eq!(*status, 201, "{sha}");
        assert!(*sha == reference || *sha == percent, "{sha}");
        if *sent > activated + Duration::from_secs(1) {
            assert_eq!(*sha, percent, "host {host} at {sent:?}");
            late[*host] += 1;
        }
    }
    assert!(
        seen.iter().any(|(_, _, _, sha)| *sha == reference),
        "the swap came before the burst"
    );
    assert!(
        late[0] > 0 && late[1] > 0,
        "no requests after the swap: {late:?}"
    );
    let store = quota_store::PgStore::open(&url.parse().unwrap()).unwrap();
    for (id, _) in &users {
        let rows = store.count_rows_where("drafts", "owner_id", id).unwrap();
        let (_, body) = http(&b.addr, "GET", &format!("/admin/users/{id}"), ADMIN, None);
        assert_eq!(
            body["usage"]["drafts.created"].as_i64().unwrap_or(0),
            rows,
            "{body}"
        );
    }
    let total: i64 = users
        .iter()
        .map(|(id, _)| store.count_rows_where("drafts", "owner_id", id).unwrap())
        .sum();
    assert_eq!(
        total,
        seen.len() as i64,
        "every 201 is one row, and no more"
    );
    terminate(a);
    terminate(b);
}

/// Per user: usage equals their drafts, and grace used is exactly what
/// the drafts past the limit consumed (limit 3, grace 2).
fn every_counter_equals_its_rows(addr: &str, url: &str, users: &[(String, String)]) {
    let store = quota_store::PgStore::open(&url.parse().unwrap()).unwrap();
    for (id, _) in users {
        let rows = store.count_rows_where("drafts", "owner_id", id).unwrap();
        let (status, body) = http(addr, "GET", &format!("/admin/users/{id}"), ADMIN, None);
        assert_eq!(status, 200, "{body}");
        let usage = body["usage"]["drafts.created"].as_i64().unwrap_or(0);
        let grace = body["grace_used"][0]["used"].as_i64().unwrap_or(0);
        assert_eq!(usage, rows, "{id}: usage counter against drafts: {body}");
        assert!(rows <= 5, "{id}: more than limit + grace: {rows}");
        assert_eq!(
            grace,
            (rows - 3).max(0),
            "{id}: grace lost or double-counted: {body}"
        );
    }
}

/// `n` users on a plan of limit 3 and grace 2, created through `addr`.
fn users(addr: &str, n: usize) -> Vec<(String, String)> {
    put_plan(
        addr,
        "pro",
        &json!({"limits": {"drafts.max": 3}, "enforcement_enabled": true, "grace_count": 2}),
    );
    (0..n)
        .map(|i| {
            let id = format!("u{i}");
            let token = user(addr, &id, "pro");
            (id, token)
        })
        .collect()
}

/// Creates for every user through the hosts in turn, from 8 clients,
/// until `done` is set (at most 2,000 each); every status seen. A
/// connection the host dropped (it was killed) counts as 0.
fn burst(addrs: &[String], users: &[(String, String)], done: &AtomicBool) -> Vec<u16> {
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..8)
            .map(|c| {
                scope.spawn(move || {
                    let mut codes = Vec::new();
                    for round in 0..2_000 {
                        if done.load(Ordering::SeqCst) {
                            break;
                        }
                        let (_, token) = &users[(c + round) % users.len()];
                        let addr = &addrs[(c + round) % addrs.len()];
                        codes.push(try_create(addr, token));
                    }
                    codes
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    })
}

/// A create, or 0 when the host is gone.
fn try_create(addr: &str, token: &str) -> u16 {
    std::panic::catch_unwind(|| create(addr, token).0).unwrap_or(0)
}

#[test]
fn a_host_killed_mid_burst_loses_and_double_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let mut a = host(&url, dir.path(), "a");
    let b = host(&url, dir.path(), "b");
    let users = users(&a.addr, 8);
    let addrs = [a.addr.clone(), b.addr.clone()];
    let done = AtomicBool::new(false);
    let codes = std::thread::scope(|scope| {
        let running = scope.spawn(|| burst(&addrs, &users, &done));
        std::thread::sleep(Duration::from_millis(150));
        kill(&mut a);
        std::thread::sleep(Duration::from_millis(150));
        done.store(true, Ordering::SeqCst);
        running.join().unwrap()
    });
    assert!(codes.iter().all(|c| [0, 201, 403].contains(c)), "{codes:?}");
    assert!(
        codes.contains(&0),
        "the kill fell outside the burst: {codes:?}"
    );
    every_counter_equals_its_rows(&b.addr, &url, &users);
    terminate(b);
}

#[test]
fn a_database_restarted_mid_burst_gives_503_never_500_and_the_hosts_recover() {
    let cluster = quota_throwaway_pg::Cluster::start();
    let url = cluster.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let a = host(&url, dir.path(), "a");
    let b = host(&url, dir.path(), "b");
    let users = users(&a.addr, 8);
    let addrs = [a.addr.clone(), b.addr.clone()];
    let done = AtomicBool::new(false);
    let codes = std::thread::scope(|scope| {
        let running = scope.spawn(|| burst(&addrs, &users, &done));
        std::thread::sleep(Duration::from_millis(100));
        cluster.stop();
        // Longer than a request waits for a connection (3 s): requests
        // during the outage meet it. Shorter outages are ridden out.
        std::thread::sleep(Duration::from_millis(3_500));
        cluster.restart();
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::SeqCst);
        running.join().unwrap()
    });
    let unavailable = codes.iter().filter(|&&c| c == 503).count();
    eprintln!("{} requests, {unavailable} answered 503", codes.len());
    assert!(
        unavailable > 0,
        "no request met the stopped database: {codes:?}"
    );
    assert!(
        !codes.contains(&500),
        "a 500 while the database restarted: {codes:?}"
    );
    assert!(
        codes.iter().all(|c| [201, 403, 503].contains(c)),
        "{codes:?}"
    );
    // Both hosts answer again without a restart of their own.
    for addr in &addrs {
        let answers = || http(addr, "GET", "/admin/users/u0", ADMIN, None).0;
        assert!(
            within(Duration::from_secs(10), || answers() == 200).is_some(),
            "{addr} did not recover: {}",
            answers()
        );
    }
    every_counter_equals_its_rows(&a.addr, &url, &users);
    terminate(a);
    terminate(b);
}

#[test]
fn store_copy_moves_a_populated_sqlite_state_and_every_answer_stays() {
    use quota_store::prelude::*;
    use quota_store::{PlanChange, PolicyAction, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quota.db");
    let sqlite = SqliteStore::open(&file).unwrap();
    let plan = PlanChange {
        limits: vec![("drafts.max".into(), 2), ("segments.max".into(), -1)],
        enforcement_enabled: Some(true),
        grace_count: Some(1),
        ..PlanChange::default()
    };
    sqlite.set_plan("admin", "pro", &plan, 1).unwrap();
    sqlite.set_default("admin", "invites.max", 4, 1).unwrap();
    for (i, user) in ["ann", "ben", "cy"].iter().enumerate() {
        sqlite
            .create_user_with_token("admin", user, "pro", &format!("{i:064}"), 2)
            .unwrap();
        let mut tx = sqlite.begin_write().unwrap();
        for _ in 0..=i {
            tx.insert_draft(user, "t", 3).unwrap();
        }
        tx.add_usage(user, "drafts.created", None, i64::try_from(i).unwrap() + 1)
            .unwrap();
        tx.add_grace(
            user,
            "pro",
            "drafts.max",
            None,
            i64::try_from(i).unwrap() / 2,
            3,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    sqlite
        .set_override("admin", "ben", "drafts.max", 9, Some(4_000_000_000_000), 5)
        .unwrap();
    let component = quota_tests::percent_grace().bytes();
    let sha = quota_host::sha256_hex(component);
    sqlite
        .record_policy_event(
            "admin",
            PolicyAction::Activate,
            Some(&sha),
            Some(component),
            "",
            6,
        )
        .unwrap();
    drop(sqlite);

    let url = quota_throwaway_pg::shared().fresh_database();
    let out = store_copy(&file, &url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"]["drafts"], 6, "{report}");

    let before = quota_store::AnyStore::Sqlite(SqliteStore::open(&file).unwrap());
    let after =
        quota_store::AnyStore::Postgres(quota_store::PgStore::open(&url.parse().unwrap()).unwrap());
    for store in [&before, &after] {
        assert_eq!(
            store
                .policy_state(0)
                .unwrap()
                .active
                .unwrap()
                .sha256
                .as_deref(),
            Some(sha.as_str())
        );
    }
    assert_eq!(before.plans().unwrap(), after.plans().unwrap());
    assert_eq!(before.defaults().unwrap(), after.defaults().unwrap());
    assert_eq!(
        before.overrides(None).unwrap(),
        after.overrides(None).unwrap()
    );
    assert_eq!(
        before.audit_log(100).unwrap(),
        after.audit_log(100).unwrap()
    );
    for user in ["ann", "ben", "cy"] {
        assert_eq!(before.usage(user).unwrap(), after.usage(user).unwrap());
        assert_eq!(before.grace(user).unwrap(), after.grace(user).unwrap());
        for key in ["drafts.max", "segments.max", "invites.max", "other.max"] {
            let state = |store: &quota_store::AnyStore| {
                let mut tx = store.begin_read().unwrap();
                let mut state = tx.quota_state(user, key, "drafts.created", 0).unwrap();
                state.now_ms = None;
                state
            };
            assert_eq!(state(&before), state(&after), "{user} {key}");
        }
    }
    assert_eq!(
        after
            .user_for_token(&format!("{:064}", 1))
            .unwrap()
            .as_deref(),
        Some("ben")
    );
    // Numbering goes on after the copied rows.
    let mut tx = after.begin_write().unwrap();
    assert_eq!(tx.insert_draft("ann", "next", 7).unwrap().id, 7);
    tx.commit().unwrap();
    // A second copy into a database that holds a state is refused.
    let again = store_copy(&file, &url);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("empty"));
}

#[test]
fn a_host_keeps_its_connections_within_db_pool() {
    let dir = tempfile::tempdir().unwrap();
    let url = quota_throwaway_pg::shared().fresh_database();
    let a = start_on(&url, &dir.path().join("a"), &["--db-pool", "2"]);
    let users = users(&a.addr, 4);
    let store = quota_store::PgStore::open(&url.parse().unwrap()).unwrap();
    let done = AtomicBool::new(false);
    let (codes, most) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut most = 0;
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(1_500) {
                most = most.max(quota_store::testing::other_sessions(&store).unwrap());
                std::thread::sleep(Duration::from_millis(5));
            }
            done.store(true, Ordering::SeqCst);
            most
        });
        let codes = burst(std::slice::from_ref(&a.addr), &users, &done);
        (codes, sampler.join().unwrap())
    });
    assert!(codes.len() >= 16, "the burst ran: {} creates", codes.len());
    assert!(codes.iter().all(|&c| c == 201 || c == 403), "{codes:?}");
    // The pool's two, and the connection that listens for policy news.
    assert!(most <= 3, "{most} sessions at once with --db-pool 2");
    every_counter_equals_its_rows(&a.addr, &url, &users);
}
