//! The dashboard at `/ui` (docs/dashboard.md) as a function: sessions,
//! anti-forgery tokens, the headers every page carries, labelled fields,
//! escaping, and the per-minute decision counts of the overview. The
//! browser test (crates/cli/tests/dashboard.rs) drives the real binary.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use quota_engine::Engine;
use quota_engine::stats::DecisionStats;
use quota_server::{AdminToken, AppState, app};
use quota_store::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{
    ADMIN, Backend, admin, admin_token, blocking, call, on_both_backends, open_store,
};

/// A service over `store` with the per-minute counts kept, and `token`
/// as its admin token.
fn service(store: &quota_server::Store, token: AdminToken) -> Router {
    let stats = Arc::new(DecisionStats::new());
    let engine = Engine::new(store.clone(), quota_tests::reference().clone())
        .with_decision_sink(stats.clone());
    app(AppState::new(engine, quota_tests::runtime().clone(), token).with_decision_stats(stats))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    if form.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let body = form.map_or_else(Body::empty, |f| Body::from(f.to_owned()));
    answer(app, request.body(body).unwrap()).await
}

async fn answer(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &Router, uri: &str, cookie: Option<&str>) -> Answer {
    send(app, Method::GET, uri, cookie, None, &[]).await
}

async fn post(app: &Router, uri: &str, cookie: Option<&str>, form: &str) -> Answer {
    send(app, Method::POST, uri, cookie, Some(form), &[]).await
}

/// The policy upload form, posted as a browser does (multipart).
async fn upload(app: &Router, cookie: &str, csrf: &str, component: &[u8]) -> Answer {
    let boundary = "quota-test-boundary";
    let mut body = Vec::new();
    for (name, value) in [("csrf", csrf.as_bytes()), ("target", b"active".as_slice())] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"p.wasm\"\r\n\
             Content-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::builder()
        .method(Method::POST)
        .uri("/ui/policy")
        .header(header::COOKIE, cookie)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    answer(app, request).await
}

/// The first `name="csrf" value="…"` of a page.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[start..start + 64].to_owned()
}

/// The `name=value` of the `Set-Cookie` that sets `name`.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
}

/// Signs in with `token`: the session's cookie header and the page's
/// anti-forgery token.
async fn sign_in_with(app: &Router, token: &str) -> Answer {
    let form = get(app, "/ui/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    let login = set_cookie(&form.headers, "quota_login").unwrap();
    let login = login.split(';').next().unwrap().to_owned();
    let body = format!("csrf={}&token={token}", csrf_of(&form.body));
    post(app, "/ui/login", Some(&login), &body).await
}

async fn sign_in(app: &Router) -> (String, String) {
    let answer = sign_in_with(app, ADMIN).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.headers[header::LOCATION], "/ui");
    let cookie = set_cookie(&answer.headers, "quota_session").unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let home = get(app, "/ui", Some(&cookie)).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let csrf = csrf_of(&home.body);
    (cookie, csrf)
}

fn redirected_to_login(answer: &Answer) -> bool {
    answer.status == StatusCode::SEE_OTHER && answer.headers[header::LOCATION] == "/ui/login"
}

const PAGES: [&str; 9] = [
    "/ui",
    "/ui/plans",
    "/ui/plans/free",
    "/ui/users",
    "/ui/users/alice",
    "/ui/policy",
    "/ui/audit",
    "/ui/events",
    "/ui/events/evt_1",
];

async fn seed(app: &Router) -> String {
    admin(
        app,
        Method::PUT,
        "/admin/plans/free",
        json!({"limits": {"drafts.max": 3}, "enforcement_enabled": true, "grace_count": 1}),
    )
    .await;
    let user = admin(
        app,
        Method::POST,
        "/admin/users",
        json!({"id": "alice", "plan_id": "free"}),
    )
    .await;
    user["token"].as_str().unwrap().to_owned()
}

/// What a refused form must leave as it was.
async fn snapshot(app: &Router) -> Value {
    json!({
        "plan": admin(app, Method::GET, "/admin/plans/free", Value::Null).await,
        "user": admin(app, Method::GET, "/admin/users/alice", Value::Null).await,
        "overrides": admin(app, Method::GET, "/admin/overrides", Value::Null).await,
        "audit": admin(app, Method::GET, "/admin/audit", Value::Null).await,
    })
}

