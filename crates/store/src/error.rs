//! Storage errors, named for what happened; no database type crosses them.

/// What went wrong in the store. Callers match on the variant: the kinds
/// below map to answers (not found, forbidden, conflict, invalid, busy),
/// the rest are failures of the database itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// No node with this id.
    #[error("unknown node `{0}`")]
    UnknownNode(String),
    /// A node with this id exists already.
    #[error("node `{0}` already exists")]
    NodeExists(String),
    /// No webhook with this id.
    #[error("unknown webhook `{0}`")]
    UnknownWebhook(String),
    /// No event with this id.
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    /// No lease with this id (held by the asking node).
    #[error("unknown lease {0}")]
    UnknownLease(i64),
    /// The acting user may not do this.
    #[error("forbidden: {0}")]
    Forbidden(Forbidden),
    /// The change conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// A value outside its range.
    #[error("invalid value: {message}")]
    Invalid {
        /// The field, e.g. `entitlement_key`.
        field: String,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Another process holds the database's write lock past the busy
    /// timeout; nothing was changed, a retry may succeed.
    #[error("the database is busy: {0}")]
    Busy(String),
    /// The database could not do the work now: it cannot be reached, the
    /// connection was lost, or the transaction lost a serialization or
    /// deadlock conflict. Nothing was changed; a retry may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The connection was lost while the commit was on its way: the change
    /// may or may not have been kept. Retry with the same idempotency key
    /// to find out without applying it twice.
    #[error("the outcome is unknown: {0}")]
    OutcomeUnknown(String),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database: {0}")]
    Migration(String),
    /// The group commit this transaction was part of failed; nothing of
    /// it was kept.
    #[error("the commit failed: {0}")]
    Commit(String),
    /// Any other failure of the database.
    #[error("database error: {0}")]
    Database(String),
}

/// Why the acting user may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// Only the draft's owner and accepted collaborators write it.
    #[error("`{user}` may not write draft {draft}")]
    NotWriter {
        /// The acting user.
        user: String,
        /// The draft.
        draft: i64,
    },
    /// Only the draft's owner invites to it.
    #[error("`{user}` does not own draft {draft}")]
    NotOwner {
        /// The acting user.
        user: String,
        /// The draft.
        draft: i64,
    },
    /// Only the invitee accepts an invite.
    #[error("invite {invite} is not for `{user}`")]
    NotInvitee {
        /// The acting user.
        user: String,
        /// The invite.
        invite: i64,
    },
}

/// How a change conflicts with the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// An invite is accepted once.
    #[error("invite {0} was already accepted")]
    InviteAccepted(i64),
    /// One pending invite per invitee and draft.
    #[error("`{invitee}` already has a pending invite to draft {draft}")]
    AlreadyInvited {
        /// The invitee.
        invitee: String,
        /// The draft.
        draft: i64,
    },
    /// The invitee writes the draft already.
    #[error("`{invitee}` can already write draft {draft}")]
    AlreadyWriter {
        /// The invitee.
        invitee: String,
        /// The draft.
        draft: i64,
    },
    /// An idempotency key is stored once per user: a concurrent request
    /// with the same key got there first.
    #[error("idempotency key `{0}` is already used")]
    IdempotencyKey(String),
    /// The key's usage is counted by a domain action and must match its
    /// rows: it cannot be consumed or leased directly.
    #[error(
        "`{0}` is counted by its own action (drafts, segments or invites) and cannot be metered directly"
    )]
    OwnedKey(String),
    /// Another host recorded a release of the same policy name between
    /// this upload's check and its record.
    #[error("the release of `{0}` changed while this upload was checked; try again")]
    Release(String),
    /// Settles of a lease come in order: the next one is `expected`.
    #[error("lease {lease} expects settle seq {expected}, got {got}")]
    LeaseSeq {
        /// The lease.
        lease: i64,
        /// The seq the next settle must carry.
        expected: i64,
        /// The seq sent.
        got: i64,
    },
    /// A retried settle (same seq) must repeat the request it retries.
    #[error("settle {seq} of lease {lease} was applied with other values")]
    SettleMismatch {
        /// The lease.
        lease: i64,
        /// The seq.
        seq: i64,
    },
    /// A settle reported more units spent than the lease holds.
    #[error("lease {lease} holds {reserved} units; {spent} cannot be spent from it")]
    Overspent {
        /// The lease.
        lease: i64,
        /// Units reported spent.
        spent: i64,
        /// Units the lease holds.
        reserved: i64,
    },
    /// The lease has ended (settled, expired or its node deleted): its
    /// units are counted already.
    #[error("lease {lease} has ended ({reason})")]
    LeaseEnded {
        /// The lease.
        lease: i64,
        /// `settled`, `expired` or `node_deleted`.
        reason: &'static str,
    },
}

impl StoreError {
    /// An invalid value from one of the naming rules.
    /// A sum in the database would pass `i64::MAX`: the request asked for
    /// more than any counter can hold. Nothing of its transaction is kept.
    pub(crate) fn overflow() -> Self {
        StoreError::invalid(
            "requested",
            "`requested` would take a counter past the largest 64-bit integer (9223372036854775807)",
        )
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        StoreError::Invalid {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// Whether the error is the database's lock held by another process.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Busy(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(failure, _)
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                StoreError::Busy(e.to_string())
            }
            // SQLite turns an integer sum past `i64::MAX` into a REAL, which a
            // STRICT table refuses (no REAL is ever bound here).
            rusqlite::Error::SqliteFailure(_, Some(message))
                if message == "integer overflow"
                    || message.starts_with("cannot store REAL value in INTEGER column") =>
            {
                StoreError::overflow()
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}
