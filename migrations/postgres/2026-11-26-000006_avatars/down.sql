ALTER TABLE users
    DROP CONSTRAINT users_avatar_complete,
    DROP COLUMN avatar_content_type,
    DROP COLUMN avatar_key;
