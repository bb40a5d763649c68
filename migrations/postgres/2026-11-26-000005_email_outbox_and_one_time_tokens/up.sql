-- One-time tokens (email verification, password reset, OAuth login codes, unlock links) and
-- the email outbox.
--
-- Tokens are stored only as the SHA-256 of the secret. A token is live while used_at is NULL
-- and expires_at is in the future; issuing a token deletes the user's other unused tokens of
-- the same kind, so only the newest link works.
CREATE TABLE one_time_tokens (
    token_hash text        PRIMARY KEY,
    kind       text        NOT NULL
                           CHECK (kind IN ('email_verification', 'password_reset', 'oauth_login_code', 'account_unlock')),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE INDEX one_time_tokens_user_id_kind_idx ON one_time_tokens (user_id, kind);

-- Email written in the same transaction as the change that causes it (transactional outbox).
-- Relays lease due rows (claim_id, claimed_until; SELECT … FOR UPDATE SKIP LOCKED), send them
-- and mark them sent, or schedule a retry (next_attempt_at) or give up (failed, last_error).
-- payload holds what the template needs, tokens included, so it is cleared (NULL) once the
-- message is sent or given up on.
CREATE TABLE email_outbox (
    id              uuid        PRIMARY KEY,
    recipient       text        NOT NULL,
    recipient_name  text        NOT NULL,
    template        text        NOT NULL,
    payload         jsonb       CHECK (payload IS NULL OR jsonb_typeof(payload) = 'object'),
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    claim_id        uuid,
    claimed_until   timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);

-- What relays poll: pending rows by due time.
CREATE INDEX email_outbox_pending_due_idx ON email_outbox (next_attempt_at) WHERE status = 'pending';
