-- One-time tokens and the email outbox; the same shape as migrations/postgres, with ids and
-- times as TEXT (see the users migration) and the payload as JSON text. SQLite has no
-- SKIP LOCKED: relays claim rows inside BEGIN IMMEDIATE, which serialises them.
CREATE TABLE one_time_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    kind       TEXT NOT NULL
                    CHECK (kind IN ('email_verification', 'password_reset', 'oauth_login_code', 'account_unlock')),
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);

CREATE INDEX one_time_tokens_user_id_kind_idx ON one_time_tokens (user_id, kind);

CREATE TABLE email_outbox (
    id              TEXT    NOT NULL PRIMARY KEY,
    recipient       TEXT    NOT NULL,
    recipient_name  TEXT    NOT NULL,
    template        TEXT    NOT NULL,
    payload         TEXT    CHECK (payload IS NULL OR (json_valid(payload) AND json_type(payload) = 'object')),
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    claim_id        TEXT,
    claimed_until   TEXT,
    last_error      TEXT,
    created_at      TEXT    NOT NULL,
    sent_at         TEXT
);

CREATE INDEX email_outbox_pending_due_idx ON email_outbox (next_attempt_at) WHERE status = 'pending';
