//! The domain tables (drafts, segments, invites, collaborators) on
//! PostgreSQL, inside the engine's guarded transaction.

use tokio_postgres::Row;

use super::PgTx;
use crate::error::{Conflict, StoreError};
use crate::model::{Draft, Invite, InviteStatus, Segment};
use crate::traits::DomainTx;

fn read_invite(row: &Row) -> Invite {
    let status: String = row.get(4);
    Invite {
        id: row.get(0),
        draft_id: row.get(1),
        inviter_id: row.get(2),
        invitee_id: row.get(3),
        status: if status == "accepted" {
            InviteStatus::Accepted
        } else {
            InviteStatus::Pending
        },
        created_at_ms: row.get(5),
        accepted_at_ms: row.get(6),
    }
}

impl DomainTx for PgTx {
    fn user_exists(&mut self, user_id: &str) -> Result<bool, StoreError> {
        self.run(|conn| {
            Ok(conn
                .query_opt("SELECT 1 FROM users WHERE id = $1", &[&user_id])?
                .is_some())
        })
    }

    fn draft(&mut self, draft_id: i64) -> Result<Draft, StoreError> {
        self.run(|conn| {
            conn.query_opt(
                "SELECT id, owner_id, title, created_at_ms FROM drafts WHERE id = $1",
                &[&draft_id],
            )
        })?
        .map(|row| Draft {
            id: row.get(0),
            owner_id: row.get(1),
            title: row.get(2),
            created_at_ms: row.get(3),
        })
        .ok_or(StoreError::UnknownDraft(draft_id))
    }

    fn can_write(&mut self, user_id: &str, draft: &Draft) -> Result<bool, StoreError> {
        if draft.owner_id == user_id {
            return Ok(true);
        }
        self.run(|conn| {
            Ok(conn
                .query_opt(
                    "SELECT 1 FROM collaborators WHERE draft_id = $1 AND user_id = $2",
                    &[&draft.id, &user_id],
                )?
                .is_some())
        })
    }

    fn insert_draft(
        &mut self,
        owner_id: &str,
        title: &str,
        now_ms: i64,
    ) -> Result<Draft, StoreError> {
        let row = self.run(|conn| {
            conn.query_one(
                "INSERT INTO drafts (owner_id, title, created_at_ms) VALUES ($1, $2, $3) RETURNING id",
                &[&owner_id, &title, &now_ms],
            )
        })?;
        Ok(Draft {
            id: row.get(0),
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
        let row = self.run(|conn| {
            conn.query_one(
                "INSERT INTO segments (draft_id, author_id, body, created_at_ms) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&draft_id, &author_id, &body, &now_ms],
            )
        })?;
        Ok(Segment {
            id: row.get(0),
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
        let pending = self.run(|conn| {
            conn.query_opt(
                "SELECT 1 FROM invites WHERE draft_id = $1 AND invitee_id = $2 AND status = 'pending'",
                &[&draft.id, &invitee_id],
            )
        })?;
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
        let row = self.run(|conn| {
            conn.query_one(
                "INSERT INTO invites (draft_id, inviter_id, invitee_id, created_at_ms) VALUES ($1, $2, $3, $4)
                 RETURNING id, draft_id, inviter_id, invitee_id, status, created_at_ms, accepted_at_ms",
                &[&draft.id, &draft.owner_id, &invitee_id, &now_ms],
            )
        })?;
        Ok(read_invite(&row))
    }

    fn invite(&mut self, invite_id: i64) -> Result<Invite, StoreError> {
        self.run(|conn| {
            conn.query_opt(
                "SELECT id, draft_id, inviter_id, invitee_id, status, created_at_ms, accepted_at_ms
                 FROM invites WHERE id = $1",
                &[&invite_id],
            )
        })?
        .as_ref()
        .map(read_invite)
        .ok_or(StoreError::UnknownInvite(invite_id))
    }

    fn accept_invite(&mut self, invite: &Invite, now_ms: i64) -> Result<Invite, StoreError> {
        let accepted = self
            .run(|conn| {
                conn.query_opt(
                    "UPDATE invites SET status = 'accepted', accepted_at_ms = $2 WHERE id = $1 AND status = 'pending'
                     RETURNING id, draft_id, inviter_id, invitee_id, status, created_at_ms, accepted_at_ms",
                    &[&invite.id, &now_ms],
                )
            })?
            .as_ref()
            .map(read_invite)
            .ok_or(StoreError::Conflict(Conflict::InviteAccepted(invite.id)))?;
        self.run(|conn| {
            conn.execute(
                "INSERT INTO collaborators (draft_id, user_id, added_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (draft_id, user_id) DO NOTHING",
                &[&invite.draft_id, &invite.invitee_id, &now_ms],
            )
        })?;
        Ok(accepted)
    }
}
