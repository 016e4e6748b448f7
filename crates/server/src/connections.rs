//! Serving connections: the accept loop, with bounds on what a slow or idle
//! client can hold.
//!
//! Each connection is in one of three phases:
//!
//! - **reading a request**: from its opening, or from the first byte after
//!   an idle spell, until the request's headers are complete. Closed after
//!   [`ConnectionLimits::header_read_timeout`] (a client that never
//!   finishes its headers holds nothing for long).
//! - **serving**: one or more requests are being handled. Never closed by a
//!   timer: a request whose handler runs (a guarded write whose transaction
//!   has begun, a policy upload being compiled) always gets its answer.
//!   The request's body must arrive within
//!   [`ConnectionLimits::body_read_timeout`] of its headers, or the handler
//!   sees a 408 `request_timeout`.
//! - **idle**: between requests with nothing received. Closed after
//!   [`ConnectionLimits::idle_timeout`]. A client that does not read its
//!   answer leaves the connection idle too.
//!
//! At most [`ConnectionLimits::max_connections`] are open at once (fewer
//! when the process may not open that many files): at the cap, the
//! connection that has waited longest without a request in flight is
//! closed to make room; if every connection is serving, the new one is
//! closed at once. `/metrics` counts connections open and why they closed.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::AppState;

/// How long clients may take, and how many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From a connection's opening, or the first byte of its next request,
    /// to the end of the request's headers.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing received.
    pub idle_timeout: Duration,
    /// From a request's headers to the end of its body.
    pub body_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    /// 10 s for headers, 60 s idle, 30 s for a body, 4096 connections.
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

/// Why the service closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Its headers did not arrive in time.
    HeaderTimeout,
    /// It was idle too long.
    IdleTimeout,
    /// It made room for a new one at the cap.
    Evicted,
    /// It arrived at the cap with every connection serving.
    Refused,
}

impl Closed {
    /// Every reason, in the order of [`Closed::index`].
    pub const ALL: [Closed; 4] = [
        Closed::HeaderTimeout,
        Closed::IdleTimeout,
        Closed::Evicted,
        Closed::Refused,
    ];

    /// `header_timeout`, `idle_timeout`, `evicted` or `refused`.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        }
    }
}

/// The address a request's connection came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

/// Serves the whole service ([`crate::app`]) on `listener` until `shutdown`
/// resolves; then stops accepting, lets requests in flight finish and
/// returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max_connections = max_connections(limits.max_connections);
    let app = crate::app(state.clone());
    let open = Arc::new(Open::default());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: the timeouts
                    // free some; do not spin meanwhile.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if !open.make_room(max_connections) {
            state.http().closed(Closed::Refused);
            drop(stream);
            continue;
        }
        let tracked = open.add();
        let connection = serve_connection((stream, peer), &app, &tracked, limits, &graceful);
        let (open, state) = (open.clone(), state.clone());
        tokio::spawn(async move {
            state.http().opened();
            tokio::select! {
                () = connection => {}
                reason = watch(&tracked, limits) => state.http().closed(reason),
                () = tracked.evict.notified() => {
                    if !open.stopping.load(Ordering::SeqCst) {
                        state.http().closed(Closed::Evicted);
                    }
                }
            }
            open.remove(tracked.id);
            state.http().finished();
        });
    }
    drop(listener);
    // Connections with a request in flight finish it (and then close);
    // those reading a request or idle close now.
    open.stop();
    graceful.shutdown().await;
}

