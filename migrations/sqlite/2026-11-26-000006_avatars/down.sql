ALTER TABLE users DROP COLUMN avatar_content_type;
ALTER TABLE users DROP COLUMN avatar_key;
