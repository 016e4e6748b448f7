//! Helpers for tests of this crate and of the crates built on it: counts
//! of rows and a way to make a group commit fail, without naming a
//! database type. Not for production use.

use crate::any::AnyStore;
use crate::error::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::{SqliteStore, SqliteTx};

/// A store whose tables can be counted.
pub trait CountRows {
    /// The rows of `table` (a name from the schema).
    fn count_rows(&self, table: &str) -> Result<i64, StoreError>;
    /// The rows of `table` whose text `column` is `value`.
    fn count_rows_where(&self, table: &str, column: &str, value: &str) -> Result<i64, StoreError>;
}

impl CountRows for SqliteStore {
    fn count_rows_where(&self, table: &str, column: &str, value: &str) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(conn.query_row(
                &format!("SELECT count(*) FROM \"{table}\" WHERE \"{column}\" = ?1"),
                [value],
                |row| row.get(0),
            )?)
        })
    }

    fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        self.read(|conn| {
            Ok(
                conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
                    row.get(0)
                })?,
            )
        })
    }
}

impl CountRows for PgStore {
    fn count_rows_where(&self, table: &str, column: &str, value: &str) -> Result<i64, StoreError> {
        self.with_client(|conn| {
            let sql = format!("SELECT count(*) FROM \"{table}\" WHERE \"{column}\" = $1");
            Ok(conn.query_made(&sql, &[&value])?[0].get(0))
        })
    }

    fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        self.with_client(|conn| {
            let sql = format!("SELECT count(*) FROM \"{table}\"");
            Ok(conn.query_made(&sql, &[])?[0].get(0))
        })
    }
}

impl CountRows for AnyStore {
    fn count_rows_where(&self, table: &str, column: &str, value: &str) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.count_rows_where(table, column, value),
            AnyStore::Postgres(store) => store.count_rows_where(table, column, value),
        }
    }

    fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.count_rows(table),
            AnyStore::Postgres(store) => store.count_rows(table),
        }
    }
}

/// The rows of `table` (a name from the schema).
pub fn count_rows(store: &impl CountRows, table: &str) -> Result<i64, StoreError> {
    store.count_rows(table)
}

/// How many other sessions are connected to the store's PostgreSQL
/// database (the connections of every host on it; this one not counted).
pub fn other_sessions(store: &PgStore) -> Result<i64, StoreError> {
    store.with_client(|conn| {
        Ok(conn
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )?
            .get(0))
    })
}

/// SQLite's own consistency check: `ok` when the file is sound.
pub fn integrity_check(store: &SqliteStore) -> Result<String, StoreError> {
    store.read(|conn| Ok(conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?))
}

/// Makes the commit of the group `tx` is in fail, as a full disk would:
/// adds a row that breaks a constraint checked only at commit (on a table
/// this helper creates the first time).
pub fn doom_group(tx: &SqliteTx) -> Result<(), StoreError> {
    tx.conn().execute_batch(
        "CREATE TABLE IF NOT EXISTS testing_parent (id INTEGER PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS testing_orphan (
             parent_id INTEGER REFERENCES testing_parent (id) DEFERRABLE INITIALLY DEFERRED);
         INSERT INTO testing_orphan (parent_id) VALUES (7);",
    )?;
    Ok(())
}
