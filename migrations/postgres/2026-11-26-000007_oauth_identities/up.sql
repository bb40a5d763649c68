-- Accounts at OAuth providers (Google, GitHub…) linked to users: one identity per provider
-- account, and at most one per provider and user.
CREATE TABLE oauth_identities (
    provider         text        NOT NULL,
    provider_user_id text        NOT NULL,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email            text,
    linked_at        timestamptz NOT NULL,
    PRIMARY KEY (provider, provider_user_id),
    CONSTRAINT oauth_identities_user_id_provider_key UNIQUE (user_id, provider)
);

-- Authorization states (SHA-256 of the state) whose callback has been handled, kept until they
-- would have expired anyway, so a replayed callback is refused.
CREATE TABLE oauth_spent_states (
    state_hash text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE INDEX oauth_spent_states_expires_at_idx ON oauth_spent_states (expires_at);
