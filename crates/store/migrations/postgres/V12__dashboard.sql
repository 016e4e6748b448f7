-- The admin dashboard: its sessions and the decisions it charts.
-- A session's cookie holds a random id; only its sha256 is stored, with the
-- sha256 of the admin token it was made with (a new token ends the sessions
-- of the old one). Decisions are counted per minute (Unix ms, a multiple of
-- 60000), plan, entitlement and status. Neither is business state: `quota
-- store copy` leaves both behind.
CREATE TABLE ui_sessions (
    id_sha256    TEXT PRIMARY KEY,
    csrf_token   TEXT NOT NULL,
    admin_sha256 TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_ms);

CREATE TABLE decision_minutes (
    minute_ms       BIGINT NOT NULL,
    plan_id         TEXT NOT NULL,
    entitlement_key TEXT NOT NULL,
    status          TEXT NOT NULL,
    count           BIGINT NOT NULL,
    PRIMARY KEY (minute_ms, plan_id, entitlement_key, status)
);

-- A user search is a range of ids in code point order, whatever collation the
-- database sorts text by: this index serves it.
CREATE INDEX users_by_id_code_points ON users (id COLLATE "C");
