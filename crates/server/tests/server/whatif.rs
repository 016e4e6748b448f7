//! `POST /admin/plans/{id}/what-if` (docs/what-if.md): the report over
//! HTTP, its refusals, and a store left as it was.

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode};
use quota_engine::Engine;
use quota_engine::lifecycle::Lifecycle;
use quota_engine::log::{DecisionLog, Retention};
use quota_server::{AppState, app};
use serde_json::{Value, json};

use crate::support::{ADMIN, Backend, admin, admin_token, call, on_both_backends, open_store};

fn service(backend: Backend, dir: &std::path::Path) -> Router {
    let store = open_store(&backend.fresh(dir));
    let log = Arc::new(DecisionLog::start(store.clone(), Retention::default()).unwrap());
    let engine =
        Engine::new(store, quota_tests::reference().clone()).with_decision_sink(log.clone());
    let lifecycle = Lifecycle::new(quota_tests::runtime().clone(), None);
    app(AppState::with_lifecycle(
        engine,
        admin_token(),
        lifecycle,
        Some(log),
    ))
}

async fn what_if(app: &Router, plan: &str, body: Value) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        &format!("/admin/plans/{plan}/what-if"),
        Some(ADMIN),
        Some(&body.to_string()),
    )
    .await
}

/// What a what-if must leave as it was.
async fn state(app: &Router) -> Value {
    json!({
        "plan": admin(app, Method::GET, "/admin/plans/pro", Value::Null).await,
        "user": admin(app, Method::GET, "/admin/users/alice", Value::Null).await,
        "audit": admin(app, Method::GET, "/admin/audit", Value::Null).await,
        "decisions": admin(app, Method::GET, "/admin/decisions?limit=1000", Value::Null).await,
    })
}

on_both_backends!(a_what_if_reports_the_transitions_and_changes_nothing);

async fn a_what_if_reports_the_transitions_and_changes_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let app = service(backend, dir.path());
    let plan = json!({"limits": {"drafts.max": 2}, "enforcement_enabled": false});
    admin(&app, Method::PUT, "/admin/plans/pro", plan).await;
    let user = admin(
        &app,
        Method::POST,
        "/admin/users",
        json!({"id": "alice", "plan_id": "pro"}),
    )
    .await;
    let token = user["token"].as_str().unwrap().to_owned();
    for _ in 0..4 {
        let (status, body) = call(
            &app,
            Method::POST,
            "/v1/drafts",
            Some(&token),
            Some(&json!({"title": "t"}).to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let before = state(&app).await;

    let (status, report) = what_if(
        &app,
        "pro",
        json!({"enforcement_enabled": true, "since": "1h"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert!(
        report["note"].as_str().unwrap().contains("not a forecast"),
        "{report}"
    );
    assert_eq!(report["replayed"], 4);
    assert_eq!(report["changed"], 2);
    let transitions = report["transitions"].as_array().unwrap();
    assert_eq!(transitions.len(), 1, "{report}");
    assert_eq!(
        (
            &transitions[0]["from"],
            &transitions[0]["to"],
            &transitions[0]["count"]
        ),
        (&json!("warn_only"), &json!("block"), &json!(2))
    );
    let example = &transitions[0]["examples"][0];
    assert_eq!(example["logged"]["status"], "warn_only");
    assert_eq!(example["hypothetical"]["status"], "block");
    assert_eq!(example["input"]["plan"]["enforcement_enabled"], true);
    assert_eq!(report["users_affected"], 1);
    assert_eq!(report["affected_users"][0]["user_id"], "alice");
    assert_eq!(report["affected_users"][0]["newly_blocked"], 2);
    assert_eq!(
        report["units_admitted"],
        json!({"logged": 4, "hypothetical": 2})
    );
    let scope = match backend {
        Backend::Sqlite => "service",
        Backend::Postgres => "this_host",
    };
    assert_eq!(report["covers"]["scope"], scope);

    // Raising the limit to 3 instead: one warn-only becomes an allow.
    let (_, report) = what_if(&app, "pro", json!({"limits": {"drafts.max": 3}})).await;
    assert_eq!(report["transitions"][0]["from"], "warn_only");
    assert_eq!(report["transitions"][0]["to"], "allow");
    assert_eq!(report["transitions"][0]["count"], 1);

    // A window with nothing in it.
    let (_, report) = what_if(&app, "pro", json!({"since": "0s", "grace_count": 9})).await;
    assert_eq!(report["changed"], 0);

    // Refusals: each a 400 (or 401, 404) with a code, nothing changed.
    for (body, needle) in [
        (json!({"periods": {"drafts.max": "month"}}), "periods"),
        (json!({"since": "yesterday"}), "since"),
        (json!({"since": 5}), "since"),
        (json!({"examples": 21}), "examples"),
        (json!({"grace_count": -1}), "grace_count"),
        (json!({"limits": {"drafts.max": -2}}), "drafts.max"),
        (json!({"enforcement": true}), "enforcement"),
    ] {
        let (status, answer) = what_if(&app, "pro", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, answer) = what_if(&app, "nope", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, _) = call(
        &app,
        Method::POST,
        "/admin/plans/pro/what-if",
        Some(&token),
        Some("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &app,
        Method::POST,
        "/admin/plans/pro/what-if",
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(state(&app).await, before, "a what-if changes nothing");
}
