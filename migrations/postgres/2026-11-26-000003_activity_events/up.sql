-- The audit trail: one row per security-relevant action, written by the store in the same
-- transaction as the change it records.
--
-- Rows outlive their user: users are only ever soft-deleted, so user_id references users
-- without ON DELETE CASCADE (a hard delete of a user with history is refused, on purpose).
-- actor_id is not a foreign key: the actor is the user, an admin, or NULL for the system,
-- and who acted must stay on record whatever happens to the actor's account.
--
-- details is a JSON object of string values (never secrets). PostgreSQL stores it as jsonb,
-- so audit queries can filter on it (details ->> 'session_id'); SQLite as JSON text. The
-- store maps both to one column type (PortableJson in crates/store-diesel/src/types.rs).

CREATE TABLE activity_events (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id),
    actor_id   uuid,
    action     text        NOT NULL,
    ip         text,
    user_agent text,
    created_at timestamptz NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object')
);

-- A user's history, newest first, with keyset pagination on (created_at, id).
CREATE INDEX activity_events_user_id_created_at_id_idx ON activity_events (user_id, created_at DESC, id DESC);
-- The whole trail, newest first, same pagination.
CREATE INDEX activity_events_created_at_id_idx ON activity_events (created_at DESC, id DESC);
-- The trail filtered by action.
CREATE INDEX activity_events_action_created_at_idx ON activity_events (action, created_at DESC);
