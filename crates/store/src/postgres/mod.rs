//! The PostgreSQL backend: one database shared by every host of a fleet.
//!
//! A pool of connections (r2d2) with a cache of prepared statements per
//! connection, the schema versioned by refinery's migrations, and the
//! guarded write transaction at READ COMMITTED with the user's row locked.
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
//! the usage from before its wait: that is why they are two.)
//!
//! Failures before COMMIT is sent (a lost connection, a serialization
//! failure or deadlock) leave nothing behind and are
//! [`StoreError::Unavailable`]: the engine and the admin writes here try
//! again, a bounded number of times. A connection lost while COMMIT is on
//! its way leaves the outcome unknown: [`StoreError::OutcomeUnknown`],
//! never retried here.

mod audit;
mod config;
mod dashboard;
mod decisions;
mod domain;
mod idempotency;
mod leases;
mod outbox;
mod overrides;
mod plans;
mod policy;
mod users;
mod webhooks;

pub use config::{PgUrl, TlsMode, is_postgres_url, redact};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};
use postgres_native_tls::MakeTlsConnector;
use quota_policy_core::{Override, PlanInfo};

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

/// A client that may be dropped anywhere. Closing a `postgres::Client`
/// waits for the server on the driver's own runtime, and tokio refuses
/// (panics) to run one runtime inside another: dropped from async code,
/// the client is closed on a thread of its own.
pub(crate) struct OwnedClient(Option<Client>);

impl OwnedClient {
    fn new(client: Client) -> Self {
        OwnedClient(Some(client))
    }
}

#[allow(clippy::expect_used, reason = "the client is taken only in drop")]
impl std::ops::Deref for OwnedClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0.as_ref().expect("taken only in drop")
    }
}

#[allow(clippy::expect_used, reason = "the client is taken only in drop")]
impl std::ops::DerefMut for OwnedClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.0.as_mut().expect("taken only in drop")
    }
}

impl Drop for OwnedClient {
    fn drop(&mut self) {
        if let Some(client) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            std::thread::spawn(move || drop(client));
        }
    }
}

/// A connection with its prepared statements.
pub(crate) struct Conn {
    client: OwnedClient,
    statements: HashMap<&'static str, Statement>,
    /// A transaction was begun and not yet ended: the pool must not
    /// hand this connection out again as it is.
    in_transaction: bool,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(pg_error)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs a statement; its rows.
    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params).map_err(pg_error)
    }

    /// Runs a statement; its one row or none.
    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params).map_err(pg_error)
    }

    /// Runs a statement; its one row.
    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params).map_err(pg_error)
    }

    /// Runs a statement; the rows it changed.
    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params).map_err(pg_error)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(pg_error)
    }

    fn begin(&mut self, sql: &str) -> Result<(), StoreError> {
        self.in_transaction = true;
        self.batch(sql)
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.batch("ROLLBACK")?;
        self.in_transaction = false;
        Ok(())
    }

    /// Sends COMMIT. A connection lost on the way leaves the outcome
    /// unknown; an error from the server means nothing was kept.
    fn commit(&mut self) -> Result<(), StoreError> {
        match self.client.batch_execute("COMMIT") {
            Ok(()) => {
                self.in_transaction = false;
                Ok(())
            }
            Err(e) if e.as_db_error().is_none() => Err(StoreError::OutcomeUnknown(format!(
                "the connection to the database was lost during COMMIT: {e}"
            ))),
            Err(e) => Err(pg_error(e)),
        }
    }
}

