//! [`IdentityRepository`] on Diesel: the `oauth_identities` and `oauth_spent_states` tables,
//! and OAuth login codes in `one_time_tokens`.

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use gatehouse_domain::ports::{
    Identity, IdentityRepository, LinkIdentityError, NewOneTimeToken, TokenHash, TokenKind, UnlinkIdentityError,
    UseTokenError,
};
use gatehouse_domain::{Email, NewActivity, UserId};

use crate::activity::{NewActivityRow, insert_activity};
use crate::connection::{AnyConnection, write_transaction};
use crate::database::Database;
use crate::schema::{oauth_identities, oauth_spent_states, one_time_tokens, users};
use crate::tokens::{NewTokenRow, spend_token};
use crate::types::{DbTime, DbUuid};

/// Linked identities in PostgreSQL or SQLite. Obtain one with [`Database::identities`].
#[derive(Debug, Clone)]
pub struct DieselIdentityRepository {
    db: Database,
}

impl DieselIdentityRepository {
    /// A repository on `db`.
    #[must_use]
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// A row of `oauth_identities`.
#[derive(Debug, Queryable, Insertable)]
#[diesel(table_name = oauth_identities)]
pub(crate) struct IdentityRow {
    provider: String,
    provider_user_id: String,
    user_id: DbUuid,
    email: Option<String>,
    linked_at: DbTime,
}

impl From<Identity> for IdentityRow {
    fn from(identity: Identity) -> Self {
        Self {
            provider: identity.provider,
            provider_user_id: identity.provider_user_id,
            user_id: DbUuid(*identity.user_id.as_uuid()),
            email: identity.email.map(|e| e.as_ref().to_owned()),
            linked_at: DbTime(identity.linked_at),
        }
    }
}

/// Whether the provider account of `row` is linked to some user already.
pub(crate) fn identity_linked(connection: &mut AnyConnection, row: &IdentityRow) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(oauth_identities::table.find((&row.provider, &row.provider_user_id))))
        .get_result(connection)
}

/// Inserts `row` and records `event`. Must run inside [`write_transaction`].
pub(crate) fn insert_identity(
    connection: &mut AnyConnection,
    row: &IdentityRow,
    event: &NewActivityRow,
) -> QueryResult<()> {
    diesel::insert_into(oauth_identities::table).values(row).execute(connection)?;
    insert_activity(connection, event)
}

/// Whether `error` is a unique violation on `oauth_identities` (a link that raced another).
pub(crate) fn is_identity_conflict(error: &DieselError) -> bool {
    let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = error else {
        return false;
    };
    info.constraint_name().is_some_and(|name| name.starts_with("oauth_identities"))
        || info.message().contains("oauth_identities.")
}

impl IdentityRow {
    fn into_identity(self) -> anyhow::Result<Identity> {
        Ok(Identity {
            provider: self.provider,
            provider_user_id: self.provider_user_id,
            user_id: UserId::from_uuid(self.user_id.0),
            email: self.email.as_deref().map(Email::parse).transpose().context("a stored identity email is invalid")?,
            linked_at: self.linked_at.0,
        })
    }
}

/// Why a transaction in this module stopped.
enum Failure<E> {
    Refused(E),
    Database(DieselError),
}

impl<E> From<DieselError> for Failure<E> {
    fn from(error: DieselError) -> Self {
        Self::Database(error)
    }
}

