//! Storage errors, named for what happened.

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No plan with this id.
    #[error("unknown plan `{0}`")]
    UnknownPlan(String),
    /// No user with this id.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// A user with this id exists already.
    #[error("user `{0}` already exists")]
    UserExists(String),
    /// No draft with this id.
    #[error("unknown draft {0}")]
    UnknownDraft(i64),
    /// No invite with this id.
    #[error("unknown invite {0}")]
    UnknownInvite(i64),
    /// The acting user may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The change conflicts with the current state (e.g. an invite accepted twice).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value outside its range; the message names the field.
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database: {0}")]
    Migration(String),
    /// The group commit this transaction was part of failed; nothing of
    /// it was kept.
    #[error("the commit failed: {0}")]
    Commit(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// Whether the error is SQLite reporting a lock held by another
    /// connection for longer than the busy timeout.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}
