-- Usage periods (docs/periods.md): a plan's period per entitlement key,
-- when each user's plan started (the anchor of anniversary periods), and
-- usage and grace counted per period, keyed by the period's start. The
-- lifetime counters in usage_counters keep counting every unit.
ALTER TABLE users ADD COLUMN plan_started_at_ms BIGINT NOT NULL DEFAULT 0;
UPDATE users SET plan_started_at_ms = updated_at_ms;

CREATE TABLE plan_periods (
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL CHECK (entitlement_key <> ''),
    period          TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'anniversary')),
    since_ms        BIGINT NOT NULL,
    PRIMARY KEY (plan_id, entitlement_key)
);

CREATE TABLE period_usage (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    usage_key       TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    value           BIGINT NOT NULL DEFAULT 0 CHECK (value >= 0),
    PRIMARY KEY (user_id, usage_key, period_start_ms)
);

CREATE TABLE period_grace (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL,
    used            BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (user_id, plan_id, entitlement_key, period_start_ms)
);

-- A lease reserves units of one period and ends with it.
ALTER TABLE leases ADD COLUMN period_kind TEXT
    CHECK (period_kind IN ('day', 'week', 'month', 'anniversary'));
ALTER TABLE leases ADD COLUMN period_start_ms BIGINT;
ALTER TABLE leases ADD COLUMN period_end_ms BIGINT;