/// Opens connections for the pool.
struct Manager {
    config: postgres::Config,
    tls: MakeTlsConnector,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Conn, postgres::Error> {
        Ok(Conn {
            client: OwnedClient::new(self.config.connect(self.tls.clone())?),
            statements: HashMap::new(),
            in_transaction: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.in_transaction || conn.client.is_closed()
    }
}

type Pooled = r2d2::PooledConnection<Manager>;

struct Inner {
    url: PgUrl,
    pool: r2d2::Pool<Manager>,
    last_connect_error: LastConnectError,
    /// The connection that listens for policy events, once asked to.
    listener: Mutex<Option<OwnedClient>>,
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

/// A driver error, by what it means to the caller.
/// `error` with its causes: the driver's own text is only the kind ("db
/// error", "error connecting to server"), the reason is in the causes.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
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

impl r2d2::HandleError<postgres::Error> for LastConnectError {
    fn handle_error(&self, error: postgres::Error) {
        let text = with_causes(&error);
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if last.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "cannot connect to the database");
        }
        *last = Some(text);
    }
}

pub(crate) fn pg_error(e: postgres::Error) -> StoreError {
    let message = with_causes(&e);
    let Some(code) = e.code() else {
        // No answer from the server: the connection failed.
        return StoreError::Unavailable(format!("the database connection failed: {message}"));
    };
    let detail = e
        .as_db_error()
        .map_or(message.clone(), |db| db.message().to_owned());
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || code.code().starts_with("08")
    {
        StoreError::Unavailable(format!("the database could not do it now: {detail}"))
    } else if *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE {
        StoreError::overflow()
    } else {
        StoreError::Database(detail)
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
        let failed = |e: refinery::Error| StoreError::Migration(e.to_string());
        conn.batch("SELECT pg_advisory_lock(7146053)")?;
        let report = embedded::migrations::runner().run(&mut *conn.client);
        let unlocked = conn.batch("SELECT pg_advisory_unlock(7146053)");
        report.map_err(failed)?;
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

    /// A connection from the pool with a transaction begun by `begin`.
    /// Connections that died while idle (a restarted database) are found
    /// here and dropped, so a caller gets a live one while there is any.
    fn begin(&self, begin: &str) -> Result<Pooled, StoreError> {
        let tries = self.inner.pool.max_size() + 1;
        let mut last = None;
        for _ in 0..tries {
            let mut conn = self.connection()?;
            match conn.begin(begin) {
                Ok(()) => return Ok(conn),
                // Dropped with its transaction marked open: the pool
                // discards it.
                Err(e @ StoreError::Unavailable(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            StoreError::Unavailable(format!("no connection to {}", self.inner.url))
        }))
    }

    /// Runs `f` in a transaction begun by `begin` and commits, trying
    /// again (up to [`ATTEMPTS`] in all) when the database was
    /// unavailable before COMMIT was sent.
    fn transaction<T>(
        &self,
        begin: &str,
        mut f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut attempt = 1;
        loop {
            let mut conn = self.begin(begin)?;
            match f(&mut conn) {
                Ok(value) => {
                    conn.commit()?;
                    return Ok(value);
                }
                Err(e) => {
                    let _ = conn.rollback();
                    if matches!(e, StoreError::Unavailable(_)) && attempt < ATTEMPTS {
                        attempt += 1;
                        continue;
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
        f: impl FnOnce(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.begin("BEGIN")?;
        match f(&mut conn.client) {
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

    /// Runs `f` on a pooled connection (the tests' helpers).
    pub(crate) fn with_client<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.connection()?;
        f(&mut conn.client).map_err(pg_error)
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
        if listener.as_ref().is_none_or(|client| client.is_closed()) {
            *listener = self.listen().ok();
            if listener.is_none() {
                drop(listener);
                std::thread::sleep(timeout);
                return true;
            }
        }
        let Some(client) = listener.as_mut() else {
            return true;
        };
        let mut notifications = client.notifications();
        let next = notifications
            .timeout_iter(timeout)
            .next()
            .map(|n| n.is_some());
        // Take whatever else is already queued.
        while let Ok(Some(_)) = notifications.iter().next() {}
        drop(notifications);
        let Ok(heard) = next else {
            // Lost: polling covers the gap until it is back.
            *listener = None;
            return true;
        };
        heard
    }

    fn listen(&self) -> Result<OwnedClient, StoreError> {
        let manager = Manager {
            config: self.inner.url.config().clone(),
            tls: self.inner.url.connector()?,
        };
        let mut conn = r2d2::ManageConnection::connect(&manager).map_err(pg_error)?;
        conn.batch(&format!("LISTEN {POLICY_CHANNEL}"))?;
        Ok(conn.client)
    }
}

/// A transaction on one pooled connection. A write transaction locks the
/// rows its decision reads (see the module's docs); a read transaction is
/// one read-only snapshot. Dropped without commit, it rolls back.
pub struct PgTx {
    conn: Option<Pooled>,
    write: bool,
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
    /// Runs `f` on the connection, noting an unavailable database.
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let Some(conn) = self.conn.as_mut() else {
            unreachable!("a transaction holds its connection until it ends")
        };
        let result = f(conn);
        if let Err(e @ StoreError::Unavailable(_)) = &result {
            self.unavailable = Some(e.clone());
        }
        result
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
        Ok(PgTx {
            conn: Some(self.begin("BEGIN ISOLATION LEVEL READ COMMITTED")?),
            write: true,
            unavailable: None,
        })
    }

    fn begin_read(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx {
            conn: Some(self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?),
            write: false,
            unavailable: None,
        })
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
    let lifetime = conn.query_one(
        "INSERT INTO usage_counters (user_id, usage_key, value) VALUES ($1, $2, $3)
         ON CONFLICT (user_id, usage_key) DO UPDATE SET value = usage_counters.value + excluded.value
         RETURNING value",
        &[&user_id, &usage_key, &n],
    )?;
    let Some(start) = period_start_ms else {
        return Ok(lifetime.get(0));
    };
    let row = conn.query_one(
        "INSERT INTO period_usage (user_id, usage_key, period_start_ms, value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id, usage_key, period_start_ms)
         DO UPDATE SET value = period_usage.value + excluded.value
         RETURNING value",
        &[&user_id, &usage_key, &start, &n],
    )?;
    Ok(row.get(0))
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
            let Some(head) = conn.query_opt(sql, &[&user_id, &entitlement_key])? else {
                return Ok(None);
            };
            let kind: Option<String> = head.get(0);
            let at = |now_ms| period::read(kind.as_deref(), head.get(1), head.get(2), now_ms);
            // The period by the database's clock before any wait for the
            // lock; read again in the rare case a boundary passed meanwhile.
            let mut period: Option<Period> = at(head.get(3))?;
            loop {
                let start = period.map(|p| p.start_ms);
                let args: [&(dyn ToSql + Sync); 4] =
                    [&user_id, &entitlement_key, &usage_key, &start];
                let Some(row) = conn.query_opt(QUOTA_STATE_SQL, &args)? else {
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

    fn commit(mut self) -> Result<(), StoreError> {
        match self.end() {
            Some(mut conn) => conn.commit(),
            None => Ok(()),
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
