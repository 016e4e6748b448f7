//! The SQLite backend: a pool of configured connections, the guarded write
//! transaction (group-committed), and every trait of the store.

mod audit;
mod dashboard;
mod decisions;
mod domain;
mod group;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]
mod group_tests;
mod idempotency;
mod leases;
mod outbox;
mod overrides;
mod plans;
mod policy;
mod schema;
#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]
mod tests;
mod users;
mod webhooks;

pub use group::{GroupCommit, WriteStats};
pub use schema::MIGRATIONS;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quota_policy_core::{Override, PlanInfo};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::events::{self, Crossing};
use crate::model::QuotaState;
use crate::period;
use crate::{QuotaStore, QuotaTx};
use group::{Held, Writer};

/// How hard SQLite syncs a commit to disk (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is synced to the WAL file before it returns: durable
    /// across power loss. The default.
    #[default]
    Full,
    /// The WAL is synced at checkpoints only: durable across a killed
    /// process, not across power loss. Faster.
    Normal,
}

/// Connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of commits.
    pub synchronous: Synchronous,
    /// How long a connection waits for the write lock before `busy`.
    pub busy_timeout: Duration,
    /// Idle connections kept for reuse.
    pub max_idle: usize,
    /// When a group of write transactions commits.
    pub group_commit: GroupCommit,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(10),
            max_idle: 16,
            group_commit: GroupCommit::default(),
        }
    }
}

struct Inner {
    path: PathBuf,
    options: SqliteOptions,
    idle: Mutex<Vec<Connection>>,
    /// One writer connection per process; its transactions commit in
    /// groups. SQLite serializes writers too, but a waiter there polls
    /// with growing sleeps (tail latencies of hundreds of milliseconds
    /// under load) and every commit syncs on its own. Other processes
    /// still meet at SQLite's own lock (and the busy timeout).
    writer: Writer,
}

/// A SQLite database file, shared by threads (and by processes opening the
/// same file). Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// A connection borrowed from the pool; it goes back when dropped.
pub(crate) struct PooledConnection {
    conn: Option<Connection>,
    store: Arc<Inner>,
}

impl std::fmt::Debug for PooledConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledConnection").finish_non_exhaustive()
    }
}

impl Deref for PooledConnection {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("a pooled connection is present until drop"),
        }
    }
}

impl Drop for PooledConnection {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && conn.is_autocommit()
            && let Ok(mut idle) = self.store.idle.lock()
            && idle.len() < self.store.options.max_idle
        {
            idle.push(conn);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default
    /// options, and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens the database at `path` with `options`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let store = SqliteStore {
            inner: Arc::new(Inner {
                path: path.as_ref().to_path_buf(),
                options,
                idle: Mutex::new(Vec::new()),
                writer: Writer::new(options.group_commit),
            }),
        };
        let mut conn = store.new_connection()?;
        // Migrations run under the write lock, so processes opening the same
        // new file at once apply them once.
        conn.execute_batch("BEGIN IMMEDIATE; COMMIT;")?;
        MIGRATIONS
            .to_latest(&mut conn)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        store.give_back(conn);
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn new_connection(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open(&self.inner.path)?;
        let options = &self.inner.options;
        conn.busy_timeout(options.busy_timeout)?;
        let synchronous = match options.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = {synchronous};"
        ))?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        drop(PooledConnection {
            conn: Some(conn),
            store: self.inner.clone(),
        });
    }

    /// A connection from the pool (or a new one), outside any transaction.
    pub(crate) fn connection(&self) -> Result<PooledConnection, StoreError> {
        let idle = self.inner.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => self.new_connection()?,
        };
        Ok(PooledConnection {
            conn: Some(conn),
            store: self.inner.clone(),
        })
    }

    /// What this process's writer has done: transactions and the group
    /// commits that made them durable.
    pub fn write_stats(&self) -> WriteStats {
        self.inner.writer.stats()
    }

    /// Runs `f` on a connection in a read transaction: one consistent snapshot.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.connection()?;
        conn.execute_batch("BEGIN DEFERRED")?;
        let result = f(&conn);
        conn.execute_batch("COMMIT")?;
        result
    }

    /// Runs `f` in a write transaction and commits if it returns `Ok`.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.begin_write()?;
        let value = f(tx.conn())?;
        tx.commit()?;
        Ok(value)
    }
}

