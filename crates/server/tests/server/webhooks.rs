//! Webhook endpoints over HTTP: what a URL may be, the secret shown once,
//! and events' deliveries. Sending is `quota-webhooks`' own tests.

use axum::http::{Method, StatusCode};
use quota_store::prelude::*;
use serde_json::{Value, json};

use crate::support::{
    ADMIN, Backend, admin, blocking, call, fixture, fixture_with, on_both_backends,
};

on_both_backends!(
    a_webhook_url_must_be_https_and_public_and_nothing_bad_is_stored,
    the_secret_is_shown_once_and_never_again,
    the_flag_admits_loopback_receivers,
    events_deliveries_and_redelivery_name_their_event,
);

async fn register(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    call(
        app,
        Method::POST,
        "/admin/webhooks",
        Some(ADMIN),
        Some(&body.to_string()),
    )
    .await
}

async fn a_webhook_url_must_be_https_and_public_and_nothing_bad_is_stored(backend: Backend) {
    let f = fixture(backend);
    let events = json!(["threshold.reached"]);
    for (body, why) in [
        (
            json!({"url": "http://hooks.example.com/q", "events": events}),
            "https",
        ),
        (
            json!({"url": "https://127.0.0.1:8443/q", "events": events}),
            "public",
        ),
        (
            json!({"url": "https://localhost/q", "events": events}),
            "public",
        ),
        (
            json!({"url": "https://10.0.0.7/q", "events": events}),
            "public",
        ),
        (
            json!({"url": "https://169.254.169.254/latest", "events": events}),
            "public",
        ),
        (
            json!({"url": "https://[::1]/q", "events": events}),
            "public",
        ),
        (
            json!({"url": "https://hooks.example.com/q", "events": events, "secret": "hunter2"}),
            "secret",
        ),
        (
            json!({"url": "https://hooks.example.com/q", "events": ["usage.everything"]}),
            "event type",
        ),
        (
            json!({"url": "https://hooks.example.com/q", "events": []}),
            "at least one",
        ),
    ] {
        let (status, answer) = register(&f.app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
    let (_, list) = call(&f.app, Method::GET, "/admin/webhooks", Some(ADMIN), None).await;
    assert_eq!(list["webhooks"], json!([]));
    assert!(blocking(|| f.store.audit_log(100).unwrap()).is_empty());
}

async fn the_secret_is_shown_once_and_never_again(backend: Backend) {
    let f = fixture(backend);
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, created) = register(
        &f.app,
        json!({"url": "https://hooks.example.com/q", "secret": secret, "events": ["threshold.reached", "quota.blocked"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secret"], secret);
    let id = created["webhook"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"), "{id}");
    // One is made when none is given.
    let made = admin(
        &f.app,
        Method::POST,
        "/admin/webhooks",
        json!({"url": "https://other.example.com/q", "events": ["quota.blocked"]}),
    )
    .await;
    assert!(
        made["secret"].as_str().unwrap().starts_with("whsec_"),
        "{made}"
    );
    let made_secret = made["secret"].as_str().unwrap().to_owned();

    let (_, list) = call(&f.app, Method::GET, "/admin/webhooks", Some(ADMIN), None).await;
    let text = list.to_string();
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 2, "{list}");
    assert!(
        !text.contains(secret) && !text.contains(&made_secret),
        "{list}"
    );
    assert_eq!(list["webhooks"][0]["failing"], false);
    let audit = blocking(|| f.store.audit_log(100).unwrap());
    assert_eq!(audit.len(), 2);
    for entry in &audit {
        let text = format!("{entry:?}");
        assert!(
            !text.contains(secret) && !text.contains(&made_secret),
            "{text}"
        );
    }

    let uri = format!("/admin/webhooks/{id}");
    let (status, gone) = call(&f.app, Method::DELETE, &uri, Some(ADMIN), None).await;
    assert_eq!((status, &gone["id"]), (StatusCode::OK, &json!(id)));
    assert!(!gone.to_string().contains(secret));
    let (status, _) = call(&f.app, Method::DELETE, &uri, Some(ADMIN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The admin token only.
    let (status, _) = call(&f.app, Method::GET, "/admin/webhooks", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn the_flag_admits_loopback_receivers(backend: Backend) {
    let f = fixture_with(backend, |state| state.with_webhooks_allow_private(true));
    let (status, created) = register(
        &f.app,
        json!({"url": "http://127.0.0.1:9/q", "events": ["threshold.reached"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["webhook"]["url"], "http://127.0.0.1:9/q");
    let (status, _) = register(
        &f.app,
        json!({"url": "ftp://127.0.0.1:9/q", "events": ["threshold.reached"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn events_deliveries_and_redelivery_name_their_event(backend: Backend) {
    let f = fixture(backend);
    for uri in ["/admin/events/msg_nope", "/admin/events/msg_nope/redeliver"] {
        let method = if uri.ends_with("redeliver") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, body) = call(&f.app, method, uri, Some(ADMIN), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    admin(
        &f.app,
        Method::PUT,
        "/admin/plans/pro",
        json!({"limits": {"api.max": 2}, "enforcement_enabled": true, "thresholds": {"api.max": [50]}}),
    )
    .await;
    let user = admin(
        &f.app,
        Method::POST,
        "/admin/users",
        json!({"id": "ann", "plan_id": "pro"}),
    )
    .await;
    let token = user["token"].as_str().unwrap();
    let hook = admin(
        &f.app,
        Method::POST,
        "/admin/webhooks",
        json!({"url": "https://hooks.example.com/q", "events": ["threshold.reached"]}),
    )
    .await;
    let body = json!({"requested": 1}).to_string();
    let (status, _) = call(
        &f.app,
        Method::POST,
        "/v1/usage/api.max",
        Some(token),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, events) = call(&f.app, Method::GET, "/admin/events", Some(ADMIN), None).await;
    let id = events["events"][0]["event_id"].as_str().unwrap().to_owned();
    let (status, deliveries) = call(
        &f.app,
        Method::GET,
        &format!("/admin/events/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deliveries["deliveries"][0]["webhook_id"],
        hook["webhook"]["id"]
    );
    assert_eq!(deliveries["deliveries"][0]["state"], "pending");
    let (status, queued) = call(
        &f.app,
        Method::POST,
        &format!("/admin/events/{id}/redeliver"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (status, &queued["queued"]),
        (StatusCode::ACCEPTED, &json!(1))
    );
}
