//! What the black-box tests share: `quota serve` started on port 0, raw
//! HTTP over loopback, a clean stop.

#![allow(dead_code, reason = "each test file uses part of it")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const ADMIN: &str = "black-box-admin-0123456789abcdef";

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Drop for Server {
    /// A test that fails before it stops its server still stops it: a
    /// server left running would outlive the test run.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `quota serve` on a free loopback port with `args`, the admin token
/// `token` in `QUOTA_ADMIN_TOKEN` (or none), and nothing else from the
/// environment.
pub fn serve(args: &[&std::ffi::OsStr], token: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quota"));
    command
        .args(["serve", "--addr", "127.0.0.1:0"])
        .args(args)
        .env_remove("QUOTA_DB")
        .env_remove("QUOTA_STATE_DIR")
        .env_remove("QUOTA_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("QUOTA_ADMIN_TOKEN", token);
    }
    command
}

/// Starts `command` and waits for the address it listens on.
pub fn start_command(mut command: Command) -> Server {
    let mut child = command
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

/// The service over `db` (a file or a URL) keeping its own files in
/// `dir` (for a file in `dir`, the same as the default), with further
/// `options`.
pub fn start_on(db: &str, dir: &std::path::Path, options: &[&str]) -> Server {
    let mut args = vec![
        "--db".as_ref(),
        db.as_ref(),
        "--state-dir".as_ref(),
        dir.as_os_str(),
    ];
    args.extend(options.iter().map(std::ffi::OsStr::new));
    start_command(serve(&args, Some(ADMIN)))
}

/// Asks `holds` every 10 ms until it is true, for at most `limit`; how
/// long that took, or `None` when it never held.
pub fn within(limit: Duration, mut holds: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while !holds() {
        if started.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(started.elapsed())
}

pub fn start(db: &std::path::Path) -> Server {
    start_with(db, &[])
}

/// The service over `db` with the admin token and further `options`.
pub fn start_with(db: &std::path::Path, options: &[&str]) -> Server {
    let mut args = vec!["--db".as_ref(), db.as_os_str()];
    args.extend(options.iter().map(std::ffi::OsStr::new));
    start_command(serve(&args, Some(ADMIN)))
}

pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    request(
        addr,
        (method, path),
        token,
        ("application/json", body.as_bytes()),
        Duration::from_secs(10),
    )
}

/// One request with a body of `content_type`, waiting at most `timeout`
/// for the answer; the status and the body as JSON.
pub fn request(
    addr: &str,
    (method, path): (&str, &str),
    token: &str,
    (content_type, body): (&str, &[u8]),
    timeout: Duration,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub fn terminate(mut server: Server) {
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

pub fn user(addr: &str, id: &str, plan: &str) -> String {
    let (status, body) = http(
        addr,
        "POST",
        "/admin/users",
        ADMIN,
        Some(&json!({"id": id, "plan_id": plan})),
    );
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

pub fn create(addr: &str, token: &str) -> (u16, Value) {
    http(
        addr,
        "POST",
        "/v1/drafts",
        token,
        Some(&json!({"title": "t"})),
    )
}
