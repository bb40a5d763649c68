DROP TABLE oauth_spent_states;
DROP TABLE oauth_identities;
