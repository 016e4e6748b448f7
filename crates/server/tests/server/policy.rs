//! The policy lifecycle over HTTP: hostile uploads, rollback, restart,
//! shadow mode, the decision log, swaps under load and the upload limits.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use quota_engine::Engine;
use quota_engine::lifecycle::Lifecycle;
use quota_engine::log::{DecisionLog, Retention};
use quota_host::{ArtifactCache, CacheKey, sha256_hex};
use quota_server::{AppState, POLICY_LIMIT, app};
use quota_store::Location;
#[allow(unused_imports)]
use quota_store::prelude::*;
use serde_json::{Value, json};

use crate::support::{
    ADMIN, Backend, Connection, admin_token, blocking, on_both_backends, open_store, send,
};
const WASM: &str = "application/wasm";

fn reference_sha() -> String {
    sha256_hex(quota_tests::REFERENCE)
}

fn percent_grace_sha() -> String {
    sha256_hex(quota_example_policies::PERCENT_GRACE)
}

// ---------------------------------------------------------------------------
// A service over one database file.

/// How to open a [`Service`].
#[derive(Default)]
struct Options<'a> {
    /// Keep precompiled artifacts in this directory.
    cache: Option<&'a Path>,
    /// Write a decision log with this retention.
    log: Option<Retention>,
    /// Use this clock (Unix ms) for the engine, so for the decisions the
    /// log keeps and prunes by.
    clock: Option<Arc<AtomicI64>>,
}

struct Service {
    state: AppState,
    app: Router,
    restored: String,
}

/// The service as `quota serve` starts it: the reference policy loaded,
/// then whatever the database records put back in place.
fn open(db: &Location, options: Options<'_>) -> Service {
    let store = open_store(db);
    let runtime = quota_tests::runtime().clone();
    let clock = match options.clock.clone() {
        Some(time) => quota_engine::Clock::from_fn(move || time.load(Ordering::SeqCst)),
        None => quota_engine::Clock::system(),
    };
    let mut engine =
        Engine::new(store.clone(), quota_tests::reference().clone()).with_clock(clock.clone());
    let log = options
        .log
        .map(|retention| Arc::new(DecisionLog::start(store.clone(), retention).unwrap()));
    if let Some(log) = &log {
        engine = engine.with_decision_sink(log.clone());
    }
    let cache = options
        .cache
        .map(|dir| ArtifactCache::open(dir, CacheKey::from_bytes([7; 32])).unwrap());
    let lifecycle = Lifecycle::new(runtime, cache);
    let restored = blocking(|| lifecycle.restore(&engine).unwrap());
    let state = AppState::with_lifecycle(engine, admin_token(), lifecycle, log);
    Service {
        app: app(state.clone()),
        state,
        restored,
    }
}

/// A service over a fresh database, with a decision log.
fn fresh(backend: Backend) -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let service = open(
        &backend.fresh(dir.path()),
        Options {
            log: Some(Retention::default()),
            ..Options::default()
        },
    );
    (dir, service)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| b.to_string());
    crate::support::call(app, method, uri, token, body.as_deref()).await
}

async fn admin(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Value {
    let (status, value) = call(app, method, uri, Some(ADMIN), body).await;
    assert!(status.is_success(), "{uri}: {status} {value}");
    value
}

/// Sends component bytes to `uri` (`/admin/policy` or `/admin/policy/shadow`).
async fn upload(
    app: &Router,
    uri: &str,
    bytes: impl Into<Body>,
    content_type: Option<&str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(Method::POST).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    send(app, request.body(bytes.into()).unwrap()).await
}

/// Activates `bytes`, which must pass; returns the response.
async fn activate(app: &Router, bytes: &'static [u8]) -> Value {
    let (status, body) = upload(app, "/admin/policy", bytes, Some(WASM), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["activated"]["sha256"], sha256_hex(bytes), "{body}");
    body
}

async fn policy_state(app: &Router) -> Value {
    admin(app, Method::GET, "/admin/policy", None).await
}

async fn plan(app: &Router, id: &str, body: Value) {
    admin(app, Method::PUT, &format!("/admin/plans/{id}"), Some(body)).await;
}

/// Creates user `id` on `plan`; returns their token.
async fn user(app: &Router, id: &str, plan: &str) -> String {
    let created = admin(
        app,
        Method::POST,
        "/admin/users",
        Some(json!({"id": id, "plan_id": plan})),
    )
    .await;
    created["token"].as_str().unwrap().to_owned()
}

/// A guarded create: `POST /v1/drafts`.
async fn create_draft(app: &Router, token: &str) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/v1/drafts",
        Some(token),
        Some(json!({"title": "t"})),
    )
    .await
}

/// A guarded create that must be admitted; returns its outcome.
async fn created(app: &Router, token: &str) -> Value {
    let (status, body) = create_draft(app, token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["outcome"].clone()
}

/// A soft check of `key`.
async fn check(app: &Router, token: &str, key: &str) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/v1/me/check",
        Some(token),
        Some(json!({"entitlement_key": key})),
    )
    .await
}

