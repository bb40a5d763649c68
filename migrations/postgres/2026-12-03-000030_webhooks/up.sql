-- Webhooks: subscriber endpoints, the events written with the change they describe, and one
-- delivery per (event, endpoint), which relays lease like the email outbox
-- (SELECT … FOR UPDATE SKIP LOCKED; claim_id, claimed_until).
--
-- Secrets are sealed with the database's SecretCipher (bound to the endpoint id); after a
-- rotation the previous secret keeps signing until previous_secret_until.
CREATE TABLE webhook_endpoints (
    id                    uuid        PRIMARY KEY,
    url                   text        NOT NULL,
    description           text,
    event_types           text        NOT NULL,
    enabled               boolean     NOT NULL DEFAULT true,
    disabled_reason       text,
    sealed_secret         text        NOT NULL,
    sealed_previous       text,
    previous_secret_until timestamptz,
    failing_since         timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);

CREATE INDEX webhook_endpoints_created_idx ON webhook_endpoints (created_at, id);

-- The body POSTed for an event, exactly as signed: {"id", "type", "timestamp", "data"}.
CREATE TABLE webhook_events (
    id         uuid        PRIMARY KEY,
    event_type text        NOT NULL,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id         uuid        NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    event_type       text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL,
    claim_id         uuid,
    claimed_until    timestamptz,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz
);

-- What relays poll: open deliveries by due time.
CREATE INDEX webhook_deliveries_open_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
-- An endpoint's delivery list, newest first.
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at, id);
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);
