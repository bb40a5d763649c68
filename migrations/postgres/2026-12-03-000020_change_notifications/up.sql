-- Every instance keeps users and live sessions in a read cache and forgets them when told.
-- These triggers tell them in the same transaction as the change (PostgreSQL delivers the
-- notification at commit, and never for a rolled-back change), so no change made through any
-- path (the server, the CLI, an operator's UPDATE) escapes the listeners. Payloads are the
-- read cache's change texts: `u:<user id>` and `s:<session id>`.

CREATE FUNCTION gatehouse_notify_user_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('gatehouse_changes', 'u:' || OLD.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_notify_change
    AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_user_change();

CREATE FUNCTION gatehouse_notify_session_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('gatehouse_changes', 's:' || OLD.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Only revocations and deletions: `last_used_at` moves on every refresh and no cached read
-- shows it.
CREATE TRIGGER sessions_notify_revocation
    AFTER UPDATE OF revoked_at, expires_at, user_id ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION gatehouse_notify_session_change();

CREATE TRIGGER sessions_notify_deletion
    AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION gatehouse_notify_session_change();
