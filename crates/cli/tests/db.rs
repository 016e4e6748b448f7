//! The `quota` binary over a database: admin commands and the domain, with
//! their exit codes (0 done, 2 error, 3 quota exceeded). Each test that
//! takes a backend runs on a SQLite file and on a PostgreSQL database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use std::process::{Command, Output};

use quota_tests::Backend;

#[allow(unused_imports)]
use quota_store::prelude::*;
use serde_json::Value;

fn quota(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quota"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("QUOTA_DB")
        .output()
        .unwrap()
}

fn ok(db: &str, args: &[&str]) -> Value {
    let out = quota(db, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails(db: &str, args: &[&str], code: i32) -> String {
    let out = quota(db, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn the_report_walk_over_the_cli(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    let plan = ok(
        &db,
        &[
            "plan",
            "set",
            "pro",
            "--limit",
            "drafts.max=3",
            "--enforce",
            "on",
            "--grace",
            "2",
        ],
    );
    assert_eq!(plan["limits"]["drafts.max"], 3);
    ok(&db, &["user", "create", "alice", "--plan", "pro"]);
    let mut statuses = Vec::new();
    for n in 0..5 {
        let out = ok(
            &db,
            &[
                "draft",
                "create",
                "--user",
                "alice",
                "--title",
                &format!("d{n}"),
            ],
        );
        assert_eq!(out["draft"]["owner_id"], "alice");
        statuses.push(
            out["outcome"]["decision"]["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        statuses,
        ["allow", "allow", "allow", "allow_grace", "allow_grace"]
    );
    let out = quota(
        &db,
        &["draft", "create", "--user", "alice", "--title", "six"],
    );
    assert_eq!(out.status.code(), Some(3));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(
        (
            body["error"]["limit"].as_i64(),
            body["error"]["usage"].as_i64()
        ),
        (Some(3), Some(5))
    );
    let user = ok(&db, &["user", "show", "alice"]);
    assert_eq!(user["usage"]["drafts.created"], 5);
    assert_eq!(user["grace_used"][0]["used"], 2);
    let check = ok(&db, &["check", "--user", "alice", "--key", "drafts.max"]);
    assert_eq!(check["result"], "would_exceed");
    assert_eq!(check["outcome"]["decision"]["status"], "block");
}

fn overrides_with_expiry_and_the_audit_log(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    ok(
        &db,
        &[
            "plan",
            "set",
            "free",
            "--limit",
            "drafts.max=0",
            "--enforce",
            "on",
        ],
    );
    ok(&db, &["user", "create", "bob", "--plan", "free"]);
    fails(
        &db,
        &["draft", "create", "--user", "bob", "--title", "x"],
        3,
    );
    let set = ok(
        &db,
        &[
            "override",
            "set",
            "bob",
            "drafts.max",
            "2",
            "--expires-at",
            "2999-01-01T00:00:00Z",
            "--by",
            "support",
        ],
    );
    assert_eq!(
        (
            set["value"].as_i64(),
            set["created_by"].as_str(),
            set["expired"].as_bool()
        ),
        (Some(2), Some("support"), Some(false))
    );
    assert_eq!(set["expires_at"], "2999-01-01T00:00:00Z");
    ok(&db, &["draft", "create", "--user", "bob", "--title", "x"]);
    ok(
        &db,
        &[
            "override",
            "set",
            "bob",
            "drafts.max",
            "5",
            "--expires-at",
            "2000-01-01T00:00:00+02:00",
            "--by",
            "support",
        ],
    );
    let list = ok(&db, &["override", "list", "--user", "bob"]);
    assert_eq!(list["overrides"][0]["expired"], true);
    fails(
        &db,
        &["draft", "create", "--user", "bob", "--title", "y"],
        3,
    );
    assert_eq!(
        ok(&db, &["override", "clear", "bob", "drafts.max"])["cleared"],
        true
    );
    assert_eq!(
        ok(&db, &["override", "clear", "bob", "drafts.max"])["cleared"],
        false
    );
    let audit = ok(&db, &["--actor", "ops", "audit", "--limit", "3"]);
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["override.clear", "override.set", "override.set"]);
    assert_eq!(audit["entries"][1]["actor"], "support");
}

fn bad_values_exit_2_and_write_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    ok(&db, &["plan", "set", "free", "--limit", "drafts.max=1"]);
    ok(&db, &["user", "create", "carl", "--plan", "free"]);
    let before = ok(&db, &["audit", "--limit", "100"]);
    let cases: &[&[&str]] = &[
        &["plan", "set", "free", "--limit", "drafts.max=-2"],
        &["plan", "set", "free", "--limit", "drafts.max"],
        &["plan", "set", "free", "--rollout", "101"],
        &["plan", "set", "free", "--grace", "-1"],
        &["plan", "set", "free", "--period", "drafts.max=monthly"],
        &["plan", "set", "free", "--period", "drafts.max"],
        &["plan", "set", "free", "--threshold", "drafts.max=0"],
        &["plan", "set", "free", "--threshold", "drafts.max=80,x"],
        &["plan", "set", "free", "--threshold", "drafts.max=50,50"],
        &["default", "set", "drafts.max", "-5"],
        &["user", "create", "dora", "--plan", "nope"],
        &["user", "create", "carl", "--plan", "free"],
        &["user", "set-plan", "carl", "nope"],
        &["user", "set-plan", "nobody", "free"],
        &["override", "set", "carl", "drafts.max", "-2", "--by", "x"],
        &[
            "override",
            "set",
            "carl",
            "drafts.max",
            "5",
            "--expires-at",
            "tomorrow",
            "--by",
            "x",
        ],
        &["override", "set", "nobody", "drafts.max", "5", "--by", "x"],
        &["override", "set", "carl", "drafts.max", "5", "--by", " "],
        &["draft", "create", "--user", "nobody", "--title", "x"],
        &[
            "segment", "append", "--user", "carl", "--draft", "42", "--body", "x",
        ],
    ];
    for args in cases {
        let stderr = fails(&db, args, 2);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    assert_eq!(ok(&db, &["audit", "--limit", "100"]), before);
    assert_eq!(ok(&db, &["user", "show", "carl"])["plan_id"], "free");
    assert_eq!(
        ok(&db, &["override", "list"])["overrides"],
        serde_json::json!([])
    );
}

fn invites_over_the_cli_use_the_inviters_limit(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    ok(
        &db,
        &[
            "plan",
            "set",
            "team",
            "--limit",
            "collaborators.max=1",
            "--limit",
            "drafts.max=-1",
            "--enforce",
            "on",
        ],
    );
    for user in ["owner", "ann", "ben"] {
        ok(&db, &["user", "create", user, "--plan", "team"]);
    }
    let draft = ok(&db, &["draft", "create", "--user", "owner", "--title", "t"])["draft"]["id"]
        .as_i64()
        .unwrap()
        .to_string();
    let a = ok(
        &db,
        &[
            "invite",
            "create",
            "--user",
            "owner",
            "--draft",
            &draft,
            "--invitee",
            "ann",
        ],
    )["invite"]["id"]
        .to_string();
    let b = ok(
        &db,
        &[
            "invite",
            "create",
            "--user",
            "owner",
            "--draft",
            &draft,
            "--invitee",
            "ben",
        ],
    )["invite"]["id"]
        .to_string();
    fails(
        &db,
        &["invite", "accept", "--user", "ben", "--invite", &a],
        2,
    );
    let accepted = ok(&db, &["invite", "accept", "--user", "ann", "--invite", &a]);
    assert_eq!(accepted["invite"]["status"], "accepted");
    assert_eq!(accepted["outcome"]["user_id"], "owner");
    fails(
        &db,
        &["invite", "accept", "--user", "ben", "--invite", &b],
        3,
    );
    ok(
        &db,
        &[
            "segment", "append", "--user", "ann", "--draft", &draft, "--body", "hi",
        ],
    );
    fails(
        &db,
        &[
            "segment", "append", "--user", "ben", "--draft", &draft, "--body", "hi",
        ],
        2,
    );
}

#[test]
fn a_database_is_required_for_db_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(["plan", "list"])
        .env_remove("QUOTA_DB")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db"));
}

/// The command line applies the same key and id rules as HTTP.
fn keys_and_ids_follow_one_rule_on_the_command_line(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    ok(&db, &["plan", "set", "pro", "--limit", "drafts.max=3"]);
    ok(&db, &["user", "create", "alice", "--plan", "pro"]);
    let long = format!("--key={}", "k".repeat(129));
    for (args, words) in [
        (
            vec!["plan", "set", "pro", "--limit", "bad key=1"],
            "`entitlement_key`",
        ),
        (
            vec!["plan", "set", "p\u{7}ro"],
            "`plan_id` must not hold control characters",
        ),
        (vec!["default", "set", "a\"b", "5"], "`entitlement_key`"),
        (
            vec!["user", "create", "bo\tb", "--plan", "pro"],
            "`user_id`",
        ),
        (
            vec!["override", "set", "alice", "x y", "10", "--by", "ops"],
            "`entitlement_key`",
        ),
        (vec!["check", "--user", "alice", &long], "at most 128 bytes"),
    ] {
        let stderr = fails(&db, &args, 2);
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
    let audit = ok(&db, &["audit", "--limit", "100"]);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(2),
        "{audit}"
    );
}

/// The decision log is per host: replay reads a host's own file, never
/// the shared database.
#[test]
fn replay_refuses_a_database_url() {
    let url = quota_throwaway_pg::shared().fresh_database();
    let candidate = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(candidate.path(), quota_tests::PERCENT_GRACE).unwrap();
    let candidate = candidate.path().to_str().unwrap();
    let args = ["policy", "replay", "--candidate", candidate, "--db", &url];
    let stderr = fails(&url, &args, 2);
    assert!(stderr.contains("the decision log is per host"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn a_metered_key_is_consumed_and_blocked_over_the_cli(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.database(dir.path());
    let limits = ["--limit", "api.max=5", "--enforce", "on", "--grace", "1"];
    ok(
        &db,
        &[&["plan", "set", "metered"][..], &limits[..]].concat(),
    );
    ok(&db, &["user", "create", "alice", "--plan", "metered"]);
    let consume = |n: &str| {
        quota(
            &db,
            &[
                "consume",
                "--user",
                "alice",
                "--key",
                "api.max",
                "--requested",
                n,
            ],
        )
    };
    // A webhook for its threshold events; loopback is refused without the flag.
    let hook = ok(
        &db,
        &[
            "webhook",
            "add",
            "--url",
            "https://hooks.example.com/q",
            "--events",
            "threshold.reached,quota.blocked",
        ],
    );
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{hook}");
    let stderr = fails(
        &db,
        &[
            "webhook",
            "add",
            "--url",
            "http://127.0.0.1:9/q",
            "--events",
            "threshold.reached",
        ],
        2,
    );
    assert!(stderr.contains("https"), "{stderr}");
    let listed = ok(&db, &["webhook", "list"]);
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret));
    // A monthly period: each answer names it.
    let plan = ok(
        &db,
        &[
            "plan",
            "set",
            "metered",
            "--period",
            "api.max=month",
            "--threshold",
            "api.max=100,80",
        ],
    );
    assert_eq!(plan["periods"], serde_json::json!({"api.max": "month"}));
    assert_eq!(
        plan["thresholds"],
        serde_json::json!({"api.max": [80, 100]})
    );
    let out = consume("4");
    assert_eq!(out.status.code(), Some(0));
    let period: Value =
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["outcome"]["period"].clone();
    assert_eq!(period["kind"], "month", "{period}");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            body["requested"].as_i64(),
            body["outcome"]["decision"]["status"].as_str()
        ),
        (Some(4), Some("allow"))
    );
    let out = consume("2");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["outcome"]["decision"]["status"], "allow_grace");
    let out = consume("1");
    assert_eq!(out.status.code(), Some(3));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    // A key a domain action counts, and bad values: exit 2, nothing written.
    let stderr = fails(
        &db,
        &["consume", "--user", "alice", "--key", "drafts.max"],
        2,
    );
    assert!(stderr.contains("counted by its own action"), "{stderr}");
    fails(
        &db,
        &[
            "consume",
            "--user",
            "alice",
            "--key",
            "api.max",
            "--requested",
            "0",
        ],
        2,
    );
    fails(&db, &["consume", "--user", "nobody", "--key", "api.max"], 2);
    // 80% and 100% crossed, and a block: three events, each queued for the webhook.
    let events = ok(&db, &["event", "list", "--user", "alice"]);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["threshold"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["blocked", "100", "80"], "{events}");
    let id = events["events"][0]["event_id"].as_str().unwrap().to_owned();
    let shown = ok(&db, &["event", "show", &id]);
    assert_eq!(shown["deliveries"][0]["state"], "pending", "{shown}");
    assert_eq!(ok(&db, &["event", "redeliver", &id])["queued"], 1);
    fails(&db, &["event", "show", "msg_nope"], 2);
    let user = ok(&db, &["user", "show", "alice"]);
    assert_eq!(user["usage"]["api.used"], 6);
    // The month's grace, named by its period.
    assert_eq!(user["grace_used"][0]["used"], 1);
    assert_eq!(
        user["grace_used"][0]["period_start_ms"], period["start_ms"],
        "{user}"
    );
    assert_eq!(user["leases"], serde_json::json!([]));
}

quota_tests::on_both_backends!(
    a_metered_key_is_consumed_and_blocked_over_the_cli,
    the_report_walk_over_the_cli,
    overrides_with_expiry_and_the_audit_log,
    bad_values_exit_2_and_write_nothing,
    invites_over_the_cli_use_the_inviters_limit,
    keys_and_ids_follow_one_rule_on_the_command_line,
);
