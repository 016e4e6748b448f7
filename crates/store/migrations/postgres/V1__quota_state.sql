-- Plans, their entitlements, global defaults, users, usage, overrides, grace.
-- The same tables as SQLite's; times are Unix milliseconds (BIGINT).
CREATE TABLE plans (
    id                  TEXT PRIMARY KEY CHECK (id <> ''),
    enforcement_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    grace_count         BIGINT NOT NULL DEFAULT 0 CHECK (grace_count >= 0),
    rollout_percent     BIGINT NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 0 AND 100),
    created_at_ms       BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);

CREATE TABLE plan_entitlements (
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL CHECK (entitlement_key <> ''),
    limit_value     BIGINT NOT NULL CHECK (limit_value >= -1),
    PRIMARY KEY (plan_id, entitlement_key)
);

CREATE TABLE entitlement_defaults (
    entitlement_key TEXT PRIMARY KEY CHECK (entitlement_key <> ''),
    limit_value     BIGINT NOT NULL CHECK (limit_value >= -1),
    updated_at_ms   BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY CHECK (id <> ''),
    plan_id       TEXT NOT NULL REFERENCES plans (id),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX users_by_plan ON users (plan_id);

CREATE TABLE usage_counters (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    usage_key TEXT NOT NULL,
    value     BIGINT NOT NULL DEFAULT 0 CHECK (value >= 0),
    PRIMARY KEY (user_id, usage_key)
);

CREATE TABLE overrides (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL CHECK (entitlement_key <> ''),
    value           BIGINT NOT NULL CHECK (value >= -1),
    expires_at_ms   BIGINT,
    created_by      TEXT NOT NULL CHECK (created_by <> ''),
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (user_id, entitlement_key)
);

CREATE TABLE grace_usage (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL,
    used            BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (user_id, plan_id, entitlement_key)
);
