-- Consecutive failed password sign-ins, counted atomically by the store: each failure is one
-- UPDATE … SET failed_logins = failed_logins + 1 on the user's row, so concurrent guesses are
-- each counted and exactly one of them reaches the lockout threshold. A successful sign-in,
-- a lockout, an unlock and an admin's status change start the count again.
ALTER TABLE users ADD COLUMN failed_logins integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0);
