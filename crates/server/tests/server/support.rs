//! Helpers every area of the service's tests uses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use quota_engine::Engine;
use quota_host::{Limits, Runtime};
use quota_server::{AppState, app};
use quota_store::{AnyStore, Location};
pub use quota_tests::Backend;
use serde_json::Value;
use tower::ServiceExt;

/// The store at `location`, opened (and migrated) off the async runtime.
pub fn open_store(location: &Location) -> quota_server::Store {
    blocking(|| AnyStore::open(location).unwrap())
}

/// Runs `f` on a thread of its own and waits for it. The service calls
/// its store on blocking threads; a test that reads the store itself from
/// async code does it through here, since the PostgreSQL driver runs a
/// runtime of its own, which tokio refuses inside the test's.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| scope.spawn(f).join().unwrap())
}

/// `on_both_backends!(test, other(flavor = "multi_thread"), …)`: each
/// `async fn test(backend: Backend)` of the calling module as two tests,
/// `sqlite::test` and `postgres::test`; parentheses after a name are the
/// arguments of its `#[tokio::test]`.
macro_rules! on_both_backends {
    ($($test:ident $(($($runtime:tt)*))?),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test $(($($runtime)*))?]
                async fn $test() {
                    super::$test($crate::support::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test $(($($runtime)*))?]
                async fn $test() {
                    super::$test($crate::support::Backend::Postgres).await
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

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

/// A keep-alive HTTP/1.1 connection, blocking.
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    /// A connection to `addr`; reads wait at most 20 s.
    pub fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Connection {
            reader: BufReader::new(stream),
        }
    }

    /// One request on the connection; the status and the JSON body (null
    /// when it is not JSON).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: quota\r\nauthorization: Bearer {token}\r\n\
             content-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {line:?}"));
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
        }
        let mut body = vec![0; length.expect("a content-length")];
        self.reader.read_exact(&mut body).unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

/// A service over a fresh database of `backend` with the reference policy:
/// its router and its store.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub app: Router,
    pub store: quota_server::Store,
}

pub fn fixture(backend: Backend) -> Fixture {
    fixture_with(backend, |state| state)
}

/// The same, its state changed by `f` (e.g. a setting).
pub fn fixture_with(backend: Backend, f: impl FnOnce(AppState) -> AppState) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&backend.fresh(dir.path()));
    let runtime = Runtime::new(Limits::default()).unwrap();
    let policy = runtime.load(quota_reference_policy::COMPONENT).unwrap();
    let state = f(AppState::new(
        Engine::new(store.clone(), policy),
        runtime,
        admin_token(),
    ));
    Fixture {
        _dir: dir,
        app: app(state),
        store,
    }
}

/// An admin call that must succeed; its answer.
pub async fn admin(app: &Router, method: Method, uri: &str, body: Value) -> Value {
    let (status, value) = call(app, method, uri, Some(ADMIN), Some(&body.to_string())).await;
    assert!(status.is_success(), "{uri}: {status} {value}");
    value
}
