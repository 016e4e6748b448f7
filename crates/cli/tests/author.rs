//! A policy written outside this repository, as its author would: `quota
//! policy new` into a temporary folder, `build`, `test`, `inspect`, a rule
//! changed in one line, `diff`, and `activate` on a running service. The
//! project builds with the real cargo and the wasm target (`make` installs
//! it); its own target folder, so the first build compiles wit-bindgen.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

fn quota(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(args)
        .env("QUOTA_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files: Vec<String> = std::fs::read_dir(root.join("tests/conformance"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".json"))
        .collect();
    files.push(root.join("examples/cases.json").display().to_string());
    files
}

/// Replaces `from` (found exactly once) in the project's `file`.
fn edit(project: &Path, file: &str, from: &str, to: &str) {
    let path = project.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_policy_project_from_new_to_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("my-policy");
    let project_arg = project.to_str().unwrap();
    ok(&quota(&["policy", "new", project_arg]));
    let refused = quota(&["policy", "new", project_arg]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));

    // Built unmodified: zero imports, the corpus and its own cases pass,
    // and not one decision differs from the built-in policy.
    let built = ok(&quota(&["policy", "build", project_arg]));
    assert!(built.contains("zero imports"), "{built}");
    let wasm = project.join("target/policy.wasm");
    let wasm_arg = wasm.to_str().unwrap();
    let mut test_args = vec!["policy", "test", "--module", wasm_arg];
    let files = corpus();
    test_args.extend(files.iter().map(String::as_str));
    let cases = project.join("cases.json");
    test_args.push(cases.to_str().unwrap());
    assert!(ok(&quota(&test_args)).contains(" passed, 0 failed"));
    let inspect = json(&quota(&["policy", "inspect", "--module", wasm_arg]));
    assert_eq!(inspect["imports"], serde_json::json!([]));
    assert_eq!(inspect["is_policy"], true);
    let same = json(&quota(&["policy", "diff", wasm_arg, "--inputs", "3000"]));
    assert!(same["corpus_inputs"].as_u64().unwrap() >= 100, "{same:#}");
    assert_eq!(
        same["compared"],
        same["corpus_inputs"].as_u64().unwrap() + 3000
    );
    assert_eq!(same["changed"], 0, "{same:#}");

    // One line of the limit rule: every finite plan limit one higher.
    edit(
        &project,
        "src/reference/mod.rs",
        "(Some(limit), _) => (limit, LimitSource::Plan),",
        "(Some(limit), _) => (if limit >= 0 { limit.saturating_add(1) } else { limit }, LimitSource::Plan),",
    );
    ok(&quota(&["policy", "build", project_arg]));
    let diff = json(&quota(&[
        "policy", "diff", wasm_arg, "--inputs", "3000", "--seed", "5",
    ]));
    let changed = diff["changed"].as_u64().unwrap();
    assert!(changed > 100, "{diff:#}");
    let transitions = diff["transitions"].as_array().unwrap();
    let to_allow = transitions
        .iter()
        .find(|t| t["from"] == "allow_grace" && t["to"] == "allow")
        .unwrap_or_else(|| panic!("{diff:#}"));
    let example = &to_allow["examples"][0];
    assert_eq!(
        example["a"]["limit"].as_i64().unwrap(),
        example["b"]["limit"].as_i64().unwrap() + 1
    );

    // The changed policy decides on a running service.
    let state = tempfile::tempdir().unwrap();
    let server = start(&state.path().join("quota.db"));
    let url = format!("http://{}", server.addr);
    ok(&quota(&["policy", "activate", "--server", &url, wasm_arg]));
    let (_, health) = http(&server.addr, "GET", "/healthz", "", None);
    assert_eq!(health["policy_sha256"], inspect_sha(wasm_arg));
    let (_, plan) = http(
        &server.addr,
        "PUT",
        "/admin/plans/tiny",
        ADMIN,
        Some(
            &serde_json::json!({"limits": {"drafts.max": 1}, "enforcement_enabled": true, "grace_count": 0}),
        ),
    );
    assert_eq!(plan["id"], "tiny", "{plan}");
    let token = user(&server.addr, "alice", "tiny");
    // Limit 1 becomes 2: two creates, then a block.
    assert_eq!(create(&server.addr, &token).0, 201);
    assert_eq!(create(&server.addr, &token).0, 201);
    assert_eq!(create(&server.addr, &token).0, 403);
}

fn inspect_sha(wasm: &str) -> Value {
    json(&quota(&["policy", "inspect", "--module", wasm]))["sha256"].clone()
}

#[test]
fn a_policy_that_prints_and_panics_builds_one_that_imports_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("loud");
    let project_arg = project.to_str().unwrap();
    ok(&quota(&["policy", "new", project_arg]));
    edit(
        &project,
        "src/lib.rs",
        "    fn decide(input: wit::DecisionInput) -> Result<wit::Decision, wit::PolicyError> {\n",
        "    fn decide(input: wit::DecisionInput) -> Result<wit::Decision, wit::PolicyError> {\n        println!(\"deciding for {}\", input.user_id);\n        if input.user_id == \"panic\" {\n            panic!(\"asked to panic at {}\", input.now_ms);\n        }\n",
    );
    let built = ok(&quota(&["policy", "build", project_arg]));
    assert!(built.contains("zero imports"), "{built}");
    let wasm = project.join("target/policy.wasm");
    let out = Command::new(env!("CARGO_BIN_EXE_quota"))
        .args(["policy", "eval", "--module", wasm.to_str().unwrap()])
        .stdin(std::fs::File::open(write_inputs(dir.path())).unwrap())
        .output()
        .unwrap();
    let lines = ok(&out);
    let mut lines = lines.lines();
    assert!(lines.next().unwrap().starts_with("{\"status\":\"allow\""));
    assert!(
        lines
            .next()
            .unwrap()
            .contains("\"code\":\"policy_unavailable\"")
    );

    // An import: the build says which, and writes nothing.
    edit(
        &project,
        "src/lib.rs",
        "        println!(\"deciding for {}\", input.user_id);\n",
        "        #[allow(unsafe_code)]\n        unsafe { host_log(input.now_ms) };\n",
    );
    edit(
        &project,
        "src/lib.rs",
        "fn input_from_wit(",
        "#[allow(unsafe_code)]\n#[link(wasm_import_module = \"host\")]\nunsafe extern \"C\" {\n    fn host_log(at: i64);\n}\n\nfn input_from_wit(",
    );
    assert!(wasm.exists());
    let refused = quota(&["policy", "build", project_arg]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the module imports `host::host_log`; a policy imports nothing"),
        "{stderr}"
    );
    assert!(!wasm.exists());
}

fn write_inputs(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("inputs.jsonl");
    let input = |user: &str| {
        serde_json::json!({"user_id": user, "plan_id": "p", "entitlement_key": "drafts.max",
            "requested": 1, "now_ms": 5, "usage": 0, "grace_used": 0})
        .to_string()
    };
    std::fs::write(&path, format!("{}\n{}\n", input("alice"), input("panic"))).unwrap();
    path
}
