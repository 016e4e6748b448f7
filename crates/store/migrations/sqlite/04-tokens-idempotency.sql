-- User API tokens (only their sha256 is stored) and idempotent responses.
CREATE TABLE user_tokens (
    token_sha256  TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX user_tokens_by_user ON user_tokens (user_id);

CREATE TABLE idempotency_keys (
    user_id        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    status_code    INTEGER NOT NULL,
    response_json  TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);
