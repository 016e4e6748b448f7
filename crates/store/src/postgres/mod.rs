//! The PostgreSQL backend: one database shared by every host of a fleet.
//!
//! A pool of tokio-postgres connections (r2d2) with a cache of prepared
//! statements per connection, the schema versioned by refinery's
//! migrations, and the guarded write transaction at READ COMMITTED with the
//! user's row locked, in three round trips ([`Conn`]: BEGIN with the lock
//! and the read, the action's write, the usage with COMMIT).
//!
//! Why the guarded transaction cannot over-admit: [`QuotaTx::quota_state`]
//! first locks the user's row (`SELECT … FOR NO KEY UPDATE`, a statement of
//! its own) and only then, in a second statement, reads the usage and grace
//! the decision rests on. Every write of a user's usage or grace happens in
//! a transaction holding that lock (a guarded transaction, or a plan change
//! of the user, whose `UPDATE users` takes the same lock), so a second host
//! deciding for the same user waits at the lock until the first commits or
//! rolls back. At READ COMMITTED each statement sees what was committed
//! before it started, so the read that follows the lock sees the first
//! host's usage. (One statement that locked and read together would read
//! the usage from before its wait: that is why they are two.) The two go
//! out in one round trip; the server still runs the read only once the
//! lock statement has finished, so pipelining them changes nothing of
//! this.
//!
//! Failures before COMMIT is sent (a lost connection, a serialization
//! failure or deadlock) leave nothing behind and are
//! [`StoreError::Unavailable`]: the engine and the admin writes here try
//! again, a bounded number of times. A write sent with the COMMIT that the
//! server refuses aborts the transaction, so the COMMIT keeps nothing: the
//! write's own error is the answer (the engine tries again when it is
//! `Unavailable`). A connection lost while COMMIT is on its way leaves the
//! outcome unknown: [`StoreError::OutcomeUnknown`], never retried here.

mod audit;
mod config;
mod conn;
mod dashboard;
mod decisions;
mod domain;
mod idempotency;
mod leases;
mod outbox;
mod overrides;
mod plans;
mod policy;
#[cfg(test)]
mod tests;
mod users;
mod webhooks;

pub use config::{PgUrl, TlsMode, is_postgres_url, redact};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres_native_tls::MakeTlsConnector;
use quota_policy_core::{Override, PlanInfo};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

pub(crate) use conn::Conn;
use conn::{ConnectFailed, Link};

use crate::error::StoreError;
use crate::events::{self, Crossing};
use crate::model::QuotaState;
use crate::period::{self, Period};
use crate::{QuotaStore, QuotaTx};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How often a transaction is tried in all when the database was
/// unavailable before its COMMIT was sent.
pub const ATTEMPTS: u32 = 3;

/// The channel policy events are announced on (`NOTIFY`), so the other
/// hosts of a fleet load a new policy at once.
pub const POLICY_CHANNEL: &str = "quota_policy";

/// Pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgOptions {
    /// Connections at most.
    pub max_connections: u32,
    /// How long a caller waits for a connection before
    /// [`StoreError::Unavailable`].
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            max_connections: 32,
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// Opens connections for the pool.
struct Manager {
    config: tokio_postgres::Config,
    tls: MakeTlsConnector,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ConnectFailed;

    fn connect(&self) -> Result<Conn, ConnectFailed> {
        Ok(Conn::new(Link::open(&self.config, self.tls.clone(), None)?))
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), ConnectFailed> {
        conn.batch("").map_err(|e| ConnectFailed(e.to_string()))
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

type Pooled = r2d2::PooledConnection<Manager>;

/// The session that listens for policy events, and what it heard.
struct Listener {
    conn: Conn,
    heard: mpsc::UnboundedReceiver<()>,
}

struct Inner {
    url: PgUrl,
    pool: r2d2::Pool<Manager>,
    last_connect_error: LastConnectError,
    /// The connection that listens for policy events, once asked to.
    listener: Mutex<Option<Listener>>,
}

/// A PostgreSQL database, shared by threads and by hosts. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

/// The pool's last failure to connect, causes included, so that a request
/// that finds no connection can say why; logged when it changes (r2d2's
/// own handler logs the bare kind at every attempt).
#[derive(Debug, Default, Clone)]
struct LastConnectError(Arc<Mutex<Option<String>>>);

impl LastConnectError {
    fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl r2d2::HandleError<ConnectFailed> for LastConnectError {
    fn handle_error(&self, error: ConnectFailed) {
        let text = error.0;
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "cannot connect to the database");
        }
        *last = Some(text);
    }
}

impl PgStore {
    /// Connects to `url` with default options and brings the schema up to
    /// date.
    pub fn open(url: &PgUrl) -> Result<Self, StoreError> {
        Self::open_with(url, PgOptions::default())
    }

