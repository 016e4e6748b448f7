//! The service as a function: `app(state)` driven with `oneshot`.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
#[allow(unused_imports)]
use quota_store::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{ADMIN, Backend, Fixture, admin, blocking, call, fixture, on_both_backends};

/// Plan `free` (drafts 3, grace 2, enforced) and users alice and bob; their tokens.
async fn seeded(f: &Fixture) -> (String, String) {
    admin(&f.app, Method::PUT, "/admin/plans/free", json!({"limits": {"drafts.max": 3, "segments.max": 5, "collaborators.max": 1}, "enforcement_enabled": true, "grace_count": 2})).await;
    let alice = admin(
        &f.app,
        Method::POST,
        "/admin/users",
        json!({"id": "alice", "plan_id": "free"}),
    )
    .await;
    let bob = admin(
        &f.app,
        Method::POST,
        "/admin/users",
        json!({"id": "bob", "plan_id": "free"}),
    )
    .await;
    (
        alice["token"].as_str().unwrap().to_owned(),
        bob["token"].as_str().unwrap().to_owned(),
    )
}

async fn the_grace_walk_over_http(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, body) = call(
            &f.app,
            Method::POST,
            "/v1/drafts",
            Some(&alice),
            Some(r#"{"title":"t"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        statuses.push(
            body["outcome"]["decision"]["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        statuses,
        ["allow", "allow", "allow", "allow_grace", "allow_grace"]
    );
    let (status, body) = call(
        &f.app,
        Method::POST,
        "/v1/drafts",
        Some(&alice),
        Some(r#"{"title":"t"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(body["error"]["entitlement_key"], "drafts.max");
    assert_eq!(
        (
            body["error"]["limit"].as_i64(),
            body["error"]["usage"].as_i64(),
            body["error"]["requested"].as_i64(),
            body["error"]["grace_remaining"].as_i64()
        ),
        (Some(3), Some(5), Some(1), Some(0))
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("quota exceeded for `drafts.max`: "),
        "{message}"
    );
    let (_, me) = call(
        &f.app,
        Method::GET,
        "/v1/me/entitlements",
        Some(&alice),
        None,
    )
    .await;
    let drafts = me["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entitlement_key"] == "drafts.max")
        .unwrap();
    assert_eq!(
        (drafts["usage"].as_i64(), drafts["grace_remaining"].as_i64()),
        (Some(5), Some(0))
    );
    let (_, stats) = call(&f.app, Method::GET, "/admin/stats", Some(ADMIN), None).await;
    // The entitlements listing made soft checks: counted as such, not as enforce decisions.
    let enforce_blocks: u64 = stats["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["mode"] == "enforce" && d["status"] == "block")
        .map(|d| d["count"].as_u64().unwrap())
        .sum();
    assert_eq!(enforce_blocks, 1);
    assert!(
        stats["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["status"] == "block" && d["mode"] == "enforce")
    );
}

async fn a_user_cannot_touch_another_users_draft_or_invite(backend: Backend) {
    let f = fixture(backend);
    let (alice, bob) = seeded(&f).await;
    let (_, draft) = call(
        &f.app,
        Method::POST,
        "/v1/drafts",
        Some(&alice),
        Some(r#"{"title":"mine"}"#),
    )
    .await;
    let id = draft["draft"]["id"].as_i64().unwrap();
    let (status, body) = call(
        &f.app,
        Method::POST,
        &format!("/v1/drafts/{id}/segments"),
        Some(&bob),
        Some(r#"{"body":"x"}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = call(
        &f.app,
        Method::POST,
        &format!("/v1/drafts/{id}/invites"),
        Some(&bob),
        Some(r#"{"invitee":"bob"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, invite) = call(
        &f.app,
        Method::POST,
        &format!("/v1/drafts/{id}/invites"),
        Some(&alice),
        Some(r#"{"invitee":"bob"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let invite_id = invite["invite"]["id"].as_i64().unwrap();
    let (status, body) = call(
        &f.app,
        Method::POST,
        &format!("/v1/invites/{invite_id}/accept"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, body) = call(
        &f.app,
        Method::POST,
        &format!("/v1/invites/{invite_id}/accept"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"]["user_id"], "alice");
    let (status, _) = call(
        &f.app,
        Method::POST,
        &format!("/v1/drafts/{id}/segments"),
        Some(&bob),
        Some(r#"{"body":"now I may"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

const ADMIN_ROUTES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/admin/plans", None),
    ("PUT", "/admin/plans/free", Some(r#"{"grace_count":1}"#)),
    ("GET", "/admin/plans/free", None),
    ("GET", "/admin/defaults", None),
    ("PUT", "/admin/defaults/drafts.max", Some(r#"{"limit":1}"#)),
    (
        "POST",
        "/admin/users",
        Some(r#"{"id":"carol","plan_id":"free"}"#),
    ),
    ("GET", "/admin/users/alice", None),
    (
        "PUT",
        "/admin/users/alice/plan",
        Some(r#"{"plan_id":"free"}"#),
    ),
    (
        "PUT",
        "/admin/users/alice/overrides/drafts.max",
        Some(r#"{"value":9}"#),
    ),
    ("DELETE", "/admin/users/alice/overrides/drafts.max", None),
    ("GET", "/admin/overrides", None),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/stats", None),
    (
        "POST",
        "/admin/nodes",
        Some(r#"{"id":"edge-9","max_outstanding":10}"#),
    ),
    ("GET", "/admin/nodes", None),
    ("DELETE", "/admin/nodes/edge-9", None),
];

async fn every_admin_route_needs_the_admin_token(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let audit_before = blocking(|| f.store.audit_log(1000).unwrap()).len();
    for (method, uri, body) in ADMIN_ROUTES {
        let method: Method = method.parse().unwrap();
        for token in [None, Some("wrong-token"), Some(alice.as_str())] {
            let (status, value) = call(&f.app, method.clone(), uri, token, *body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}: {value}"
            );
            assert_eq!(value["error"]["code"], "unauthorized");
        }
    }
    assert_eq!(
        blocking(|| f.store.audit_log(1000).unwrap()).len(),
        audit_before
    );
    for (method, uri, body) in ADMIN_ROUTES {
        let (status, value) = call(&f.app, method.parse().unwrap(), uri, Some(ADMIN), *body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {value}");
    }
}

/// RFC 9110: the scheme is case-insensitive; anything else is refused.
async fn the_bearer_scheme_is_read_in_any_case(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let get = |uri: &str, authorization: String| {
        let request = Request::builder()
            .uri(uri)
            .header("authorization", authorization)
            .body(Body::empty())
            .unwrap();
        let app = f.app.clone();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(
            get("/admin/plans", format!("{scheme} {ADMIN}")).await,
            StatusCode::OK,
            "{scheme}"
        );
        assert_eq!(
            get("/v1/me/entitlements", format!("{scheme} {alice}")).await,
            StatusCode::OK,
            "{scheme}"
        );
    }
    for authorization in [
        format!("Basic {ADMIN}"),
        format!("Bearer{ADMIN}"),
        "Bearer ".to_owned(),
        ADMIN.to_owned(),
    ] {
        assert_eq!(
            get("/admin/plans", authorization.clone()).await,
            StatusCode::UNAUTHORIZED,
            "{authorization}"
        );
    }
}

async fn user_routes_need_a_user_token(backend: Backend) {
    let f = fixture(backend);
    seeded(&f).await;
    for (method, uri) in [
        ("POST", "/v1/drafts"),
        ("GET", "/v1/me/entitlements"),
        ("POST", "/v1/me/check"),
        ("POST", "/v1/invites/1/accept"),
    ] {
        for token in [None, Some("qt_nope"), Some(ADMIN)] {
            let (status, _) = call(&f.app, method.parse().unwrap(), uri, token, Some("{}")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
        }
    }
}

async fn malformed_requests_get_the_right_4xx_and_change_nothing(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let huge = format!(r#"{{"title":"{}"}}"#, "x".repeat(100_000));
    let cases: Vec<(&str, String, Option<String>, &str, StatusCode)> = vec![
        (
            "POST",
            "/v1/drafts".into(),
            Some("{".into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts".into(),
            Some("[]".into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts".into(),
            Some(r#"{"title":5}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts".into(),
            Some(r#"{"title":""}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts".into(),
            Some(r#"{}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts".into(),
            Some(r#"{"title":"t","extra":1}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts".into(),
            Some(huge),
            "user",
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "POST",
            "/v1/drafts/abc/segments".into(),
            Some(r#"{"body":"x"}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts/999/segments".into(),
            Some(r#"{"body":"x"}"#.into()),
            "user",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/drafts/1/segments".into(),
            Some(r#"{"body":null}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/drafts/999/invites".into(),
            Some(r#"{"invitee":"bob"}"#.into()),
            "user",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/drafts/1/invites".into(),
            Some(r#"{"invitee":""}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/invites/999/accept".into(),
            None,
            "user",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/v1/invites/-1x/accept".into(),
            None,
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/me/check".into(),
            Some(r#"{"entitlement_key":"drafts.max","requested":0}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/me/check".into(),
            Some(r#"{"entitlement_key":""}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/v1/me/check".into(),
            Some(r#"{"requested":1}"#.into()),
            "user",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"limits":{"drafts.max":-2}}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"limits":{"drafts.max":"3"}}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"rollout_percent":101}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"grace_count":-1}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"enforcement_enabled":"yes"}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"limits":{"drafts.max":1.5}}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            Some(r#"{"limits":{"drafts.max":99999999999999999999}}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/defaults/drafts.max".into(),
            Some(r#"{"limit":-5}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/admin/users".into(),
            Some(r#"{"id":"dora","plan_id":"nope"}"#.into()),
            "admin",
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/admin/users".into(),
            Some(r#"{"id":"","plan_id":"free"}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/admin/users".into(),
            Some(r#"{"id":"alice","plan_id":"free"}"#.into()),
            "admin",
            StatusCode::CONFLICT,
        ),
        (
            "POST",
            "/admin/users".into(),
            Some(r#"{"plan_id":"free"}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/users/nobody/plan".into(),
            Some(r#"{"plan_id":"free"}"#.into()),
            "admin",
            StatusCode::NOT_FOUND,
        ),
        (
            "PUT",
            "/admin/users/alice/plan".into(),
            Some(r#"{"plan_id":"nope"}"#.into()),
            "admin",
            StatusCode::NOT_FOUND,
        ),
        (
            "PUT",
            "/admin/users/alice/overrides/drafts.max".into(),
            Some(r#"{"value":-2}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/users/alice/overrides/drafts.max".into(),
            Some(r#"{"value":1,"expires_at_ms":"soon"}"#.into()),
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            "/admin/users/nobody/overrides/drafts.max".into(),
            Some(r#"{"value":1}"#.into()),
            "admin",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/admin/plans/nope".into(),
            None,
            "admin",
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            "/admin/audit?limit=lots".into(),
            None,
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/admin/overrides?colour=red".into(),
            None,
            "admin",
            StatusCode::BAD_REQUEST,
        ),
        (
            "DELETE",
            "/v1/drafts".into(),
            None,
            "user",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "GET",
            "/v2/anything".into(),
            None,
            "user",
            StatusCode::NOT_FOUND,
        ),
    ];
    assert!(cases.len() >= 30);
    let audit_before = blocking(|| f.store.audit_log(1000).unwrap());
    for (method, uri, body, who, want) in &cases {
        let token = if *who == "admin" {
            ADMIN
        } else {
            alice.as_str()
        };
        let mut request = Request::builder()
            .method(*method)
            .uri(uri.as_str())
            .header("authorization", format!("Bearer {token}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.clone().map_or_else(Body::empty, Body::from))
            .unwrap();
        let response = f.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{method} {uri}: body is not JSON: {bytes:?}"));
        assert_eq!(status, *want, "{method} {uri} {body:?}: {value}");
        assert!(
            value["error"]["code"].is_string() && value["error"]["message"].is_string(),
            "{value}"
        );
    }
    let (status, value) = call(&f.app, Method::POST, "/v1/drafts", Some(&alice), None).await;
    assert_eq!(
        (status, value["error"]["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported_media_type")
        )
    );
    assert_eq!(blocking(|| f.store.audit_log(1000).unwrap()), audit_before);
    assert!(blocking(|| f.store.usage("alice").unwrap()).is_empty());
    assert_eq!(blocking(|| f.store.plan("free").unwrap()).grace_count, 2);
}

async fn openapi_lists_every_route_and_metrics_are_prometheus_text(backend: Backend) {
    let f = fixture(backend);
    let (status, doc) = call(&f.app, Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/drafts",
        "/v1/drafts/{draft_id}/segments",
        "/v1/invites/{invite_id}/accept",
        "/admin/plans/{plan_id}",
        "/admin/users",
        "/metrics",
        "/healthz",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert_eq!(quota_server::openapi().paths.paths.len(), paths.len());
    let (alice, _) = seeded(&f).await;
    let check = json!({ "entitlement_key": "drafts.max" }).to_string();
    let (status, _) = call(
        &f.app,
        Method::POST,
        "/v1/me/check",
        Some(&alice),
        Some(&check),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = call(&f.app, Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(text.contains("# TYPE quota_decisions_total counter"));
    assert!(text.contains("quota_decision_latency_seconds_bucket{le=\"+Inf\"}"));
    assert!(
        text.contains("quota_http_requests_total{route=\"POST /admin/users\",status=\"201\"} 2"),
        "{text}"
    );
    let counter = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
    };
    // Seeding wrote plans and two users, each committed. (The commit
    // counters are SQLite's, whose group commit they describe.)
    if let Backend::Sqlite = backend {
        let (transactions, commits) = (
            counter("quota_db_transactions_total"),
            counter("quota_db_commits_total"),
        );
        assert!(transactions >= 2, "{text}");
        assert!((1..=transactions).contains(&commits), "{text}");
    } else {
        assert!(!text.contains("quota_db_commits_total"), "{text}");
    }
}

/// Every answer carries a request id: the client's own when it sent one,
/// else a fresh one per request; errors included.
async fn every_answer_carries_a_request_id(backend: Backend) {
    let f = fixture(backend);
    let id_of = |response: &axum::response::Response| {
        response
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let get = |uri: &str, id: Option<&str>| {
        let mut request = Request::builder().uri(uri);
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.body(Body::empty()).unwrap()
    };
    let first = f.app.clone().oneshot(get("/healthz", None)).await.unwrap();
    let second = f.app.clone().oneshot(get("/nope", None)).await.unwrap();
    assert_eq!(second.status(), StatusCode::NOT_FOUND);
    let (first, second) = (id_of(&first).unwrap(), id_of(&second).unwrap());
    assert!(first.len() > 9 && first.contains('-'), "{first}");
    assert_ne!(first, second);
    let mine = f
        .app
        .clone()
        .oneshot(get("/admin/plans", Some("trace-me-42")))
        .await
        .unwrap();
    assert_eq!(mine.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(id_of(&mine).as_deref(), Some("trace-me-42"));
}

/// Every answer of every operation is described: each listed status and
/// the `default` (any other status) has a content type with a schema, and
/// every error status points at the one error shape.
async fn openapi_gives_every_response_a_schema(backend: Backend) {
    let f = fixture(backend);
    let (_, doc) = call(&f.app, Method::GET, "/openapi.json", None, None).await;
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("default"), "{method} {path}");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success answer"
            );
            for (status, response) in responses {
                let content = response["content"].as_object();
                let content = content.unwrap_or_else(|| panic!("{method} {path} {status}"));
                for (media, body) in content {
                    assert!(
                        body["schema"].is_object(),
                        "{method} {path} {status} {media}"
                    );
                    if !status.starts_with('2') {
                        assert_eq!(
                            body["schema"]["$ref"], "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
            operations += 1;
        }
    }
    assert!(operations >= 27, "{operations}");
    let error = &doc["components"]["schemas"]["ErrorDetail"];
    assert_eq!(error["required"], json!(["code", "message"]));
}

async fn post_with_key(
    app: &Router,
    uri: &str,
    token: &str,
    key: &str,
    body: &str,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn an_idempotent_retry_creates_once_and_uses_one_unit(backend: Backend) {
    let f = fixture(backend);
    let (alice, bob) = seeded(&f).await;
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(
            post_with_key(
                &f.app,
                "/v1/drafts",
                &alice,
                "create-1",
                r#"{"title":"once"}"#,
            )
            .await,
        );
    }
    assert!(replies.iter().all(|r| r == &replies[0]), "{replies:?}");
    assert_eq!(replies[0].0, StatusCode::CREATED);
    assert_eq!(
        blocking(|| f.store.usage("alice").unwrap()),
        [("drafts.created".to_owned(), 1)]
    );
    let (status, body) = post_with_key(
        &f.app,
        "/v1/drafts",
        &alice,
        "create-1",
        r#"{"title":"another"}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_mismatch")
        )
    );
    // Keys are per user: bob's "create-1" is his own.
    let (status, _) = post_with_key(
        &f.app,
        "/v1/drafts",
        &bob,
        "create-1",
        r#"{"title":"once"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        blocking(|| f.store.usage("alice").unwrap()),
        [("drafts.created".to_owned(), 1)]
    );
    let (status, body) = post_with_key(&f.app, "/v1/drafts", &alice, "", r#"{"title":"x"}"#).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

async fn concurrent_retries_with_one_key_apply_once(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (app, token) = (f.app.clone(), alice.clone());
            tokio::spawn(async move {
                post_with_key(&app, "/v1/drafts", &token, "race", r#"{"title":"r"}"#).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    assert!(
        replies
            .iter()
            .all(|r| r == &replies[0] && r.0 == StatusCode::CREATED),
        "{replies:?}"
    );
    assert_eq!(
        blocking(|| f.store.usage("alice").unwrap()),
        [("drafts.created".to_owned(), 1)]
    );
}

async fn concurrent_clients_are_never_admitted_beyond_limit_plus_grace(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (app, token) = (f.app.clone(), alice.clone());
            tokio::spawn(async move {
                call(
                    &app,
                    Method::POST,
                    "/v1/drafts",
                    Some(&token),
                    Some(r#"{"title":"r"}"#),
                )
                .await
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::FORBIDDEN => assert_eq!(body["error"]["code"], "quota_exceeded"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(
        blocking(|| f.store.usage("alice").unwrap()),
        [("drafts.created".to_owned(), 5)]
    );
}

async fn a_blocked_request_stores_nothing_so_its_retry_is_decided_again(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    admin(
        &f.app,
        Method::PUT,
        "/admin/plans/free",
        json!({"limits": {"drafts.max": 0}, "grace_count": 0}),
    )
    .await;
    let (status, _) = post_with_key(&f.app, "/v1/drafts", &alice, "k", r#"{"title":"t"}"#).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    admin(
        &f.app,
        Method::PUT,
        "/admin/plans/free",
        json!({"limits": {"drafts.max": 1}}),
    )
    .await;
    let (status, _) = post_with_key(&f.app, "/v1/drafts", &alice, "k", r#"{"title":"t"}"#).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// One rule for entitlement keys (ASCII letters, digits and `._-:/`, at
/// most 128 bytes) and one for ids (no control characters) at every edge:
/// 400 with the field named, and nothing changed.
async fn keys_and_ids_break_one_rule_at_every_edge(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let audit_before = blocking(|| f.store.audit_log(1000).unwrap()).len();
    let long_key = "k".repeat(60_000);
    let cases: Vec<(&str, String, &str, Option<String>, &str)> = vec![
        (
            "POST",
            "/v1/me/check".into(),
            "user",
            Some(json!({"entitlement_key": long_key}).to_string()),
            "`entitlement_key` must be at most 128 bytes",
        ),
        (
            "POST",
            "/v1/me/check".into(),
            "user",
            Some(r#"{"entitlement_key":"drafts max"}"#.into()),
            "found ' '",
        ),
        (
            "POST",
            "/v1/me/check".into(),
            "user",
            Some(json!({"entitlement_key": "k".repeat(129)}).to_string()),
            "at most 128 bytes",
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            "admin",
            Some(r#"{"limits":{"bad key":1}}"#.into()),
            "`entitlement_key`",
        ),
        (
            "PUT",
            "/admin/plans/free".into(),
            "admin",
            Some(json!({"remove_limits": [long_key]}).to_string()),
            "`entitlement_key`",
        ),
        (
            "PUT",
            "/admin/plans/fr%07ee".into(),
            "admin",
            Some("{}".into()),
            "`plan_id` must not hold control characters",
        ),
        (
            "GET",
            "/admin/plans/fr%07ee".into(),
            "admin",
            None,
            "`plan_id`",
        ),
        (
            "PUT",
            "/admin/defaults/bad%20key".into(),
            "admin",
            Some(r#"{"limit":1}"#.into()),
            "`entitlement_key`",
        ),
        (
            "POST",
            "/admin/users".into(),
            "admin",
            Some(json!({"id": "eve\u{7}", "plan_id": "free"}).to_string()),
            "`user_id` must not hold control characters",
        ),
        (
            "POST",
            "/admin/users".into(),
            "admin",
            Some(json!({"id": "eve", "plan_id": "fr\nee"}).to_string()),
            "`plan_id`",
        ),
        (
            "GET",
            "/admin/users/al%1Bice".into(),
            "admin",
            None,
            "`user_id`",
        ),
        (
            "PUT",
            "/admin/users/alice/plan".into(),
            "admin",
            Some(json!({"plan_id": "fr\u{0}ee"}).to_string()),
            "`plan_id`",
        ),
        (
            "PUT",
            "/admin/users/alice/overrides/bad%22key".into(),
            "admin",
            Some(r#"{"value":5}"#.into()),
            "`entitlement_key`",
        ),
        (
            "DELETE",
            "/admin/users/alice/overrides/bad%22key".into(),
            "admin",
            None,
            "`entitlement_key`",
        ),
        (
            "POST",
            "/v1/drafts/1/invites".into(),
            "user",
            Some(json!({"invitee": "b\u{7f}ob"}).to_string()),
            "`invitee`",
        ),
    ];
    for (method, uri, who, body, words) in cases {
        let token = if who == "admin" {
            ADMIN
        } else {
            alice.as_str()
        };
        let (status, value) = call(
            &f.app,
            method.parse().unwrap(),
            &uri,
            Some(token),
            body.as_deref(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {value}");
        let message = value["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{method} {uri}: {message}");
        assert!(
            message.len() < 300,
            "{method} {uri}: the message repeats the value"
        );
    }
    assert_eq!(
        blocking(|| f.store.audit_log(1000).unwrap()).len(),
        audit_before
    );
    assert!(
        blocking(|| f.store.plan("free").unwrap())
            .limits
            .iter()
            .all(|(k, _)| k != "bad key")
    );
    let (status, _) = call(
        &f.app,
        Method::POST,
        "/v1/me/check",
        Some(&alice),
        Some(&json!({"entitlement_key": "k".repeat(128)}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Keys a user sends to a check do not become metrics labels: only keys
/// the store configures for the user do, the rest are counted as `other`.
/// The audit grew /metrics from 4.8 KB to 18 MB with 300 checks.
async fn metrics_stay_bounded_whatever_keys_users_send(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f).await;
    let check = |key: String| {
        let app = f.app.clone();
        let alice = alice.clone();
        async move {
            let body = json!({ "entitlement_key": key }).to_string();
            call(
                &app,
                Method::POST,
                "/v1/me/check",
                Some(&alice),
                Some(&body),
            )
            .await
            .0
        }
    };
    assert_eq!(check("drafts.max".into()).await, StatusCode::OK);
    let (_, before) = call(&f.app, Method::GET, "/metrics", None, None).await;
    for n in 0..300 {
        let key = format!("made.up.{n}.{}", "x".repeat(100));
        assert_eq!(check(key).await, StatusCode::OK);
        assert_eq!(check("y".repeat(60_000)).await, StatusCode::BAD_REQUEST);
    }
    let (_, after) = call(&f.app, Method::GET, "/metrics", None, None).await;
    let (before, after) = (before.as_str().unwrap(), after.as_str().unwrap());
    assert!(!after.contains("made.up"), "a user's key became a label");
    assert!(
        after.contains(
            r#"quota_decisions_total{key="other",mode="check",plan="free",status="allow"} 300"#
        ),
        "{after}"
    );
    assert!(after.contains(r#"key="drafts.max""#));
    assert!(
        after.len() < before.len() + 1_000,
        "{} -> {} bytes",
        before.len(),
        after.len()
    );
}

on_both_backends!(
    the_grace_walk_over_http,
    a_user_cannot_touch_another_users_draft_or_invite,
    every_admin_route_needs_the_admin_token,
    the_bearer_scheme_is_read_in_any_case,
    user_routes_need_a_user_token,
    malformed_requests_get_the_right_4xx_and_change_nothing,
    openapi_lists_every_route_and_metrics_are_prometheus_text,
    every_answer_carries_a_request_id,
    openapi_gives_every_response_a_schema,
    an_idempotent_retry_creates_once_and_uses_one_unit,
    concurrent_retries_with_one_key_apply_once(flavor = "multi_thread", worker_threads = 4),
    concurrent_clients_are_never_admitted_beyond_limit_plus_grace(
        flavor = "multi_thread",
        worker_threads = 4
    ),
    a_blocked_request_stores_nothing_so_its_retry_is_decided_again,
    keys_and_ids_break_one_rule_at_every_edge,
    metrics_stay_bounded_whatever_keys_users_send,
);
