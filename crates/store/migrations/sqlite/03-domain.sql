-- The application domain: drafts, their segments, invites and collaborators.
CREATE TABLE drafts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id      TEXT NOT NULL REFERENCES users (id),
    title         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX drafts_by_owner ON drafts (owner_id);

CREATE TABLE segments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    draft_id      INTEGER NOT NULL REFERENCES drafts (id),
    author_id     TEXT NOT NULL REFERENCES users (id),
    body          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX segments_by_draft ON segments (draft_id);
CREATE INDEX segments_by_author ON segments (author_id);

CREATE TABLE invites (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    draft_id       INTEGER NOT NULL REFERENCES drafts (id),
    inviter_id     TEXT NOT NULL REFERENCES users (id),
    invitee_id     TEXT NOT NULL REFERENCES users (id),
    status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted')),
    created_at_ms  INTEGER NOT NULL,
    accepted_at_ms INTEGER
) STRICT;
CREATE INDEX invites_by_invitee ON invites (invitee_id);

CREATE TABLE collaborators (
    draft_id      INTEGER NOT NULL REFERENCES drafts (id),
    user_id       TEXT NOT NULL REFERENCES users (id),
    added_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (draft_id, user_id)
) STRICT, WITHOUT ROWID;
