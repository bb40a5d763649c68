-- Avatars: each user points at at most one stored image.
--
-- avatar_key names the re-encoded image in the avatar store ("{user id}-{sha256 hex}", see
-- crates/domain/src/avatar.rs); avatar_content_type is its format. Both are set or both are
-- null. The image bytes are not in the database.

ALTER TABLE users
    ADD COLUMN avatar_key          text,
    ADD COLUMN avatar_content_type text
        CHECK (avatar_content_type IN ('image/png', 'image/jpeg', 'image/webp')),
    ADD CONSTRAINT users_avatar_complete CHECK ((avatar_key IS NULL) = (avatar_content_type IS NULL));
