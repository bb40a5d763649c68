-- Consecutive failed password sign-ins, counted atomically by the store: the same shape as
-- migrations/postgres.
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0);
