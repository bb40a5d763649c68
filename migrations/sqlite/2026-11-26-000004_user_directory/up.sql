-- The admin user list and the audit-trail lists; the same columns as migrations/postgres,
-- with simpler indexes (SQLite has no trigram index: `q` filters while walking a sort index).
--
-- display_name_normalized is lower-cased by the application with Rust's `to_lowercase()`;
-- SQLite's lower() folds only ASCII, so the backfill of existing rows below folds only ASCII
-- letters of existing display names (they are re-normalised when next changed).
--
-- search_text is what `q` matches (LIKE '%term%' ESCAPE '\'). SQLite can add a generated
-- column only as VIRTUAL: it is computed when read, which a scan does anyway. The fields are
-- joined with U+001F (unit separator), a character no search term contains.
--
-- Text compares bytewise (BINARY) in SQLite, so email order is the byte order of the
-- lower-cased email, as on PostgreSQL (COLLATE "C") and in Rust.

ALTER TABLE users ADD COLUMN display_name_normalized TEXT;
UPDATE users SET display_name_normalized = lower(display_name) WHERE display_name IS NOT NULL;

ALTER TABLE users ADD COLUMN search_text TEXT GENERATED ALWAYS AS (
    email_normalized || char(31) || username_normalized || char(31) || coalesce(display_name_normalized, '')
) VIRTUAL;

CREATE INDEX users_email_normalized_id_idx ON users (email_normalized, id);

DROP INDEX user_roles_role_idx;
CREATE INDEX user_roles_role_user_id_idx ON user_roles (role, user_id);

DROP INDEX activity_events_action_created_at_idx;
CREATE INDEX activity_events_action_created_at_id_idx ON activity_events (action, created_at DESC, id DESC);
