//! Delivers threshold events to webhook endpoints (docs/events.md).
//!
//! Each event in the store's outbox has one delivery per endpoint that
//! receives its type, written in the transaction that wrote the event, so
//! an event committed is never lost: a process killed before sending it
//! sends it after restart. [`Deliverer::run_once`] claims the deliveries
//! due (a claim sets a lease column; no row lock is held while a request is
//! in flight, and on PostgreSQL hosts skip each other's claims), sends each
//! signed per Standard Webhooks ([`sign`]), and records the attempt: a 2xx
//! answer delivers it, anything else is retried on a growing schedule
//! ([`schedule`]) until it fails. Delivery is at least once; the
//! `webhook-id` is the event's id in every attempt.
//!
//! Requests have timeouts, follow no redirects, and reach only public
//! addresses unless private ones are allowed ([`destination`]). They run
//! on the service's runtime, apart from any decision.

pub mod destination;
pub mod schedule;
pub mod sign;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quota_store::{Attempt, Claimed, Next, StoreError, WebhookStore};

pub use destination::{BadUrl, check_url};
pub use sign::{BadSecret, Secret};

/// How deliveries are made.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Admit `http`, loopback and private addresses.
    pub allow_private: bool,
    /// The longest a request may take, connecting included.
    pub timeout: Duration,
    /// Deliveries claimed at a time.
    pub batch: usize,
    /// How long delivered events of a period are kept.
    pub retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allow_private: false,
            timeout: Duration::from_secs(10),
            batch: 32,
            retention: Duration::from_secs(35 * 86_400),
        }
    }
}

/// Why deliveries could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("the webhook client: {0}")]
    Client(String),
    /// A blocking store call did not finish.
    #[error("a store call was cancelled: {0}")]
    Join(String),
}

/// What holds the store: an `Arc` of it, or a service's shared state.
pub trait StoreHandle: Clone + Send + Sync + 'static {
    /// The store.
    type Store: WebhookStore;
    /// The store.
    fn store(&self) -> &Self::Store;
}

impl<S: WebhookStore + Send + Sync + 'static> StoreHandle for Arc<S> {
    type Store = S;
    fn store(&self) -> &S {
        self
    }
}

/// Sends what the outbox holds.
pub struct Deliverer<H> {
    store: H,
    client: reqwest::Client,
    options: Options,
}

impl<H> std::fmt::Debug for Deliverer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<H: StoreHandle> Deliverer<H> {
    /// A deliverer over `store`.
    pub fn new(store: H, options: Options) -> Result<Self, DeliveryError> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(destination::Resolver {
                allow_private: options.allow_private,
            }))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve and connect in our place: never.
            .no_proxy()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!("quota-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DeliveryError::Client(e.to_string()))?;
        Ok(Deliverer {
            store,
            client,
            options,
        })
    }

    /// Claims the deliveries due at `now_ms` and sends them at once, each
    /// on its own task (a slow endpoint holds up no other); returns how many
    /// were attempted.
    pub async fn run_once(&self, now_ms: i64) -> Result<usize, DeliveryError> {
        // A claim outlives the requests' timeout: a crashed sender's
        // deliveries are claimed again once it has passed.
        let lock_ms = i64::try_from(self.options.timeout.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_mul(2)
            .max(1_000);
        let batch = self.options.batch;
        let claimed = self
            .blocking(move |store| store.claim_deliveries(now_ms, lock_ms, batch))
            .await?;
        let n = claimed.len();
        let mut sends = tokio::task::JoinSet::new();
        for delivery in claimed {
            let client = self.client.clone();
            let allow_private = self.options.allow_private;
            sends.spawn(async move {
                let attempt = send(&client, allow_private, &delivery, now_ms).await;
                (delivery, attempt)
            });
        }
        while let Some(sent) = sends.join_next().await {
            let (delivery, attempt) = sent.map_err(|e| DeliveryError::Join(e.to_string()))?;
            let next = if attempt.error.is_none() {
                Next::Delivered
            } else {
                match schedule::retry_at(delivery.attempts + 1, attempt.at_ms, fastrand::f64()) {
                    Some(at) => Next::RetryAt(at),
                    None => Next::GiveUp,
                }
            };
            if let Some(error) = &attempt.error {
                tracing::warn!(event_id = %delivery.event_id, url = %delivery.url, error = %error, ?next, "webhook delivery failed");
            }
            let kept = self
                .blocking(move |store| {
                    store.finish_delivery(
                        &delivery.claim(),
                        &attempt,
                        next,
                        schedule::FAILING_AFTER_MS,
                    )
                })
                .await?;
            if !kept {
                tracing::warn!(
                    "a webhook delivery's claim had passed to another sender; its attempt was not recorded"
                );
            }
        }
        Ok(n)
    }

    /// Deletes delivered events of a period older than the retention.
    pub async fn prune(&self, now_ms: i64) -> Result<usize, DeliveryError> {
        let keep = i64::try_from(self.options.retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms.saturating_sub(keep);
        self.blocking(move |store| store.prune_events(before)).await
    }

    /// The options it was made with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&H::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, DeliveryError> {
        let handle = self.store.clone();
        tokio::task::spawn_blocking(move || f(handle.store()))
            .await
            .map_err(|e| DeliveryError::Join(e.to_string()))?
            .map_err(DeliveryError::from)
    }
}

/// One POST of `delivery`, signed, at `now_ms`.
async fn send(
    client: &reqwest::Client,
    allow_private: bool,
    delivery: &Claimed,
    now_ms: i64,
) -> Attempt {
    let started = Instant::now();
    let result = post(client, allow_private, delivery, now_ms).await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (status, error) = match result {
        Ok(status) if (200..300).contains(&status) => (Some(status), None),
        Ok(status) => (
            Some(status),
            Some(format!("the endpoint answered {status}")),
        ),
        Err(e) => (None, Some(e)),
    };
    Attempt {
        at_ms: now_ms,
        status,
        error,
        duration_ms,
    }
}

async fn post(
    client: &reqwest::Client,
    allow_private: bool,
    delivery: &Claimed,
    now_ms: i64,
) -> Result<i64, String> {
    // A URL stored before the rules tightened is checked again.
    let url = check_url(&delivery.url, allow_private).map_err(|e| e.to_string())?;
    let secret = Secret::parse(&delivery.secret).map_err(|e| e.to_string())?;
    let timestamp = now_ms.div_euclid(1_000);
    let signature = secret.sign(&delivery.event_id, timestamp, &delivery.payload);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(delivery.payload.clone())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    Ok(i64::from(response.status().as_u16()))
}

/// An HTTP client error with its causes: "error sending request" alone
/// says nothing.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
