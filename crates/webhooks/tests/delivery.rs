//! Deliveries against a receiver on loopback, with the clock given to
//! each round (no waiting for retries): signatures, the same id on every
//! attempt, the retry schedule, failing after a day, the private-address
//! rule, and claims that never overlap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use quota_store::prelude::*;
use quota_store::{AnyStore, Crossing, DeliveryState, EventKind, PlanChange};
use quota_tests::Backend;
use quota_webhooks::schedule::{DELAYS_MS, FAILING_AFTER_MS};
use quota_webhooks::{Deliverer, Options, Secret};

const T0: i64 = 1_800_000_000_000;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the receiver got: (webhook-id, webhook-timestamp, webhook-signature, body).
type Received = Arc<Mutex<Vec<(String, String, String, String)>>>;

/// A receiver on loopback answering the statuses queued, then 200.
async fn receiver(answers: Vec<u16>) -> (SocketAddr, Received) {
    let got: Received = Arc::default();
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            let answers = answers.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                seen.lock().unwrap().push((
                    header("webhook-id"),
                    header("webhook-timestamp"),
                    header("webhook-signature"),
                    body,
                ));
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, got)
}

/// A store on `backend` with plan `pro` (`api.max` 10, thresholds 80 and
/// 100), user ann, the endpoint `url`, and one `threshold.reached` event.
fn seeded(backend: Backend, dir: &std::path::Path, url: &str) -> Arc<AnyStore> {
    let store = AnyStore::open(&backend.fresh(dir)).unwrap();
    let change = PlanChange {
        limits: vec![("api.max".into(), 10)],
        thresholds: vec![("api.max".into(), vec![80, 100])],
        ..PlanChange::default()
    };
    store.set_plan("test", "pro", &change, T0).unwrap();
    store.create_user("test", "ann", "pro", T0).unwrap();
    let kinds = [EventKind::ThresholdReached, EventKind::QuotaBlocked];
    store
        .create_webhook("test", "wh_1", url, SECRET, &kinds, T0)
        .unwrap();
    let mut tx = store.begin_write().unwrap();
    let crossing = Crossing {
        user_id: "ann".into(),
        plan_id: "pro".into(),
        entitlement_key: "api.max".into(),
        period: None,
        limit: 10,
        before: 7,
        after: 8,
        blocked: false,
        at_ms: T0,
    };
    assert_eq!(tx.record_thresholds(&crossing).unwrap(), 1);
    tx.commit().unwrap();
    Arc::new(store)
}

/// Runs a blocking store call from a test's async thread.
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn deliverer(store: &Arc<AnyStore>, allow_private: bool) -> Deliverer<Arc<AnyStore>> {
    let options = Options {
        allow_private,
        timeout: std::time::Duration::from_secs(5),
        ..Options::default()
    };
    Deliverer::new(store.clone(), options).unwrap()
}

fn event_id(store: &AnyStore) -> String {
    store.events(Some("ann"), 1).unwrap()[0].event_id.clone()
}

async fn a_failing_receiver_gets_the_event_again_with_the_same_id(backend: Backend) {
    let (addr, got) = receiver(vec![500, 503]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sync(|| seeded(backend, dir.path(), &format!("http://{addr}/hook")));
    let sender = deliverer(&store, true);
    let id = sync(|| event_id(&store));

    assert_eq!(sender.run_once(T0).await.unwrap(), 1);
    // Not due again before its retry.
    assert_eq!(sender.run_once(T0 + 700).await.unwrap(), 0);
    assert_eq!(sender.run_once(T0 + 1_300).await.unwrap(), 1);
    assert_eq!(sender.run_once(T0 + 1_300 + 3_900).await.unwrap(), 0);
    assert_eq!(sender.run_once(T0 + 1_300 + 6_100).await.unwrap(), 1);
    // Delivered: nothing more to send.
    assert_eq!(sender.run_once(T0 + 1_000_000).await.unwrap(), 0);

    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let secret = Secret::parse(SECRET).unwrap();
    for (webhook_id, timestamp, signature, body) in &got {
        assert_eq!(webhook_id, &id);
        let ts: i64 = timestamp.parse().unwrap();
        assert_eq!(signature, &secret.sign(webhook_id, ts, body));
        let payload: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(payload["data"]["event_id"], id.as_str());
        assert_eq!(payload["data"]["threshold"], 80);
    }
    let deliveries = sync(|| store.deliveries(&id).unwrap());
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].state, DeliveryState::Delivered);
    let statuses: Vec<_> = deliveries[0].attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(503), Some(200)]);
    assert!(!sync(|| store.webhooks().unwrap())[0].failing);

    // An admin redelivery sends it once more, with the same id.
    assert_eq!(sync(|| store.redeliver(&id, T0 + 2_000_000).unwrap()), 1);
    assert_eq!(sender.run_once(T0 + 2_000_000).await.unwrap(), 1);
    assert_eq!(sync(|| store.deliveries(&id).unwrap())[0].attempts.len(), 4);
}

