//! Metered consumes, node credentials and leases over HTTP.

use axum::Router;
use axum::http::{Method, StatusCode};
use quota_store::prelude::*;
use serde_json::{Value, json};

use crate::support::{ADMIN, Backend, Fixture, admin, blocking, call, fixture, on_both_backends};

on_both_backends!(
    a_metered_consume_decides_records_and_blocks,
    node_credentials_reach_only_their_routes,
    a_lease_reserves_what_the_policy_admits_and_a_settle_counts_once,
    an_expired_lease_counts_as_fully_spent_and_cannot_be_settled,
    admin_changes_revoke_leases_and_tighten_their_next_renewal,
    a_node_never_holds_more_than_its_max_outstanding,
    deleting_a_node_ends_its_leases_as_spent,
    racing_nodes_and_consumers_never_pass_limit_plus_grace(
        flavor = "multi_thread",
        worker_threads = 4
    ),
    usage_periods_are_set_on_the_plan_and_shown_with_each_answer,
    thresholds_are_set_on_the_plan_and_their_events_listed,
);

/// Plan `metered` (`api.max` = `limit`, grace 2, enforced), users alice
/// and bob; their tokens.
async fn seeded(f: &Fixture, limit: i64) -> (String, String) {
    admin(
        &f.app,
        Method::PUT,
        "/admin/plans/metered",
        json!({"limits": {"api.max": limit}, "enforcement_enabled": true, "grace_count": 2}),
    )
    .await;
    let mut tokens = Vec::new();
    for id in ["alice", "bob"] {
        let user = admin(
            &f.app,
            Method::POST,
            "/admin/users",
            json!({"id": id, "plan_id": "metered"}),
        )
        .await;
        tokens.push(user["token"].as_str().unwrap().to_owned());
    }
    (tokens[0].clone(), tokens[1].clone())
}

/// A node credential with `max_outstanding`; its token.
async fn node(app: &Router, id: &str, max_outstanding: i64) -> String {
    let created = admin(
        app,
        Method::POST,
        "/admin/nodes",
        json!({"id": id, "max_outstanding": max_outstanding}),
    )
    .await;
    assert_eq!(created["node"]["id"], id);
    created["token"].as_str().unwrap().to_owned()
}

async fn post(app: &Router, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
    call(app, Method::POST, uri, Some(token), Some(&body.to_string())).await
}

async fn grant(app: &Router, node: &str, user: &str, units: i64) -> Value {
    let (status, body) = post(
        app,
        "/v1/leases",
        node,
        json!({"user_id": user, "entitlement_key": "api.max", "units": units}),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    body
}

async fn settle(
    app: &Router,
    node: &str,
    lease: &Value,
    seq: i64,
    spent: i64,
    more: i64,
) -> (StatusCode, Value) {
    let uri = format!("/v1/leases/{}/settle", lease["id"]);
    post(
        app,
        &uri,
        node,
        json!({"seq": seq, "spent": spent, "more": more}),
    )
    .await
}

/// The user's entitlement `key` as `GET /v1/me/entitlements` shows it.
async fn entitlement(app: &Router, token: &str, key: &str) -> Value {
    let (_, mine) = call(app, Method::GET, "/v1/me/entitlements", Some(token), None).await;
    mine["entitlements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entitlement_key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {mine}"))
        .clone()
}

/// (usage, units held by open leases, grace used incl. held) of alice's
/// `api.max`, read in one transaction.
fn counted(store: &quota_server::Store, user: &str) -> (i64, i64, i64) {
    let user = user.to_owned();
    blocking(move || {
        let mut tx = store.begin_read().unwrap();
        let state = tx.quota_state(&user, "api.max", "api.used", 0).unwrap();
        (
            state.usage,
            state.reserved,
            state.grace_used + state.reserved_grace,
        )
    })
}

