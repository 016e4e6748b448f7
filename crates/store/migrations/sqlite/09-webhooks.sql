-- Webhooks (docs/events.md): endpoints, one delivery per (event, endpoint)
-- written with the event, and every attempt. A delivery is claimed by
-- setting locked_until_ms, so no lock is held while it is in flight.
CREATE TABLE webhooks (
    id               TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    events           TEXT NOT NULL,
    created_at_ms    INTEGER NOT NULL,
    failing_since_ms INTEGER,
    failing          INTEGER NOT NULL DEFAULT 0 CHECK (failing IN (0, 1))
) STRICT;

CREATE TABLE deliveries (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id           TEXT NOT NULL REFERENCES events (event_id) ON DELETE CASCADE,
    webhook_id         TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    state              TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER NOT NULL,
    locked_until_ms    INTEGER,
    last_status        INTEGER,
    last_error         TEXT,
    delivered_at_ms    INTEGER,
    created_at_ms      INTEGER NOT NULL,
    UNIQUE (event_id, webhook_id)
) STRICT;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at_ms) WHERE state = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id);

CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    at_ms       INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX delivery_attempts_by_delivery ON delivery_attempts (delivery_id);
