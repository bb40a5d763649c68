-- Sessions (one per sign-in) and the hashes of their rotating refresh tokens; the same shape
-- as migrations/postgres, with ids and times as TEXT (see the users migration).
--
-- Each refresh spends one refresh_tokens row (spent_at) and inserts its successor; presenting
-- a spent token again revokes the whole session.

CREATE TABLE sessions (
    id           TEXT NOT NULL PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent   TEXT,
    ip           TEXT,
    created_at   TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    spent_at   TEXT
);

CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