async fn a_metered_consume_decides_records_and_blocks(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f, 3).await;
    let consume = |requested: i64| json!({ "requested": requested });
    let (status, body) = post(&f.app, "/v1/usage/api.max", &alice, consume(2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outcome"]["decision"]["status"], "allow");
    assert_eq!(body["outcome"]["decision"]["usage_key"], "api.used");
    let (_, body) = post(&f.app, "/v1/usage/api.max", &alice, consume(2)).await;
    assert_eq!(body["outcome"]["decision"]["status"], "allow_grace");
    assert_eq!(body["outcome"]["decision"]["grace_to_consume"], 1);
    let (status, body) = post(&f.app, "/v1/usage/api.max", &alice, consume(2)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert_eq!(counted(&f.store, "alice"), (4, 0, 1));

    // A retry with one key consumes once; the key with another body is 422.
    let keyed = |body: Value| {
        let request = axum::http::Request::post("/v1/usage/api.max")
            .header("authorization", format!("Bearer {alice}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "k-1")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        crate::support::send(&f.app, request)
    };
    let first = keyed(consume(1)).await;
    assert_eq!(first.0, StatusCode::OK, "{first:?}");
    assert_eq!(keyed(consume(1)).await, first);
    assert_eq!(keyed(consume(2)).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(counted(&f.store, "alice"), (5, 0, 2));

    // Keys a domain action counts are not metered; bad input changes nothing.
    for owned in ["drafts.max", "drafts.created", "collaborators.accepted"] {
        let uri = format!("/v1/usage/{owned}");
        let (status, body) = post(&f.app, &uri, &alice, consume(1)).await;
        let code = &body["error"]["code"];
        assert_eq!(
            (status, code),
            (StatusCode::CONFLICT, &json!("owned_key")),
            "{owned}"
        );
    }
    for (uri, body, status) in [
        (
            "/v1/usage/api.max",
            json!({"requested": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/usage/api.max",
            json!({"requested": "1"}),
            StatusCode::BAD_REQUEST,
        ),
        ("/v1/usage/api.max", json!({}), StatusCode::BAD_REQUEST),
        (
            "/v1/usage/api.max",
            json!({"requested": 1, "extra": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/usage/bad%20key",
            json!({"requested": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1/usage/api.max",
            json!({"requested": 1, "user_id": "bob"}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (got, answer) = post(&f.app, uri, &alice, body.clone()).await;
        assert_eq!(got, status, "{uri} {body}: {answer}");
    }
    assert_eq!(counted(&f.store, "alice"), (5, 0, 2));
    assert!(blocking(|| f.store.usage("bob").unwrap()).is_empty());

    // The CLI's and a node's consume land on the same counter.
    let edge = node(&f.app, "edge-1", 100).await;
    let (status, body) = post(
        &f.app,
        "/v1/usage/api.max",
        &edge,
        json!({"requested": 1, "user_id": "bob"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "bob");
    let (status, _) = post(&f.app, "/v1/usage/api.max", &edge, consume(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &f.app,
        "/v1/usage/api.max",
        &edge,
        json!({"requested": 1, "user_id": "nobody"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(counted(&f.store, "bob"), (1, 0, 0));
}

async fn node_credentials_reach_only_their_routes(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f, 10).await;
    let edge = node(&f.app, "edge-1", 100).await;
    assert!(edge.starts_with("qt_") && edge.len() > 40);
    // A node reaches neither user nor admin routes.
    for (method, uri) in [
        ("GET", "/v1/me/entitlements"),
        ("POST", "/v1/drafts"),
        ("POST", "/v1/me/check"),
        ("GET", "/admin/plans"),
        ("POST", "/admin/nodes"),
        ("GET", "/admin/users/alice"),
    ] {
        let (status, _) = call(
            &f.app,
            method.parse().unwrap(),
            uri,
            Some(&edge),
            Some("{}"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    // A user, the admin and nobody cannot lease.
    let lease = json!({"user_id": "alice", "entitlement_key": "api.max", "units": 1});
    for token in [Some(alice.as_str()), Some(ADMIN), Some("qt_nope"), None] {
        let (status, body) = call(
            &f.app,
            Method::POST,
            "/v1/leases",
            token,
            Some(&lease.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        let (status, _) = call(
            &f.app,
            Method::POST,
            "/v1/leases/1/settle",
            token,
            Some(r#"{"seq":1,"spent":0}"#),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(counted(&f.store, "alice"), (0, 0, 0));
    // Node ids keep the id rule; a second node with one id is refused.
    let (status, _) = call(
        &f.app,
        Method::POST,
        "/admin/nodes",
        Some(ADMIN),
        Some(r#"{"id":"edge-1","max_outstanding":5}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    for body in [
        r#"{"id":"edge-2","max_outstanding":0}"#,
        r#"{"id":"","max_outstanding":5}"#,
        r#"{"id":"edge-2"}"#,
    ] {
        let (status, _) = call(
            &f.app,
            Method::POST,
            "/admin/nodes",
            Some(ADMIN),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // A deleted node's token stops working at once.
    let (status, _) = post(&f.app, "/v1/leases", &edge, lease.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(
        &f.app,
        Method::DELETE,
        "/admin/nodes/edge-1",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(&f.app, "/v1/leases", &edge, lease).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &f.app,
        Method::DELETE,
        "/admin/nodes/edge-1",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_lease_reserves_what_the_policy_admits_and_a_settle_counts_once(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f, 10).await;
    let (one, two) = (
        node(&f.app, "edge-1", 100).await,
        node(&f.app, "edge-2", 100).await,
    );

    let first = grant(&f.app, &one, "alice", 5).await;
    assert_eq!(
        (first["granted"].as_i64(), first["grace_granted"].as_i64()),
        (Some(5), Some(0))
    );
    assert_eq!(first["seq"], 0);
    assert_eq!(first["outcome"]["decision"]["status"], "allow");
    // The input to decide locally with: as of the grant, for the units granted.
    assert_eq!(first["input"]["usage"], 0);
    assert_eq!(first["input"]["requested"], 5);
    assert_eq!(first["input"]["plan"]["limit"], 10);
    assert!(first["ttl_ms"].as_i64().unwrap() >= 1000);
    // The second node gets what is left: 5 within the limit and 2 on grace.
    let second = grant(&f.app, &two, "alice", 50).await;
    assert_eq!(
        (second["granted"].as_i64(), second["grace_granted"].as_i64()),
        (Some(7), Some(2))
    );
    assert_eq!(
        second["input"]["usage"], 5,
        "the first lease counts as used"
    );
    assert_eq!(counted(&f.store, "alice"), (0, 12, 2));
    // Nothing is left for anyone.
    let none = grant(&f.app, &one, "alice", 1).await;
    assert_eq!(
        (none["granted"].as_i64(), none["refused"].as_str()),
        (Some(0), Some("blocked"))
    );
    assert_eq!(none["outcome"]["decision"]["status"], "block");
    let (status, _) = post(&f.app, "/v1/usage/api.max", &alice, json!({"requested": 1})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Reservations show to the user and the admin.
    let api = entitlement(&f.app, &alice, "api.max").await;
    assert_eq!(
        (api["usage"].as_i64(), api["reserved"].as_i64()),
        (Some(12), Some(12))
    );
    let (_, view) = call(&f.app, Method::GET, "/admin/users/alice", Some(ADMIN), None).await;
    assert_eq!(view["leases"].as_array().unwrap().len(), 2, "{view}");

    // Settle 3 of 5: 3 become usage, 2 return. The retry counts once.
    let (status, settled) = settle(&f.app, &one, &first, 1, 3, 0).await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(
        settled["settled"],
        json!({"spent": 3, "grace_spent": 0, "returned": 2})
    );
    assert_eq!(
        (settled["ended"].as_bool(), settled["granted"].as_i64()),
        (Some(true), Some(0))
    );
    assert_eq!(counted(&f.store, "alice"), (3, 7, 2));
    assert_eq!(
        settle(&f.app, &one, &first, 1, 3, 0).await,
        (StatusCode::OK, settled.clone())
    );
    assert_eq!(counted(&f.store, "alice"), (3, 7, 2));
    // The same seq with other values, a seq out of order, another node's
    // lease, a lease that ended: refused, nothing changes.
    let (status, body) = settle(&f.app, &one, &first, 1, 4, 0).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("settle_mismatch"))
    );
    let (status, body) = settle(&f.app, &two, &second, 2, 1, 0).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("lease_seq"))
    );
    let (status, _) = settle(&f.app, &one, &second, 1, 1, 0).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = settle(&f.app, &one, &first, 2, 0, 0).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("lease_ended"))
    );
    // More than the lease holds is refused.
    let (status, body) = settle(&f.app, &two, &second, 1, 8, 0).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("lease_overspent"))
    );
    for bad in [
        json!({"seq": 1, "spent": -1}),
        json!({"seq": 0, "spent": 1}),
        json!({"seq": 1, "spent": 1, "more": -1}),
        json!({"seq": 1}),
    ] {
        let (status, _) = post(
            &f.app,
            &format!("/v1/leases/{}/settle", second["id"]),
            &two,
            bad.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(counted(&f.store, "alice"), (3, 7, 2));

    // Spend 6 of 7 and renew: the units within the limit go first, so 1
    // unit of grace is spent; the renewal is decided on what is left.
    let (status, renewed) = settle(&f.app, &two, &second, 1, 6, 10).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(
        renewed["settled"],
        json!({"spent": 6, "grace_spent": 1, "returned": 1})
    );
    assert_eq!(
        (
            renewed["granted"].as_i64(),
            renewed["grace_granted"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(renewed["seq"], 1);
    assert_eq!(renewed["input"]["usage"], 9);
    assert_eq!(renewed["input"]["grace_used"], 1);
    assert_eq!(counted(&f.store, "alice"), (9, 2, 2));
    let (status, last) = settle(&f.app, &two, &second, 2, 2, 0).await;
    assert_eq!(status, StatusCode::OK, "{last}");
    assert_eq!(
        last["settled"],
        json!({"spent": 2, "grace_spent": 1, "returned": 0})
    );
    assert_eq!(counted(&f.store, "alice"), (11, 0, 2));
    let details = blocking(|| f.store.grace("alice").unwrap());
    let details: Vec<_> = details
        .iter()
        .map(|g| {
            (
                g.plan_id.as_str(),
                g.entitlement_key.as_str(),
                g.period_start_ms,
                g.used,
            )
        })
        .collect();
    assert_eq!(details, [("metered", "api.max", None, 2)]);

    // A retried grant (one Idempotency-Key) reserves once.
    let keyed = || {
        let request = axum::http::Request::post("/v1/leases")
            .header("authorization", format!("Bearer {one}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "g-1")
            .body(axum::body::Body::from(
                json!({"user_id": "bob", "entitlement_key": "api.max", "units": 4}).to_string(),
            ))
            .unwrap();
        crate::support::send(&f.app, request)
    };
    let first_try = keyed().await;
    assert_eq!(first_try.0, StatusCode::CREATED);
    assert_eq!(keyed().await, first_try);
    assert_eq!(counted(&f.store, "bob"), (0, 4, 0));
}

async fn an_expired_lease_counts_as_fully_spent_and_cannot_be_settled(backend: Backend) {
    let f = fixture(backend);
    seeded(&f, 10).await;
    let edge = node(&f.app, "edge-1", 100).await;
    let (status, lease) = post(
        &f.app,
        "/v1/leases",
        &edge,
        json!({"user_id": "alice", "entitlement_key": "api.max", "units": 4, "ttl_ms": 1000}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{lease}");
    assert_eq!(lease["ttl_ms"], 1000);
    for ttl in [999, 300_001] {
        let (status, _) = post(
            &f.app,
            "/v1/leases",
            &edge,
            json!({"user_id": "alice", "entitlement_key": "api.max", "units": 1, "ttl_ms": ttl}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{ttl}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    // Past its expiry the lease cannot be settled into more usage, nor
    // into less: it counted as fully spent.
    let (status, body) = settle(&f.app, &edge, &lease, 1, 1, 5).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("lease_ended")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(counted(&f.store, "alice"), (0, 4, 0));
    let ended = blocking(|| {
        f.store
            .expire_leases(quota_engine::system_now_ms())
            .unwrap()
    });
    assert_eq!(ended, 1);
    assert_eq!(counted(&f.store, "alice"), (4, 0, 0));
    assert_eq!(
        blocking(|| f
            .store
            .expire_leases(quota_engine::system_now_ms())
            .unwrap()),
        0
    );
    let (status, _) = settle(&f.app, &edge, &lease, 1, 0, 0).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(counted(&f.store, "alice"), (4, 0, 0));
    // Its units no longer count against the node.
    let (_, nodes) = call(&f.app, Method::GET, "/admin/nodes", Some(ADMIN), None).await;
    assert_eq!(nodes["nodes"][0]["outstanding"], 0, "{nodes}");
}

async fn admin_changes_revoke_leases_and_tighten_their_next_renewal(backend: Backend) {
    let f = fixture(backend);
    seeded(&f, 10).await;
    let edge = node(&f.app, "edge-1", 100).await;
    let lease = grant(&f.app, &edge, "alice", 8).await;
    let bobs = grant(&f.app, &edge, "bob", 8).await;
    // An override for alice lowers her limit to 3: her lease is revoked,
    // bob's is not.
    admin(
        &f.app,
        Method::PUT,
        "/admin/users/alice/overrides/api.max",
        json!({"value": 3}),
    )
    .await;
    let (_, view) = call(&f.app, Method::GET, "/admin/users/alice", Some(ADMIN), None).await;
    assert!(view["leases"][0]["revoked_at_ms"].is_i64(), "{view}");
    let (_, view) = call(&f.app, Method::GET, "/admin/users/bob", Some(ADMIN), None).await;
    assert!(view["leases"][0]["revoked_at_ms"].is_null(), "{view}");
    // Her node sees it at its next renewal, decided on the new limit:
    // 2 spent, so 1 unit within it and 2 of grace.
    let (status, renewed) = settle(&f.app, &edge, &lease, 1, 2, 8).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["revoked"], true);
    assert_eq!(
        (
            renewed["granted"].as_i64(),
            renewed["grace_granted"].as_i64()
        ),
        (Some(3), Some(2))
    );
    assert_eq!(renewed["input"]["override"]["value"], 3);
    assert_eq!(counted(&f.store, "alice"), (2, 3, 2));
    // A renewal after that is no longer revoked.
    let (_, again) = settle(&f.app, &edge, &lease, 2, 0, 8).await;
    assert_eq!(again["revoked"], false, "{again}");
    // A plan change revokes every lease of the plan's users.
    admin(
        &f.app,
        Method::PUT,
        "/admin/plans/metered",
        json!({"grace_count": 0}),
    )
    .await;
    let (_, tightened) = settle(&f.app, &edge, &bobs, 1, 0, 8).await;
    assert_eq!(tightened["revoked"], true, "{tightened}");
    assert_eq!(
        (
            tightened["granted"].as_i64(),
            tightened["grace_granted"].as_i64()
        ),
        (Some(8), Some(0))
    );
    let (_, gone) = settle(&f.app, &edge, &lease, 3, 0, 8).await;
    assert_eq!(gone["revoked"], true);
    assert_eq!(
        (
            gone["granted"].as_i64(),
            gone["refused"].as_str(),
            gone["ended"].as_bool()
        ),
        (Some(1), None, Some(false)),
        "{gone}"
    );
}

async fn a_node_never_holds_more_than_its_max_outstanding(backend: Backend) {
    let f = fixture(backend);
    seeded(&f, 1000).await;
    let edge = node(&f.app, "edge-1", 10).await;
    let a = grant(&f.app, &edge, "alice", 6).await;
    let b = grant(&f.app, &edge, "bob", 6).await;
    assert_eq!(
        (a["granted"].as_i64(), b["granted"].as_i64()),
        (Some(6), Some(4))
    );
    let full = grant(&f.app, &edge, "bob", 1).await;
    assert_eq!(
        (full["granted"].as_i64(), full["refused"].as_str()),
        (Some(0), Some("node_full"))
    );
    // Settling frees room; a renewal counts the lease's own units as freed.
    let (_, renewed) = settle(&f.app, &edge, &a, 1, 6, 10).await;
    assert_eq!(renewed["granted"], 6, "{renewed}");
    let (_, nodes) = call(&f.app, Method::GET, "/admin/nodes", Some(ADMIN), None).await;
    assert_eq!(nodes["nodes"][0]["outstanding"], 10, "{nodes}");
    assert_eq!(nodes["nodes"][0]["leases"].as_array().unwrap().len(), 2);
}

async fn deleting_a_node_ends_its_leases_as_spent(backend: Backend) {
    let f = fixture(backend);
    seeded(&f, 10).await;
    let (one, two) = (
        node(&f.app, "edge-1", 100).await,
        node(&f.app, "edge-2", 100).await,
    );
    let lease = grant(&f.app, &one, "alice", 4).await;
    grant(&f.app, &one, "bob", 2).await;
    grant(&f.app, &two, "alice", 1).await;
    let deleted = admin(&f.app, Method::DELETE, "/admin/nodes/edge-1", json!(null)).await;
    assert_eq!(deleted["leases_ended"], 2);
    assert_eq!(counted(&f.store, "alice"), (4, 1, 0));
    assert_eq!(counted(&f.store, "bob"), (2, 0, 0));
    let audit = blocking(|| f.store.audit_log(1).unwrap());
    assert_eq!(audit[0].action, "node.delete");
    // The lease of the deleted node is gone with its token.
    let (status, _) = settle(&f.app, &one, &lease, 1, 0, 0).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// Three nodes lease and settle one user's units at random while clients
/// consume directly; a watcher reads usage and reservations in one
/// transaction throughout. They never pass limit + grace, and at the end
/// usage is exactly what was spent and consumed.
async fn racing_nodes_and_consumers_never_pass_limit_plus_grace(backend: Backend) {
    const LIMIT: i64 = 60;
    let f = fixture(backend);
    let (alice, _) = seeded(&f, LIMIT).await;
    let mut nodes = Vec::new();
    for n in 0..3 {
        nodes.push(node(&f.app, &format!("edge-{n}"), 100).await);
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (store, done) = (f.store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut samples = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let (usage, reserved, _) = counted(&store, "alice");
                assert!(usage + reserved <= LIMIT + 2, "{usage} + {reserved}");
                samples += 1;
            }
            samples
        })
    };
    let mut tasks = Vec::new();
    for (n, token) in nodes.iter().enumerate() {
        let (app, token) = (f.app.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(n as u64);
            let mut spent_total = 0;
            for _ in 0..8 {
                let lease = grant(&app, &token, "alice", rng.i64(1..12)).await;
                let (mut held, mut seq) = (lease["granted"].as_i64().unwrap(), 0);
                if held == 0 {
                    continue;
                }
                for _ in 0..3 {
                    let spent = rng.i64(0..=held);
                    seq += 1;
                    let (status, next) =
                        settle(&app, &token, &lease, seq, spent, rng.i64(0..6)).await;
                    assert_eq!(status, StatusCode::OK, "{next}");
                    spent_total += spent;
                    held = next["granted"].as_i64().unwrap();
                    if held == 0 {
                        break;
                    }
                }
                if held > 0 {
                    seq += 1;
                    let (status, _) = settle(&app, &token, &lease, seq, held, 0).await;
                    assert_eq!(status, StatusCode::OK);
                    spent_total += held;
                }
            }
            spent_total
        }));
    }
    for _ in 0..2 {
        let (app, token) = (f.app.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut consumed = 0;
            for _ in 0..15 {
                let (status, _) =
                    post(&app, "/v1/usage/api.max", &token, json!({"requested": 1})).await;
                match status {
                    StatusCode::OK => consumed += 1,
                    StatusCode::FORBIDDEN => {}
                    other => panic!("{other}"),
                }
            }
            consumed
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(watcher.join().unwrap() > 0);
    let (usage, reserved, grace) = counted(&f.store, "alice");
    assert_eq!((usage, reserved), (admitted, 0));
    assert!(usage <= LIMIT + 2 && grace <= 2, "{usage} {grace}");
    assert!(
        usage > LIMIT / 2,
        "the race admitted too little to mean anything: {usage}"
    );
}

async fn usage_periods_are_set_on_the_plan_and_shown_with_each_answer(backend: Backend) {
    let f = fixture(backend);
    let (alice, _) = seeded(&f, 10).await;
    // An unknown period is refused, and changes nothing.
    let (status, body) = call(
        &f.app,
        Method::PUT,
        "/admin/plans/metered",
        Some(ADMIN),
        Some(&json!({"periods": {"api.max": "monthly"}, "grace_count": 5}).to_string()),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "{body}"
    );
    let (_, plan) = call(
        &f.app,
        Method::GET,
        "/admin/plans/metered",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (&plan["periods"], &plan["grace_count"]),
        (&json!({}), &json!(2))
    );

    let plan = admin(
        &f.app,
        Method::PUT,
        "/admin/plans/metered",
        json!({"periods": {"api.max": "day"}}),
    )
    .await;
    assert_eq!(plan["periods"], json!({"api.max": "day"}));
    let before = quota_engine::system_now_ms();
    let (status, body) = post(&f.app, "/v1/usage/api.max", &alice, json!({"requested": 3})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let period = &body["outcome"]["period"];
    assert_eq!(period["kind"], "day", "{body}");
    let (start, end) = (
        period["start_ms"].as_i64().unwrap(),
        period["end_ms"].as_i64().unwrap(),
    );
    assert!(start <= before && before < end, "{period}");
    // The first day started at the change; it ends at the next UTC midnight.
    assert_eq!(end % 86_400_000, 0, "{period}");
    assert!(end - start <= 86_400_000, "{period}");

    let api = entitlement(&f.app, &alice, "api.max").await;
    assert_eq!(
        (&api["usage"], &api["period"]),
        (&json!(3), period),
        "{api}"
    );

    // Back to no period: the lifetime count, and no period shown.
    let plan = admin(
        &f.app,
        Method::PUT,
        "/admin/plans/metered",
        json!({"periods": {"api.max": "none"}}),
    )
    .await;
    assert_eq!(plan["periods"], json!({}));
    let (_, body) = post(&f.app, "/v1/usage/api.max", &alice, json!({"requested": 1})).await;
    assert_eq!(body["outcome"]["decision"]["usage"], 3, "{body}");
    assert!(body["outcome"].get("period").is_none(), "{body}");
}

async fn thresholds_are_set_on_the_plan_and_their_events_listed(backend: Backend) {
    let f = fixture(backend);
    let (alice, bob) = seeded(&f, 10).await;
    for bad in [json!([0]), json!([80, 80]), json!([1001]), json!("80")] {
        let body = json!({"thresholds": {"api.max": bad}});
        let (status, answer) = call(
            &f.app,
            Method::PUT,
            "/admin/plans/metered",
            Some(ADMIN),
            Some(&body.to_string()),
        )
        .await;
        assert!(status.is_client_error(), "{bad}: {status} {answer}");
    }
    let plan = admin(
        &f.app,
        Method::PUT,
        "/admin/plans/metered",
        json!({"thresholds": {"api.max": [100, 50]}}),
    )
    .await;
    assert_eq!(plan["thresholds"], json!({"api.max": [50, 100]}));
    post(&f.app, "/v1/usage/api.max", &alice, json!({"requested": 4})).await;
    let (_, none) = call(&f.app, Method::GET, "/admin/events", Some(ADMIN), None).await;
    assert_eq!(none["events"], json!([]));
    post(&f.app, "/v1/usage/api.max", &alice, json!({"requested": 1})).await;
    post(&f.app, "/v1/usage/api.max", &bob, json!({"requested": 6})).await;
    let (_, all) = call(&f.app, Method::GET, "/admin/events", Some(ADMIN), None).await;
    assert_eq!(all["events"].as_array().unwrap().len(), 2, "{all}");
    let (status, mine) = call(
        &f.app,
        Method::GET,
        "/admin/events?user=alice",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = mine["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{mine}");
    assert_eq!(
        (
            &events[0]["type"],
            &events[0]["threshold"],
            &events[0]["payload"]["data"]["usage"]
        ),
        (&json!("threshold.reached"), &json!("50"), &json!(5))
    );
    // The admin token only.
    let (status, _) = call(&f.app, Method::GET, "/admin/events", Some(&alice), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
