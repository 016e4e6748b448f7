//! The composed service, as `quota serve` runs it: `Service::open` over a
//! fresh folder, served on a loopback port, stopped, opened again.

use std::net::SocketAddr;
use std::time::Duration;

use quota_engine::log::Retention;
use quota_server::connections::ConnectionLimits;
use quota_server::{Service, ServiceConfig, ServiceError, StartPolicy};
use quota_store::prelude::*;
use quota_store::{DecisionFilter, Location};
use serde_json::{Value, json};

use crate::support::{ADMIN, Backend, Connection};

const JSON: &str = "application/json";

/// A service on a SQLite file in `dir`, its state beside it.
fn config(dir: &std::path::Path) -> ServiceConfig {
    ServiceConfig {
        db: quota_store::Location::Sqlite(dir.join("quota.db")),
        state_dir: None,
        admin_token: Some(ADMIN.to_owned()),
        policy: None,
        retention: Retention::default(),
        demo: true,
        limits: ConnectionLimits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(5),
            max_connections: 64,
        },
        policy_limits: quota_host::Limits::default(),
        postgres: quota_store::PgOptions::default(),
        lease_max_ms: quota_server::DEFAULT_LEASE_MAX_MS,
        webhooks: quota_webhooks::Options::default(),
        trusted_keys: None,
    }
}

/// Serves `service` on a loopback port while `work` runs; then stops it
/// and answers whether the decision log was flushed.
fn serving(service: Service, work: impl FnOnce(SocketAddr)) -> bool {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = runtime.spawn(service.serve(listener, async {
        let _ = stopped.await;
    }));
    work(addr);
    stop.send(()).unwrap();
    runtime.block_on(served).unwrap()
}

/// The same on the database at `db`, the state folder named.
fn config_on(db: &Location, dir: &std::path::Path) -> ServiceConfig {
    ServiceConfig {
        db: db.clone(),
        state_dir: Some(dir.to_owned()),
        ..config(dir)
    }
}

#[test]
fn the_composed_service_serves_stops_and_opens_again_where_it_was_on_sqlite() {
    serves_stops_and_opens_again_where_it_was(Backend::Sqlite);
}

#[test]
fn the_composed_service_serves_stops_and_opens_again_where_it_was_on_postgres() {
    serves_stops_and_opens_again_where_it_was(Backend::Postgres);
}

fn serves_stops_and_opens_again_where_it_was(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = backend.fresh(dir.path());
    let service = Service::open(config_on(&db, dir.path())).unwrap();
    assert_eq!(service.state_dir(), dir.path());
    let flushed = serving(service, |addr| {
        let mut connection = Connection::open(addr);
        let mut post = |path: &str, token: &str, body: Value| {
            connection.request("POST", path, token, JSON, body.to_string().as_bytes())
        };
        let (status, created) = post(
            "/admin/users",
            ADMIN,
            json!({"id": "alice", "plan_id": "free"}),
        );
        assert_eq!(status, 201, "{created}");
        let alice = created["token"].as_str().unwrap();
        for expected in [201, 201, 201, 201, 403] {
            let (status, body) = post("/v1/drafts", alice, json!({"title": "t"}));
            assert_eq!(status, expected, "{body}");
        }
    });
    assert!(flushed, "the decision log was not flushed at stop");

    // Opened again: the demo plans are not seeded twice, the usage and the
    // decision log are where they were.
    let service = Service::open(config_on(&db, dir.path())).unwrap();
    let store = service.state().engine().store().clone();
    assert_eq!(store.plans().unwrap().len(), 3);
    assert_eq!(
        store.usage("alice").unwrap(),
        [("drafts.created".to_owned(), 4)]
    );
    let log = service.state().decision_log().unwrap().store().clone();
    let logged = log
        .decisions(&DecisionFilter {
            limit: 100,
            ..DecisionFilter::default()
        })
        .unwrap();
    assert_eq!(logged.len(), 5);
    assert_eq!(logged[0].status, "block");
}

/// A database URL has no folder to keep the service's own files in.
#[test]
fn a_postgres_service_needs_a_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        state_dir: None,
        ..config_on(&Backend::Postgres.fresh(dir.path()), dir.path())
    };
    match Service::open(config) {
        Err(ServiceError::NoStateDir) => {}
        other => panic!("expected a missing state folder, got {other:?}"),
    }
}

#[test]
fn a_start_policy_that_fails_its_checks_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.policy = Some(StartPolicy {
        source: "not-a-policy.wasm".to_owned(),
        actor: "test".to_owned(),
        bytes: b"\0asm not really".to_vec(),
        signature: None,
    });
    match Service::open(config) {
        Err(ServiceError::Activate { policy, .. }) => assert_eq!(policy, "not-a-policy.wasm"),
        other => panic!("expected a refused policy, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_state_folder_others_can_write_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    match Service::open(config(dir.path())) {
        Err(ServiceError::State(_)) => {}
        other => panic!("expected an unsafe state folder, got {other:?}"),
    }
}
