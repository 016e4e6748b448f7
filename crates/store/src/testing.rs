//! Helpers for tests of this crate and of the crates built on it: counts
//! of rows and a way to make a group commit fail, without naming a
//! database type. Not for production use.

use crate::error::StoreError;
use crate::sqlite::{SqliteStore, SqliteTx};

/// The rows of `table` (a name from the schema).
pub fn count_rows(store: &SqliteStore, table: &str) -> Result<i64, StoreError> {
    store.read(|conn| {
        Ok(
            conn.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
                row.get(0)
            })?,
        )
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