/// One connection through hyper (HTTP/1.1), each request's body
/// bounded in time and counted in flight while its handler runs.
fn serve_connection(
    (stream, peer): (TcpStream, SocketAddr),
    app: &Router,
    tracked: &Arc<Tracked>,
    limits: ConnectionLimits,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let io = TokioIo::new(Watched {
        stream,
        tracked: tracked.clone(),
    });
    let (app, tracked) = (app.clone(), tracked.clone());
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::begin(&tracked);
        let deadline = Instant::now() + limits.body_read_timeout;
        let mut request = request.map(|body| {
            axum::body::Body::new(ReadBy {
                body,
                deadline,
                sleep: None,
            })
        });
        request.extensions_mut().insert(PeerAddr(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let connection = graceful.watch(connection);
    async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// The cap, lowered to what the process may open: the soft limit on open
/// files is raised to the hard one first, as Go's runtime does.
fn max_connections(wanted: usize) -> usize {
    const RESERVE: u64 = 128;
    match open_files_limit() {
        Some(files) if files < u64::try_from(wanted).unwrap_or(u64::MAX) + RESERVE => {
            let lowered = usize::try_from(files.saturating_sub(RESERVE).max(1)).unwrap_or(1);
            tracing::warn!(
                wanted,
                lowered,
                open_files = files,
                "the process may not open enough files for the connection cap; lowering it"
            );
            lowered
        }
        _ => wanted,
    }
}

#[cfg(unix)]
#[allow(
    unsafe_code,
    reason = "getrlimit(2)/setrlimit(2) with a struct owned by this function; std has no safe form"
)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid `rlimit` for the call's duration.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

/// What the accept loop and a connection's task know of a connection.
#[derive(Debug)]
struct Tracked {
    id: u64,
    /// Requests whose handler has not answered yet.
    in_flight: AtomicUsize,
    /// Reading a request (else idle) while nothing is in flight.
    reading: AtomicBool,
    /// When the current phase began, in ms since the accept loop started.
    since_ms: AtomicU64,
    epoch: Instant,
    /// Close to make room for a new connection (or because the service stops).
    evict: Notify,
}

impl Tracked {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts a phase (`reading` a request or idle) now.
    fn enter(&self, reading: bool) {
        self.since_ms.store(self.now_ms(), Ordering::SeqCst);
        self.reading.store(reading, Ordering::SeqCst);
    }

    /// Bytes arrived: an idle connection starts reading a request.
    fn received(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 && !self.reading.load(Ordering::SeqCst) {
            self.enter(true);
        }
    }
}

/// The connections open now.
#[derive(Debug)]
struct Open {
    epoch: Instant,
    next_id: AtomicU64,
    all: Mutex<HashMap<u64, Arc<Tracked>>>,
    /// The service is stopping.
    stopping: AtomicBool,
}

impl Default for Open {
    fn default() -> Self {
        Open {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            all: Mutex::default(),
            stopping: AtomicBool::new(false),
        }
    }
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        self.all.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new connection, reading its first request from now.
    fn add(&self) -> Arc<Tracked> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracked = Arc::new(Tracked {
            id,
            in_flight: AtomicUsize::new(0),
            reading: AtomicBool::new(true),
            since_ms: AtomicU64::new(0),
            epoch: self.epoch,
            evict: Notify::new(),
        });
        tracked.enter(true);
        self.lock().insert(id, tracked.clone());
        tracked
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes every connection with no request in flight.
    fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for tracked in self.lock().values() {
            if tracked.in_flight.load(Ordering::SeqCst) == 0 {
                tracked.evict.notify_one();
            }
        }
    }

    /// Whether a new connection may open: below the cap, or after closing
    /// the connection that has waited longest with nothing in flight.
    fn make_room(&self, max: usize) -> bool {
        let mut all = self.lock();
        if all.len() < max {
            return true;
        }
        let victim = all
            .values()
            .filter(|t| t.in_flight.load(Ordering::SeqCst) == 0)
            .min_by_key(|t| t.since_ms.load(Ordering::SeqCst))
            .map(|t| t.id);
        match victim.and_then(|id| all.remove(&id)) {
            Some(victim) => {
                victim.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Resolves when the connection has been reading a request or idle for
/// longer than allowed; never while a request is in flight. It only looks
/// at the connection when a deadline may have passed, so requests never
/// wake it: a phase change is two atomic stores.
async fn watch(tracked: &Tracked, limits: ConnectionLimits) -> Closed {
    let recheck = limits.header_read_timeout.min(limits.idle_timeout);
    loop {
        if tracked.in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(recheck).await;
            continue;
        }
        let (limit, reason) = if tracked.reading.load(Ordering::SeqCst) {
            (limits.header_read_timeout, Closed::HeaderTimeout)
        } else {
            (limits.idle_timeout, Closed::IdleTimeout)
        };
        let since = Duration::from_millis(tracked.since_ms.load(Ordering::SeqCst));
        let deadline = tracked.epoch + since + limit;
        if Instant::now() >= deadline {
            return reason;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A request in flight on a connection, from its headers to its handler's
/// answer; when the last one ends the connection is idle.
struct InFlight(Arc<Tracked>);

impl InFlight {
    fn begin(tracked: &Arc<Tracked>) -> Self {
        tracked.in_flight.fetch_add(1, Ordering::SeqCst);
        tracked.reading.store(false, Ordering::SeqCst);
        InFlight(tracked.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.enter(false);
        }
    }
}

/// The socket, telling its connection when bytes arrive.
struct Watched {
    stream: TcpStream,
    tracked: Arc<Tracked>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.tracked.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The request body did not arrive within the body read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// A request body that fails once its deadline passes (the timer starts
/// with the first read: a body nobody reads costs nothing).
struct ReadBy {
    body: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for ReadBy {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut))));
        }
        Pin::new(&mut self.body)
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