    /// Connects to `url` with `options`. Migrations run under an advisory
    /// lock, so hosts starting together apply them once.
    pub fn open_with(url: &PgUrl, options: PgOptions) -> Result<Self, StoreError> {
        let manager = Manager {
            config: url.config().clone(),
            tls: url.connector()?,
        };
        let last_connect_error = LastConnectError::default();
        let pool = r2d2::Pool::builder()
            .max_size(options.max_connections)
            .min_idle(Some(0))
            .connection_timeout(options.connect_timeout)
            .test_on_check_out(false)
            .error_handler(Box::new(last_connect_error.clone()))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        let store = PgStore {
            inner: Arc::new(Inner {
                url: url.clone(),
                pool,
                last_connect_error,
                listener: Mutex::new(None),
            }),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database, its password hidden when shown.
    pub fn url(&self) -> &PgUrl {
        &self.inner.url
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.connection()?;
        conn.batch("SELECT pg_advisory_lock(7146053)")?;
        let report = conn.migrate(embedded::migrations::runner());
        let unlocked = conn.batch("SELECT pg_advisory_unlock(7146053)");
        report?;
        unlocked
    }

    /// A connection from the pool.
    fn connection(&self) -> Result<Pooled, StoreError> {
        self.inner.pool.get().map_err(|e| {
            let why = self
                .inner
                .last_connect_error
                .get()
                .unwrap_or_else(|| e.to_string());
            StoreError::Unavailable(format!("no connection to {}: {why}", self.inner.url))
        })
    }

    /// A connection from the pool with a transaction begun by `begin`
    /// (sent with its first statement).
    fn begin(&self, begin: &'static str) -> Result<Pooled, StoreError> {
        let mut conn = self.connection()?;
        conn.begin(begin);
        Ok(conn)
    }

    /// How many connections a transaction may find dead before it gives
    /// up: one more than the pool holds. Connections that died while idle
    /// (a restarted database) are found when a transaction uses them; it
    /// then runs again on another, so a caller gets a live one while there
    /// is any.
    fn spare_connections(&self) -> u32 {
        self.inner.pool.max_size() + 1
    }

    /// Runs `f` in a transaction begun by `begin` and commits, trying
    /// again (up to [`ATTEMPTS`] in all) when the database was
    /// unavailable before COMMIT was sent. When the connection was dead,
    /// the whole of `f` runs again on another (nothing of it was kept),
    /// without counting an attempt.
    fn transaction<T>(
        &self,
        begin: &'static str,
        mut f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut attempt = 1;
        let mut spares = self.spare_connections();
        loop {
            let mut conn = self.begin(begin)?;
            match f(&mut conn) {
                Ok(value) => {
                    conn.commit()?;
                    return Ok(value);
                }
                Err(e) => {
                    // A failed rollback leaves the transaction marked
                    // open: the pool then drops the connection.
                    let _ = conn.rollback();
                    if matches!(e, StoreError::Unavailable(_)) {
                        if conn.is_closed() && spares > 0 {
                            spares -= 1;
                            continue;
                        }
                        if attempt < ATTEMPTS {
                            attempt += 1;
                            continue;
                        }
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Runs `f` in a read-only transaction: one consistent snapshot.
    pub(crate) fn read<T>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", f)
    }

    /// Runs `f` in a write transaction at READ COMMITTED and commits.
    pub(crate) fn write<T>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction("BEGIN ISOLATION LEVEL READ COMMITTED", f)
    }

    /// Runs `f` on a connection inside one transaction, committed when it
    /// returns `Ok` (bulk work: the copy from SQLite).
    pub(crate) fn with_transaction<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.begin("BEGIN")?;
        match f(&mut conn) {
            Ok(value) => {
                conn.commit()?;
                Ok(value)
            }
            Err(e) => {
                let _ = conn.rollback();
                Err(e)
            }
        }
    }

    /// Runs `f` on a pooled connection outside any transaction (the
    /// tests' helpers).
    pub(crate) fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut *self.connection()?)
    }

    /// Waits up to `timeout` for a policy event announced on
    /// [`POLICY_CHANNEL`] by any host; true when one came. Without a
    /// listening connection (lost, or the database down) it waits the
    /// time out and says true, so the caller looks anyway: polling is
    /// the fallback.
    pub fn wait_for_policy_event(&self, timeout: Duration) -> bool {
        let mut listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if listener.as_ref().is_none_or(|l| l.conn.is_closed()) {
            *listener = self.listen().ok();
            if listener.is_none() {
                drop(listener);
                std::thread::sleep(timeout);
                return true;
            }
        }
        let Some(Listener { conn, heard }) = listener.as_mut() else {
            return true;
        };
        let next = conn.wait(async { tokio::time::timeout(timeout, heard.recv()).await });
        // Take whatever else is already queued.
        while heard.try_recv().is_ok() {}
        match next {
            Ok(Some(())) => true,
            Err(_) => false,
            Ok(None) => {
                // Lost: polling covers the gap until it is back.
                *listener = None;
                true
            }
        }
    }

    fn listen(&self) -> Result<Listener, StoreError> {
        let (tell, heard) = mpsc::unbounded_channel();
        let url = &self.inner.url;
        let link = Link::open(url.config(), url.connector()?, Some(tell))
            .map_err(|e| StoreError::Unavailable(format!("cannot listen on {url}: {e}")))?;
        let mut conn = Conn::new(link);
        conn.batch(&format!("LISTEN {POLICY_CHANNEL}"))?;
        Ok(Listener { conn, heard })
    }
}

/// A transaction on one pooled connection. A write transaction locks the
/// rows its decision reads (see the module's docs); a read transaction is
/// one read-only snapshot. Dropped without commit, it rolls back.
pub struct PgTx {
    store: PgStore,
    conn: Option<Pooled>,
    begin: &'static str,
    write: bool,
    /// Usage recorded and not sent yet.
    owed: Option<OwedUsage>,
    /// The database was unavailable during the transaction: nothing of it
    /// is kept, and a fresh transaction may succeed.
    unavailable: Option<StoreError>,
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx")
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

impl PgTx {
    fn open(store: &PgStore, begin: &'static str, write: bool) -> Result<PgTx, StoreError> {
        Ok(PgTx {
            store: store.clone(),
            conn: Some(store.begin(begin)?),
            begin,
            write,
            owed: None,
            unavailable: None,
        })
    }

    /// Runs `f` on the connection, after any usage owed.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // Written first: what follows may read it.
        self.write_owed()?;
        self.attempt(f)
    }

    /// Writes the usage recorded and not sent yet, if any.
    fn write_owed(&mut self) -> Result<(), StoreError> {
        match self.owed.take() {
            Some(owed) => self.attempt(|conn| owed.write(conn)),
            None => Ok(()),
        }
    }

    /// Runs `f` on the connection, noting an unavailable database. When
    /// `f` finds the connection dead (it died idle in the pool: a
    /// restarted database) and the transaction had sent nothing before,
    /// `f` runs again on another connection: nothing was lost with the
    /// dead one.
    fn attempt<T>(
        &mut self,
        mut f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut spares = self.store.spare_connections();
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.lost());
            };
            let sent_nothing = conn.sent_nothing();
            let result = f(conn);
            match &result {
                Err(StoreError::Unavailable(_))
                    if sent_nothing && conn.is_closed() && spares > 0 =>
                {
                    spares -= 1;
                    // Dropped first, so that the pool has room for the new
                    // one; with its transaction marked open, the pool
                    // discards it.
                    self.conn = None;
                    match self.store.begin(self.begin) {
                        Ok(conn) => self.conn = Some(conn),
                        Err(e) => {
                            self.unavailable = Some(e.clone());
                            return Err(e);
                        }
                    }
                    continue;
                }
                Err(e @ StoreError::Unavailable(_)) => self.unavailable = Some(e.clone()),
                _ => {}
            }
            return result;
        }
    }