#[async_trait]
impl IdentityRepository for DieselIdentityRepository {
    #[tracing::instrument(level = "debug", skip(self, provider_user_id), err)]
    async fn find(&self, provider: &str, provider_user_id: &str) -> anyhow::Result<Option<Identity>> {
        let (provider, provider_user_id) = (provider.to_owned(), provider_user_id.to_owned());
        self.db
            .run(move |connection| {
                let row: Option<IdentityRow> = oauth_identities::table
                    .find((provider, provider_user_id))
                    .first(connection)
                    .optional()
                    .context("could not look up the identity")?;
                row.map(IdentityRow::into_identity).transpose()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self), err)]
    async fn list(&self, user_id: UserId) -> anyhow::Result<Vec<Identity>> {
        let user_id = DbUuid(*user_id.as_uuid());
        self.db
            .run(move |connection| {
                let rows: Vec<IdentityRow> = oauth_identities::table
                    .filter(oauth_identities::user_id.eq(user_id))
                    .order((oauth_identities::linked_at.asc(), oauth_identities::provider.asc()))
                    .load(connection)
                    .context("could not list the identities")?;
                rows.into_iter().map(IdentityRow::into_identity).collect()
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %identity.user_id, provider = %identity.provider), err)]
    async fn link(&self, identity: Identity, event: NewActivity) -> Result<(), LinkIdentityError> {
        let row = IdentityRow::from(identity);
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| insert_identity(connection, &row, &event)).map_err(|e| {
                    match e {
                        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                            LinkIdentityError::AlreadyLinked
                        }
                        other => LinkIdentityError::Unexpected(anyhow::Error::new(other).context("could not link")),
                    }
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, event), err)]
    async fn unlink(&self, user_id: UserId, provider: &str, event: NewActivity) -> Result<(), UnlinkIdentityError> {
        let provider = provider.to_owned();
        let id = DbUuid(*user_id.as_uuid());
        let event = NewActivityRow::new(&event)?;
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    // Locks the user's row first, so two unlinks of one user run one after the
                    // other and cannot both see the other's identity as the remaining one.
                    diesel::update(users::table.find(id)).set(users::id.eq(id)).execute(connection)?;
                    let password: Option<Option<String>> =
                        users::table.find(id).select(users::password_hash).first(connection).optional()?;
                    let Some(password) = password else {
                        return Err(Failure::Refused(UnlinkIdentityError::NotFound));
                    };
                    let deleted = diesel::delete(
                        oauth_identities::table
                            .filter(oauth_identities::user_id.eq(id))
                            .filter(oauth_identities::provider.eq(&provider)),
                    )
                    .execute(connection)?;
                    if deleted == 0 {
                        return Err(Failure::Refused(UnlinkIdentityError::NotFound));
                    }
                    let others: i64 = oauth_identities::table
                        .filter(oauth_identities::user_id.eq(id))
                        .count()
                        .get_result(connection)?;
                    if password.is_none() && others == 0 {
                        return Err(Failure::Refused(UnlinkIdentityError::LastSignInMethod));
                    }
                    insert_activity(connection, &event)?;
                    Ok(())
                })
                .map_err(|e| match e {
                    Failure::Refused(e) => e,
                    Failure::Database(e) => {
                        UnlinkIdentityError::Unexpected(anyhow::Error::new(e).context("could not unlink"))
                    }
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn spend_state(&self, state: &TokenHash, expires_at: DateTime<Utc>) -> anyhow::Result<bool> {
        let hash = state.as_str().to_owned();
        self.db
            .run(move |connection| {
                let now = DbTime(Utc::now());
                diesel::delete(oauth_spent_states::table.filter(oauth_spent_states::expires_at.le(now)))
                    .execute(connection)
                    .context("could not prune spent states")?;
                match diesel::insert_into(oauth_spent_states::table)
                    .values((
                        oauth_spent_states::state_hash.eq(hash),
                        oauth_spent_states::expires_at.eq(DbTime(expires_at)),
                    ))
                    .execute(connection)
                {
                    Ok(_) => Ok(true),
                    Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
                    Err(e) => Err(anyhow::Error::new(e).context("could not spend the state")),
                }
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user_id = %code.user_id), err)]
    async fn issue_login_code(&self, code: NewOneTimeToken) -> anyhow::Result<()> {
        let row = NewTokenRow::from(&code);
        self.db
            .run(move |connection| {
                diesel::insert_into(one_time_tokens::table)
                    .values(&row)
                    .execute(connection)
                    .context("could not store the login code")?;
                Ok(())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, err)]
    async fn spend_login_code(&self, code: &TokenHash, at: DateTime<Utc>) -> Result<UserId, UseTokenError> {
        let code = code.clone();
        self.db
            .run(move |connection| {
                write_transaction(connection, |connection| {
                    let owner: Option<DbUuid> = one_time_tokens::table
                        .find(code.as_str())
                        .filter(one_time_tokens::kind.eq(TokenKind::OAuthLoginCode.as_str()))
                        .select(one_time_tokens::user_id)
                        .first(connection)
                        .optional()?;
                    let Some(owner) = owner else {
                        return Ok(None);
                    };
                    let spent = spend_token(connection, TokenKind::OAuthLoginCode, &code, owner, at)?;
                    QueryResult::Ok(spent.then(|| UserId::from_uuid(owner.0)))
                })
                .map_err(|e| {
                    UseTokenError::Unexpected(anyhow::Error::new(e).context("could not spend the login code"))
                })?
                .ok_or(UseTokenError::Invalid)
            })
            .await
    }
}
