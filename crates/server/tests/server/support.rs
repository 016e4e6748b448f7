//! Helpers every area of the service's tests uses.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The admin token of every test service.
pub const ADMIN: &str = "test-admin-token-0123456789abcdef";

/// [`ADMIN`] as the service keeps it.
pub fn admin_token() -> quota_server::AdminToken {
    quota_server::AdminToken::new(ADMIN).unwrap()
}

/// A request to `app` with an optional bearer token and JSON body (sent
/// as given, malformed or not); the status and the body as JSON.
pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    send(app, request.body(body).unwrap()).await
}

/// Sends `request` to `app`; the status and the body as JSON (a string
/// when it is not JSON).
pub async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}