    /// Why the transaction has no connection: it was lost and none took
    /// its place.
    fn lost(&self) -> StoreError {
        self.unavailable.clone().unwrap_or_else(|| {
            StoreError::Unavailable("the transaction lost its connection".to_owned())
        })
    }

    fn end(&mut self) -> Option<Pooled> {
        self.conn.take()
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // A failed rollback leaves `in_transaction` set: the pool then
            // drops the connection instead of reusing it.
            let _ = conn.rollback();
        }
    }
}

impl QuotaStore for PgStore {
    type Tx = PgTx;

    fn begin_write(&self) -> Result<PgTx, StoreError> {
        PgTx::open(self, "BEGIN ISOLATION LEVEL READ COMMITTED", true)
    }

    fn begin_read(&self) -> Result<PgTx, StoreError> {
        PgTx::open(
            self,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            false,
        )
    }
}

/// The user's row, locked until the transaction ends. `FOR NO KEY
/// UPDATE`: rows that merely reference the user (drafts, invites of
/// others) can still be inserted meanwhile.
pub(crate) const LOCK_USER_SQL: &str = "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE";

/// The plan's period for the key, the user's plan start and the
/// database's clock: what the period counted now depends on.
macro_rules! period_sql {
    () => {
        "SELECT pp.period, pp.since_ms, u.plan_started_at_ms,
                (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint
         FROM users u
         LEFT JOIN plan_periods pp ON pp.plan_id = u.plan_id AND pp.entitlement_key = $2
         WHERE u.id = $1"
    };
}
const PERIOD_SQL: &str = period_sql!();
/// The same, taking the lock a guarded transaction holds on its user.
const LOCK_PERIOD_SQL: &str = concat!(period_sql!(), " FOR NO KEY UPDATE OF u");

/// Everything the decision reads for the period starting at $4 (NULL: no
/// period), and the database's clock: one clock for every host
/// (`statement_timestamp()`: after any wait for the lock).
const QUOTA_STATE_SQL: &str = "
    SELECT u.plan_id, p.enforcement_enabled, p.grace_count, p.rollout_percent,
           (SELECT limit_value FROM plan_entitlements WHERE plan_id = u.plan_id AND entitlement_key = $2),
           o.value, o.expires_at_ms,
           (SELECT limit_value FROM entitlement_defaults WHERE entitlement_key = $2),
           CASE WHEN $4::bigint IS NULL
                THEN COALESCE((SELECT value FROM usage_counters WHERE user_id = u.id AND usage_key = $3), 0)
                ELSE COALESCE((SELECT value FROM period_usage
                               WHERE user_id = u.id AND usage_key = $3 AND period_start_ms = $4), 0)
           END,
           CASE WHEN $4::bigint IS NULL
                THEN COALESCE((SELECT used FROM grace_usage
                               WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = $2), 0)
                ELSE COALESCE((SELECT used FROM period_grace
                               WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = $2
                                 AND period_start_ms = $4), 0)
           END,
           (floor(extract(epoch FROM statement_timestamp()) * 1000))::bigint,
           COALESCE((SELECT SUM(reserved) FROM leases
                     WHERE user_id = u.id AND usage_key = $3 AND ended_at_ms IS NULL
                       AND period_start_ms IS NOT DISTINCT FROM $4), 0)::bigint,
           COALESCE((SELECT SUM(reserved_grace) FROM leases
                     WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = $2
                       AND ended_at_ms IS NULL AND period_start_ms IS NOT DISTINCT FROM $4), 0)::bigint,
           EXISTS (SELECT 1 FROM plan_thresholds WHERE plan_id = u.plan_id AND entitlement_key = $2)
    FROM users u
    JOIN plans p ON p.id = u.plan_id
    LEFT JOIN overrides o ON o.user_id = u.id AND o.entitlement_key = $2
    WHERE u.id = $1";

/// Adds $3 to the usage counter ($1, $2); the new value.
const ADD_USAGE_SQL: &str =
    "INSERT INTO usage_counters (user_id, usage_key, value) VALUES ($1, $2, $3)
     ON CONFLICT (user_id, usage_key) DO UPDATE SET value = usage_counters.value + excluded.value
     RETURNING value";

/// Adds $4 to the counter of ($1, $2) in the period starting at $3; the
/// new value.
const ADD_PERIOD_USAGE_SQL: &str =
    "INSERT INTO period_usage (user_id, usage_key, period_start_ms, value) VALUES ($1, $2, $3, $4)
     ON CONFLICT (user_id, usage_key, period_start_ms)
     DO UPDATE SET value = period_usage.value + excluded.value
     RETURNING value";

/// Adds `n` to a usage counter, and to its period's when the key has a
/// period starting at `period_start_ms`; returns the value the decision
/// reads (the period's, when there is one). The caller holds the user's
/// row lock.
pub(crate) fn add_usage(
    conn: &mut Conn,
    user_id: &str,
    usage_key: &str,
    period_start_ms: Option<i64>,
    n: i64,
) -> Result<i64, StoreError> {
    let lifetime = conn.query_one(ADD_USAGE_SQL, &[&user_id, &usage_key, &n])?;
    let Some(start) = period_start_ms else {
        return Ok(lifetime.get(0));
    };
    let row = conn.query_one(ADD_PERIOD_USAGE_SQL, &[&user_id, &usage_key, &start, &n])?;
    Ok(row.get(0))
}

/// Usage a transaction has yet to write ([`QuotaTx::record_usage`]): it
/// goes out with the COMMIT, or before the transaction's next statement.
#[derive(Debug)]
struct OwedUsage {
    user_id: String,
    usage_key: String,
    period_start_ms: Option<i64>,
    n: i64,
}

impl OwedUsage {
    fn write(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let (user, key, start, n) = (&self.user_id, &self.usage_key, self.period_start_ms, self.n);
        add_usage(conn, user, key, start, n).map(|_| ())
    }

    fn commit(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let (user, key, n) = (&self.user_id, &self.usage_key, self.n);
        match &self.period_start_ms {
            None => conn.commit_after(&[(ADD_USAGE_SQL, &[user, key, &n])]),
            Some(start) => conn.commit_after(&[
                (ADD_USAGE_SQL, &[user, key, &n]),
                (ADD_PERIOD_USAGE_SQL, &[user, key, start, &n]),
            ]),
        }
    }
}

/// Writes the events `crossing` gives to the outbox (one per threshold
/// per period: a repeat is skipped); returns how many were new. The
/// caller holds the user's row lock.
pub(crate) fn record_thresholds(conn: &mut Conn, crossing: &Crossing) -> Result<usize, StoreError> {
    let percents: Vec<i64> = conn
        .query(
            "SELECT percent FROM plan_thresholds WHERE plan_id = $1 AND entitlement_key = $2 ORDER BY percent",
            &[&crossing.plan_id, &crossing.entitlement_key],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut written = 0;
    for e in events::events(crossing, &percents)? {
        let new = conn.execute(
            "INSERT INTO events (event_id, type, user_id, entitlement_key, period_start_ms, threshold,
                                 payload, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT DO NOTHING",
            &[
                &e.event_id,
                &e.kind.as_str(),
                &e.user_id,
                &e.entitlement_key,
                &e.period_start_ms,
                &e.threshold,
                &e.payload,
                &e.created_at_ms,
            ],
        )?;
        if new == 1 {
            webhooks::fan_out(conn, &e.event_id, e.kind, e.created_at_ms)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Adds `n` to the grace used for (user, plan, entitlement), in the
/// period starting at `period_start_ms` when the key has one; returns the
/// new value. The caller holds the user's row lock.
pub(crate) fn add_grace(
    conn: &mut Conn,
    user_id: &str,
    plan_id: &str,
    entitlement_key: &str,
    period_start_ms: Option<i64>,
    n: i64,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let row = match period_start_ms {
        None => conn.query_one(
            "INSERT INTO grace_usage (user_id, plan_id, entitlement_key, used, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, plan_id, entitlement_key)
             DO UPDATE SET used = grace_usage.used + excluded.used, updated_at_ms = excluded.updated_at_ms
             RETURNING used",
            &[&user_id, &plan_id, &entitlement_key, &n, &now_ms],
        )?,
        Some(start) => conn.query_one(
            "INSERT INTO period_grace (user_id, plan_id, entitlement_key, period_start_ms, used, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, plan_id, entitlement_key, period_start_ms)
             DO UPDATE SET used = period_grace.used + excluded.used, updated_at_ms = excluded.updated_at_ms
             RETURNING used",
            &[&user_id, &plan_id, &entitlement_key, &start, &n, &now_ms],
        )?,
    };
    Ok(row.get(0))
}

impl QuotaTx for PgTx {
    fn quota_state(
        &mut self,
        user_id: &str,
        entitlement_key: &str,
        usage_key: &str,
        _now_ms: i64,
    ) -> Result<QuotaState, StoreError> {
        let write = self.write;
        let read = self.run(|conn| {
            let sql = if write { LOCK_PERIOD_SQL } else { PERIOD_SQL };
            // The lock and the read go out in one round trip, the read
            // guessing that the key counts no period (most keys do not).
            let no_period: Option<i64> = None;
            let (head, guessed) = conn.query_opt_pair(
                (sql, &[&user_id, &entitlement_key]),
                (
                    QUOTA_STATE_SQL,
                    &[&user_id, &entitlement_key, &usage_key, &no_period],
                ),
            )?;
            let Some(head) = head else {
                return Ok(None);
            };
            let kind: Option<String> = head.get(0);
            let at = |now_ms| period::read(kind.as_deref(), head.get(1), head.get(2), now_ms);
            // The period by the database's clock before any wait for the
            // lock; read again in the rare case a boundary passed meanwhile.
            let mut period: Option<Period> = at(head.get(3))?;
            let mut guessed = period.is_none().then_some(guessed);
            loop {
                let row = match guessed.take() {
                    Some(row) => row,
                    None => {
                        let start = period.map(|p| p.start_ms);
                        let args: [&(dyn ToSql + Sync); 4] =
                            [&user_id, &entitlement_key, &usage_key, &start];
                        conn.query_opt(QUOTA_STATE_SQL, &args)?
                    }
                };
                let Some(row) = row else {
                    return Ok(None);
                };
                let now = at(row.get(10))?;
                if now == period {
                    return Ok(Some((row, period)));
                }
                period = now;
            }
        })?;
        let (row, period) = read.ok_or_else(|| StoreError::UnknownUser(user_id.to_owned()))?;
        let override_value: Option<i64> = row.get(5);
        Ok(QuotaState {
            plan_id: row.get(0),
            plan: PlanInfo {
                limit: row.get(4),
                enforcement_enabled: row.get(1),
                grace_count: row.get(2),
                rollout_percent: row.get(3),
            },
            r#override: override_value.map(|value| Override {
                value,
                expires_at_ms: row.get(6),
            }),
            default_limit: row.get(7),
            period,
            usage: row.get(8),
            grace_used: row.get(9),
            reserved: row.get(11),
            reserved_grace: row.get(12),
            has_thresholds: row.get(13),
            now_ms: Some(row.get(10)),
        })
    }

    fn add_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<i64, StoreError> {
        self.run(|conn| add_usage(conn, user_id, usage_key, period_start_ms, n))
    }

    fn add_grace(
        &mut self,
        user_id: &str,
        plan_id: &str,
        entitlement_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let key = entitlement_key;
        self.run(|conn| add_grace(conn, user_id, plan_id, key, period_start_ms, n, now_ms))
    }

    fn record_thresholds(&mut self, crossing: &Crossing) -> Result<usize, StoreError> {
        self.run(|conn| record_thresholds(conn, crossing))
    }

    fn record_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<(), StoreError> {
        self.write_owed()?;
        self.owed = Some(OwedUsage {
            user_id: user_id.to_owned(),
            usage_key: usage_key.to_owned(),
            period_start_ms,
            n,
        });
        Ok(())
    }

    /// Commits; usage recorded and not sent yet goes in the same round
    /// trip as the COMMIT.
    fn commit(mut self) -> Result<(), StoreError> {
        let owed = self.owed.take();
        match (self.end(), owed) {
            (Some(mut conn), None) => conn.commit(),
            (Some(mut conn), Some(owed)) => owed.commit(&mut conn),
            (None, _) => Err(self.lost()),
        }
    }

    /// Rolls back. When the database was unavailable during the
    /// transaction, says so: what it read may be incomplete, and the
    /// engine decides again in a fresh transaction.
    fn rollback(mut self) -> Result<(), StoreError> {
        if let Some(mut conn) = self.end() {
            let _ = conn.rollback();
        }
        match self.unavailable.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
