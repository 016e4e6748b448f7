//! Signed policies over HTTP (docs/signing.md): what a host with trusted
//! keys refuses at the `signature` stage, rising versions per name, the
//! way back by rollback, and a restart after a key left the trusted set.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quota_engine::Engine;
use quota_engine::lifecycle::Lifecycle;
use quota_engine::signatures::Signatures;
use quota_host::sha256_hex;
use quota_server::{AppState, app};
use quota_signing::{SecretKey, TrustedKeys, Version};
use quota_store::Location;
use serde_json::Value;

use crate::support::{ADMIN, Backend, admin_token, blocking, on_both_backends, open_store, send};

/// A host on `db` as `quota serve --trusted-keys` starts it (none: no
/// signatures required): the reference policy, then what the store records.
fn open(db: &Location, trusted: &[&SecretKey]) -> Router {
    let engine = Engine::new(open_store(db), quota_tests::reference().clone());
    let mut lifecycle = Lifecycle::new(quota_tests::runtime().clone(), None);
    if !trusted.is_empty() {
        let pem: String = trusted
            .iter()
            .map(|k| k.public_key().to_pem().unwrap())
            .collect();
        let keys = TrustedKeys::from_pem(&pem).unwrap();
        lifecycle = lifecycle.with_signatures(Signatures::required(
            keys,
            &sha256_hex(quota_tests::REFERENCE),
        ));
    }
    blocking(|| lifecycle.restore(&engine).unwrap());
    app(AppState::with_lifecycle(
        engine,
        admin_token(),
        lifecycle,
        None,
    ))
}

/// The percent-grace policy with a custom section naming `tag`: the same
/// policy as other bytes, so as many distinct components as a test needs.
fn variant(tag: &str) -> Vec<u8> {
    let mut payload = vec![u8::try_from("quota-test".len()).unwrap()];
    payload.extend_from_slice(b"quota-test");
    payload.extend_from_slice(tag.as_bytes());
    let mut bytes = quota_tests::PERCENT_GRACE.to_vec();
    bytes.push(0);
    bytes.push(u8::try_from(payload.len()).unwrap());
    bytes.extend_from_slice(&payload);
    bytes
}

fn sign(key: &SecretKey, bytes: &[u8], name: &str, version: &str) -> String {
    let version = Version::parse(version).unwrap();
    quota_signing::sign(key, bytes, name, &version, time::OffsetDateTime::now_utc()).unwrap()
}

async fn upload(
    app: &Router,
    uri: &str,
    bytes: &[u8],
    signature: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/wasm");
    if let Some(signature) = signature {
        request = request.header("quota-policy-signature", signature);
    }
    send(app, request.body(Body::from(bytes.to_vec())).unwrap()).await
}

