//! Group commit: the write transactions of one process share SQLite
//! transactions, one savepoint each, so one sync to disk covers many.
//!
//! A writer thread takes the process's single writer connection, opens its
//! own savepoint inside the current batch (a `BEGIN IMMEDIATE` transaction
//! started by the batch's first member) and does its work. Releasing the
//! savepoint keeps the work; rolling back to it undoes only that work. The
//! member that leaves while nobody else is waiting for the connection (or
//! when the batch is big or old enough) commits the batch; every member's
//! `commit` returns only after that commit, with its result. So a caller
//! never answers for work that is not yet durable, and a killed process
//! loses only work nobody was told about.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::StoreError;

/// When a batch commits although writers are still waiting for it: the
/// bounds that keep a steady stream of writers from holding every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// A batch commits once this many members have kept their work ...
    pub max_members: usize,
    /// ... or once it has been open this long.
    pub max_age: Duration,
}

impl Default for GroupCommit {
    /// 256 members or 4 ms.
    fn default() -> Self {
        GroupCommit {
            max_members: 256,
            max_age: Duration::from_millis(4),
        }
    }
}

/// The savepoint each write transaction works in.
const SAVEPOINT: &str = "quota_tx";

/// The result of one batch's commit, shared by its members.
#[derive(Debug, Default)]
pub(crate) struct BatchResult(OnceLock<Result<(), String>>);

#[derive(Debug)]
struct Batch {
    result: Arc<BatchResult>,
    members: usize,
    started: Instant,
}

impl Batch {
    fn new() -> Self {
        Batch {
            result: Arc::default(),
            members: 0,
            started: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// A thread holds the writer connection.
    busy: bool,
    /// Threads that asked for a write transaction and have not finished
    /// it, the holder included.
    active: usize,
    /// The writer connection while nobody holds it.
    conn: Option<Connection>,
    /// The open batch (a transaction is open on the writer connection).
    batch: Option<Batch>,
    /// Totals since the store was opened.
    stats: WriteStats,
}

/// What the process's writer has done since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Write transactions that asked for the writer and have not ended:
    /// the one holding it and those waiting.
    pub writers: usize,
    /// Write transactions committed.
    pub transactions: u64,
    /// SQLite commits (one per group; each syncs to disk once).
    pub commits: u64,
}

/// The writer connection and the batch it is in.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    limits: GroupCommit,
    state: Mutex<State>,
    /// The writer connection was put back.
    freed: Condvar,
    /// A batch got its result.
    settled: Condvar,
}

/// What a write transaction holds: the writer connection, inside its
/// savepoint, and its batch's result.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) conn: Connection,
    result: Arc<BatchResult>,
}

