//! `/api/v1/auth`: registration and sign-in.

use actix_web::{HttpResponse, post, web};
use gatehouse_domain::services::auth::{LoginIdentifier, LoginRequest, RegisterRequest};
use gatehouse_domain::values::PasswordError;
use gatehouse_domain::{DisplayName, Email, FieldError, NewPassword, Username, ValidationErrors};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::http::dto::{TokenPairBody, UserBody};
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Client;
use crate::state::AppState;

/// `POST /auth/register`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple", "username": "ada", "display_name": "Ada"}))]
pub struct RegisterBody {
    /// The account's email; trimmed, compared case-insensitively.
    email: String,
    /// 8–128 characters, not the email, not a common password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// 3–50 letters, digits, `.`, `_`, `-`; derived from the email when omitted.
    username: Option<String>,
    /// Up to 100 characters.
    display_name: Option<String>,
}

impl TryFrom<RegisterBody> for RegisterRequest {
    type Error = ValidationErrors;

    fn try_from(body: RegisterBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let email = errors.check(Email::parse(&body.email));
        let username = body.username.as_deref().and_then(|u| errors.check(Username::parse(u)));
        let display_name = body.display_name.as_deref().and_then(|d| errors.check(DisplayName::parse(d)));
        let password = email.as_ref().and_then(|email| {
            errors.check(NewPassword::parse(body.password, email).map_err(|e: PasswordError| e.on_field("password")))
        });
        errors.into_result()?;
        match (email, password) {
            (Some(email), Some(password)) => Ok(RegisterRequest { email, username, display_name, password }),
            _ => Err(FieldError::new("email", "invalid_format", "email is not a valid address").into()),
        }
    }
}

/// Creates an account. A verification email follows once mail is configured.
#[utoipa::path(
    tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The account was created.", body = UserBody),
        (status = 400, description = "The body is not JSON (`malformed_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken` or `username_taken`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large (`payload_too_large`).", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation_failed`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is saturated (`service_unavailable`); see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/register")]
pub async fn register(state: web::Data<AppState>, body: web::Json<RegisterBody>) -> Result<HttpResponse, ApiError> {
    let request = RegisterRequest::try_from(body.into_inner())?;
    let user = state.auth.register(request).await?;
    Ok(HttpResponse::Created().json(UserBody::new(&user, state.now())))
}

/// `POST /auth/login`: `email` or `username`, and `password`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct LoginBody {
    /// Sign in by email…
    email: Option<String>,
    /// …or by username.
    username: Option<String>,
    /// The password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

impl TryFrom<LoginBody> for LoginRequest {
    type Error = ValidationErrors;

    fn try_from(body: LoginBody) -> Result<Self, ValidationErrors> {
        let identifier = match (body.email.as_deref(), body.username.as_deref()) {
            (Some(email), None) => LoginIdentifier::Email(Email::parse(email).map_err(FieldError::from)?),
            (None, Some(username)) => LoginIdentifier::Username(Username::parse(username).map_err(FieldError::from)?),
            (Some(_), Some(_)) => {
                return Err(FieldError::new("email", "ambiguous", "send either email or username, not both").into());
            }
            (None, None) => return Err(FieldError::new("email", "required", "email or username is required").into()),
        };
        Ok(LoginRequest { identifier, password: body.password })
    }
}

/// Signs in with a password and starts a session.
#[utoipa::path(
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in.", body = TokenPairBody),
        (status = 400, description = "The body is not JSON (`malformed_request`).", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown account or wrong password (`invalid_credentials`).", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`email_not_verified`, `account_locked` or `account_disabled`.", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not `application/json` (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation_failed`).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is saturated (`service_unavailable`); see `Retry-After`.", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/login")]
pub async fn login(
    state: web::Data<AppState>,
    Client(context): Client,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let request = LoginRequest::try_from(body.into_inner())?;
    let pair = state.auth.login(request, context).await?;
    Ok(HttpResponse::Ok().insert_header(("Cache-Control", "no-store")).json(TokenPairBody::from(pair)))
}