async fn activate(app: &Router, bytes: &[u8], signature: Option<&str>) -> Value {
    let (status, body) = upload(app, "/admin/policy", bytes, signature).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Uploads that must be refused at the signature stage; returns the message.
async fn refused(app: &Router, uri: &str, bytes: &[u8], signature: Option<&str>) -> String {
    let before = status(app).await;
    let (status_code, body) = upload(app, uri, bytes, signature).await;
    assert_eq!(status_code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "policy_rejected", "{body}");
    assert_eq!(body["error"]["stage"], "signature", "{body}");
    let after = status(app).await;
    assert_eq!(after["active"], before["active"], "the active policy stays");
    assert_eq!(after["shadow"], before["shadow"], "the shadow stays");
    let error = &after["last_load_error"];
    assert_eq!(error["sha256"], sha256_hex(bytes));
    assert!(
        error["detail"].as_str().unwrap().starts_with("signature: "),
        "{error}"
    );
    body["error"]["message"].as_str().unwrap().to_owned()
}

async fn status(app: &Router) -> Value {
    let request = Request::get("/admin/policy")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

on_both_backends!(
    missing_tampered_untrusted_and_misdirected_signatures_are_refused,
    versions_rise_per_name_and_rollback_is_the_way_back,
    a_restart_with_a_key_removed_falls_back_to_the_built_in_policy,
    without_trusted_keys_signatures_are_kept_but_not_required,
);

async fn missing_tampered_untrusted_and_misdirected_signatures_are_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, stranger) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let app = open(&backend.fresh(dir.path()), &[&trusted]);
    let policy = variant("a");
    let good = sign(&trusted, &policy, "drafts", "1.0.0");

    let message = refused(&app, "/admin/policy", &policy, None).await;
    assert!(message.contains("not signed"), "{message}");
    let message = refused(&app, "/admin/policy/shadow", &policy, None).await;
    assert!(message.contains("not signed"), "{message}");

    // Tampered bytes: the signature names the original's sha256.
    let mut tampered = policy.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let message = refused(&app, "/admin/policy", &tampered, Some(&good)).await;
    assert!(message.contains(&sha256_hex(&policy)), "{message}");

    // A manifest signed for another component.
    let other = sign(&trusted, &variant("b"), "drafts", "1.0.0");
    let message = refused(&app, "/admin/policy", &policy, Some(&other)).await;
    assert!(message.contains("not for this one"), "{message}");

    // A changed manifest: the version raised without signing again.
    let (manifest, signature) = good.split_once('.').unwrap();
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(manifest).unwrap()).unwrap();
    let raised = text.replace("\"version\":\"1.0.0\"", "\"version\":\"9.0.0\"");
    assert_ne!(raised, text);
    let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(raised));
    let message = refused(&app, "/admin/policy", &policy, Some(&forged)).await;
    assert!(message.contains("does not verify"), "{message}");

    // A key this host does not trust.
    let untrusted = sign(&stranger, &policy, "drafts", "1.0.0");
    let message = refused(&app, "/admin/policy", &policy, Some(&untrusted)).await;
    assert!(message.contains("does not trust"), "{message}");

    // Garbage.
    refused(&app, "/admin/policy", &policy, Some("not-a-signature")).await;

    // The real thing passes, and the status names its signer.
    let body = activate(&app, &policy, Some(&good)).await;
    let active = &body["policy"]["active"];
    assert_eq!(active["sha256"], sha256_hex(&policy));
    assert_eq!(active["signed_by"]["kind"], "trusted_key");
    assert_eq!(active["signed_by"]["key_id"], trusted.public_key().key_id());
    assert_eq!(active["signed_by"]["name"], "drafts");
    assert_eq!(active["signed_by"]["version"], "1.0.0");
    let signatures = &body["policy"]["signatures"];
    assert_eq!(signatures["required"], true);
    assert_eq!(signatures["trusted_keys"][0], trusted.public_key().key_id());

    // The built-in reference policy is trusted as part of the binary.
    let body = activate(&app, quota_tests::REFERENCE, None).await;
    assert_eq!(body["policy"]["active"]["signed_by"]["kind"], "built_in");
    // A signed shadow is accepted; its version need not rise.
    let (code, body) = upload(&app, "/admin/policy/shadow", &policy, Some(&good)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["policy"]["shadow"]["signed_by"]["kind"], "trusted_key");
}

async fn versions_rise_per_name_and_rollback_is_the_way_back(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let app = open(&backend.fresh(dir.path()), &[&key]);
    let (one, two, other) = (variant("1"), variant("2"), variant("other"));
    let one_sig = sign(&key, &one, "drafts", "1.0.0");
    let two_sig = sign(&key, &two, "drafts", "2.0.0");
    activate(&app, &one, Some(&one_sig)).await;
    activate(&app, &two, Some(&two_sig)).await;

    // An older signed component cannot be uploaded again.
    let message = refused(&app, "/admin/policy", &one, Some(&one_sig)).await;
    assert!(message.contains("older than 2.0.0"), "{message}");
    // Nor another component under the highest version.
    let again = sign(&key, &other, "drafts", "2.0.0");
    let message = refused(&app, "/admin/policy", &other, Some(&again)).await;
    assert!(message.contains("already the component"), "{message}");
    // The same release again is fine.
    activate(&app, &two, Some(&two_sig)).await;

    // Rollback is the explicit way back, and its signature is checked.
    let request = Request::post("/admin/policy/rollback")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (code, body) = send(&app, request).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["policy"]["active"]["sha256"], sha256_hex(&one));
    // Rolling back does not lower the highest release.
    refused(&app, "/admin/policy", &one, Some(&one_sig)).await;
    // Versions rise per name: another name starts its own.
    let other_sig = sign(&key, &other, "exports", "0.1.0");
    activate(&app, &other, Some(&other_sig)).await;
}

