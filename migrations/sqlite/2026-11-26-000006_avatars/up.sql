-- Avatars; the same columns as migrations/postgres.
--
-- avatar_key names the re-encoded image in the avatar store ("{user id}-{sha256 hex}", see
-- crates/domain/src/avatar.rs); avatar_content_type is its format. The repository always sets
-- both or neither (SQLite cannot add a table constraint to an existing table).

ALTER TABLE users ADD COLUMN avatar_key TEXT;
ALTER TABLE users ADD COLUMN avatar_content_type TEXT
    CHECK (avatar_content_type IN ('image/png', 'image/jpeg', 'image/webp'));
