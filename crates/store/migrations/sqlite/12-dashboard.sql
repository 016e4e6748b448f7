-- The admin dashboard: its sessions and the decisions it charts.
-- A session's cookie holds a random id; only its sha256 is stored, with the
-- sha256 of the admin token it was made with (a new token ends the sessions
-- of the old one). Decisions are counted per minute (Unix ms, a multiple of
-- 60000), plan, entitlement and status. Neither is business state: `quota
-- store copy` leaves both behind.
CREATE TABLE ui_sessions (
    id_sha256    TEXT PRIMARY KEY NOT NULL,
    csrf_token   TEXT NOT NULL,
    admin_sha256 TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL
) STRICT;
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_ms);

CREATE TABLE decision_minutes (
    minute_ms       INTEGER NOT NULL,
    plan_id         TEXT NOT NULL,
    entitlement_key TEXT NOT NULL,
    status          TEXT NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, plan_id, entitlement_key, status)
) STRICT, WITHOUT ROWID;