/// The value of one sample in `/metrics` (`name{labels}` exactly).
async fn metric(app: &Router, sample: &str) -> u64 {
    let (status, text) = call(app, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{sample}` in\n{text}"))
        .parse()
        .unwrap()
}

async fn decisions(app: &Router, query: &str) -> Vec<Value> {
    let body = admin(app, Method::GET, &format!("/admin/decisions{query}"), None).await;
    body["entries"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------------------
// Components that are not policies, and policies that fail on every input.

/// A component exporting `quota:policy/engine@0.1.0` with the right types,
/// whose `decide` is `decide_body` (a core function `(param $in i32)
/// (result i32)` over the canonical ABI: `$in` points at the input, the
/// result at a `result<decision, policy-error>`). `usage-key` answers
/// `fail.used` for every key. `start`, when given, is a core start function
/// body run at instantiation.
fn policy_wat(decide_body: &str, start: Option<&str>) -> Vec<u8> {
    let start = start.map_or_else(String::new, |body| {
        format!("(func $start {body}) (start $start)")
    });
    let wat = format!(
        r#"(component
  (core module $m
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 4096))
    ;; usage-key-info at 96: the string at 64 (9 bytes), fallback false
    (data (i32.const 64) "fail.used")
    (data (i32.const 96) "\40\00\00\00\09\00\00\00\00")
    (data (i32.const 128) "fixed decision")
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $next (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    (func (export "usage-key") (param i32 i32) (result i32)
      (global.set $next (i32.const 4096))
      (i32.const 96))
    (func $recurse (param i64) (result i64)
      (i64.xor (call $recurse (i64.add (local.get 0) (i64.const 1))) (local.get 0)))
    (func (export "decide") (param $in i32) (result i32)
      (global.set $next (i32.const 4096))
      {decide_body})
    {start}
  )
  (core instance $i (instantiate $m))
  (type $usage-key-info (record (field "usage-key" string) (field "fallback" bool)))
  (type $override-info (record (field "value" s64) (field "expires-at-ms" (option s64))))
  (type $plan-info (record
    (field "limit" (option s64)) (field "enforcement-enabled" bool)
    (field "grace-count" s64) (field "rollout-percent" s64)))
  (type $decision-input (record
    (field "user-id" string) (field "plan-id" string) (field "entitlement-key" string)
    (field "requested" s64) (field "now-ms" s64) (field "usage" s64)
    (field "override" (option $override-info)) (field "plan" (option $plan-info))
    (field "default-limit" (option s64)) (field "grace-used" s64)))
  (type $status (enum "allow" "allow-grace" "warn-only" "block"))
  (type $limit-source (enum "override" "plan" "default" "none"))
  (type $decision (record
    (field "status" $status) (field "limit" s64) (field "limit-source" $limit-source)
    (field "override-applied" bool) (field "override-expired" bool)
    (field "usage" s64) (field "requested" s64) (field "projected-usage" s64)
    (field "overage" s64) (field "enforced" bool) (field "grace-to-consume" s64)
    (field "grace-remaining" s64) (field "reason" string)))
  (type $error-code (enum "invalid-input"))
  (type $policy-error (record (field "code" $error-code) (field "message" string)))
  (func $usage-key (param "key" string) (result $usage-key-info)
    (canon lift (core func $i "usage-key") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (func $decide (param "input" $decision-input) (result (result $decision (error $policy-error)))
    (canon lift (core func $i "decide") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (instance $engine
    (export "usage-key-info" (type $usage-key-info))
    (export "override-info" (type $override-info))
    (export "plan-info" (type $plan-info))
    (export "decision-input" (type $decision-input))
    (export "status" (type $status))
    (export "limit-source" (type $limit-source))
    (export "decision" (type $decision))
    (export "error-code" (type $error-code))
    (export "policy-error" (type $policy-error))
    (export "usage-key" (func $usage-key))
    (export "decide" (func $decide)))
  (export "quota:policy/engine@0.1.0" (instance $engine))
)"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

/// A `decide` that returns, for every input, a decision with `status`
/// (0 allow … 3 block), `limit`, an overage of `requested` (or 0) and
/// `grace_to_consume`, the input's usage and requested echoed and
/// `projected_usage` their sum.
fn fixed_decide(
    status: u8,
    limit: i64,
    overage_is_requested: bool,
    grace_to_consume: i64,
) -> String {
    let overage = if overage_is_requested {
        "(i64.load offset=24 (local.get $in))"
    } else {
        "(i64.const 0)"
    };
    // The result at 1024: the `ok` case at 1024, the decision at 1032.
    format!(
        "(i32.store8 (i32.const 1024) (i32.const 0))
         (i32.store8 (i32.const 1032) (i32.const {status}))
         (i64.store (i32.const 1040) (i64.const {limit}))
         (i32.store8 (i32.const 1048) (i32.const 1))
         (i32.store8 (i32.const 1049) (i32.const 0))
         (i32.store8 (i32.const 1050) (i32.const 0))
         (i64.store (i32.const 1056) (i64.load offset=40 (local.get $in)))
         (i64.store (i32.const 1064) (i64.load offset=24 (local.get $in)))
         (i64.store (i32.const 1072)
           (i64.add (i64.load offset=40 (local.get $in)) (i64.load offset=24 (local.get $in))))
         (i64.store (i32.const 1080) {overage})
         (i32.store8 (i32.const 1088) (i32.const 1))
         (i64.store (i32.const 1096) (i64.const {grace_to_consume}))
         (i64.store (i32.const 1104) (i64.const 0))
         (i32.store (i32.const 1112) (i32.const 128))
         (i32.store (i32.const 1116) (i32.const 14))
         (i32.const 1024)"
    )
}

/// Uploads that must be refused: (what, bytes, stage, words in the message).
fn hostile_uploads() -> Vec<(&'static str, Vec<u8>, &'static str, &'static str)> {
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        ("random bytes", random, "compile", "not a valid"),
        (
            "a core module",
            wat::parse_str(r#"(module (func (export "decide")))"#).unwrap(),
            "compile",
            "not a valid",
        ),
        (
            "an empty component",
            wat::parse_str("(component)").unwrap(),
            "interface",
            "does not implement",
        ),
        (
            "an export with the wrong signature",
            wat::parse_str(
                r#"(component
                    (core module $m (func (export "f")))
                    (core instance $i (instantiate $m))
                    (func $decide (canon lift (core func $i "f")))
                    (func $usage-key (canon lift (core func $i "f")))
                    (instance $engine (export "decide" (func $decide)) (export "usage-key" (func $usage-key)))
                    (export "quota:policy/engine@0.1.0" (instance $engine)))"#,
            )
            .unwrap(),
            "interface",
            "does not implement",
        ),
        (
            "a component importing something",
            wat::parse_str(r#"(component (import "wasi:cli/stderr@0.2.0" (instance)))"#).unwrap(),
            "interface",
            "wasi:cli/stderr@0.2.0",
        ),
        (
            "a policy whose instantiation traps",
            policy_wat("(unreachable)", Some("(unreachable)")),
            "interface",
            "could not be instantiated",
        ),
        (
            "a policy that always traps",
            policy_wat("(unreachable)", None),
            "self_test",
            "trapped",
        ),
        (
            "a policy that always loops",
            policy_wat("(loop $forever (br $forever)) (i32.const 0)", None),
            "self_test",
            "deadline",
        ),
        (
            "a policy that always grows its memory",
            policy_wat(
                "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
                 (unreachable)",
                None,
            ),
            "self_test",
            "memory cap",
        ),
        (
            "a policy that always recurses",
            policy_wat("(drop (call $recurse (i64.const 0))) (i32.const 0)", None),
            "self_test",
            "call stack exhausted",
        ),
        (
            "a policy that always blocks with grace to consume",
            policy_wat(&fixed_decide(3, 0, true, 1), None),
            "self_test",
            "grace to consume without allow_grace",
        ),
        (
            "a policy that always allows beyond the limit",
            policy_wat(&fixed_decide(0, 0, false, 0), None),
            "self_test",
            "allow beyond the limit",
        ),
        (
            // Possible decisions (no limit, allowed), even for the inputs
            // the contract calls invalid.
            "a policy that allows everything",
            policy_wat(&fixed_decide(0, -1, false, 0), None),
            "self_test",
            "decided an input the contract calls invalid",
        ),
        (
            // 250 KB that would take about a minute to compile, holding the
            // lifecycle and both cores: refused before compiling.
            "a module that takes minutes to compile",
            quota_tests::locals_across_ifs(1, 4_000, 14_000),
            "compile",
            "would take too long to compile",
        ),
        (
            "a policy with four more instances of 16 MiB each",
            quota_tests::beside_policy(
                quota_tests::REFERENCE,
                &quota_tests::memory_filler(256),
                4,
            ),
            "interface",
            "memory cap",
        ),
        (
            "a policy with forty more core instances",
            quota_tests::beside_policy(quota_tests::REFERENCE, &wat::parse_str("(module)").unwrap(), 40),
            "interface",
            "count",
        ),
    ]
}

// ---------------------------------------------------------------------------
// 1. Hostile components.

/// The audit's lying policy: it passed the self-test, then admitted users
/// past limit + grace with decisions that contradict themselves. Each lie
/// now fails closed: on a plan of 3 + 1 grace, at most 4 creates succeed
/// (those the lie does not touch), the rest get 503 and change nothing.
async fn a_policy_lying_for_some_users_never_admits_past_limit_and_grace(backend: Backend) {
    let (_dir, s) = fresh(backend);
    plan(
        &s.app,
        "free",
        json!({"limits": {"drafts.max": 3}, "enforcement_enabled": true, "grace_count": 1}),
    )
    .await;
    let body = activate(&s.app, quota_tests::HOSTILE).await;
    assert_eq!(body["activated"]["self_test"]["differs_from_reference"], 0);
    let lies = [
        "grace",
        "allow",
        "warn",
        "free-grace",
        "no-overage",
        "override",
        "echo",
        "long-reason",
    ];
    for lie in lies {
        let token = user(&s.app, &format!("liar-{lie}"), "free").await;
        let mut created = 0;
        for _ in 0..12 {
            let (status, body) = call(
                &s.app,
                Method::POST,
                "/v1/drafts",
                Some(&token),
                Some(json!({"title": "t"})),
            )
            .await;
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::FORBIDDEN => {
                    assert!(
                        body.to_string().len() < 2_000,
                        "{lie}: a long answer: {} bytes",
                        body.to_string().len()
                    );
                }
                other => panic!("{lie}: {other} {body}"),
            }
        }
        assert!(created <= 4, "{lie}: {created} created on 3 + 1 grace");
        let usage = blocking(|| {
            s.state
                .engine()
                .store()
                .usage(&format!("liar-{lie}"))
                .unwrap()
        });
        assert!(
            usage.iter().all(|(_, v)| *v == created),
            "{lie}: usage {usage:?} after {created} creates"
        );
    }
}

/// One upload is compiled at a time, outside the lock that switches
/// policies: while a slow (but admitted) upload compiles, a second upload
/// gets 409 and clearing the shadow is not held up.
async fn a_second_upload_while_one_compiles_gets_409(backend: Backend) {
    let (_dir, s) = fresh(backend);
    activate(&s.app, quota_tests::PERCENT_GRACE).await;
    let slow = quota_tests::locals_across_ifs(10, 1_000, 1_000);
    let slow_sha = sha256_hex(&slow);
    let app = s.app.clone();
    let first =
        tokio::spawn(
            async move { upload(&app, "/admin/policy", slow, Some(WASM), Some(ADMIN)).await },
        );
    let deadline = Instant::now() + Duration::from_secs(10);
    while policy_state(&s.app).await["vetting"] != json!(slow_sha) {
        assert!(
            Instant::now() < deadline,
            "the first upload never started compiling"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (status, body) = upload(
        &s.app,
        "/admin/policy",
        quota_tests::PERCENT_GRACE,
        Some(WASM),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "upload_in_progress");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&slow_sha)
    );
    let (status, body) = call(
        &s.app,
        Method::POST,
        "/admin/policy/rollback",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "upload_in_progress");
    // Recording and switching are not held by the compile.
    let (status, _) = call(
        &s.app,
        Method::DELETE,
        "/admin/policy/shadow",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        policy_state(&s.app).await["vetting"],
        json!(slow_sha),
        "still compiling"
    );

    let (status, body) = first.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["stage"], "interface");
    assert_eq!(policy_state(&s.app).await["vetting"], Value::Null);
    activate(&s.app, quota_tests::REFERENCE).await;
}

async fn hostile_uploads_are_refused_at_their_stage_and_change_nothing(backend: Backend) {
    let (_dir, s) = fresh(backend);
    plan(
        &s.app,
        "big",
        json!({"limits": {"drafts.max": 1000}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let alice = user(&s.app, "alice", "big").await;
    // Something other than the built-in policy is active, so "unchanged"
    // cannot mean "back to the default".
    activate(&s.app, quota_tests::PERCENT_GRACE).await;
    let active = percent_grace_sha();
    let mut events = policy_state(&s.app).await["history"]
        .as_array()
        .unwrap()
        .len();
    for (what, bytes, stage, words) in hostile_uploads() {
        let sha256 = sha256_hex(&bytes);
        for route in ["/admin/policy", "/admin/policy/shadow"] {
            let started = Instant::now();
            let (status, body) =
                upload(&s.app, route, bytes.clone(), Some(WASM), Some(ADMIN)).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{what} to {route}: {body}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: refused only after {:?}",
                started.elapsed()
            );
            assert_eq!(body["error"]["code"], "policy_rejected", "{what}: {body}");
            assert_eq!(body["error"]["stage"], stage, "{what}: {body}");
            assert_eq!(body["error"]["sha256"], sha256, "{what}: {body}");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains(words), "{what}: {message}");

            let state = policy_state(&s.app).await;
            assert_eq!(state["active"]["sha256"], active, "{what}: {state}");
            assert_eq!(state["shadow"], Value::Null, "{what}: {state}");
            assert_eq!(state["previous"], reference_sha(), "{what}: {state}");
            let error = &state["last_load_error"];
            assert_eq!(error["action"], "reject", "{what}: {state}");
            assert_eq!(error["sha256"], sha256, "{what}: {state}");
            let detail = error["detail"].as_str().unwrap();
            assert!(
                detail.starts_with(&format!("{stage}: ")) && detail.contains(words),
                "{what}: {detail}"
            );
            let history = state["history"].as_array().unwrap().len();
            assert_eq!(
                history,
                (events + 1).min(20),
                "{what}: one event per refusal"
            );
            events += 1;
            assert_eq!(s.state.engine().policy().sha256(), active);
            assert!(s.state.engine().shadow().is_none());

            // The service still serves, with the policy it had.
            let outcome = created(&s.app, &alice).await;
            assert_eq!(outcome["policy_sha256"], active, "{what}");
        }
    }
}

async fn the_hostile_guest_passes_its_self_test_then_fails_closed_on_its_bad_keys(
    backend: Backend,
) {
    let (_dir, s) = fresh(backend);
    plan(
        &s.app,
        "hostile",
        json!({
            "limits": {"drafts.max": 1000, "hostile.lie-allow": 0, "hostile.lie-grace": 0},
            "enforcement_enabled": true,
            "grace_count": 2
        }),
    )
    .await;
    let mallory = user(&s.app, "mallory", "hostile").await;
    // Its misbehaving keys are not in the conformance corpus: the self-test
    // cannot see them, so it is accepted.
    let body = activate(&s.app, quota_tests::HOSTILE).await;
    assert_eq!(body["activated"]["self_test"]["differs_from_reference"], 0);
    let hostile = sha256_hex(quota_tests::HOSTILE);
    let errors_before = metric(&s.app, "quota_policy_errors_total").await;
    let bad_keys = [
        ("hostile.loop", "deadline"),
        ("hostile.grow", "memory cap"),
        ("hostile.stack", "trapped"),
        ("hostile.trap", "trapped"),
        ("hostile.lie-grace", "impossible decision"),
        ("hostile.lie-allow", "impossible decision"),
    ];
    for (round, (key, words)) in bad_keys.iter().enumerate() {
        let started = Instant::now();
        let (status, body) = check(&s.app, &mallory, key).await;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{key}: {body}");
        assert_eq!(body["error"]["code"], "policy_unavailable", "{key}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{key}: {message}");
        assert!(
            took < Duration::from_secs(5),
            "{key}: failed after {took:?}"
        );
        assert_eq!(
            metric(&s.app, "quota_policy_errors_total").await,
            errors_before + round as u64 + 1,
            "{key}"
        );
        // The next requests are served, by the same policy.
        let outcome = created(&s.app, &mallory).await;
        assert_eq!(outcome["policy_sha256"], hostile);
        assert_eq!(outcome["decision"]["status"], "allow");
        let (status, body) = check(&s.app, &mallory, "drafts.max").await;
        assert_eq!(
            (status, body["result"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
    }
    assert_eq!(s.state.engine().policy().sha256(), hostile);
}

// ---------------------------------------------------------------------------
// 2. Rollback.

async fn rollback_restores_the_previous_policy_and_again_toggles_back(backend: Backend) {
    let (_dir, s) = fresh(backend);
    plan(
        &s.app,
        "big",
        json!({"limits": {"drafts.max": 1000}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let alice = user(&s.app, "alice", "big").await;
    let (reference, percent) = (reference_sha(), percent_grace_sha());
    assert_eq!(s.restored, reference);
    assert_eq!(created(&s.app, &alice).await["policy_sha256"], reference);

    let body = activate(&s.app, quota_tests::PERCENT_GRACE).await;
    assert_eq!(body["policy"]["active"]["sha256"], percent);
    assert_eq!(body["policy"]["previous"], reference);
    assert_eq!(created(&s.app, &alice).await["policy_sha256"], percent);

    for (active, previous) in [
        (&reference, &percent),
        (&percent, &reference),
        (&reference, &percent),
    ] {
        let body = admin(&s.app, Method::POST, "/admin/policy/rollback", None).await;
        assert_eq!(body["activated"]["sha256"], *active, "{body}");
        assert_eq!(body["policy"]["active"]["sha256"], *active, "{body}");
        assert_eq!(body["policy"]["active"]["since"]["action"], "rollback");
        assert_eq!(body["policy"]["previous"], *previous, "{body}");
        assert_eq!(s.state.engine().policy().sha256(), active.as_str());
        let state = policy_state(&s.app).await;
        assert_eq!(state["active"]["sha256"], *active);
        assert_eq!(state["previous"], *previous);
        // Decisions name the policy that made them, in the response and the log.
        assert_eq!(created(&s.app, &alice).await["policy_sha256"], *active);
        let logged = decisions(&s.app, "?limit=1").await;
        assert_eq!(logged[0]["policy_sha256"], *active);
    }
}

async fn rollback_with_nothing_to_go_back_to_is_a_conflict(backend: Backend) {
    let (_dir, s) = fresh(backend);
    for _ in 0..2 {
        let (status, body) = call(
            &s.app,
            Method::POST,
            "/admin/policy/rollback",
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "conflict");
        let state = policy_state(&s.app).await;
        assert_eq!(state["active"]["sha256"], reference_sha());
        assert_eq!(state["previous"], Value::Null);
    }
    // A refused upload is no version to go back to either.
    let (status, _) = upload(
        &s.app,
        "/admin/policy",
        &b"junk"[..],
        Some(WASM),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        &s.app,
        Method::POST,
        "/admin/policy/rollback",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(s.state.engine().policy().sha256(), reference_sha());

    // Nor is there one for a service that never restored the lifecycle.
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let bare = app(AppState::new(
        Engine::new(store, quota_tests::reference().clone()),
        quota_tests::runtime().clone(),
        admin_token(),
    ));
    let (status, body) = call(
        &bare,
        Method::POST,
        "/admin/policy/rollback",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let state = policy_state(&bare).await;
    assert_eq!(state["active"]["sha256"], reference_sha());
    assert_eq!(state["active"]["since"], Value::Null);
}

// ---------------------------------------------------------------------------
// 3. Restart.

async fn a_restart_keeps_the_active_and_the_shadow_policy(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh(dir.path());
    let cache = dir.path().join("artifacts");
    let (reference, percent) = (reference_sha(), percent_grace_sha());
    let options = || Options {
        cache: Some(&cache),
        ..Options::default()
    };
    let alice = {
        let s = open(&db, options());
        assert_eq!(s.restored, reference);
        plan(
            &s.app,
            "big",
            json!({"limits": {"drafts.max": 1000}, "enforcement_enabled": true, "grace_count": 0}),
        )
        .await;
        let alice = user(&s.app, "alice", "big").await;
        let body = activate(&s.app, quota_tests::PERCENT_GRACE).await;
        assert_eq!(body["activated"]["cache"], "miss");
        assert_eq!(created(&s.app, &alice).await["policy_sha256"], percent);
        let (status, body) = upload(
            &s.app,
            "/admin/policy/shadow",
            quota_tests::REFERENCE,
            Some(WASM),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["policy"]["shadow"]["sha256"], reference);
        alice
    };
    let s = open(&db, options());
    assert_eq!(s.restored, percent);
    assert_eq!(s.state.engine().policy().sha256(), percent);
    assert_eq!(
        s.state.engine().shadow().map(|m| m.sha256().to_owned()),
        Some(reference.clone())
    );
    let state = policy_state(&s.app).await;
    assert_eq!(state["active"]["sha256"], percent);
    assert_eq!(state["previous"], reference);
    assert_eq!(state["shadow"]["sha256"], reference);
    // Decisions name the restored policy.
    assert_eq!(created(&s.app, &alice).await["policy_sha256"], percent);
    // Loading the same component again uses the artifact compiled before
    // the restart.
    let body = activate(&s.app, quota_tests::PERCENT_GRACE).await;
    assert_eq!(body["activated"]["cache"], "hit");
    // A rollback after the restart goes to the policy active before it.
    let body = admin(&s.app, Method::POST, "/admin/policy/rollback", None).await;
    assert_eq!(body["policy"]["active"]["sha256"], reference);
    // Clearing the shadow survives a restart too.
    let body = admin(&s.app, Method::DELETE, "/admin/policy/shadow", None).await;
    assert_eq!(body["cleared"], true);
    drop(s);
    let s = open(&db, options());
    assert_eq!(s.restored, reference);
    assert!(s.state.engine().shadow().is_none());
}

/// The same component with a custom section appended: another version
/// (another sha256) that decides exactly like it.
fn variant(bytes: &[u8], n: u8) -> Vec<u8> {
    let name = b"variant";
    let mut out = bytes.to_vec();
    out.push(0);
    out.push(u8::try_from(1 + name.len() + 1).unwrap());
    out.push(u8::try_from(name.len()).unwrap());
    out.extend_from_slice(name);
    out.push(n);
    out
}

async fn the_active_and_shadow_policies_outlive_the_version_history(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh(dir.path());
    let s = open(&db, Options::default());
    // The shadow, then more versions than are kept, all activated.
    let (status, body) = upload(
        &s.app,
        "/admin/policy/shadow",
        quota_tests::PERCENT_GRACE,
        Some(WASM),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let versions: Vec<Vec<u8>> = (0..=u8::try_from(quota_store::KEEP_VERSIONS).unwrap())
        .map(|n| variant(quota_tests::REFERENCE, n))
        .collect();
    for bytes in &versions {
        let (status, body) = upload(
            &s.app,
            "/admin/policy",
            bytes.clone(),
            Some(WASM),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let last = sha256_hex(versions.last().unwrap());
    assert_eq!(s.state.engine().policy().sha256(), last);
    drop(s);
    let s = open(&db, Options::default());
    assert_eq!(s.restored, last);
    assert_eq!(
        s.state.engine().shadow().map(|m| m.sha256().to_owned()),
        Some(percent_grace_sha())
    );
    // And the other way round: the active policy, then many shadows.
    activate(&s.app, quota_tests::PERCENT_GRACE).await;
    for bytes in versions.iter().rev() {
        let (status, _) = upload(
            &s.app,
            "/admin/policy/shadow",
            bytes.clone(),
            Some(WASM),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    drop(s);
    let s = open(&db, Options::default());
    assert_eq!(s.restored, percent_grace_sha());
    assert_eq!(
        s.state.engine().shadow().map(|m| m.sha256().to_owned()),
        Some(sha256_hex(&versions[0]))
    );
}

// ---------------------------------------------------------------------------
// 4. Shadow mode.

async fn a_shadow_policy_is_compared_counted_and_logged_but_never_obeyed(backend: Backend) {
    let (_dir, s) = fresh(backend);
    let (reference, percent) = (reference_sha(), percent_grace_sha());
    // `pro`: grace 5, where percent-grace allows 2 (20% of 10): every
    // decision differs (at least in `grace_remaining`). `even`: grace 2,
    // the same for both.
    plan(
        &s.app,
        "pro",
        json!({"limits": {"drafts.max": 10}, "enforcement_enabled": true, "grace_count": 5}),
    )
    .await;
    plan(
        &s.app,
        "even",
        json!({"limits": {"drafts.max": 10}, "enforcement_enabled": true, "grace_count": 2}),
    )
    .await;
    let carol = user(&s.app, "carol", "pro").await;
    let dave = user(&s.app, "dave", "even").await;
    let shadow = |verdict: &str| format!("quota_shadow_decisions_total{{verdict=\"{verdict}\"}}");
    assert_eq!(metric(&s.app, &shadow("diverged")).await, 0);

    let (status, body) = upload(
        &s.app,
        "/admin/policy/shadow",
        quota_tests::PERCENT_GRACE,
        Some(WASM),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["shadow"]["sha256"], percent);
    assert_eq!(body["policy"]["active"]["sha256"], reference);
    assert_eq!(body["policy"]["shadow"]["sha256"], percent);
    assert_eq!(body["policy"]["shadow"]["since"]["action"], "shadow");

    // carol: 10 within the limit, then grace: the reference gives 5, so
    // the 11th to 13th are admitted on grace although percent-grace would
    // block the 13th (usage 12, its 2 grace units used).
    let mut statuses = Vec::new();
    for _ in 0..13 {
        let outcome = created(&s.app, &carol).await;
        assert_eq!(outcome["policy_sha256"], reference);
        statuses.push(outcome["decision"]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses[..10], vec!["allow"; 10]);
    assert_eq!(statuses[10..], vec!["allow_grace"; 3]);
    for _ in 0..3 {
        assert_eq!(created(&s.app, &dave).await["policy_sha256"], reference);
    }
    assert_eq!(metric(&s.app, &shadow("diverged")).await, 13);
    assert_eq!(metric(&s.app, &shadow("same")).await, 3);
    assert_eq!(metric(&s.app, &shadow("failed")).await, 0);

    let diverged = decisions(&s.app, "?diverged=true").await;
    assert_eq!(diverged.len(), 13);
    assert!(diverged.iter().all(|e| e["user_id"] == "carol"
        && e["policy_sha256"] == reference
        && e["shadow"]["policy_sha256"] == percent
        && e["shadow"]["verdict"] == "diverged"));
    // Newest first: usage 12, where they disagree on the status itself.
    let newest = &diverged[0];
    assert_eq!(newest["input"]["usage"], 12);
    assert_eq!(newest["output"]["status"], "allow_grace");
    assert_eq!(newest["output"]["grace_to_consume"], 1);
    assert_eq!(newest["shadow"]["output"]["status"], "block");
    assert_eq!(newest["shadow"]["output"]["grace_to_consume"], 0);
    // At usage 10 both admit on grace, with different grace left.
    let first_grace = &diverged[2];
    assert_eq!(first_grace["input"]["usage"], 10);
    assert_eq!(
        (
            first_grace["output"]["status"].as_str(),
            first_grace["shadow"]["output"]["status"].as_str()
        ),
        (Some("allow_grace"), Some("allow_grace"))
    );
    assert_eq!(first_grace["output"]["grace_remaining"], 4);
    assert_eq!(first_grace["shadow"]["output"]["grace_remaining"], 1);
    let same = decisions(&s.app, "?user_id=dave").await;
    assert_eq!(same.len(), 3);
    assert!(
        same.iter()
            .all(|e| e["shadow"]["verdict"] == "same" && e["shadow"]["output"].is_null())
    );

    // Cleared: no more shadow verdicts.
    let body = admin(&s.app, Method::DELETE, "/admin/policy/shadow", None).await;
    assert_eq!(body["cleared"], true);
    let body = admin(&s.app, Method::DELETE, "/admin/policy/shadow", None).await;
    assert_eq!(body["cleared"], false);
    assert_eq!(policy_state(&s.app).await["shadow"], Value::Null);
    created(&s.app, &dave).await;
    assert_eq!(
        decisions(&s.app, "?limit=1").await[0]["shadow"],
        Value::Null
    );
    assert_eq!(metric(&s.app, &shadow("same")).await, 3);
}

async fn a_failing_shadow_never_affects_requests(backend: Backend) {
    let (_dir, s) = fresh(backend);
    let reference = reference_sha();
    plan(
        &s.app,
        "small",
        json!({"limits": {"drafts.max": 2, "hostile.loop": 5}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let erin = user(&s.app, "erin", "small").await;
    let failed = "quota_shadow_decisions_total{verdict=\"failed\"}";

    // The hostile guest passes the self-test, so it can be set as shadow;
    // it then fails on its bad keys.
    let (status, body) = upload(
        &s.app,
        "/admin/policy/shadow",
        quota_tests::HOSTILE,
        Some(WASM),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for key in ["hostile.loop", "hostile.trap", "hostile.grow"] {
        let (status, body) = check(&s.app, &erin, key).await;
        assert_eq!(status, StatusCode::OK, "{key}: {body}");
        assert_eq!(body["result"], "ok", "{key}: {body}");
        assert_eq!(body["outcome"]["policy_sha256"], reference);
    }
    assert_eq!(metric(&s.app, failed).await, 3);
    assert_eq!(metric(&s.app, "quota_policy_errors_total").await, 0);

    // A shadow that fails on every input (it could not pass the self-test:
    // set on the engine directly) fails every guarded create beside it,
    // and none of them notices.
    let always_traps = quota_tests::runtime()
        .load(&policy_wat("(unreachable)", None))
        .unwrap();
    let trap_sha = always_traps.sha256().to_owned();
    s.state.engine().set_shadow(Some(always_traps));
    let first = created(&s.app, &erin).await;
    let second = created(&s.app, &erin).await;
    let (status, blocked) = create_draft(&s.app, &erin).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{blocked}");
    assert_eq!(blocked["error"]["code"], "quota_exceeded");
    for outcome in [&first, &second] {
        assert_eq!(outcome["policy_sha256"], reference);
        assert_eq!(outcome["decision"]["status"], "allow");
    }
    assert_eq!(metric(&s.app, failed).await, 6);
    assert_eq!(metric(&s.app, "quota_policy_errors_total").await, 0);
    let logged = decisions(&s.app, "?user_id=erin").await;
    assert_eq!(logged.len(), 3);
    for entry in &logged {
        assert_eq!(entry["shadow"]["policy_sha256"], trap_sha);
        assert_eq!(entry["shadow"]["verdict"], "failed");
        let why = entry["shadow"]["output"]["error"].as_str().unwrap();
        assert!(why.contains("trapped"), "{why}");
    }
    assert_eq!(logged[0]["status"], "block");
}

// ---------------------------------------------------------------------------
// 5. The decision log.

async fn the_decision_log_records_every_enforce_decision_and_filters_them(backend: Backend) {
    let (_dir, s) = fresh(backend);
    let reference = reference_sha();
    plan(
        &s.app,
        "free",
        json!({"limits": {"drafts.max": 2, "segments.max": 5}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let alice = user(&s.app, "alice", "free").await;
    let bob = user(&s.app, "bob", "free").await;
    created(&s.app, &alice).await;
    created(&s.app, &alice).await;
    let (status, _) = create_draft(&s.app, &alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, draft) = create_draft(&s.app, &bob).await;
    let draft_id = draft["draft"]["id"].as_i64().unwrap();
    let (status, _) = call(
        &s.app,
        Method::POST,
        &format!("/v1/drafts/{draft_id}/segments"),
        Some(&bob),
        Some(json!({"body": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    // Soft checks are not enforce decisions: not logged.
    let (status, _) = check(&s.app, &bob, "drafts.max").await;
    assert_eq!(status, StatusCode::OK);

    let all = decisions(&s.app, "").await;
    assert_eq!(all.len(), 5);
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for entry in &all {
        assert_eq!(entry["policy_sha256"], reference, "{entry}");
        assert_eq!(entry["plan_id"], "free");
        assert!(entry["at_ms"].as_i64().unwrap() > 0);
        assert_eq!(entry["input"]["user_id"], entry["user_id"], "{entry}");
        assert_eq!(entry["input"]["entitlement_key"], entry["entitlement_key"]);
        assert_eq!(entry["input"]["requested"], 1);
        assert_eq!(entry["output"]["status"], entry["status"], "{entry}");
        assert!(entry["output"]["usage_key"].is_string(), "{entry}");
        assert_eq!(entry["shadow"], Value::Null);
    }

    let alices = decisions(&s.app, "?user_id=alice").await;
    let statuses: Vec<&str> = alices
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["block", "allow", "allow"]);
    let usages: Vec<i64> = alices
        .iter()
        .map(|e| e["input"]["usage"].as_i64().unwrap())
        .collect();
    assert_eq!(usages, [2, 1, 0]);

    let blocked = decisions(&s.app, "?status=block").await;
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["user_id"], "alice");
    assert_eq!(blocked[0]["output"]["status"], "block");
    assert_eq!(blocked[0]["output"]["limit"], 2);
    assert_eq!(blocked[0]["output"]["overage"], 1);
    assert_eq!(blocked[0]["input"]["plan"]["limit"], 2);

    let segments = decisions(&s.app, "?entitlement_key=segments.max").await;
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0]["user_id"], "bob");
    assert_eq!(segments[0]["output"]["usage_key"], "segments.appended");
    assert_eq!(
        decisions(&s.app, "?entitlement_key=drafts.max").await.len(),
        4
    );
    assert_eq!(
        decisions(&s.app, "?user_id=alice&status=allow").await.len(),
        2
    );
    assert_eq!(
        decisions(&s.app, "?user_id=bob&status=block").await.len(),
        0
    );
    assert_eq!(decisions(&s.app, "?user_id=nobody").await.len(), 0);

    // Paging.
    let page = decisions(&s.app, "?limit=2").await;
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["id"], all[0]["id"]);
    let before = page[1]["id"].as_i64().unwrap();
    let next = decisions(&s.app, &format!("?limit=2&before_id={before}")).await;
    assert_eq!(next[0]["id"], all[2]["id"]);

    // Bad filters are refused.
    for query in ["?status=maybe", "?limit=0", "?limit=1001", "?colour=red"] {
        let (status, body) = call(
            &s.app,
            Method::GET,
            &format!("/admin/decisions{query}"),
            Some(ADMIN),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    let (status, _) = call(&s.app, Method::GET, "/admin/decisions", Some(&alice), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // After a swap, entries name the new policy.
    activate(&s.app, quota_tests::PERCENT_GRACE).await;
    let (status, _) = create_draft(&s.app, &bob).await;
    assert_eq!(status, StatusCode::CREATED);
    let newest = decisions(&s.app, "?limit=1").await;
    assert_eq!(newest[0]["policy_sha256"], percent_grace_sha());
}

/// Waits (bounded) until the log holds exactly `n` entries; returns them.
async fn log_settles_at(s: &Service, n: usize) -> Vec<quota_store::DecisionLogEntry> {
    let filter = quota_store::DecisionFilter {
        limit: 1000,
        ..quota_store::DecisionFilter::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            s.state
                .decision_log()
                .unwrap()
                .flush(Duration::from_secs(5))
        );
        let entries = blocking(|| s.state.engine().store().decisions(&filter).unwrap());
        if entries.len() == n || Instant::now() > deadline {
            assert_eq!(entries.len(), n, "{entries:?}");
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// On SQLite only: the test moves the engine's clock, and on PostgreSQL
/// decisions take the database's clock (the log of a host there is a
/// SQLite file of its own anyway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_log_is_pruned_by_count_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Sqlite;
    let clock = Arc::new(AtomicI64::new(1_700_000_000_000));
    let s = open(
        &backend.fresh(dir.path()),
        Options {
            log: Some(Retention {
                max_entries: 4,
                max_age: Duration::from_secs(60),
            }),
            clock: Some(clock.clone()),
            ..Options::default()
        },
    );
    plan(
        &s.app,
        "big",
        json!({"limits": {"drafts.max": 1000}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let alice = user(&s.app, "alice", "big").await;

    // By count: the writer prunes at most once a second of its clock,
    // after a write.
    for _ in 0..6 {
        created(&s.app, &alice).await;
    }
    log_settles_at(&s, 6).await;
    clock.fetch_add(1_000, Ordering::SeqCst);
    created(&s.app, &alice).await;
    let kept = log_settles_at(&s, 4).await;
    let usages: Vec<String> = kept.iter().map(|e| e.input_json.clone()).collect();
    for (entry, usage) in kept.iter().zip([6, 5, 4, 3]) {
        let input: Value = serde_json::from_str(&entry.input_json).unwrap();
        assert_eq!(input["usage"], usage, "{usages:?}");
    }

    // By age: two minutes later, everything older than a minute goes.
    clock.fetch_add(120_000, Ordering::SeqCst);
    created(&s.app, &alice).await;
    let kept = log_settles_at(&s, 1).await;
    assert_eq!(kept[0].at_ms, clock.load(Ordering::SeqCst));
    let input: Value = serde_json::from_str(&kept[0].input_json).unwrap();
    assert_eq!(input["usage"], 7);

    // The store's pruning on its own: by count, then by age.
    for _ in 0..3 {
        created(&s.app, &alice).await;
    }
    log_settles_at(&s, 4).await;
    let store = s.state.engine().store();
    assert_eq!(blocking(|| store.prune_decisions(2, 0).unwrap()), 2);
    assert_eq!(log_settles_at(&s, 2).await[0].id, kept[0].id + 3);
    assert_eq!(
        blocking(|| store.prune_decisions(100, i64::MAX).unwrap()),
        2
    );
    log_settles_at(&s, 0).await;
}

// ---------------------------------------------------------------------------
// 6. Swaps under load, over real connections.

/// One request as a client saw it: when sent and answered (since the
/// start), the status and the sha256 its decision names.
struct Seen {
    sent: Duration,
    answered: Duration,
    status: u16,
    sha256: String,
}

/// Microseconds of `d`, saturating.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn swapping_policies_under_load_fails_no_request_and_mixes_no_versions(backend: Backend) {
    const CLIENTS: usize = 8;
    const SWAPS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("artifacts");
    let s = open(
        &backend.fresh(dir.path()),
        Options {
            cache: Some(&cache),
            ..Options::default()
        },
    );
    plan(
        &s.app,
        "unlimited",
        json!({"limits": {"drafts.max": -1}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let mut tokens = Vec::new();
    for n in 0..CLIENTS {
        tokens.push(user(&s.app, &format!("client-{n}"), "unlimited").await);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = s.state.clone();
    let server = tokio::spawn(quota_server::connections::serve(
        listener,
        served,
        quota_server::connections::ConnectionLimits::default(),
        std::future::pending(),
    ));

    let (reference, percent) = (reference_sha(), percent_grace_sha());
    let run = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let opened = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // Requests sent after `since_us` (the end of the latest swap) and
        // answered: the swapper waits for a few before the next swap, so
        // each policy decides some requests alone however slow the machine.
        let since_us = Arc::new(AtomicU64::new(0));
        let fresh = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = tokens
            .into_iter()
            .map(|token| {
                let (opened, stop) = (opened.clone(), stop.clone());
                let (since_us, fresh) = (since_us.clone(), fresh.clone());
                std::thread::spawn(move || {
                    opened.fetch_add(1, Ordering::SeqCst);
                    let mut connection = Connection::open(addr);
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let sent = start.elapsed();
                        let (status, body) = connection.request(
                            "POST",
                            "/v1/drafts",
                            &token,
                            "application/json",
                            br#"{"title":"t"}"#,
                        );
                        let answered = start.elapsed();
                        if micros(sent) >= since_us.load(Ordering::SeqCst) {
                            fresh.fetch_add(1, Ordering::SeqCst);
                        }
                        let sha256 = body["outcome"]["policy_sha256"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        seen.push(Seen {
                            sent,
                            answered,
                            status,
                            sha256,
                        });
                    }
                    seen
                })
            })
            .collect();
        // The swaps: each active from some instant between the start and
        // the end of its POST. The reference is active from the start.
        let swaps = Arc::new(Mutex::new(vec![(
            reference.clone(),
            Duration::ZERO,
            Duration::ZERO,
        )]));
        opened.fetch_add(1, Ordering::SeqCst);
        let mut connection = Connection::open(addr);
        let mut caches = Vec::new();
        let settle = |n: usize| {
            std::thread::sleep(Duration::from_millis(50));
            let deadline = Instant::now() + Duration::from_secs(30);
            while fresh.load(Ordering::SeqCst) < 2 * CLIENTS {
                assert!(
                    Instant::now() < deadline,
                    "swap {n}: no requests got through"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        for n in 0..SWAPS {
            settle(n);
            let bytes = if n % 2 == 0 {
                quota_tests::PERCENT_GRACE
            } else {
                quota_tests::REFERENCE
            };
            let began = start.elapsed();
            let (status, body) = connection.request("POST", "/admin/policy", ADMIN, WASM, bytes);
            let ended = start.elapsed();
            assert_eq!(status, 200, "swap {n}: {body}");
            let sha256 = sha256_hex(bytes);
            assert_eq!(body["activated"]["sha256"], sha256, "swap {n}");
            caches.push(body["activated"]["cache"].as_str().unwrap().to_owned());
            swaps.lock().unwrap().push((sha256, began, ended));
            since_us.store(micros(ended), Ordering::SeqCst);
            fresh.store(0, Ordering::SeqCst);
        }
        settle(SWAPS);
        stop.store(true, Ordering::SeqCst);
        let seen: Vec<Seen> = clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        let swaps = Arc::try_unwrap(swaps).unwrap().into_inner().unwrap();
        (
            seen,
            swaps,
            caches,
            opened.load(Ordering::SeqCst),
            start.elapsed(),
        )
    });
    let (seen, swaps, caches, connections, took) =
        tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("the swaps finish")
            .unwrap();
    server.abort();

    assert!(connections <= 16, "{connections} connections");
    // Compiled once each, then loaded from the artifact cache.
    assert_eq!(caches[..2], ["miss", "miss"]);
    assert!(caches[2..].iter().all(|c| c == "hit"), "{caches:?}");
    assert!(
        seen.len() >= CLIENTS * SWAPS,
        "only {} requests",
        seen.len()
    );
    let failed: Vec<_> = seen.iter().filter(|r| r.status != 201).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. status {}",
        failed.len(),
        seen.len(),
        failed[0].status
    );
    // A request may name policy `i` only if `i` was active at some instant
    // between its sending and its answer: it became active no earlier than
    // the start of its POST and stopped no later than the end of the next.
    let mut unambiguous = [0usize; 2];
    for request in &seen {
        let possible: Vec<usize> = (0..swaps.len())
            .filter(|&i| {
                let (_, began, _) = &swaps[i];
                let until = swaps.get(i + 1).map_or(Duration::MAX, |next| next.2);
                request.sent <= until && request.answered >= *began
            })
            .collect();
        assert!(
            possible.iter().any(|&i| swaps[i].0 == request.sha256),
            "a request sent at {:?} and answered at {:?} names {}, but only {:?} could have been active",
            request.sent,
            request.answered,
            request.sha256,
            possible.iter().map(|&i| &swaps[i].0).collect::<Vec<_>>()
        );
        if possible.len() == 1 {
            unambiguous[usize::from(request.sha256 == percent)] += 1;
        }
    }
    // The check had teeth: many requests fell where only one policy could
    // have been active, for both policies.
    assert!(
        unambiguous.iter().all(|&n| n >= SWAPS),
        "unambiguous requests (reference, percent-grace): {unambiguous:?}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(s.state.engine().policy().sha256(), reference_sha());
}

// ---------------------------------------------------------------------------
// 7. The upload's limits.

async fn uploads_are_size_limited_typed_and_for_the_admin_only(backend: Backend) {
    let (_dir, s) = fresh(backend);
    plan(
        &s.app,
        "big",
        json!({"limits": {"drafts.max": 1000}, "enforcement_enabled": true, "grace_count": 0}),
    )
    .await;
    let alice = user(&s.app, "alice", "big").await;
    let percent = quota_tests::PERCENT_GRACE;
    let before = policy_state(&s.app).await["history"].clone();
    for route in ["/admin/policy", "/admin/policy/shadow"] {
        // Over 16 MiB: refused before anything looks at it.
        let (status, body) = upload(
            &s.app,
            route,
            vec![0u8; POLICY_LIMIT + 1],
            Some(WASM),
            Some(ADMIN),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{route}: {body}");
        assert_eq!(
            body["error"]["code"], "payload_too_large",
            "{route}: {body}"
        );
        // Not JSON.
        for content_type in [Some("application/json"), Some("text/plain"), None] {
            let (status, body) = upload(&s.app, route, percent, content_type, Some(ADMIN)).await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{route} {content_type:?}: {body}"
            );
            assert_eq!(body["error"]["code"], "unsupported_media_type");
        }
        // No token, a user's token, a wrong one.
        for token in [None, Some(alice.as_str()), Some("not-the-admin-token")] {
            let (status, body) = upload(&s.app, route, percent, Some(WASM), token).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{route} {token:?}: {body}"
            );
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        // Empty.
        let (status, _) = upload(&s.app, route, Vec::new(), Some(WASM), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    // None of it reached the lifecycle.
    assert_eq!(policy_state(&s.app).await["history"], before);
    assert_eq!(s.state.engine().policy().sha256(), reference_sha());
    for (method, uri) in [
        (Method::GET, "/admin/policy"),
        (Method::POST, "/admin/policy/rollback"),
        (Method::DELETE, "/admin/policy/shadow"),
        (Method::GET, "/admin/decisions"),
    ] {
        for token in [None, Some(alice.as_str())] {
            let (status, _) = call(&s.app, method.clone(), uri, token, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
        }
    }
    // Exactly 16 MiB is within the limit (and then not a component), far
    // above the 64 KiB of the JSON routes; `application/octet-stream` is
    // accepted too.
    let (status, body) = upload(
        &s.app,
        "/admin/policy",
        vec![0u8; POLICY_LIMIT],
        Some("application/octet-stream"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["stage"], "compile");
    let (status, body) = upload(
        &s.app,
        "/admin/policy",
        percent,
        Some("application/wasm; charset=binary"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

on_both_backends!(
    a_policy_lying_for_some_users_never_admits_past_limit_and_grace(
        flavor = "multi_thread",
        worker_threads = 2
    ),
    a_second_upload_while_one_compiles_gets_409(flavor = "multi_thread", worker_threads = 4),
    hostile_uploads_are_refused_at_their_stage_and_change_nothing(
        flavor = "multi_thread",
        worker_threads = 2
    ),
    the_hostile_guest_passes_its_self_test_then_fails_closed_on_its_bad_keys(
        flavor = "multi_thread",
        worker_threads = 2
    ),
    rollback_restores_the_previous_policy_and_again_toggles_back,
    rollback_with_nothing_to_go_back_to_is_a_conflict,
    a_restart_keeps_the_active_and_the_shadow_policy(flavor = "multi_thread", worker_threads = 2),
    the_active_and_shadow_policies_outlive_the_version_history(
        flavor = "multi_thread",
        worker_threads = 2
    ),
    a_shadow_policy_is_compared_counted_and_logged_but_never_obeyed,
    a_failing_shadow_never_affects_requests(flavor = "multi_thread", worker_threads = 2),
    the_decision_log_records_every_enforce_decision_and_filters_them,
    swapping_policies_under_load_fails_no_request_and_mixes_no_versions(
        flavor = "multi_thread",
        worker_threads = 2
    ),
    uploads_are_size_limited_typed_and_for_the_admin_only,
);