on_both_backends!(
    pages_and_forms_need_a_session,
    forms_without_the_anti_forgery_token_change_nothing,
    sessions_are_rotated_ended_and_never_open_the_api,
    another_host_honours_a_session_and_another_admin_token_ends_it,
    the_overview_counts_decisions_per_minute_in_the_store,
);

async fn pages_and_forms_need_a_session(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let app = service(&store, admin_token());
    seed(&app).await;
    let before = snapshot(&app).await;
    for page in PAGES {
        for cookie in [None, Some("quota_session=0123456789abcdef")] {
            let answer = get(&app, page, cookie).await;
            assert!(redirected_to_login(&answer), "{page}: {}", answer.status);
        }
    }
    // The search box's request (htmx) sends the whole page to sign-in,
    // rather than the sign-in page into the results.
    let answer = send(
        &app,
        Method::GET,
        "/ui/users?q=a",
        None,
        None,
        &[("hx-request", "true")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["hx-redirect"], "/ui/login");
    assert!(answer.body.is_empty());
    let answer = post(
        &app,
        "/ui/users/alice/overrides",
        None,
        "entitlement_key=drafts.max&value=9",
    )
    .await;
    assert!(redirected_to_login(&answer));
    let answer = post(&app, "/ui/plans/free", None, "enforcement=off").await;
    assert!(redirected_to_login(&answer));
    assert_eq!(snapshot(&app).await, before);
}

async fn forms_without_the_anti_forgery_token_change_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let app = service(&store, admin_token());
    seed(&app).await;
    let (cookie, csrf) = sign_in(&app).await;
    let before = snapshot(&app).await;
    let wrong = "f".repeat(64);
    let forms = [
        (
            "/ui/users/alice/overrides",
            "entitlement_key=drafts.max&value=9",
        ),
        (
            "/ui/users/alice/overrides/clear",
            "entitlement_key=drafts.max",
        ),
        ("/ui/users/alice/plan", "plan_id=pro&confirm=on"),
        ("/ui/plans/free", "enforcement=off&grace=5"),
        ("/ui/plans", "plan_id=new"),
        ("/ui/plans/free/what-if", "enforcement=off"),
        ("/ui/policy/rollback", ""),
        ("/ui/policy/shadow/clear", ""),
        ("/ui/events/evt_1/redeliver", ""),
        ("/ui/logout", ""),
    ];
    for (uri, fields) in forms {
        for token in ["", "csrf=&", &format!("csrf={wrong}&")] {
            let answer = post(&app, uri, Some(&cookie), &format!("{token}{fields}")).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{uri} {token}: {}",
                answer.body
            );
            assert!(answer.body.contains("anti-forgery"), "{}", answer.body);
        }
    }
    // The upload (multipart) with a wrong token: refused before the
    // component is looked at.
    for token in ["", &wrong] {
        let answer = upload(&app, &cookie, token, b"\0asm not a component").await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    }
    let policy = admin(&app, Method::GET, "/admin/policy", Value::Null).await;
    assert!(policy["last_load_error"].is_null(), "{policy}");
    assert_eq!(snapshot(&app).await, before);
    // The session still works (sign-out was refused too), and the same
    // form with the token is accepted.
    let answer = post(
        &app,
        "/ui/users/alice/overrides",
        Some(&cookie),
        &format!("csrf={csrf}&entitlement_key=drafts.max&value=9&expires_in=1d"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let overrides = admin(&app, Method::GET, "/admin/overrides", Value::Null).await;
    assert_eq!(overrides["overrides"][0]["value"], 9, "{overrides}");
    assert_eq!(overrides["overrides"][0]["created_by"], "admin (dashboard)");
}

async fn sessions_are_rotated_ended_and_never_open_the_api(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let app = service(&store, admin_token());
    seed(&app).await;

    // A wrong token: 401 and no session.
    let answer = sign_in_with(&app, "not-the-admin-token-0123456789abcdef").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&answer.headers, "quota_session").is_none());
    assert!(answer.body.contains("not the admin token"));
    // Without the sign-in form's cookie: refused as a forgery.
    let form = get(&app, "/ui/login", None).await;
    let body = format!("csrf={}&token={ADMIN}", csrf_of(&form.body));
    let answer = post(&app, "/ui/login", None, &body).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&answer.headers, "quota_session").is_none());

    // The cookie's attributes, and the headers of every page.
    let answer = sign_in_with(&app, ADMIN).await;
    let cookie = set_cookie(&answer.headers, "quota_session").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let first = cookie.split(';').next().unwrap().to_owned();
    for page in PAGES.iter().chain(&["/ui/login"]) {
        let answer = get(&app, page, Some(&first)).await;
        let csp = answer.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{page}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{page}: {csp}");
        assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    // Over TLS through a proxy, the cookie is Secure.
    let form = get(&app, "/ui/login", None).await;
    let login = set_cookie(&form.headers, "quota_login").unwrap();
    let login = login.split(';').next().unwrap().to_owned();
    let body = format!("csrf={}&token={ADMIN}", csrf_of(&form.body));
    let answer = send(
        &app,
        Method::POST,
        "/ui/login",
        Some(&login),
        Some(&body),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    let secure = set_cookie(&answer.headers, "quota_session").unwrap();
    assert!(secure.contains("Secure"), "{secure}");

    // The session never authorises the JSON API.
    let (status, _) = call(&app, Method::GET, "/admin/plans", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let answer = get(&app, "/admin/plans", Some(&first)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

    // Signing in again with the old cookie ends the old session.
    let form = get(&app, "/ui/login", Some(&first)).await;
    assert_eq!(form.status, StatusCode::SEE_OTHER, "signed in already");
    let form = get(&app, "/ui/login", None).await;
    let login = set_cookie(&form.headers, "quota_login").unwrap();
    let login = login.split(';').next().unwrap().to_owned();
    let body = format!("csrf={}&token={ADMIN}", csrf_of(&form.body));
    let answer = post(&app, "/ui/login", Some(&format!("{login}; {first}")), &body).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let second = set_cookie(&answer.headers, "quota_session").unwrap();
    let second = second.split(';').next().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(redirected_to_login(&get(&app, "/ui", Some(&first)).await));
    let home = get(&app, "/ui", Some(&second)).await;
    assert_eq!(home.status, StatusCode::OK);

    // Signing out ends it.
    let csrf = csrf_of(&home.body);
    let answer = post(&app, "/ui/logout", Some(&second), &format!("csrf={csrf}")).await;
    assert!(redirected_to_login(&answer));
    let cleared = set_cookie(&answer.headers, "quota_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(redirected_to_login(&get(&app, "/ui", Some(&second)).await));
}

async fn another_host_honours_a_session_and_another_admin_token_ends_it(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let app = service(&store, admin_token());
    let (cookie, _) = sign_in(&app).await;
    // Another host of the fleet (the same store and admin token) honours
    // the session.
    let other_host = service(&store, admin_token());
    assert_eq!(
        get(&other_host, "/ui", Some(&cookie)).await.status,
        StatusCode::OK
    );
    // The same store (another host, or a restart) with a new admin token.
    let other = AdminToken::new("another-admin-token-0123456789abcdef").unwrap();
    let changed = service(&store, other);
    assert!(redirected_to_login(
        &get(&changed, "/ui", Some(&cookie)).await
    ));
    // With the old token again it would still be honoured: what `quota
    // serve` deletes at start (delete_ui_sessions_except) is what ends it
    // for good.
    let kept = hex_sha256("another-admin-token-0123456789abcdef");
    let s = store.clone();
    assert_eq!(
        blocking(move || s.delete_ui_sessions_except(&kept).unwrap()),
        1
    );
    assert!(redirected_to_login(&get(&app, "/ui", Some(&cookie)).await));
}

fn hex_sha256(text: &str) -> String {
    quota_server::token_sha256(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn the_overview_counts_decisions_per_minute_in_the_store(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let app = service(&store, admin_token());
    let token = seed(&app).await;
    // Limit 3, grace 1, enforced: allow ×3, allow_grace, block.
    for _ in 0..5 {
        call(
            &app,
            Method::POST,
            "/v1/drafts",
            Some(&token),
            Some(&json!({"title": "t"}).to_string()),
        )
        .await;
    }
    let (cookie, _) = sign_in(&app).await;
    let page = get(&app, "/ui", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    for total in [
        "allow: <strong>3</strong>",
        "allow_grace: <strong>1</strong>",
        "warn_only: <strong>0</strong>",
        "block: <strong>1</strong>",
    ] {
        assert_eq!(
            page.body.matches(total).count(),
            2,
            "{total} (hour and day)"
        );
    }
    assert!(page.body.contains("<rect class=\"s-block\""));
    assert!(
        page.body
            .contains("<td><a href=\"/ui/plans/free\">free</a></td><td>drafts.max</td><td>1</td><td>0</td><td>1</td>"),
        "{}",
        page.body
    );
    // In the store, so another host (or this one after a restart) reads
    // the same counts.
    let s = store.clone();
    let rows = blocking(move || s.decision_minutes(0).unwrap());
    let total: i64 = rows.iter().map(|r| r.count).sum();
    assert_eq!(total, 5, "{rows:?}");
    let restarted = service(&store, admin_token());
    let (cookie, _) = sign_in(&restarted).await;
    let page = get(&restarted, "/ui", Some(&cookie)).await;
    assert_eq!(page.body.matches("allow: <strong>3</strong>").count(), 2);
}

#[tokio::test]
async fn sign_in_attempts_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&Backend::Sqlite.fresh(dir.path()));
    let app = service(&store, admin_token());
    for _ in 0..5 {
        let answer = sign_in_with(&app, "wrong-token-0123456789abcdef-0123456").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    // The right token, but too soon.
    let answer = sign_in_with(&app, ADMIN).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    assert!(set_cookie(&answer.headers, "quota_session").is_none());
}

/// The `id`s of every visible form field of a page, and whether each has
/// a `<label for>`.
fn unlabelled(html: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for tag in ["<input", "<select", "<textarea"] {
        for (at, _) in html.match_indices(tag) {
            let end = html[at..].find('>').unwrap() + at;
            let element = &html[at..=end];
            if element.contains("type=\"hidden\"") {
                continue;
            }
            let id = element
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            match id {
                Some(id)
                    if html.contains(&format!("<label for=\"{id}\""))
                        || html.contains(&format!("for=\"{id}\">")) => {}
                _ => missing.push(element.to_owned()),
            }
        }
    }
    missing
}

#[tokio::test]
async fn every_field_is_labelled_and_every_value_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&Backend::Sqlite.fresh(dir.path()));
    let app = service(&store, admin_token());
    seed(&app).await;
    let hostile = "<script>alert(1)</script>";
    admin(
        &app,
        Method::PUT,
        "/admin/users/alice/overrides/drafts.max",
        json!({"value": 5, "created_by": hostile}),
    )
    .await;
    let (cookie, csrf) = sign_in(&app).await;
    let report = post(
        &app,
        "/ui/plans/free/what-if",
        Some(&cookie),
        &format!("csrf={csrf}&enforcement=off&grace=4&since=1h"),
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert!(report.body.contains("id=\"transitions\""));
    // The form comes back as sent (so saving it saves what was
    // previewed), and nothing was saved.
    assert!(
        report.body.contains("<option value=\"off\" selected>"),
        "{}",
        report.body
    );
    assert!(report.body.contains("name=\"grace\" min=\"0\" value=\"4\""));
    let plan = admin(&app, Method::GET, "/admin/plans/free", Value::Null).await;
    assert_eq!(plan["enforcement_enabled"], true);
    assert_eq!(plan["grace_count"], 1);
    let login = get(&app, "/ui/login", None).await;
    let mut pages = vec![
        ("/ui/login".to_owned(), login.body),
        ("what-if".to_owned(), report.body),
    ];
    for page in PAGES {
        let answer = get(&app, page, Some(&cookie)).await;
        assert!(
            answer.status == StatusCode::OK || page == "/ui/events/evt_1",
            "{page}: {}",
            answer.status
        );
        pages.push((page.to_owned(), answer.body));
    }
    for (page, html) in &pages {
        assert_eq!(unlabelled(html), Vec::<String>::new(), "{page}");
        assert!(!html.contains(hostile), "{page} shows markup unescaped");
    }
    let user = &pages
        .iter()
        .find(|(p, _)| p == "/ui/users/alice")
        .unwrap()
        .1;
    assert!(
        user.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{user}"
    );
}

#[tokio::test]
async fn ids_with_url_characters_stay_one_path_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&Backend::Sqlite.fresh(dir.path()));
    let app = service(&store, admin_token());
    seed(&app).await;
    let odd = "a/b?c#d %e";
    let encoded = "a%2Fb%3Fc%23d%20%25e";
    admin(
        &app,
        Method::POST,
        "/admin/users",
        json!({"id": odd, "plan_id": "free"}),
    )
    .await;
    let (cookie, csrf) = sign_in(&app).await;
    let list = get(&app, "/ui/users?q=a", Some(&cookie)).await;
    assert!(
        list.body.contains(&format!("href=\"/ui/users/{encoded}\"")),
        "{}",
        list.body
    );
    let page = get(&app, &format!("/ui/users/{encoded}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("action=\"/ui/users/{encoded}/overrides\""))
    );
    let answer = post(
        &app,
        &format!("/ui/users/{encoded}/overrides"),
        Some(&cookie),
        &format!("csrf={csrf}&entitlement_key=drafts.max&value=4"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(
        answer.headers[header::LOCATION],
        format!("/ui/users/{encoded}?done=override").as_str()
    );
    let overrides = admin(&app, Method::GET, "/admin/overrides", Value::Null).await;
    assert_eq!(overrides["overrides"][0]["user_id"], odd, "{overrides}");
    // alice, the user whose id is the part before `?`, is untouched.
    assert_eq!(overrides["overrides"].as_array().unwrap().len(), 1);
}

/// The plan form's `version`.
fn version_of(html: &str) -> String {
    let marker = "name=\"version\" value=\"";
    let start = html.find(marker).expect("a version field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_plan_changed_since_its_form_was_shown_is_not_written_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&Backend::Sqlite.fresh(dir.path()));
    let app = service(&store, admin_token());
    seed(&app).await;
    let (cookie, _) = sign_in(&app).await;
    let form = get(&app, "/ui/plans/free", Some(&cookie)).await;
    let csrf = csrf_of(&form.body);
    let version = version_of(&form.body);
    // Someone else raises the limit meanwhile.
    admin(
        &app,
        Method::PUT,
        "/admin/plans/free",
        json!({"limits": {"drafts.max": 20}}),
    )
    .await;
    let stale = format!(
        "csrf={csrf}&version={version}&enforcement=off&grace=1&rollout=100&limit.drafts.max=3&period.drafts.max=none&thresholds.drafts.max="
    );
    let answer = post(&app, "/ui/plans/free", Some(&cookie), &stale).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    let plan = admin(&app, Method::GET, "/admin/plans/free", Value::Null).await;
    assert_eq!(plan["limits"]["drafts.max"], 20, "{plan}");
    assert_eq!(plan["enforcement_enabled"], true);
    // A fresh form saves, and sends only what changed: the limit stays 20.
    let form = get(&app, "/ui/plans/free", Some(&cookie)).await;
    let version = version_of(&form.body);
    let fresh = format!(
        "csrf={csrf}&version={version}&enforcement=off&grace=1&rollout=100&limit.drafts.max=20&period.drafts.max=none&thresholds.drafts.max="
    );
    let answer = post(&app, "/ui/plans/free", Some(&cookie), &fresh).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let plan = admin(&app, Method::GET, "/admin/plans/free", Value::Null).await;
    assert_eq!(plan["enforcement_enabled"], false, "{plan}");
    assert_eq!(plan["limits"]["drafts.max"], 20);
    let audit = admin(&app, Method::GET, "/admin/audit?limit=1", Value::Null).await;
    let after = &audit["entries"][0]["after"];
    assert_eq!(after["enforcement_enabled"], false, "{audit}");
}
