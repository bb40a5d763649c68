DROP INDEX activity_events_action_created_at_id_idx;
CREATE INDEX activity_events_action_created_at_idx ON activity_events (action, created_at DESC);
DROP INDEX user_roles_role_user_id_idx;
CREATE INDEX user_roles_role_idx ON user_roles (role);
DROP INDEX users_email_normalized_id_idx;
ALTER TABLE users DROP COLUMN search_text;
ALTER TABLE users DROP COLUMN display_name_normalized;
