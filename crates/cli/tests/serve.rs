//! `quota serve` as a black box: the real binary on port 0 with a fresh
//! database, driven over loopback HTTP, stopped with SIGTERM. The tests
//! that take a backend run on a SQLite file and on PostgreSQL; the
//! connection tests are about HTTP alone.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use quota_tests::Backend;
use serde_json::{Value, json};
use support::*;

fn the_grace_walk_against_the_real_binary_then_a_clean_stop(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    let server = start_on(&db, dir.path(), &[]);
    let addr = server.addr.clone();
    assert_eq!(http(&addr, "GET", "/healthz", "", None).0, 200);
    let plan = json!({"limits": {"drafts.max": 3}, "enforcement_enabled": true, "grace_count": 2});
    assert_eq!(
        http(&addr, "PUT", "/admin/plans/pro", ADMIN, Some(&plan)).0,
        200
    );
    let (status, user) = http(
        &addr,
        "POST",
        "/admin/users",
        ADMIN,
        Some(&json!({"id": "alice", "plan_id": "pro"})),
    );
    assert_eq!(status, 201);
    let token = user["token"].as_str().unwrap().to_owned();
    let codes: Vec<u16> = (0..6)
        .map(|_| {
            http(
                &addr,
                "POST",
                "/v1/drafts",
                &token,
                Some(&json!({"title": "t"})),
            )
            .0
        })
        .collect();
    assert_eq!(codes, [201, 201, 201, 201, 201, 403]);
    let (status, _) = http(&addr, "GET", "/admin/plans", "wrong", None);
    assert_eq!(status, 401);
    terminate(server);
    // The state survived the stop.
    let server = start_on(&db, dir.path(), &[]);
    let (status, user) = http(&server.addr, "GET", "/admin/users/alice", ADMIN, None);
    assert_eq!(
        (status, user["usage"]["drafts.created"].as_i64()),
        (200, Some(5))
    );
    terminate(server);
}

fn warn_only_override_plan_change_and_invites_against_the_real_binary(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend.database(dir.path()), dir.path(), &[]);
    let addr = server.addr.clone();
    let put = |path: &str, body: Value| {
        let (status, reply) = http(&addr, "PUT", path, ADMIN, Some(&body));
        assert_eq!(status, 200, "{path}: {reply}");
    };
    put(
        "/admin/plans/lax",
        json!({"limits": {"drafts.max": 1}, "enforcement_enabled": false}),
    );
    put(
        "/admin/plans/strict",
        json!({"limits": {"drafts.max": 1, "collaborators.max": 1}, "enforcement_enabled": true, "grace_count": 1}),
    );

    // Warn only: over the limit, allowed, counted.
    let lax = user(&addr, "lax-user", "lax");
    let statuses: Vec<String> = (0..3)
        .map(|_| {
            create(&addr, &lax).1["outcome"]["decision"]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, ["allow", "warn_only", "warn_only"]);

    // Override: lifts the limit for one user until cleared.
    let strict = user(&addr, "strict-user", "strict");
    assert_eq!(create(&addr, &strict).0, 201);
    assert_eq!(create(&addr, &strict).0, 201); // on grace
    assert_eq!(create(&addr, &strict).0, 403);
    put(
        "/admin/users/strict-user/overrides/drafts.max",
        json!({"value": 10, "created_by": "support"}),
    );
    let (status, body) = create(&addr, &strict);
    assert_eq!(
        (status, body["outcome"]["decision"]["limit_source"].as_str()),
        (201, Some("override"))
    );
    let (status, _) = http(
        &addr,
        "DELETE",
        "/admin/users/strict-user/overrides/drafts.max",
        ADMIN,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(create(&addr, &strict).0, 403);

    // Plan change resets grace: back on strict, the grace unit is there again.
    put("/admin/users/strict-user/plan", json!({"plan_id": "lax"}));
    put(
        "/admin/users/strict-user/plan",
        json!({"plan_id": "strict"}),
    );
    put(
        "/admin/users/strict-user/overrides/drafts.max",
        json!({"value": 3}),
    );
    let (status, body) = create(&addr, &strict);
    assert_eq!(
        (status, body["outcome"]["decision"]["status"].as_str()),
        (201, Some("allow_grace")),
        "{body}"
    );

    // Invites: the second accept is blocked on the inviter's limit and stays pending.
    let ann = user(&addr, "ann", "strict");
    let ben = user(&addr, "ben", "strict");
    let cat = user(&addr, "cat", "strict");
    let draft = create(&addr, &ann).1["draft"]["id"].as_i64().unwrap();
    let invite = |invitee: &str| {
        let (status, body) = http(
            &addr,
            "POST",
            &format!("/v1/drafts/{draft}/invites"),
            &ann,
            Some(&json!({"invitee": invitee})),
        );
        assert_eq!(status, 201, "{body}");
        body["invite"]["id"].as_i64().unwrap()
    };
    let (to_ben, to_cat) = (invite("ben"), invite("cat"));
    put("/admin/plans/strict", json!({"grace_count": 0}));
    assert_eq!(
        http(
            &addr,
            "POST",
            &format!("/v1/invites/{to_ben}/accept"),
            &ben,
            None
        )
        .0,
        200
    );
    let (status, body) = http(
        &addr,
        "POST",
        &format!("/v1/invites/{to_cat}/accept"),
        &cat,
        None,
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("quota_exceeded"))
    );
    let (_, owner) = http(&addr, "GET", "/admin/users/ann", ADMIN, None);
    assert_eq!(owner["usage"]["collaborators.accepted"], 1);
    put(
        "/admin/users/ann/overrides/collaborators.max",
        json!({"value": 2}),
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            &format!("/v1/invites/{to_cat}/accept"),
            &cat,
            None
        )
        .0,
        200
    );
    terminate(server);
}

