//! The application the quotas guard: drafts, segments and invites
//! (docs/contract.md §4.5). Each guarded action is admitted by the engine
//! before any row changes, and is built on the admitted transaction: the
//! functions here return it open, with the rows written, so a caller can
//! add its own step in the same transaction (the HTTP service stores an
//! idempotent response there) and then commit. [`Domain`] does all of it
//! in one call for callers without a step of their own.
//!
//! ```
//! use quota_domain::Domain;
//! # use quota_engine::Engine;
//! # use quota_host::{Limits, Runtime};
//! # use quota_store::{PlanChange, SqliteStore};
//! # use quota_store::prelude::*;
//! # let dir = tempfile::tempdir()?;
//! # let store = SqliteStore::open(dir.path().join("quota.db"))?;
//! # let plan = PlanChange { limits: vec![("drafts.max".into(), 1)], enforcement_enabled: Some(true), ..PlanChange::default() };
//! # store.set_plan("admin", "free", &plan, 0)?;
//! # store.create_user("admin", "alice", "free", 0)?;
//! # let policy = Runtime::new(Limits::default())?.load(quota_reference_policy::COMPONENT)?;
//! let engine = Engine::new(store, policy);
//! let created = engine.create_draft("alice", "First")?;
//! assert_eq!(created.outcome.decision.status, quota_policy_core::Status::Allow);
//! assert!(engine.create_draft("alice", "Second").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use quota_engine::{Admitted, EnforceError, Engine, Guard, Outcome, Pending, QuotaRequest};
use quota_store::{
    Conflict, DomainTx, Draft, Forbidden, Invite, InviteStatus, QuotaStore, Segment, StoreError,
};

/// `drafts.max`: creating a draft uses its owner's.
pub const DRAFTS: &str = "drafts.max";
/// `segments.max`: appending a segment uses the acting user's.
pub const SEGMENTS: &str = "segments.max";
/// `collaborators.max`: accepting an invite uses the inviter's.
pub const COLLABORATORS: &str = "collaborators.max";
/// The keys the actions above count: their usage must match their rows,
/// so nothing else may consume them.
pub const OWNED_KEYS: [&str; 3] = [DRAFTS, SEGMENTS, COLLABORATORS];

/// A guarded action done: its row and the decision that admitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced<T> {
    /// The row the action wrote.
    pub value: T,
    /// The decision, applied (usage and grace recorded).
    pub outcome: Outcome,
}

