-- Threshold notifications (docs/events.md): a plan's thresholds per
-- entitlement key, and the outbox of events, written in the transaction
-- that crosses a threshold or blocks. One event per (user, key, period,
-- threshold): a period of NULL is a key without one.
CREATE TABLE plan_thresholds (
    plan_id         TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    entitlement_key TEXT NOT NULL CHECK (entitlement_key <> ''),
    percent         BIGINT NOT NULL CHECK (percent BETWEEN 1 AND 1000),
    PRIMARY KEY (plan_id, entitlement_key, percent)
);

CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE,
    type            TEXT NOT NULL CHECK (type IN ('threshold.reached', 'quota.blocked')),
    user_id         TEXT NOT NULL,
    entitlement_key TEXT NOT NULL,
    period_start_ms BIGINT,
    threshold       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL
);
CREATE UNIQUE INDEX events_once ON events (user_id, entitlement_key, COALESCE(period_start_ms, -1), threshold);
CREATE INDEX events_by_age ON events (created_at_ms);

-- The limit the decision granting a lease used: its settled units cross
-- thresholds against it.
ALTER TABLE leases ADD COLUMN decided_limit BIGINT NOT NULL DEFAULT -1;