fn quota_cli(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(args)
        .env("QUOTA_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
    )
}

fn active_sha256(addr: &str) -> String {
    let (_, health) = http(addr, "GET", "/healthz", "", None);
    health["policy_sha256"].as_str().unwrap().to_owned()
}

fn policy_activate_replay_restart_and_rollback_over_the_cli(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    // The decision log: beside a SQLite file, or the host's own file in
    // its state folder.
    let log_db = match backend {
        Backend::Sqlite => db.clone(),
        Backend::Postgres => dir.path().join("decisions.db").to_str().unwrap().to_owned(),
    };
    let candidate = dir.path().join("percent-grace.wasm");
    std::fs::write(&candidate, quota_tests::PERCENT_GRACE).unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm but not really").unwrap();
    let candidate_arg = candidate.to_str().unwrap();
    let reference = quota_host::sha256_hex(quota_tests::REFERENCE);
    let percent = quota_host::sha256_hex(quota_tests::PERCENT_GRACE);

    let server = start_on(&db, dir.path(), &[]);
    let url = format!("http://{}", server.addr);
    assert_eq!(active_sha256(&server.addr), reference);
    let plan = json!({"limits": {"drafts.max": 10}, "enforcement_enabled": true, "grace_count": 5});
    http(&server.addr, "PUT", "/admin/plans/pro", ADMIN, Some(&plan));
    let token = user(&server.addr, "alice", "pro");
    // Ten allowed, then three on grace (the reference gives 5).
    for _ in 0..13 {
        assert_eq!(create(&server.addr, &token).0, 201);
    }
    let (_, log) = http(
        &server.addr,
        "GET",
        "/admin/decisions?limit=1000",
        ADMIN,
        None,
    );
    assert_eq!(log["entries"].as_array().unwrap().len(), 13);

    // Percent grace gives 2 units at limit 10: the third grace create would block.
    let (code, replay) = quota_cli(&[
        "policy",
        "replay",
        "--candidate",
        candidate_arg,
        "--db",
        &log_db,
    ]);
    assert_eq!(code, 0, "{replay}");
    assert_eq!(replay["replayed"], 13);
    let transitions = replay["transitions"].as_array().unwrap();
    let to_block = transitions
        .iter()
        .find(|t| t["from"] == "allow_grace" && t["to"] == "block")
        .unwrap_or_else(|| panic!("{replay}"));
    assert_eq!(to_block["count"], 1);

    let (code, answer) = quota_cli(&["policy", "activate", "--server", &url, candidate_arg]);
    assert_eq!(
        (code, answer["activated"]["sha256"].as_str()),
        (0, Some(percent.as_str())),
        "{answer}"
    );
    assert_eq!(create(&server.addr, &token).0, 403);
    let (code, answer) = quota_cli(&[
        "policy",
        "activate",
        "--server",
        &url,
        junk.to_str().unwrap(),
    ]);
    assert_eq!(
        (code, answer["error"]["stage"].as_str()),
        (1, Some("compile")),
        "{answer}"
    );
    assert_eq!(active_sha256(&server.addr), percent);
    terminate(server);

    // The database commands decide with the active policy too: percent
    // grace blocks where the reference would still admit on grace.
    let (code, _) = quota_cli(&[
        "--db", &db, "draft", "create", "--user", "alice", "--title", "cli",
    ]);
    assert_eq!(code, 3);

    // A restart keeps the active policy; rollback restores the reference.
    let server = start_on(&db, dir.path(), &[]);
    let url = format!("http://{}", server.addr);
    assert_eq!(active_sha256(&server.addr), percent);
    let (code, status) = quota_cli(&["policy", "status", "--server", &url]);
    assert_eq!(code, 0);
    assert_eq!(status["previous"].as_str(), Some(reference.as_str()));
    assert_eq!(status["last_load_error"]["action"], "reject");
    let (code, _) = quota_cli(&["policy", "rollback", "--server", &url]);
    assert_eq!(code, 0);
    assert_eq!(active_sha256(&server.addr), reference);
    terminate(server);
}

