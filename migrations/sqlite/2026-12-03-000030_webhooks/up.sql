-- Webhooks; the same shape as migrations/postgres, ids and times as TEXT, booleans as
-- INTEGER. SQLite has no SKIP LOCKED: relays claim inside BEGIN IMMEDIATE.
CREATE TABLE webhook_endpoints (
    id                    TEXT    NOT NULL PRIMARY KEY,
    url                   TEXT    NOT NULL,
    description           TEXT,
    event_types           TEXT    NOT NULL,
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    sealed_secret         TEXT    NOT NULL,
    sealed_previous       TEXT,
    previous_secret_until TEXT,
    failing_since         TEXT,
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);

CREATE INDEX webhook_endpoints_created_idx ON webhook_endpoints (created_at, id);

CREATE TABLE webhook_events (
    id         TEXT NOT NULL PRIMARY KEY,
    event_type TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               TEXT    NOT NULL PRIMARY KEY,
    endpoint_id      TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         TEXT    NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    event_type       TEXT    NOT NULL,
    status           TEXT    NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    next_attempt_at  TEXT    NOT NULL,
    claim_id         TEXT,
    claimed_until    TEXT,
    created_at       TEXT    NOT NULL,
    finished_at      TEXT
);

CREATE INDEX webhook_deliveries_open_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at, id);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
