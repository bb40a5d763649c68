ALTER TABLE users DROP COLUMN failed_logins;
