//! The application domain, each action guarded before any row changes.
//!
//! Every action has a `_then` form taking `after`, a step run inside the
//! same transaction once the action's rows are written (the HTTP service
//! stores idempotent responses there): if `after` fails, nothing the action
//! did remains.

use quota_store::{
    Conflict, DomainTx, Draft, Forbidden, Invite, InviteStatus, QuotaStore, QuotaTx, Segment,
    StoreError,
};

use crate::engine::Engine;
use crate::error::EnforceError;
use crate::request::{Enforced, Outcome, QuotaRequest};

/// `drafts.max`, used by [`Engine::create_draft`].
pub const DRAFTS: &str = "drafts.max";
/// `segments.max`, used by [`Engine::append_segment`].
pub const SEGMENTS: &str = "segments.max";
/// `collaborators.max`, used by [`Engine::accept_invite`].
pub const COLLABORATORS: &str = "collaborators.max";

type DomainResult<T> = Result<Enforced<T>, EnforceError<StoreError>>;

fn nothing<Tx, T>(_: &mut Tx, _: &Outcome, _: &T) -> Result<(), StoreError> {
    Ok(())
}

impl<S> Engine<S>
where
    S: QuotaStore,
    S::Tx: DomainTx,
{
    /// Creates a draft owned by `user_id`, guarded by the user's `drafts.max`.
    pub fn create_draft(&self, user_id: &str, title: &str) -> DomainResult<Draft> {
        self.create_draft_then(user_id, title, nothing)
    }

    /// [`Engine::create_draft`] with a step inside the same transaction.
    pub fn create_draft_then(
        &self,
        user_id: &str,
        title: &str,
        mut after: impl FnMut(&mut S::Tx, &Outcome, &Draft) -> Result<(), StoreError>,
    ) -> DomainResult<Draft> {
        let now = self.now_ms();
        self.enforce(&QuotaRequest::new(user_id, DRAFTS, 1), |tx, outcome| {
            let draft = tx.insert_draft(user_id, title, now)?;
            after(tx, outcome, &draft)?;
            Ok(draft)
        })
    }

    /// Appends a segment to a draft the user owns or collaborates on,
    /// guarded by the acting user's `segments.max`.
    pub fn append_segment(
        &self,
        user_id: &str,
        draft_id: i64,
        body: &str,
    ) -> DomainResult<Segment> {
        self.append_segment_then(user_id, draft_id, body, nothing)
    }

    /// [`Engine::append_segment`] with a step inside the same transaction.
    pub fn append_segment_then(
        &self,
        user_id: &str,
        draft_id: i64,
        body: &str,
        mut after: impl FnMut(&mut S::Tx, &Outcome, &Segment) -> Result<(), StoreError>,
    ) -> DomainResult<Segment> {
        let now = self.now_ms();
        self.enforce_with(
            |tx| {
                let draft = tx.draft(draft_id)?;
                if !tx.can_write(user_id, &draft)? {
                    return Err(StoreError::Forbidden(Forbidden::NotWriter {
                        user: user_id.to_owned(),
                        draft: draft_id,
                    }));
                }
                Ok((QuotaRequest::new(user_id, SEGMENTS, 1), ()))
            },
            |tx, outcome, ()| {
                let segment = tx.insert_segment(draft_id, user_id, body, now)?;
                after(tx, outcome, &segment)?;
                Ok(segment)
            },
        )
    }

    /// Invites `invitee_id` to a draft owned by `owner_id`. Uses no quota:
    /// the inviter's `collaborators.max` is checked when the invite is accepted.
    pub fn create_invite(
        &self,
        owner_id: &str,
        draft_id: i64,
        invitee_id: &str,
    ) -> Result<Invite, StoreError> {
        self.create_invite_then(owner_id, draft_id, invitee_id, |_, _| Ok(()))
    }

    /// [`Engine::create_invite`] with a step inside the same transaction.
    pub fn create_invite_then(
        &self,
        owner_id: &str,
        draft_id: i64,
        invitee_id: &str,
        after: impl FnOnce(&mut S::Tx, &Invite) -> Result<(), StoreError>,
    ) -> Result<Invite, StoreError> {
        quota_policy_core::names::check_id("invitee", invitee_id).map_err(|e| {
            StoreError::Invalid {
                field: "invitee".to_owned(),
                message: e.to_string(),
            }
        })?;
        let now = self.now_ms();
        let mut tx = self.store().begin_write()?;
        let draft = tx.draft(draft_id)?;
        if draft.owner_id != owner_id {
            return Err(StoreError::Forbidden(Forbidden::NotOwner {
                user: owner_id.to_owned(),
                draft: draft_id,
            }));
        }
        if !tx.user_exists(invitee_id)? {
            return Err(StoreError::UnknownUser(invitee_id.to_owned()));
        }
        let invite = tx.insert_invite(&draft, invitee_id, now)?;
        after(&mut tx, &invite)?;
        tx.commit()?;
        Ok(invite)
    }

    /// Accepts an invite as `invitee_id`, guarded by the **inviter's**
    /// `collaborators.max`. An invite is accepted once; a blocked accept
    /// leaves it pending.
    pub fn accept_invite(&self, invite_id: i64, invitee_id: &str) -> DomainResult<Invite> {
        self.accept_invite_then(invite_id, invitee_id, nothing)
    }

    /// [`Engine::accept_invite`] with a step inside the same transaction.
    pub fn accept_invite_then(
        &self,
        invite_id: i64,
        invitee_id: &str,
        mut after: impl FnMut(&mut S::Tx, &Outcome, &Invite) -> Result<(), StoreError>,
    ) -> DomainResult<Invite> {
        let now = self.now_ms();
        self.enforce_with(
            |tx| {
                let invite = tx.invite(invite_id)?;
                if invite.invitee_id != invitee_id {
                    return Err(StoreError::Forbidden(Forbidden::NotInvitee {
                        user: invitee_id.to_owned(),
                        invite: invite_id,
                    }));
                }
                if invite.status == InviteStatus::Accepted {
                    return Err(StoreError::Conflict(Conflict::InviteAccepted(invite_id)));
                }
                Ok((
                    QuotaRequest::new(invite.inviter_id.clone(), COLLABORATORS, 1),
                    invite,
                ))
            },
            |tx, outcome, invite| {
                let accepted = tx.accept_invite(&invite, now)?;
                after(tx, outcome, &accepted)?;
                Ok(accepted)
            },
        )
    }
}