async fn a_restart_with_a_key_removed_falls_back_to_the_built_in_policy(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh(dir.path());
    let (kept, removed) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let (first, second) = (variant("first"), variant("second"));
    let app = open(&db, &[&kept, &removed]);
    activate(&app, &first, Some(&sign(&kept, &first, "drafts", "1.0.0"))).await;
    activate(
        &app,
        &second,
        Some(&sign(&removed, &second, "drafts", "2.0.0")),
    )
    .await;
    let shadow = variant("shadow");
    let shadow_sig = sign(&removed, &shadow, "drafts", "3.0.0");
    let (code, body) = upload(&app, "/admin/policy/shadow", &shadow, Some(&shadow_sig)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    drop(app);

    // `removed` is no longer trusted: its policy is not restored, and the
    // host decides with the built-in reference policy and says why.
    let app = open(&db, &[&kept]);
    let state = status(&app).await;
    assert_eq!(
        state["active"]["sha256"],
        sha256_hex(quota_tests::REFERENCE),
        "{state}"
    );
    assert_eq!(state["active"]["signed_by"]["kind"], "built_in");
    let refused_policy = &state["signatures"]["refused"];
    assert_eq!(refused_policy["sha256"], sha256_hex(&second), "{state}");
    assert!(
        refused_policy["reason"]
            .as_str()
            .unwrap()
            .contains("does not trust"),
        "{state}"
    );
    assert_eq!(
        state["shadow"],
        Value::Null,
        "the shadow it signed is not restored either"
    );
    // The previous policy, signed by the kept key, is one rollback away.
    let request = Request::post("/admin/policy/rollback")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let (code, body) = send(&app, request).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["policy"]["active"]["sha256"], sha256_hex(&first));
    assert_eq!(
        body["policy"]["signatures"]["refused"],
        Value::Null,
        "another policy is in place"
    );
    drop(app);

    // With the key trusted again, the recorded policy is back.
    let app = open(&db, &[&kept, &removed]);
    let state = status(&app).await;
    assert_eq!(state["active"]["sha256"], sha256_hex(&first));
    assert_eq!(state["signatures"]["refused"], Value::Null);
}

async fn without_trusted_keys_signatures_are_kept_but_not_required(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh(dir.path());
    let key = SecretKey::generate().unwrap();
    let app = open(&db, &[]);
    let body = activate(&app, &variant("plain"), None).await;
    assert_eq!(body["policy"]["signatures"]["required"], false);
    assert_eq!(body["policy"]["active"]["signed_by"]["kind"], "unsigned");
    // A signature that comes along must at least be for these bytes.
    let policy = variant("signed");
    let misdirected = sign(&key, &variant("elsewhere"), "drafts", "1.0.0");
    refused(&app, "/admin/policy", &policy, Some(&misdirected)).await;
    let body = activate(&app, &policy, Some(&sign(&key, &policy, "drafts", "1.0.0"))).await;
    assert_eq!(body["policy"]["active"]["signed_by"]["kind"], "unverified");
    drop(app);
    // Kept, so that trusting the key later verifies it at start.
    let app = open(&db, &[&key]);
    let state = status(&app).await;
    assert_eq!(state["active"]["sha256"], sha256_hex(&policy));
    assert_eq!(state["active"]["signed_by"]["kind"], "trusted_key");
}
