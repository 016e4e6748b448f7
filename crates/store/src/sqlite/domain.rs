//! The domain tables (drafts, segments, invites, collaborators) on SQLite,
//! inside the engine's guarded transaction.

use rusqlite::{OptionalExtension, params};

use super::SqliteTx;
use crate::error::{Conflict, StoreError};
use crate::model::{Draft, Invite, InviteStatus, Segment};
use crate::traits::DomainTx;

fn read_invite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Invite> {
    let status: String = row.get(4)?;
    Ok(Invite {
        id: row.get(0)?,
        draft_id: row.get(1)?,
        inviter_id: row.get(2)?,
        invitee_id: row.get(3)?,
        status: if status == "accepted" {
            InviteStatus::Accepted
        } else {
            InviteStatus::Pending
        },
        created_at_ms: row.get(5)?,
        accepted_at_ms: row.get(6)?,
    })
}

const INVITE_COLUMNS: &str =
    "id, draft_id, inviter_id, invitee_id, status, created_at_ms, accepted_at_ms";

impl DomainTx for SqliteTx {
    fn user_exists(&mut self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1")?
            .query_row([user_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn draft(&mut self, draft_id: i64) -> Result<Draft, StoreError> {
        self.conn()
            .prepare_cached("SELECT id, owner_id, title, created_at_ms FROM drafts WHERE id = ?1")?
            .query_row([draft_id], |row| {
                Ok(Draft {
                    id: row.get(0)?,
                    owner_id: row.get(1)?,
                    title: row.get(2)?,
                    created_at_ms: row.get(3)?,
                })
            })
            .optional()?
            .ok_or(StoreError::UnknownDraft(draft_id))
    }

    fn can_write(&mut self, user_id: &str, draft: &Draft) -> Result<bool, StoreError> {
        if draft.owner_id == user_id {
            return Ok(true);
        }
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM collaborators WHERE draft_id = ?1 AND user_id = ?2")?
            .query_row(params![draft.id, user_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn insert_draft(
        &mut self,
        owner_id: &str,
        title: &str,
        now_ms: i64,
    ) -> Result<Draft, StoreError> {
        let id = self.conn()
            .prepare_cached("INSERT INTO drafts (owner_id, title, created_at_ms) VALUES (?1, ?2, ?3) RETURNING id")?
            .query_row(params![owner_id, title, now_ms], |row| row.get(0))?;
        Ok(Draft {
            id,
            owner_id: owner_id.to_owned(),
            title: title.to_owned(),
            created_at_ms: now_ms,
        })
    }

    fn insert_segment(
        &mut self,
        draft_id: i64,
        author_id: &str,
        body: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError> {
        let id = self.conn()
            .prepare_cached(
                "INSERT INTO segments (draft_id, author_id, body, created_at_ms) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(params![draft_id, author_id, body, now_ms], |row| row.get(0))?;
        Ok(Segment {
            id,
            draft_id,
            author_id: author_id.to_owned(),
            body: body.to_owned(),
            created_at_ms: now_ms,
        })
    }

    fn insert_invite(
        &mut self,
        draft: &Draft,
        invitee_id: &str,
        now_ms: i64,
    ) -> Result<Invite, StoreError> {
        let pending = self.conn()
            .prepare_cached("SELECT 1 FROM invites WHERE draft_id = ?1 AND invitee_id = ?2 AND status = 'pending'")?
            .query_row(params![draft.id, invitee_id], |_| Ok(()))
            .optional()?;
        if pending.is_some() {
            return Err(StoreError::Conflict(Conflict::AlreadyInvited {
                invitee: invitee_id.to_owned(),
                draft: draft.id,
            }));
        }
        if self.can_write(invitee_id, draft)? {
            return Err(StoreError::Conflict(Conflict::AlreadyWriter {
                invitee: invitee_id.to_owned(),
                draft: draft.id,
            }));
        }
        let sql = format!(
            "INSERT INTO invites (draft_id, inviter_id, invitee_id, created_at_ms) VALUES (?1, ?2, ?3, ?4) RETURNING {INVITE_COLUMNS}"
        );
        Ok(self.conn().prepare_cached(&sql)?.query_row(
            params![draft.id, draft.owner_id, invitee_id, now_ms],
            read_invite,
        )?)
    }

    fn invite(&mut self, invite_id: i64) -> Result<Invite, StoreError> {
        let sql = format!("SELECT {INVITE_COLUMNS} FROM invites WHERE id = ?1");
        self.conn()
            .prepare_cached(&sql)?
            .query_row([invite_id], read_invite)
            .optional()?
            .ok_or(StoreError::UnknownInvite(invite_id))
    }

    fn accept_invite(&mut self, invite: &Invite, now_ms: i64) -> Result<Invite, StoreError> {
        let sql = format!(
            "UPDATE invites SET status = 'accepted', accepted_at_ms = ?2 WHERE id = ?1 AND status = 'pending' RETURNING {INVITE_COLUMNS}"
        );
        let accepted = self
            .conn()
            .prepare_cached(&sql)?
            .query_row(params![invite.id, now_ms], read_invite)
            .optional()?
            .ok_or(StoreError::Conflict(Conflict::InviteAccepted(invite.id)))?;
        self.conn().prepare_cached("INSERT OR IGNORE INTO collaborators (draft_id, user_id, added_at_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![invite.draft_id, invite.invitee_id, now_ms])?;
        Ok(accepted)
    }
}
