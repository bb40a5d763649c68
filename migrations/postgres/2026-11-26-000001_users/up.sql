-- Users, roles and role grants.
--
-- email_normalized and username_normalized are lower-cased by the application with Rust's
-- `to_lowercase()`, so Unicode case folds the same way on PostgreSQL and SQLite. They are
-- unique only among non-deleted users: a soft-deleted account frees its email and username.

CREATE TABLE users (
    id                  uuid        PRIMARY KEY,
    email               text        NOT NULL,
    email_normalized    text        NOT NULL,
    username            text        NOT NULL,
    username_normalized text        NOT NULL,
    display_name        text,
    password_hash       text,
    status              text        NOT NULL DEFAULT 'active'
                                    CHECK (status IN ('active', 'locked', 'disabled')),
    locked_until        timestamptz,
    email_verified_at   timestamptz,
    last_login_at       timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    deleted_at          timestamptz
);

-- The repository maps violations of these two indexes to EmailTaken / UsernameTaken by name.
CREATE UNIQUE INDEX users_email_normalized_key ON users (email_normalized) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_username_normalized_key ON users (username_normalized) WHERE deleted_at IS NULL;

-- Keyset pagination of user lists.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);

CREATE TABLE roles (
    name text PRIMARY KEY
);

INSERT INTO roles (name) VALUES ('user'), ('admin');

CREATE TABLE user_roles (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    text NOT NULL REFERENCES roles (name),
    PRIMARY KEY (user_id, role)
);

CREATE INDEX user_roles_role_idx ON user_roles (role);