/// The signing steps a user takes (docs/signing.md): keygen, sign, serve
/// with the public key trusted, activate (the `.sig` goes along), status.
#[test]
fn keygen_sign_and_activate_a_signed_policy_with_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(["policy", "keygen", "--out", &path("ci")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path("ci.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key_id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("key id: ").map(str::to_owned))
        .unwrap();
    // A second keygen never overwrites a key.
    let again = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(["policy", "keygen", "--out", &path("ci")])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let signed = path("signed.wasm");
    let unsigned = path("unsigned.wasm");
    std::fs::write(&signed, quota_tests::PERCENT_GRACE).unwrap();
    let mut other = quota_tests::PERCENT_GRACE.to_vec();
    other.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
    std::fs::write(&unsigned, &other).unwrap();
    let sign = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args([
            "policy",
            "sign",
            "--key",
            &path("ci.key"),
            "--name",
            "drafts",
            "--version",
            "1.0.0",
            &signed,
        ])
        .output()
        .unwrap();
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    assert!(std::path::Path::new(&path("signed.wasm.sig")).exists());

    let db = dir.path().join("quota.db");
    let server = start_with(&db, &["--trusted-keys", &path("ci.pub")]);
    let url = format!("http://{}", server.addr);
    let (code, answer) = quota_cli(&["policy", "activate", "--server", &url, &unsigned]);
    assert_eq!(
        (code, answer["error"]["stage"].as_str()),
        (1, Some("signature")),
        "{answer}"
    );
    let (code, answer) = quota_cli(&["policy", "activate", "--server", &url, &signed]);
    assert_eq!(code, 0, "{answer}");
    let (_, status) = quota_cli(&["policy", "status", "--server", &url]);
    assert_eq!(
        status["active"]["signed_by"]["key_id"],
        key_id.as_str(),
        "{status}"
    );
    assert_eq!(status["active"]["signed_by"]["version"], "1.0.0");
    assert_eq!(status["signatures"]["required"], true);
    terminate(server);

    // The database commands check the recorded policy the same way: with
    // another key trusted, they set it aside for the built-in policy.
    let other = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(["policy", "keygen", "--out", &path("other")])
        .output()
        .unwrap();
    assert!(other.status.success());
    let db = db.to_str().unwrap();
    let check = |keys: &str| {
        Command::new(env!("CARGO_BIN_EXE_quota"))
            .args([
                "--db",
                db,
                "--trusted-keys",
                keys,
                "check",
                "--user",
                "nobody",
                "--key",
                "drafts.max",
            ])
            .output()
            .unwrap()
    };
    let stderr = String::from_utf8_lossy(&check(&path("other.pub")).stderr).into_owned();
    assert!(stderr.contains("is not trusted"), "{stderr}");
    let stderr = String::from_utf8_lossy(&check(&path("ci.pub")).stderr).into_owned();
    assert!(!stderr.contains("is not trusted"), "{stderr}");
}

/// `quota plan what-if` over the decision log a real service wrote beside
/// its database (docs/what-if.md).
#[test]
fn plan_what_if_replays_the_log_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.db");
    let server = start(&db);
    let plan = json!({"limits": {"drafts.max": 1}, "enforcement_enabled": false});
    http(&server.addr, "PUT", "/admin/plans/pro", ADMIN, Some(&plan));
    let token = user(&server.addr, "alice", "pro");
    for _ in 0..3 {
        assert_eq!(create(&server.addr, &token).0, 201);
    }
    terminate(server);
    let db = db.to_str().unwrap();
    let (code, report) = quota_cli(&[
        "--db",
        db,
        "plan",
        "what-if",
        "pro",
        "--enforce",
        "on",
        "--since",
        "1h",
    ]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["replayed"], 3);
    assert_eq!(report["transitions"][0]["from"], "warn_only");
    assert_eq!(report["transitions"][0]["to"], "block");
    assert_eq!(report["transitions"][0]["count"], 2);
    assert_eq!(report["covers"]["scope"], "service");
    let (code, report) = quota_cli(&[
        "--db",
        db,
        "plan",
        "what-if",
        "pro",
        "--limit",
        "drafts.max=3",
    ]);
    assert_eq!(
        (code, &report["transitions"][0]["to"]),
        (0, &json!("allow")),
        "{report}"
    );
    let (code, _) = quota_cli(&["--db", db, "plan", "what-if", "nope", "--enforce", "on"]);
    assert_ne!(code, 0);
    // Nothing changed: the plan still warns only.
    let (code, plan) = quota_cli(&["--db", db, "plan", "show", "pro"]);
    assert_eq!(
        (code, &plan["enforcement_enabled"]),
        (0, &json!(false)),
        "{plan}"
    );
}

/// `quota serve` with `args`, expected to refuse to start: its stderr.
fn refused(args: &[&std::ffi::OsStr], token: Option<&str>) -> String {
    let out = serve(args, token).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "it started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The audit's findings on files beside the database: the service keeps
/// its token and cache key in a state folder of its own, 0600, outside the
/// cache, and refuses to start when others could plant them.
#[cfg(unix)]
#[test]
fn the_service_starts_only_on_state_nobody_else_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o777);
    let db = shared.join("quota.db");

    // A database in a folder anyone can write: its folder is no state folder.
    let stderr = refused(&["--db".as_ref(), db.as_os_str()], None);
    assert!(
        stderr.contains("can be written by group or others"),
        "{stderr}"
    );
    assert!(!shared.join("admin-token").exists());

    // A planted token file there is refused even in a private folder.
    let state = root.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o700);
    std::fs::write(
        state.join("admin-token"),
        "planted-planted-planted-planted-planted",
    )
    .unwrap();
    chmod(&state.join("admin-token"), 0o666);
    let args = [
        "--db".as_ref(),
        db.as_os_str(),
        "--state-dir".as_ref(),
        state.as_os_str(),
    ];
    let stderr = refused(&args, None);
    assert!(stderr.contains("admin-token` can be written"), "{stderr}");
    std::fs::remove_file(state.join("admin-token")).unwrap();

    // A short admin token, from the environment.
    let stderr = refused(&args, Some("too-short"));
    assert!(stderr.contains("at least 32 characters"), "{stderr}");

    // A cache folder others can write.
    std::fs::create_dir(state.join("policy-cache")).unwrap();
    chmod(&state.join("policy-cache"), 0o777);
    let stderr = refused(&args, Some(ADMIN));
    assert!(stderr.contains("policy-cache` can be written"), "{stderr}");
    chmod(&state.join("policy-cache"), 0o700);

    // With a private state folder it starts: token and key 0600 beside
    // the cache, no key inside it.
    let server = start_command(serve(&args, None));
    assert_eq!(mode(&state.join("admin-token")), 0o600);
    assert_eq!(mode(&state.join("cache-key")), 0o600);
    assert!(!state.join("policy-cache").join("cache-key").exists());
    let token = std::fs::read_to_string(state.join("admin-token")).unwrap();
    assert!(token.trim().len() >= 32);
    assert_eq!(
        http(&server.addr, "GET", "/admin/plans", token.trim(), None).0,
        200
    );
    terminate(server);
}

