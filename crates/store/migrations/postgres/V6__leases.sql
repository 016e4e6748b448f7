-- Node credentials and the leases they hold: reservations of a user's
-- units that count as used until they are settled (docs/leases.md).
CREATE TABLE nodes (
    id              TEXT PRIMARY KEY CHECK (id <> ''),
    token_sha256    TEXT NOT NULL UNIQUE,
    max_outstanding BIGINT NOT NULL CHECK (max_outstanding >= 1),
    created_at_ms   BIGINT NOT NULL
);

CREATE TABLE leases (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL,
    usage_key       TEXT NOT NULL,
    plan_id         TEXT NOT NULL,
    reserved        BIGINT NOT NULL CHECK (reserved >= 0),
    reserved_grace  BIGINT NOT NULL CHECK (reserved_grace BETWEEN 0 AND reserved),
    granted_total   BIGINT NOT NULL CHECK (granted_total >= 0),
    spent_total     BIGINT NOT NULL CHECK (spent_total BETWEEN 0 AND granted_total),
    seq             BIGINT NOT NULL CHECK (seq >= 0),
    last_spent      BIGINT,
    last_more       BIGINT,
    last_response   TEXT,
    created_at_ms   BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL,
    revoked_at_ms   BIGINT,
    ended_at_ms     BIGINT,
    end_reason      TEXT CHECK (end_reason IN ('settled', 'expired', 'node_deleted'))
);
CREATE INDEX leases_open_by_user ON leases (user_id, usage_key) WHERE ended_at_ms IS NULL;
CREATE INDEX leases_open_by_node ON leases (node_id) WHERE ended_at_ms IS NULL;
CREATE INDEX leases_open_by_expiry ON leases (expires_at_ms) WHERE ended_at_ms IS NULL;
