//! The `quota` binary, end to end: `policy eval`, `policy test`, `policy inspect`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly too"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn quota(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments may exit before reading its
    // input: a closed pipe then is its answer, not the test's failure.
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn input(usage: i64) -> Value {
    json!({
        "user_id": "alice", "plan_id": "pro", "entitlement_key": "drafts.max",
        "requested": 1, "now_ms": 1_700_000_000_000i64, "usage": usage,
        "override": null,
        "plan": {"limit": 3, "enforcement_enabled": true, "grace_count": 1, "rollout_percent": 100},
        "default_limit": null, "grace_used": 0
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn corpus() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    files.sort();
    files
}

#[test]
fn eval_prints_exactly_the_spec_fields_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pretty = serde_json::to_string_pretty(&input(3)).unwrap();
    let file = write(dir.path(), "input.json", pretty.as_bytes());
    let out = quota(&["policy", "eval", "--input", file.to_str().unwrap()], "");
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "status",
            "limit",
            "limit_source",
            "override_applied",
            "override_expired",
            "usage",
            "requested",
            "projected_usage",
            "overage",
            "enforced",
            "grace_to_consume",
            "grace_remaining",
            "usage_key",
            "usage_key_fallback",
            "reason",
        ]
    );
    assert_eq!(lines[0]["status"], "allow_grace");
    assert_eq!(lines[0]["usage_key"], "drafts.created");
}

#[test]
fn eval_reads_json_lines_and_keeps_going_past_bad_lines() {
    let mut bad_input = input(0);
    bad_input["requested"] = json!(0);
    let text = format!("{}\n{{not json\n\n{}\n{}\n", input(0), bad_input, input(4));
    let out = quota(&["policy", "eval"], &text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0]["status"], "allow");
    assert_eq!(lines[1]["error"]["code"], "invalid_json");
    assert!(
        lines[1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2:")
    );
    assert_eq!(lines[2]["error"]["code"], "invalid_input");
    assert!(
        lines[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`requested`")
    );
    assert_eq!(lines[3]["status"], "allow_grace");
}

#[test]
fn eval_of_nothing_prints_nothing() {
    let out = quota(&["policy", "eval", "--input", "-"], "\n");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
}

#[test]
fn test_passes_the_conformance_corpus() {
    let files = corpus();
    let mut args = vec!["policy", "test"];
    args.extend(files.iter().map(String::as_str));
    let out = quota(&args, "");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let summary = text.lines().last().unwrap();
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 80, "{summary}");
    assert!(summary.ends_with(" passed, 0 failed"), "{summary}");
}

#[test]
fn test_fails_with_status_one_and_names_the_wrong_case() {
    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [
        {"name": "right", "input": input(0), "expect": {"status": "allow"}},
        {"name": "wrong", "input": input(3), "expect": {"status": "block", "grace_remaining": 1}},
        {"name": "wants an error", "input": input(0), "expect": {"error": "invalid_input"}},
    ]});
    let file = write(dir.path(), "cases.json", cases.to_string().as_bytes());
    let out = quota(&["policy", "test", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("wrong: `status`: expected \"block\", got \"allow_grace\"; `grace_remaining`: expected 1, got 0"), "{text}");
    assert!(
        text.contains("wants an error: expected error \"invalid_input\", got a decision"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn test_counts_an_unreadable_case_file_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "broken.json", b"{\"cases\": 3}");
    let out = quota(&["policy", "test", file.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out).lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn inspect_shows_no_imports_for_the_built_in_policy() {
    let out = quota(&["policy", "inspect"], "");
    assert!(out.status.success());
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["imports"], json!([]));
    assert_eq!(info["package"], "quota:policy@0.1.0");
    assert_eq!(info["size_bytes"], quota_tests::REFERENCE.len());
    assert_eq!(info["sha256"], quota_tests::reference().sha256());
    assert_eq!(
        info["exports"],
        json!([
            "quota:policy/engine@0.1.0#usage-key",
            "quota:policy/engine@0.1.0#decide"
        ])
    );
    assert_eq!(info["is_policy"], true);
}

#[test]
fn a_component_that_is_not_a_policy_is_refused_but_can_be_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let component =
        wat::parse_str(r#"(component (import "wasi:cli/stderr@0.2.0" (instance)))"#).unwrap();
    let file = write(dir.path(), "imports.wasm", &component);
    let module = file.to_str().unwrap();
    let out = quota(
        &["policy", "eval", "--module", module],
        &input(0).to_string(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot load") && stderr.contains("must import nothing"),
        "{stderr}"
    );
    let out = quota(&["policy", "inspect", "--module", module], "");
    assert!(out.status.success());
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["imports"], json!(["wasi:cli/stderr@0.2.0"]));
    assert_eq!(info["is_policy"], false);
}

#[test]
fn a_file_that_is_not_wasm_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "junk.wasm", b"not wasm at all");
    let out = quota(
        &[
            "policy",
            "test",
            "--module",
            file.to_str().unwrap(),
            "x.json",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid WebAssembly component"));
}

#[test]
fn a_policy_that_hangs_fails_that_input_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "hostile.wasm", quota_tests::HOSTILE);
    let mut looping = input(0);
    looping["entitlement_key"] = json!("hostile.loop");
    let text = format!("{looping}\n{}\n", input(0));
    let out = quota(
        &["policy", "eval", "--module", file.to_str().unwrap()],
        &text,
    );
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines[0]["error"]["code"], "policy_unavailable");
    assert!(
        lines[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deadline")
    );
    assert_eq!(lines[1]["status"], "allow");
}

#[test]
fn help_lists_the_policy_commands() {
    let out = quota(&["policy", "--help"], "");
    let text = stdout(&out);
    for command in [
        "eval", "test", "inspect", "activate", "rollback", "shadow", "status", "replay", "keygen",
        "sign",
    ] {
        assert!(text.contains(command), "{text}");
    }
}
