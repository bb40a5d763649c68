DROP TRIGGER sessions_notify_deletion ON sessions;
DROP TRIGGER sessions_notify_revocation ON sessions;
DROP FUNCTION gatehouse_notify_session_change();
DROP TRIGGER users_notify_change ON users;
DROP FUNCTION gatehouse_notify_user_change();
