-- Users, roles and role grants; the same shape as migrations/postgres.
--
-- SQLite has no uuid or timestamptz: ids are stored as hyphenated lower-case UUID text and
-- times as fixed-width RFC 3339 UTC text ('2026-11-26T09:30:00.123456Z'), which sorts in time
-- order. crates/store-diesel/src/types.rs does the mapping.
--
-- email_normalized and username_normalized are lower-cased by the application with Rust's
-- `to_lowercase()`: SQLite's own lower() only folds ASCII. They are unique only among
-- non-deleted users: a soft-deleted account frees its email and username.

CREATE TABLE users (
    id                  TEXT NOT NULL PRIMARY KEY,
    email               TEXT NOT NULL,
    email_normalized    TEXT NOT NULL,
    username            TEXT NOT NULL,
    username_normalized TEXT NOT NULL,
    display_name        TEXT,
    password_hash       TEXT,
    status              TEXT NOT NULL DEFAULT 'active'
                             CHECK (status IN ('active', 'locked', 'disabled')),
    locked_until        TEXT,
    email_verified_at   TEXT,
    last_login_at       TEXT,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    deleted_at          TEXT
);

-- The repository maps violations of these two indexes to EmailTaken / UsernameTaken (SQLite
-- reports the columns: "UNIQUE constraint failed: users.email_normalized").
CREATE UNIQUE INDEX users_email_normalized_key ON users (email_normalized) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_username_normalized_key ON users (username_normalized) WHERE deleted_at IS NULL;

-- Keyset pagination of user lists.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE roles (
    name TEXT NOT NULL PRIMARY KEY
);

INSERT INTO roles (name) VALUES ('user'), ('admin');

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT NOT NULL REFERENCES roles (name),
    PRIMARY KEY (user_id, role)
);

CREATE INDEX user_roles_role_idx ON user_roles (role);
