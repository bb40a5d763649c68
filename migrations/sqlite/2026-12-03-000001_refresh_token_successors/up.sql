-- The hash of the refresh token issued when a token was spent; the same column as in
-- migrations/postgres (see there).

ALTER TABLE refresh_tokens ADD COLUMN successor_hash TEXT;
