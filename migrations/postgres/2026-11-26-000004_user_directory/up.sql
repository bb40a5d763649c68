-- The admin user list: search, filters, sorts and keyset pagination, each served by an index
-- (EXPLAIN on 1,000,000 users shows no sequential scan of users), and the audit-trail lists.
--
-- display_name_normalized is lower-cased by the application with Rust's `to_lowercase()`, like
-- email_normalized and username_normalized, so search folds Unicode case the same way on
-- PostgreSQL and SQLite. Existing rows are backfilled with lower(), which agrees for them.
--
-- search_text is what `q` matches: `search_text LIKE '%' || term || '%' ESCAPE '\'`, the term
-- lower-cased and its %, _ and \ escaped. The fields are joined with U+001F (unit separator),
-- a character no search term contains, so a term never matches across two fields.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- Sorting by email is byte order of the lower-cased email (as on SQLite and in Rust), whatever
-- the database's default collation: cursors compare the way the index sorts, and the order does
-- not change with the server's locale. Done before search_text, which depends on the column.
ALTER TABLE users ALTER COLUMN email_normalized TYPE text COLLATE "C";

ALTER TABLE users ADD COLUMN display_name_normalized text;
UPDATE users SET display_name_normalized = lower(display_name) WHERE display_name IS NOT NULL;

ALTER TABLE users ADD COLUMN search_text text NOT NULL GENERATED ALWAYS AS (
    email_normalized || E'\x1F' || username_normalized || E'\x1F' || coalesce(display_name_normalized, '')
) STORED;

-- `q`: substring search. A trigram index answers LIKE '%term%' for terms of three or more
-- characters; rare terms become a bitmap scan of a few rows, common ones are cheaper to find by
-- walking the sort index and filtering, which the planner picks from the statistics.
CREATE INDEX users_search_text_trgm_idx ON users USING gin (search_text gin_trgm_ops);

-- sort=email / -email, with or without deleted users: (email_normalized, id) > / < (…) walks it.
-- sort=created_at / -created_at uses users_created_at_id_idx (the users migration).
CREATE INDEX users_email_normalized_id_idx ON users (email_normalized, id);

-- role=: EXISTS (… user_roles WHERE user_id = users.id AND role = …) either probes the primary
-- key (user_id, role) for each user walked in sort order, or reads every holder of a rare role
-- (admin) from this index without touching the table. Replaces the index on role alone.
DROP INDEX user_roles_role_idx;
CREATE INDEX user_roles_role_user_id_idx ON user_roles (role, user_id);

-- status=locked / status=disabled: the few users in a non-active status, in each sort order,
-- so that filtering for them never walks the whole table. (status=active is most users: the
-- sort index with a filter finds a page at once.)
CREATE INDEX users_inactive_created_at_id_idx ON users (status, created_at, id) WHERE status <> 'active';
CREATE INDEX users_inactive_email_normalized_id_idx ON users (status, email_normalized, id) WHERE status <> 'active';

-- Audit trail by action, newest first, with the id so that the keyset (created_at, id) < (…)
-- is an index range. Replaces the index without the id.
DROP INDEX activity_events_action_created_at_idx;
CREATE INDEX activity_events_action_created_at_id_idx ON activity_events (action, created_at DESC, id DESC);