/// Creates a draft owned by `owner_id`, admitted by the owner's
/// `drafts.max`; the transaction is left open for the caller to commit.
pub fn create_draft<'g, S>(
    guard: &'g Guard<'_, S>,
    owner_id: &str,
    title: &str,
    now_ms: i64,
) -> Result<(Admitted<'g, S>, Draft), EnforceError>
where
    S: QuotaStore<Tx: DomainTx>,
{
    let mut admitted = guard.admit(&QuotaRequest::new(owner_id, DRAFTS, 1))?;
    let draft = admitted.tx().insert_draft(owner_id, title, now_ms)?;
    Ok((admitted, draft))
}

/// Appends a segment to a draft `user_id` owns or collaborates on,
/// admitted by the acting user's `segments.max`.
pub fn append_segment<'g, S>(
    guard: &'g Guard<'_, S>,
    user_id: &str,
    draft_id: i64,
    body: &str,
    now_ms: i64,
) -> Result<(Admitted<'g, S>, Segment), EnforceError>
where
    S: QuotaStore<Tx: DomainTx>,
{
    let mut pending = guard.begin()?;
    let draft = pending.tx().draft(draft_id)?;
    if !pending.tx().can_write(user_id, &draft)? {
        return Err(StoreError::Forbidden(Forbidden::NotWriter {
            user: user_id.to_owned(),
            draft: draft_id,
        })
        .into());
    }
    let mut admitted = pending.admit(&QuotaRequest::new(user_id, SEGMENTS, 1))?;
    let segment = admitted
        .tx()
        .insert_segment(draft_id, user_id, body, now_ms)?;
    Ok((admitted, segment))
}

/// Invites `invitee_id` to a draft `owner_id` owns. Uses no quota: the
/// inviter's `collaborators.max` is checked when the invite is accepted.
pub fn create_invite<'g, S>(
    guard: &'g Guard<'_, S>,
    owner_id: &str,
    draft_id: i64,
    invitee_id: &str,
    now_ms: i64,
) -> Result<(Pending<'g, S>, Invite), EnforceError>
where
    S: QuotaStore<Tx: DomainTx>,
{
    quota_policy_core::names::check_id("invitee", invitee_id).map_err(|e| StoreError::Invalid {
        field: "invitee".to_owned(),
        message: e.to_string(),
    })?;
    let mut pending = guard.begin()?;
    let tx = pending.tx();
    let draft = tx.draft(draft_id)?;
    if draft.owner_id != owner_id {
        return Err(StoreError::Forbidden(Forbidden::NotOwner {
            user: owner_id.to_owned(),
            draft: draft_id,
        })
        .into());
    }
    if !tx.user_exists(invitee_id)? {
        return Err(StoreError::UnknownUser(invitee_id.to_owned()).into());
    }
    let invite = tx.insert_invite(&draft, invitee_id, now_ms)?;
    Ok((pending, invite))
}

/// Accepts an invite as `invitee_id`, admitted by the **inviter's**
/// `collaborators.max`. An invite is accepted once; a blocked accept
/// leaves it pending.
pub fn accept_invite<'g, S>(
    guard: &'g Guard<'_, S>,
    invite_id: i64,
    invitee_id: &str,
    now_ms: i64,
) -> Result<(Admitted<'g, S>, Invite), EnforceError>
where
    S: QuotaStore<Tx: DomainTx>,
{
    let mut pending = guard.begin()?;
    let invite = pending.tx().invite(invite_id)?;
    if invite.invitee_id != invitee_id {
        return Err(StoreError::Forbidden(Forbidden::NotInvitee {
            user: invitee_id.to_owned(),
            invite: invite_id,
        })
        .into());
    }
    if invite.status == InviteStatus::Accepted {
        return Err(StoreError::Conflict(Conflict::InviteAccepted(invite_id)).into());
    }
    let mut admitted = pending.admit(&QuotaRequest::new(
        invite.inviter_id.clone(),
        COLLABORATORS,
        1,
    ))?;
    let accepted = admitted.tx().accept_invite(&invite, now_ms)?;
    Ok((admitted, accepted))
}

/// Each action in one call: admitted, written and committed (run again
/// when a group commit it read from failed).
pub trait Domain {
    /// [`create_draft`], committed.
    fn create_draft(&self, owner_id: &str, title: &str) -> Result<Enforced<Draft>, EnforceError>;
    /// [`append_segment`], committed.
    fn append_segment(
        &self,
        user_id: &str,
        draft_id: i64,
        body: &str,
    ) -> Result<Enforced<Segment>, EnforceError>;
    /// [`create_invite`], committed.
    fn create_invite(
        &self,
        owner_id: &str,
        draft_id: i64,
        invitee_id: &str,
    ) -> Result<Invite, EnforceError>;
    /// [`accept_invite`], committed.
    fn accept_invite(
        &self,
        invite_id: i64,
        invitee_id: &str,
    ) -> Result<Enforced<Invite>, EnforceError>;
}

fn committed<S: QuotaStore, T>(
    (admitted, value): (Admitted<'_, S>, T),
) -> Result<Enforced<T>, EnforceError> {
    let outcome = admitted.commit()?;
    Ok(Enforced { value, outcome })
}

impl<S: QuotaStore<Tx: DomainTx>> Domain for Engine<S> {
    fn create_draft(&self, owner_id: &str, title: &str) -> Result<Enforced<Draft>, EnforceError> {
        let now = self.now_ms();
        self.guarded(|g| committed(create_draft(g, owner_id, title, now)?))
    }

    fn append_segment(
        &self,
        user_id: &str,
        draft_id: i64,
        body: &str,
    ) -> Result<Enforced<Segment>, EnforceError> {
        let now = self.now_ms();
        self.guarded(|g| committed(append_segment(g, user_id, draft_id, body, now)?))
    }

    fn create_invite(
        &self,
        owner_id: &str,
        draft_id: i64,
        invitee_id: &str,
    ) -> Result<Invite, EnforceError> {
        let now = self.now_ms();
        self.guarded(|g| {
            let (pending, invite) = create_invite(g, owner_id, draft_id, invitee_id, now)?;
            pending.commit()?;
            Ok(invite)
        })
    }

    fn accept_invite(
        &self,
        invite_id: i64,
        invitee_id: &str,
    ) -> Result<Enforced<Invite>, EnforceError> {
        let now = self.now_ms();
        self.guarded(|g| committed(accept_invite(g, invite_id, invitee_id, now)?))
    }
}