/// A raw connection that sent `bytes` and then nothing more.
fn stalled(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes `stream`; how long that took from `since`.
/// Fails if it is still open after 20 s.
fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return since.elapsed(),
            Err(e) => panic!("still open after {:?}: {e}", since.elapsed()),
        }
    }
}

fn metric(addr: &str, line_start: &str) -> u64 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: q\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The audit's slow clients: a connection that never finishes its headers
/// stayed open for over 70 s, and 20,000 of them stopped /healthz. Headers
/// now have a time limit from the connection's opening, idle keep-alive
/// connections another, and the connection count a cap at which the
/// longest-waiting idle or stalled connection makes room.
#[test]
fn slow_and_idle_connections_are_closed_and_the_service_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.db");
    let server = start_with(
        &db,
        &["--header-read-timeout", "300ms", "--idle-timeout", "900ms"],
    );
    let addr = server.addr.clone();

    // Headers never finished: closed at the header timeout, not before
    // (the server keeps time in whole milliseconds: 2 ms of slack).
    let since = Instant::now();
    let mut partial = stalled(&addr, b"GET /healthz HTTP/1.1\r\nHost: q\r\n");
    let mut silent = stalled(&addr, b"");
    let took = closed_after(&mut partial, since);
    assert!(
        took >= Duration::from_millis(298) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let took = closed_after(&mut silent, since);
    assert!(
        took >= Duration::from_millis(298) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // A keep-alive connection after its answer: the idle timeout, which is
    // longer than the header timeout. Measured from the request's sending:
    // the idle time cannot start before it, however late the answer is read.
    let sent = Instant::now();
    let mut kept = stalled(&addr, b"GET /healthz HTTP/1.1\r\nHost: q\r\n\r\n");
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let took = closed_after(&mut kept, sent);
    assert!(
        took >= Duration::from_millis(898) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // A request whose handler runs longer than every timeout still gets its
    // answer: an upload that takes about a second to compile.
    let slow = quota_tests::locals_across_ifs(10, 1_000, 1_000);
    let mut upload = stalled(
        &addr,
        format!(
            "POST /admin/policy HTTP/1.1\r\nHost: q\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            slow.len()
        )
        .as_bytes(),
    );
    upload.write_all(&slow).unwrap();
    // The compile takes about 1.5 s on a quiet machine; far longer is fine.
    upload
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(answer.contains("\"stage\":\"interface\""), "{answer}");

    assert!(
        metric(
            &addr,
            "quota_http_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 2
    );
    assert!(
        metric(
            &addr,
            "quota_http_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1
    );
    terminate(server);
}

/// A body that does not arrive in time gets 408 and changes nothing.
#[test]
fn a_body_that_does_not_arrive_in_time_gets_408() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.db");
    let server = start_with(&db, &["--body-read-timeout", "400ms"]);
    let mut stream = stalled(
        &server.addr,
        format!(
            "PUT /admin/plans/slow HTTP/1.1\r\nHost: q\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"grace_count\""
        )
        .as_bytes(),
    );
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(
        http(&server.addr, "GET", "/admin/plans/slow", ADMIN, None).0,
        404
    );
    terminate(server);
}

/// At the connection cap, stalled connections make room for new ones: the
/// flood of unfinished headers does not stop /healthz, and no more than the
/// cap are open at once.
#[test]
fn at_the_connection_cap_stalled_connections_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quota.db");
    let server = start_with(
        &db,
        &["--header-read-timeout", "60s", "--max-connections", "16"],
    );
    let mut flood: Vec<TcpStream> = (0..200)
        .map(|_| stalled(&server.addr, b"GET /healthz HTTP/1.1\r\nHost: q\r\n"))
        .collect();
    for _ in 0..5 {
        assert_eq!(http(&server.addr, "GET", "/healthz", "", None).0, 200);
    }
    // Each connection's task counts itself closed once its socket is, on
    // its own schedule: the figures settle within a bounded wait.
    let open = || metric(&server.addr, "quota_http_connections_open ");
    assert!(
        within(Duration::from_secs(10), || open() <= 16).is_some(),
        "{} open",
        open()
    );
    // The oldest stalled connections were the ones closed.
    closed_after(&mut flood[0], Instant::now());
    let evicted = || {
        metric(
            &server.addr,
            "quota_http_connections_closed_total{reason=\"evicted\"}",
        )
    };
    assert!(
        within(Duration::from_secs(10), || evicted() >= 184).is_some(),
        "{} evicted",
        evicted()
    );
    terminate(server);
}

/// A webhook receiver on loopback: it records each request's
/// `webhook-id`, holds every connection unanswered until `answer` is set,
/// then answers 204.
fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let answer = Arc::new(AtomicBool::new(false));
    let (seen, go) = (ids.clone(), answer.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let (seen, go) = (seen.clone(), go.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_lowercase();
                let id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("webhook-id: "))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                seen.lock().unwrap().push(id);
                while !go.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
            });
        }
    });
    (url, ids, answer)
}

