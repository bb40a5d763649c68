-- The audit trail; the same shape as migrations/postgres, with ids and times as TEXT (see the
-- users migration) and details as JSON text instead of jsonb.
--
-- Rows outlive their user: users are only ever soft-deleted, so user_id references users
-- without ON DELETE CASCADE. actor_id is not a foreign key: who acted stays on record
-- whatever happens to the actor's account.

CREATE TABLE activity_events (
    id         TEXT NOT NULL PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    actor_id   TEXT,
    action     TEXT NOT NULL,
    ip         TEXT,
    user_agent TEXT,
    created_at TEXT NOT NULL,
    details    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details) AND json_type(details) = 'object')
);

-- A user's history, newest first, with keyset pagination on (created_at, id).
CREATE INDEX activity_events_user_id_created_at_id_idx ON activity_events (user_id, created_at DESC, id DESC);
-- The whole trail, newest first, same pagination.
CREATE INDEX activity_events_created_at_id_idx ON activity_events (created_at DESC, id DESC);
-- The trail filtered by action.
CREATE INDEX activity_events_action_created_at_idx ON activity_events (action, created_at DESC);
