//! [`OneTimeTokenRepository`] on Diesel: the `one_time_tokens` table.
//!
//! Spending a token is one conditional `UPDATE … WHERE used_at IS NULL AND expires_at > now`
//! inside the transaction of its effect ([`spend_token`]): of two racing spenders, the second
//! waits for the first's row lock (PostgreSQL) or write lock (SQLite) and then matches
//! nothing, so exactly one wins.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatehouse_domain::ports::{
    NewOneTimeToken, OneTimeToken, OneTimeTokenRepository, SecretCipher, TokenHash, TokenKind, TokenMail,
};
use gatehouse_domain::{NewActivity, UserId};

use crate::activity::{NewActivityRow, insert_activity};
use crate::connection::{AnyConnection, write_transaction};
use crate::database::Database;
use crate::outbox::{NewEmailRow, insert_email};
use crate::schema::one_time_tokens;
use crate::types::{DbTime, DbUuid};

/// One-time tokens in PostgreSQL or SQLite. Obtain one with [`Database::one_time_tokens`].
#[derive(Debug, Clone)]
pub struct DieselOneTimeTokenRepository {
    db: Database,
}

impl DieselOneTimeTokenRepository {
    /// A repository on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A one_time_tokens row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = one_time_tokens, treat_none_as_default_value = false)]
pub(crate) struct NewTokenRow {
    token_hash: String,
    kind: &'static str,
    user_id: DbUuid,
    created_at: DbTime,
    expires_at: DbTime,
    used_at: Option<DbTime>,
}

impl From<&NewOneTimeToken> for NewTokenRow {
    fn from(token: &NewOneTimeToken) -> Self {
        Self {
            token_hash: token.hash.as_str().to_owned(),
            kind: token.kind.as_str(),
            user_id: DbUuid(*token.user_id.as_uuid()),
            created_at: DbTime(token.created_at),
            expires_at: DbTime(token.expires_at),
            used_at: None,
        }
    }
}

/// A token and its email, as rows, built before the transaction starts.
#[derive(Debug)]
pub(crate) struct TokenMailRows {
    token: NewTokenRow,
    email: NewEmailRow,
}

impl TokenMailRows {
    /// The rows of `mail`.
    ///
    /// # Errors
    ///
    /// See [`NewEmailRow::new`].
    pub(crate) fn new(mail: &TokenMail, secrets: Option<&dyn SecretCipher>) -> anyhow::Result<Self> {
        Ok(Self { token: NewTokenRow::from(&mail.token), email: NewEmailRow::new(&mail.email, secrets)? })
    }
}

/// Deletes the user's other unused tokens of the same kind (only the newest link works), stores
/// the token and queues its email. Call it inside a transaction.
pub(crate) fn insert_token_mail(connection: &mut AnyConnection, rows: &TokenMailRows) -> QueryResult<()> {
    diesel::delete(
        one_time_tokens::table
            .filter(one_time_tokens::user_id.eq(rows.token.user_id))
            .filter(one_time_tokens::kind.eq(rows.token.kind))
            .filter(one_time_tokens::used_at.is_null()),
    )
    .execute(connection)?;
    diesel::insert_into(one_time_tokens::table).values(&rows.token).execute(connection)?;
    insert_email(connection, &rows.email)
}

/// Spends the live token of `kind` with `hash` belonging to `user_id`; `false` when there is
/// none (unknown, someone else's, used, expired, or spent by a racing transaction). Call it
/// inside the transaction of the token's effect.
pub(crate) fn spend_token(
    connection: &mut AnyConnection,
    kind: TokenKind,
    hash: &TokenHash,
    user_id: DbUuid,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let spent = diesel::update(
        one_time_tokens::table
            .find(hash.as_str())
            .filter(one_time_tokens::kind.eq(kind.as_str()))
            .filter(one_time_tokens::user_id.eq(user_id))
            .filter(one_time_tokens::used_at.is_null())
            .filter(one_time_tokens::expires_at.gt(DbTime(at))),
    )
    .set(one_time_tokens::used_at.eq(Some(DbTime(at))))
    .execute(connection)?;
    Ok(spent == 1)
}

/// Deletes every token of `kinds` that `user_id` still holds, spent or not, so that no link
/// mailed before survives a change that makes it moot (a new password, an admin's status
/// change). Call it inside the transaction of that change.
pub(crate) fn delete_user_tokens(
    connection: &mut AnyConnection,
    user_id: DbUuid,
    kinds: &[TokenKind],
) -> QueryResult<usize> {
    let kinds: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    diesel::delete(
        one_time_tokens::table.filter(one_time_tokens::user_id.eq(user_id)).filter(one_time_tokens::kind.eq_any(kinds)),
    )
    .execute(connection)
}

#[async_trait]
impl OneTimeTokenRepository for DieselOneTimeTokenRepository {
    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %mail.token.user_id, kind = %mail.token.kind), err)]
    async fn issue(&self, mail: TokenMail, event: Option<NewActivity>) -> anyhow::Result<()> {
        let rows = TokenMailRows::new(&mail, self.db.secrets())?;
        let event = event.as_ref().map(NewActivityRow::new).transpose()?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    insert_token_mail(connection, &rows)?;
                    if let Some(event) = &event {
                        insert_activity(connection, event)?;
                    }
                    QueryResult::Ok(())
                })
                .context("could not issue the token")
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, hash), err)]
    async fn find_live(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<OneTimeToken>> {
        let hash = hash.as_str().to_owned();
        self.db
            .run(move |connection| {
                let row: Option<(DbUuid, DbTime, DbTime)> = one_time_tokens::table
                    .find(hash)
                    .filter(one_time_tokens::kind.eq(kind.as_str()))
                    .filter(one_time_tokens::used_at.is_null())
                    .filter(one_time_tokens::expires_at.gt(DbTime(now)))
                    .select((one_time_tokens::user_id, one_time_tokens::created_at, one_time_tokens::expires_at))
                    .first(connection)
                    .optional()
                    .context("could not look up the token")?;
                Ok(row.map(|(user_id, created_at, expires_at)| OneTimeToken {
                    kind,
                    user_id: UserId::from_uuid(user_id.0),
                    created_at: created_at.0,
                    expires_at: expires_at.0,
                }))
            })
            .await
    }
}