impl Writer {
    /// A writer whose batches commit within `limits`.
    pub(crate) fn new(limits: GroupCommit) -> Self {
        Writer {
            limits,
            ..Writer::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The totals so far.
    pub(crate) fn stats(&self) -> WriteStats {
        let state = self.lock();
        WriteStats {
            writers: state.active,
            ..state.stats
        }
    }

    /// Takes the writer connection (opening it with `open` the first
    /// time), joins or starts a batch and opens this transaction's savepoint.
    pub(crate) fn begin(
        &self,
        open: impl FnOnce() -> Result<Connection, StoreError>,
    ) -> Result<Held, StoreError> {
        let mut state = self.lock();
        state.active += 1;
        while state.busy {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.busy = true;
        let conn = state.conn.take();
        drop(state);
        let conn = match conn.map_or_else(open, Ok) {
            Ok(conn) => conn,
            Err(e) => {
                let mut state = self.lock();
                state.active -= 1;
                state.busy = false;
                self.freed.notify_one();
                return Err(e);
            }
        };
        match self.join(&conn) {
            Ok(result) => Ok(Held { conn, result }),
            Err(e) => {
                drop(self.put_back(conn, false));
                Err(e)
            }
        }
    }

    /// Makes sure a batch is open on `conn` and opens the savepoint in it.
    fn join(&self, conn: &Connection) -> Result<Arc<BatchResult>, StoreError> {
        let mut state = self.lock();
        if state.batch.is_some() && conn.is_autocommit() {
            // SQLite rolled the batch back on its own (an I/O error, a full
            // disk): its members must not be told it committed.
            if let Some(batch) = state.batch.take() {
                let _ = batch.result.0.set(Err(
                    "the transaction was rolled back by the database".to_owned()
                ));
                self.settled.notify_all();
            }
        }
        if state.batch.is_none() {
            drop(state);
            // The busy timeout makes this wait for another process's write
            // lock; a `busy` error past it is reported, never retried blindly.
            conn.execute_batch("BEGIN IMMEDIATE")?;
            state = self.lock();
            state.batch = Some(Batch::new());
        }
        let result = match &state.batch {
            Some(batch) => batch.result.clone(),
            None => unreachable!("a batch was just opened"),
        };
        drop(state);
        conn.execute_batch(&format!("SAVEPOINT {SAVEPOINT}"))?;
        Ok(result)
    }

    /// Keeps the transaction's work and waits for its batch to commit.
    pub(crate) fn commit(&self, held: Held) -> Result<(), StoreError> {
        if let Err(e) = held.conn.execute_batch(&format!("RELEASE {SAVEPOINT}")) {
            self.rollback(held);
            return Err(e.into());
        }
        let Held { conn, result } = held;
        let state = self.put_back(conn, true);
        self.settle(state, &result)
    }

    /// Undoes the transaction's work, then waits for the batch it read
    /// from: `Ok` once that batch committed (what the transaction saw is
    /// durable), [`StoreError::Commit`] when it failed (what it saw may
    /// never have been true; decide again).
    pub(crate) fn abandon(&self, held: Held) -> Result<(), StoreError> {
        let result = held.result.clone();
        let state = self.undo(held);
        self.settle(state, &result)
    }

    /// Waits, with the state locked, until `result` is known.
    fn settle(
        &self,
        mut state: MutexGuard<'_, State>,
        result: &BatchResult,
    ) -> Result<(), StoreError> {
        loop {
            if let Some(outcome) = result.0.get() {
                return outcome.clone().map_err(StoreError::Commit);
            }
            state = self
                .settled
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Undoes the transaction's work without waiting; the rest of its batch
    /// is unaffected.
    pub(crate) fn rollback(&self, held: Held) {
        drop(self.undo(held));
    }

    fn undo(&self, held: Held) -> MutexGuard<'_, State> {
        let undone = held
            .conn
            .execute_batch(&format!("ROLLBACK TO {SAVEPOINT}; RELEASE {SAVEPOINT}"));
        if undone.is_err() {
            // The work cannot be undone alone: nothing of this batch may
            // commit, and its members hear why.
            let _ = held.conn.execute_batch("ROLLBACK");
            let mut state = self.lock();
            if let Some(batch) = state.batch.take() {
                let _ = batch.result.0.set(Err(
                    "a member of the batch could not be rolled back alone".to_owned(),
                ));
                self.settled.notify_all();
            }
        }
        self.put_back(held.conn, false)
    }

    /// Leaves the writer connection; commits the batch first if this was
    /// the last writer waiting for it, or it is big or old enough.
    fn put_back(&self, conn: Connection, kept: bool) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        state.active -= 1;
        let nobody_waits = state.active == 0;
        let due = match &mut state.batch {
            Some(batch) => {
                if kept {
                    batch.members += 1;
                }
                nobody_waits
                    || batch.members >= self.limits.max_members
                    || batch.started.elapsed() >= self.limits.max_age
            }
            None => false,
        };
        if due && let Some(batch) = state.batch.take() {
            drop(state);
            let committed = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
            if committed.is_err() && !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let succeeded = committed.is_ok();
            let _ = batch.result.0.set(committed);
            state = self.lock();
            if succeeded {
                state.stats.commits += 1;
                state.stats.transactions += batch.members as u64;
            }
            self.settled.notify_all();
        }
        state.conn = Some(conn);
        state.busy = false;
        self.freed.notify_one();
        state
    }
}
