-- Plans, their entitlements, global defaults, users, usage, overrides, grace.
CREATE TABLE plans (
    id                  TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
    enforcement_enabled INTEGER NOT NULL DEFAULT 0 CHECK (enforcement_enabled IN (0, 1)),
    grace_count         INTEGER NOT NULL DEFAULT 0 CHECK (grace_count >= 0),
    rollout_percent     INTEGER NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 0 AND 100),
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
) STRICT;

CREATE TABLE plan_entitlements (
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL CHECK (entitlement_key <> ''),
    limit_value     INTEGER NOT NULL CHECK (limit_value >= -1),
    PRIMARY KEY (plan_id, entitlement_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE entitlement_defaults (
    entitlement_key TEXT PRIMARY KEY NOT NULL CHECK (entitlement_key <> ''),
    limit_value     INTEGER NOT NULL CHECK (limit_value >= -1),
    updated_at_ms   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
    plan_id       TEXT NOT NULL REFERENCES plans (id),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX users_by_plan ON users (plan_id);

CREATE TABLE usage_counters (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    usage_key TEXT NOT NULL,
    value     INTEGER NOT NULL DEFAULT 0 CHECK (value >= 0),
    PRIMARY KEY (user_id, usage_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE overrides (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL CHECK (entitlement_key <> ''),
    value           INTEGER NOT NULL CHECK (value >= -1),
    expires_at_ms   INTEGER,
    created_by      TEXT NOT NULL CHECK (created_by <> ''),
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_id, entitlement_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE grace_usage (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL,
    used            INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    updated_at_ms   INTEGER NOT NULL,
    PRIMARY KEY (user_id, plan_id, entitlement_key)
) STRICT, WITHOUT ROWID;
