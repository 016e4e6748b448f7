-- Webhooks (docs/events.md): endpoints, one delivery per (event, endpoint)
-- written with the event, and every attempt. A delivery is claimed by
-- setting locked_until_ms, so no lock is held while it is in flight.
CREATE TABLE webhooks (
    id               TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    events           TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    failing_since_ms BIGINT,
    failing          BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE deliveries (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id           TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    webhook_id         TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts           BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms BIGINT NOT NULL,
    locked_until_ms    BIGINT,
    last_status        BIGINT,
    last_error         TEXT,
    delivered_at_ms    BIGINT,
    created_at_ms      BIGINT NOT NULL,
    UNIQUE (event_id, webhook_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at_ms) WHERE state = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id);

CREATE TABLE delivery_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at_ms       BIGINT NOT NULL,
    status      BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