async fn retries_follow_the_schedule_and_an_endpoint_fails_after_a_day(backend: Backend) {
    let (addr, got) = receiver(vec![503; 20]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sync(|| seeded(backend, dir.path(), &format!("http://{addr}/hook")));
    let sender = deliverer(&store, true);
    let id = sync(|| event_id(&store));
    let mut now = T0;
    // Each attempt fails and is planned again, on the schedule.
    for (attempt, planned) in DELAYS_MS.iter().enumerate() {
        let delivery = attempt_at(&sender, &store, &id, now).await;
        assert_eq!(delivery.state, DeliveryState::Pending);
        let delay = delivery.next_attempt_at_ms - now;
        assert!(
            delay >= planned * 8 / 10 && delay <= planned * 12 / 10,
            "retry {attempt}: {delay} ms, planned {planned} ms"
        );
        // Not a millisecond early.
        let early = delivery.next_attempt_at_ms - 1;
        assert_eq!(sender.run_once(early).await.unwrap(), 0);
        now = delivery.next_attempt_at_ms;
    }
    // The last retry fails for good.
    let delivery = attempt_at(&sender, &store, &id, now).await;
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert_eq!(got.lock().unwrap().len(), DELAYS_MS.len() + 1);
    assert!(sync(|| store.webhooks().unwrap())[0].failing);
    assert_eq!(sender.run_once(now + FAILING_AFTER_MS).await.unwrap(), 0);
}

/// One round at `now` that attempts the event's delivery; the endpoint is
/// marked failing exactly when its failures have lasted a day.
async fn attempt_at(
    sender: &Deliverer<Arc<AnyStore>>,
    store: &Arc<AnyStore>,
    id: &str,
    now: i64,
) -> quota_store::Delivery {
    assert_eq!(sender.run_once(now).await.unwrap(), 1, "at {now}");
    let webhook = sync(|| store.webhooks().unwrap()).remove(0);
    assert_eq!(webhook.failing, now - T0 >= FAILING_AFTER_MS, "at {now}");
    sync(|| store.deliveries(id).unwrap()).remove(0)
}

async fn private_addresses_are_not_reached_without_the_flag(backend: Backend) {
    let (addr, got) = receiver(vec![]).await;
    for url in [
        format!("http://{addr}/hook"),
        format!("https://127.0.0.1:{}/hook", addr.port()),
        format!("https://localhost:{}/hook", addr.port()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = sync(|| seeded(backend, dir.path(), &url));
        let sender = deliverer(&store, false);
        assert_eq!(sender.run_once(T0).await.unwrap(), 1);
        let delivery = &sync(|| store.deliveries(&event_id(&store)).unwrap())[0];
        let error = delivery.attempts[0].error.clone().unwrap();
        assert!(
            error.contains("https") || error.contains("public"),
            "{url}: {error}"
        );
        assert_eq!(delivery.state, DeliveryState::Pending, "retried later");
    }
    assert!(got.lock().unwrap().is_empty(), "nothing reached loopback");
}

/// A sender slower than its claim finds the delivery taken over: its
/// attempt is not recorded, the new claim's is, and a delivered event does
/// not go back to pending.
async fn an_attempt_counts_only_while_its_claim_holds(backend: Backend) {
    use quota_store::{Attempt, Next};
    let dir = tempfile::tempdir().unwrap();
    let store = sync(|| seeded(backend, dir.path(), "https://hooks.example.com/q"));
    let id = sync(|| event_id(&store));
    let first = sync(|| store.claim_deliveries(T0, 1_000, 10).unwrap()).remove(0);
    assert!(sync(|| store.claim_deliveries(T0 + 999, 1_000, 10).unwrap()).is_empty());
    let second = sync(|| store.claim_deliveries(T0 + 1_000, 1_000, 10).unwrap()).remove(0);
    assert_eq!(first.delivery_id, second.delivery_id);
    let ok = |at_ms| Attempt {
        at_ms,
        status: Some(200),
        error: None,
        duration_ms: 5,
    };
    let failed = Attempt {
        at_ms: T0 + 1_500,
        status: None,
        error: Some("timed out".into()),
        duration_ms: 1_000,
    };
    assert!(sync(|| store
        .finish_delivery(&second.claim(), &ok(T0 + 1_200), Next::Delivered, 1)
        .unwrap()));
    // The first sender, late: nothing of it is kept.
    assert!(!sync(|| store
        .finish_delivery(&first.claim(), &failed, Next::RetryAt(T0 + 9_000), 1)
        .unwrap()));
    let delivery = sync(|| store.deliveries(&id).unwrap()).remove(0);
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(delivery.attempts.len(), 1);
    assert!(!sync(|| store.webhooks().unwrap())[0].failing);
}

/// Each `async fn test(backend)` as `sqlite::test` and `postgres::test`.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(quota_tests::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(quota_tests::Backend::Postgres).await;
                }
            )+
        }
    };
}

