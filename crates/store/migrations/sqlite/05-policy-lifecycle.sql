-- The policy lifecycle: stored component versions, what happened to them
-- (activations, rollbacks, shadow changes, rejected uploads), and the
-- bounded log of enforce decisions.
CREATE TABLE policy_versions (
    sha256      TEXT NOT NULL UNIQUE,
    component   BLOB NOT NULL,
    size_bytes  INTEGER NOT NULL,
    added_at_ms INTEGER NOT NULL,
    added_by    TEXT NOT NULL
) STRICT;

CREATE TABLE policy_events (
    id     INTEGER PRIMARY KEY,
    at_ms  INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('activate', 'rollback', 'shadow', 'clear_shadow', 'reject')),
    sha256 TEXT,
    detail TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX policy_events_by_action ON policy_events (action, id);

CREATE TABLE decision_log (
    id              INTEGER PRIMARY KEY,
    at_ms           INTEGER NOT NULL,
    user_id         TEXT NOT NULL,
    plan_id         TEXT NOT NULL,
    entitlement_key TEXT NOT NULL,
    status          TEXT NOT NULL,
    policy_sha256   TEXT NOT NULL,
    input_json      TEXT NOT NULL,
    output_json     TEXT NOT NULL,
    shadow_sha256   TEXT,
    shadow_verdict  TEXT CHECK (shadow_verdict IN ('same', 'diverged', 'failed')),
    shadow_json     TEXT
) STRICT;
CREATE INDEX decision_log_by_user ON decision_log (user_id, id);
CREATE INDEX decision_log_by_age ON decision_log (at_ms);
