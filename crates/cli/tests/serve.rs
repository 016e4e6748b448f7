//! `quota serve` as a black box: the real binary on port 0 with a fresh
//! database, driven over loopback HTTP, stopped with SIGTERM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ADMIN: &str = "black-box-admin";

struct Server {
    child: Child,
    addr: String,
}

fn start(db: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(db)
        .env("QUOTA_ADMIN_TOKEN", ADMIN)
        .env_remove("QUOTA_DB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .strip_prefix("quota listening on http://")
        .unwrap_or_else(|| panic!("unexpected: {first}"))
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

fn http(addr: &str, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn terminate(mut server: Server) {
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_grace_walk_against_the_real_binary_then_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("quota.db"));
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
    let server = start(&dir.path().join("quota.db"));
    let (status, user) = http(&server.addr, "GET", "/admin/users/alice", ADMIN, None);
    assert_eq!(
        (status, user["usage"]["drafts.created"].as_i64()),
        (200, Some(5))
    );
    terminate(server);
}