on_both_backends!(
    a_failing_receiver_gets_the_event_again_with_the_same_id,
    retries_follow_the_schedule_and_an_endpoint_fails_after_a_day,
    private_addresses_are_not_reached_without_the_flag,
    an_attempt_counts_only_while_its_claim_holds,
);

/// Two hosts of a fleet claim at once: no delivery is claimed twice.
#[test]
fn on_postgres_two_hosts_never_claim_one_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let location = Backend::Postgres.fresh(dir.path());
    let store = seeded_many(&location, 40);
    let other = Arc::new(AnyStore::open(&location).unwrap());
    let claims: Vec<Vec<i64>> = [store, other]
        .into_iter()
        .map(|s| {
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for _ in 0..20 {
                    let claimed = s.claim_deliveries(T0, 60_000, 3).unwrap();
                    mine.extend(claimed.iter().map(|c| c.delivery_id));
                }
                mine
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let mut all: Vec<i64> = claims.concat();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "a delivery was claimed twice");
    assert_eq!(total, 40);
    assert!(
        claims.iter().all(|c| !c.is_empty()),
        "both hosts claimed some"
    );
}

/// `n` users each with one event for the endpoint.
fn seeded_many(location: &quota_store::Location, n: usize) -> Arc<AnyStore> {
    let store = AnyStore::open(location).unwrap();
    let change = PlanChange {
        limits: vec![("api.max".into(), 10)],
        thresholds: vec![("api.max".into(), vec![50])],
        ..PlanChange::default()
    };
    store.set_plan("test", "pro", &change, T0).unwrap();
    store
        .create_webhook(
            "test",
            "wh_1",
            "http://127.0.0.1:9/",
            SECRET,
            &[EventKind::ThresholdReached],
            T0,
        )
        .unwrap();
    for i in 0..n {
        let user = format!("u{i}");
        store.create_user("test", &user, "pro", T0).unwrap();
        let mut tx = store.begin_write().unwrap();
        let crossing = Crossing {
            user_id: user,
            plan_id: "pro".into(),
            entitlement_key: "api.max".into(),
            period: None,
            limit: 10,
            before: 0,
            after: 5,
            blocked: false,
            at_ms: T0,
        };
        tx.record_thresholds(&crossing).unwrap();
        tx.commit().unwrap();
    }
    Arc::new(store)
}
