-- The same shape as migrations/postgres, with ids and times as TEXT.
CREATE TABLE oauth_identities (
    provider         TEXT NOT NULL,
    provider_user_id TEXT NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email            TEXT,
    linked_at        TEXT NOT NULL,
    PRIMARY KEY (provider, provider_user_id),
    UNIQUE (user_id, provider)
);

CREATE TABLE oauth_spent_states (
    state_hash TEXT NOT NULL PRIMARY KEY,
    expires_at TEXT NOT NULL
);

CREATE INDEX oauth_spent_states_expires_at_idx ON oauth_spent_states (expires_at);