/// A transaction. A write transaction works in its own savepoint inside
/// a group-committed `BEGIN IMMEDIATE` transaction on the process's writer
/// connection; [`QuotaTx::commit`] returns once the group is durable. A
/// read transaction is `BEGIN DEFERRED` on a pooled connection. Dropped
/// without commit, either rolls back: nothing it did remains.
pub struct SqliteTx {
    kind: TxKind,
    store: Arc<Inner>,
}

enum TxKind {
    Write(Option<Held>),
    Read(PooledConnection, bool),
}

impl std::fmt::Debug for SqliteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            TxKind::Write(_) => "write",
            TxKind::Read(..) => "read",
        };
        f.debug_struct("SqliteTx")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl SqliteTx {
    /// The connection the transaction works on.
    pub(crate) fn conn(&self) -> &Connection {
        match &self.kind {
            TxKind::Write(Some(held)) => &held.conn,
            TxKind::Read(conn, _) => conn,
            TxKind::Write(None) => {
                unreachable!("a write transaction holds its connection until it ends")
            }
        }
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        match &mut self.kind {
            TxKind::Write(held) => {
                if let Some(held) = held.take() {
                    self.store.writer.rollback(held);
                }
            }
            TxKind::Read(conn, open) => {
                if *open {
                    // A failed rollback leaves the connection inside a
                    // transaction; the pool only takes back connections in
                    // autocommit mode.
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
        }
    }
}

impl QuotaStore for SqliteStore {
    type Tx = SqliteTx;

    fn begin_write(&self) -> Result<SqliteTx, StoreError> {
        let held = self.inner.writer.begin(|| self.new_connection())?;
        Ok(SqliteTx {
            kind: TxKind::Write(Some(held)),
            store: self.inner.clone(),
        })
    }

    fn begin_read(&self) -> Result<SqliteTx, StoreError> {
        let conn = self.connection()?;
        conn.execute_batch("BEGIN DEFERRED")?;
        Ok(SqliteTx {
            kind: TxKind::Read(conn, true),
            store: self.inner.clone(),
        })
    }
}

/// Everything the decision reads, with the counters of a key without a
/// period, and the key's period setting with the user's plan start.
const QUOTA_STATE_SQL: &str = "
    SELECT u.plan_id, p.enforcement_enabled, p.grace_count, p.rollout_percent,
           (SELECT limit_value FROM plan_entitlements WHERE plan_id = u.plan_id AND entitlement_key = ?2),
           o.value, o.expires_at_ms,
           (SELECT limit_value FROM entitlement_defaults WHERE entitlement_key = ?2),
           COALESCE((SELECT value FROM usage_counters WHERE user_id = u.id AND usage_key = ?3), 0),
           COALESCE((SELECT used FROM grace_usage
                     WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = ?2), 0),
           COALESCE((SELECT SUM(reserved) FROM leases
                     WHERE user_id = u.id AND usage_key = ?3 AND ended_at_ms IS NULL
                       AND period_start_ms IS NULL), 0),
           COALESCE((SELECT SUM(reserved_grace) FROM leases
                     WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = ?2
                       AND ended_at_ms IS NULL AND period_start_ms IS NULL), 0),
           EXISTS (SELECT 1 FROM plan_thresholds WHERE plan_id = u.plan_id AND entitlement_key = ?2),
           pp.period, pp.since_ms, u.plan_started_at_ms
    FROM users u
    JOIN plans p ON p.id = u.plan_id
    LEFT JOIN overrides o ON o.user_id = u.id AND o.entitlement_key = ?2
    LEFT JOIN plan_periods pp ON pp.plan_id = u.plan_id AND pp.entitlement_key = ?2
    WHERE u.id = ?1";

/// The counters of the period starting at ?4, for a key with a period:
/// usage, grace, and what open leases of that period hold.
const PERIOD_COUNTERS_SQL: &str = "
    SELECT COALESCE((SELECT value FROM period_usage
                     WHERE user_id = u.id AND usage_key = ?3 AND period_start_ms = ?4), 0),
           COALESCE((SELECT used FROM period_grace
                     WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = ?2
                       AND period_start_ms = ?4), 0),
           COALESCE((SELECT SUM(reserved) FROM leases
                     WHERE user_id = u.id AND usage_key = ?3 AND ended_at_ms IS NULL
                       AND period_start_ms = ?4), 0),
           COALESCE((SELECT SUM(reserved_grace) FROM leases
                     WHERE user_id = u.id AND plan_id = u.plan_id AND entitlement_key = ?2
                       AND ended_at_ms IS NULL AND period_start_ms = ?4), 0)
    FROM users u WHERE u.id = ?1";

/// Adds `n` to a usage counter, and to its period's when the key has a
/// period starting at `period_start_ms`; returns the value the decision
/// reads (the period's, when there is one).
pub(crate) fn add_usage(
    conn: &Connection,
    user_id: &str,
    usage_key: &str,
    period_start_ms: Option<i64>,
    n: i64,
) -> Result<i64, StoreError> {
    let lifetime: i64 = conn
        .prepare_cached(
            "INSERT INTO usage_counters (user_id, usage_key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, usage_key) DO UPDATE SET value = value + excluded.value
             RETURNING value",
        )?
        .query_row(params![user_id, usage_key, n], |row| row.get(0))?;
    let Some(start) = period_start_ms else {
        return Ok(lifetime);
    };
    Ok(conn
        .prepare_cached(
            "INSERT INTO period_usage (user_id, usage_key, period_start_ms, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, usage_key, period_start_ms) DO UPDATE SET value = value + excluded.value
             RETURNING value",
        )?
        .query_row(params![user_id, usage_key, start, n], |row| row.get(0))?)
}

/// Writes the events `crossing` gives to the outbox (one per threshold
/// per period: a repeat is skipped); returns how many were new.
pub(crate) fn record_thresholds(
    conn: &Connection,
    crossing: &Crossing,
) -> Result<usize, StoreError> {
    let percents: Vec<i64> = conn
        .prepare_cached(
            "SELECT percent FROM plan_thresholds WHERE plan_id = ?1 AND entitlement_key = ?2 ORDER BY percent",
        )?
        .query_map(params![crossing.plan_id, crossing.entitlement_key], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut written = 0;
    for e in events::events(crossing, &percents)? {
        let new = conn
            .prepare_cached(
                "INSERT INTO events (event_id, type, user_id, entitlement_key, period_start_ms, threshold,
                                     payload, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                e.event_id,
                e.kind.as_str(),
                e.user_id,
                e.entitlement_key,
                e.period_start_ms,
                e.threshold,
                e.payload,
                e.created_at_ms
            ])?;
        if new == 1 {
            webhooks::fan_out(conn, &e.event_id, e.kind, e.created_at_ms)?;
            written += 1;
        }
    }
    Ok(written)
}

/// Adds `n` to the grace used for (user, plan, entitlement), in the
/// period starting at `period_start_ms` when the key has one; returns the
/// new value.
pub(crate) fn add_grace(
    conn: &Connection,
    user_id: &str,
    plan_id: &str,
    entitlement_key: &str,
    period_start_ms: Option<i64>,
    n: i64,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let row = |row: &rusqlite::Row<'_>| row.get(0);
    Ok(match period_start_ms {
        None => conn
            .prepare_cached(
                "INSERT INTO grace_usage (user_id, plan_id, entitlement_key, used, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (user_id, plan_id, entitlement_key)
                 DO UPDATE SET used = used + excluded.used, updated_at_ms = excluded.updated_at_ms
                 RETURNING used",
            )?
            .query_row(params![user_id, plan_id, entitlement_key, n, now_ms], row)?,
        Some(start) => conn
            .prepare_cached(
                "INSERT INTO period_grace (user_id, plan_id, entitlement_key, period_start_ms, used, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_id, plan_id, entitlement_key, period_start_ms)
                 DO UPDATE SET used = used + excluded.used, updated_at_ms = excluded.updated_at_ms
                 RETURNING used",
            )?
            .query_row(params![user_id, plan_id, entitlement_key, start, n, now_ms], row)?,
    })
}

impl QuotaTx for SqliteTx {
    fn quota_state(
        &mut self,
        user_id: &str,
        entitlement_key: &str,
        usage_key: &str,
        now_ms: i64,
    ) -> Result<QuotaState, StoreError> {
        let mut stmt = self.conn().prepare_cached(QUOTA_STATE_SQL)?;
        let read = stmt
            .query_row(params![user_id, entitlement_key, usage_key], |row| {
                let override_value: Option<i64> = row.get(5)?;
                let state = QuotaState {
                    plan_id: row.get(0)?,
                    plan: PlanInfo {
                        limit: row.get(4)?,
                        enforcement_enabled: row.get(1)?,
                        grace_count: row.get(2)?,
                        rollout_percent: row.get(3)?,
                    },
                    r#override: match override_value {
                        Some(value) => Some(Override {
                            value,
                            expires_at_ms: row.get(6)?,
                        }),
                        None => None,
                    },
                    default_limit: row.get(7)?,
                    period: None,
                    usage: row.get(8)?,
                    grace_used: row.get(9)?,
                    reserved: row.get(10)?,
                    reserved_grace: row.get(11)?,
                    has_thresholds: row.get(12)?,
                    now_ms: None,
                };
                let kind: Option<String> = row.get(13)?;
                Ok((state, kind, row.get(14)?, row.get(15)?))
            })
            .optional()?;
        drop(stmt);
        let Some((mut state, kind, since, plan_started)) = read else {
            return Err(StoreError::UnknownUser(user_id.to_owned()));
        };
        // A key with a period reads that period's counters instead.
        let Some(period) = period::read(kind.as_deref(), since, plan_started, now_ms)? else {
            return Ok(state);
        };
        let start = period.start_ms;
        (
            state.usage,
            state.grace_used,
            state.reserved,
            state.reserved_grace,
        ) = self
            .conn()
            .prepare_cached(PERIOD_COUNTERS_SQL)?
            .query_row(params![user_id, entitlement_key, usage_key, start], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })?;
        state.period = Some(period);
        Ok(state)
    }

    fn add_usage(
        &mut self,
        user_id: &str,
        usage_key: &str,
        period_start_ms: Option<i64>,
        n: i64,
    ) -> Result<i64, StoreError> {
        add_usage(self.conn(), user_id, usage_key, period_start_ms, n)
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
        add_grace(
            self.conn(),
            user_id,
            plan_id,
            key,
            period_start_ms,
            n,
            now_ms,
        )
    }

    fn record_thresholds(&mut self, crossing: &Crossing) -> Result<usize, StoreError> {
        record_thresholds(self.conn(), crossing)
    }

    fn rollback(mut self) -> Result<(), StoreError> {
        match &mut self.kind {
            TxKind::Write(held) => match held.take() {
                Some(held) => self.store.writer.abandon(held),
                None => Ok(()),
            },
            TxKind::Read(conn, open) => {
                *open = false;
                conn.execute_batch("ROLLBACK")?;
                Ok(())
            }
        }
    }

    fn commit(mut self) -> Result<(), StoreError> {
        match &mut self.kind {
            TxKind::Write(held) => match held.take() {
                Some(held) => self.store.writer.commit(held),
                None => Ok(()),
            },
            TxKind::Read(conn, open) => {
                conn.execute_batch("COMMIT")?;
                *open = false;
                Ok(())
            }
        }
    }
}