/// The process is killed (SIGKILL) while the event's first delivery is in
/// flight: the event was committed with the usage that crossed, so the
/// next start sends it, with the same id.
fn an_event_committed_before_a_kill_is_delivered_after_restart(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    let flags = ["--webhooks-allow-private", "--webhook-timeout", "1s"];
    let (url, ids, answer) = receiver();
    let mut server = start_on(&db, dir.path(), &flags);
    let addr = server.addr.clone();
    let plan = json!({"limits": {"api.max": 10}, "enforcement_enabled": true, "thresholds": {"api.max": [80]}});
    assert_eq!(
        http(&addr, "PUT", "/admin/plans/pro", ADMIN, Some(&plan)).0,
        200
    );
    let hook = json!({"url": url, "events": ["threshold.reached"]});
    assert_eq!(
        http(&addr, "POST", "/admin/webhooks", ADMIN, Some(&hook)).0,
        201
    );
    let token = user(&addr, "alice", "pro");
    let body = json!({"requested": 8});
    assert_eq!(
        http(&addr, "POST", "/v1/usage/api.max", &token, Some(&body)).0,
        200
    );
    assert!(
        within(Duration::from_secs(10), || !ids.lock().unwrap().is_empty()).is_some(),
        "the first delivery never started"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    answer.store(true, std::sync::atomic::Ordering::SeqCst);

    let server = start_on(&db, dir.path(), &flags);
    let (_, events) = http(&server.addr, "GET", "/admin/events", ADMIN, None);
    let id = events["events"][0]["event_id"].as_str().unwrap().to_owned();
    let delivered = within(Duration::from_secs(20), || {
        let (_, d) = http(
            &server.addr,
            "GET",
            &format!("/admin/events/{id}"),
            ADMIN,
            None,
        );
        d["deliveries"][0]["state"] == "delivered"
    });
    assert!(delivered.is_some(), "not delivered after the restart");
    let ids = ids.lock().unwrap().clone();
    assert!(ids.len() >= 2, "{ids:?}");
    assert!(ids.iter().all(|seen| *seen == id), "{ids:?} vs {id}");
    terminate(server);
}

quota_tests::on_both_backends!(
    the_grace_walk_against_the_real_binary_then_a_clean_stop,
    warn_only_override_plan_change_and_invites_against_the_real_binary,
    policy_activate_replay_restart_and_rollback_over_the_cli,
    an_event_committed_before_a_kill_is_delivered_after_restart,
);
