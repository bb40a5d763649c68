//! `/api/v1/users/me`: the caller's own account.

use actix_web::{HttpResponse, delete, get, patch, put, web};
use gatehouse_domain::ports::ProfileChanges;
use gatehouse_domain::services::account::{AccountSecurityError, UpdateMeError};
use gatehouse_domain::{DisplayName, Username, ValidationErrors};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use crate::http::dto::UserBody;
use crate::http::error::{ApiError, Problem, problem_example};
use crate::http::extract::{Authenticated, Client, OptionalJson};
use crate::http::problems::{
    BodyTooLarge, Internal, InvalidFields, MalformedJson, NotJson, Overloaded, RateLimited, Unauthorized,
};
use crate::state::AppState;

/// The caller's account.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    responses(
        (status = 200, description = "The caller's account.", body = UserBody),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/me")]
pub async fn get_me(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state.account.get_me(principal.user_id).await?;
    Ok(HttpResponse::Ok().json(UserBody::new(&user, state.now())))
}

/// `PATCH /users/me`: fields left out stay as they are; `display_name: null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"display_name": "Ada Lovelace", "username": "ada"}))]
pub struct UpdateMeBody {
    /// 1–100 characters, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    display_name: Option<Option<String>>,
    /// 3–50 letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 3, max_length = 50)]
    username: Option<String>,
}

/// Tells a field that is present but `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl TryFrom<UpdateMeBody> for ProfileChanges {
    type Error = ValidationErrors;

    fn try_from(body: UpdateMeBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let display_name = match body.display_name {
            None => None,
            Some(None) => Some(None),
            Some(Some(name)) => errors.check(DisplayName::parse(&name)).map(Some),
        };
        let username = body.username.as_deref().and_then(|u| errors.check(Username::parse(u)));
        errors.into_result()?;
        Ok(ProfileChanges { display_name, username })
    }
}

/// Changes the caller's display name and/or username.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    request_body = UpdateMeBody,
    responses(
        (status = 200, description = "The updated account.", body = UserBody),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 409, description = "The username is taken (`username_taken`).", body = Problem, content_type = "application/problem+json", examples(("username_taken" = (value = json!(problem_example(UpdateMeError::UsernameTaken)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[patch("/me")]
pub async fn update_me(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
    body: web::Json<UpdateMeBody>,
) -> Result<HttpResponse, ApiError> {
    let changes = ProfileChanges::try_from(body.into_inner())?;
    let user = state.account.update_me(&principal, changes, context).await?;
    Ok(HttpResponse::Ok().json(UserBody::new(&user, state.now())))
}

/// `PUT /users/me/password`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"current_password": "correct horse battery staple", "new_password": "a different long passphrase"}))]
pub struct ChangePasswordBody {
    /// The password now.
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    /// 8–128 characters, not the email, not a common password.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// Changes the caller's password and revokes their other sessions.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    request_body = ChangePasswordBody,
    responses(
        (status = 204, description = "Changed; every other session is revoked."),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`unauthorized` (token) or `invalid_credentials` (wrong current password).", body = Problem, content_type = "application/problem+json", examples(("unauthorized" = (value = json!(problem_example(ApiError::unauthorized())))), ("invalid_credentials" = (value = json!(problem_example(AccountSecurityError::InvalidCredentials)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, description = "The new password breaks the policy (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("validation_failed" = (value = json!(problem_example(ApiError::validation_field("new_password", "too_short", "password must be at least 8 characters"))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Overloaded),
    )
)]
#[put("/me/password")]
pub async fn change_password(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
    body: web::Json<ChangePasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state.account.change_password(&principal, body.current_password, body.new_password, context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /users/me`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"password": "correct horse battery staple"}))]
pub struct DeleteMeBody {
    /// Required when the account has a password.
    #[schema(value_type = Option<String>, format = Password)]
    password: Option<SecretString>,
}

/// Soft-deletes the caller's account and revokes all their sessions. The email becomes
/// free for a new registration; the account's history stays.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    request_body(content = Option<DeleteMeBody>, description = "The password; may be omitted for accounts without one."),
    responses(
        (status = 204, description = "Deleted; every session is revoked."),
        (status = 400, response = MalformedJson),
        (status = 401, description = "`unauthorized` (token) or `invalid_credentials` (wrong password).", body = Problem, content_type = "application/problem+json", examples(("unauthorized" = (value = json!(problem_example(ApiError::unauthorized())))), ("invalid_credentials" = (value = json!(problem_example(AccountSecurityError::InvalidCredentials)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, description = "The password is required (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("validation_failed" = (value = json!(problem_example(AccountSecurityError::PasswordRequired)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/me")]
pub async fn delete_me(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
    body: OptionalJson<DeleteMeBody>,
) -> Result<HttpResponse, ApiError> {
    let password = body.0.and_then(|b| b.password);
    state.account.delete_me(&principal, password, context).await?;
    Ok(HttpResponse::NoContent().finish())
}
