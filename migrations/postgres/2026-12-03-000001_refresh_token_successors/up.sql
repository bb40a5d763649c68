-- The hash of the refresh token issued when a token was spent, so a presentation within
-- auth.refresh_reuse_grace_secs gets that same successor back instead of forking the session
-- into a second chain. NULL for unspent tokens and for tokens spent before this migration
-- (whose re-presentation is then treated as a reuse).

ALTER TABLE refresh_tokens ADD COLUMN successor_hash text;
