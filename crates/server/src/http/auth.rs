//! `/api/v1/auth`: registration and sign-in.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, post, web};
use gatehouse_domain::services::auth::{
    LoginError, LoginIdentifier, LoginRequest, RegisterError, RegisterRequest, TokenPair, UnlockError,
};
use gatehouse_domain::services::recovery::{ResetPasswordError, VerifyEmailError};
use gatehouse_domain::services::sessions::RefreshError;
use gatehouse_domain::values::PasswordError;
use gatehouse_domain::{DisplayName, Email, FieldError, NewPassword, Username, ValidationErrors};
use secrecy::SecretString;
use serde::Deserialize;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::http::cookies::{self, CookieQuery, TokenSource};
use crate::http::dto::{TokenPairBody, UserBody};
use crate::http::error::{ApiError, ErrorKind, Problem, problem_example};
use crate::http::extract::{Client, OptionalJson};
use crate::http::problems::{
    BodyTooLarge, Internal, InvalidCredentials, InvalidFields, MalformedJson, MalformedJsonOrQuery, MalformedQuery,
    NoRefreshToken, NoToken, NotAnEmail, NotJson, Overloaded, RateLimited, RefreshCookieWithoutHeader, SignInRefused,
};
use crate::http::rate_limit::{Limit, RuleName};
use crate::state::AppState;

/// `POST /auth/register`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery staple", "username": "ada", "display_name": "Ada"}))]
pub struct RegisterBody {
    /// The account's email; trimmed, compared case-insensitively.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// 8–128 characters, not the email, not a common password.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    password: SecretString,
    /// 3–50 letters, digits, `.`, `_`, `-`; derived from the email when omitted.
    #[schema(min_length = 3, max_length = 50)]
    username: Option<String>,
    /// Up to 100 characters.
    #[schema(max_length = 100)]
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

/// Creates an account and sends a verification email (its link works once, for 24 hours by
/// default).
#[utoipa::path(
    tag = "auth",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "The account was created.", body = UserBody),
        (status = 400, response = MalformedJson),
        (status = 409, description = "`email_taken` or `username_taken`.", body = Problem, content_type = "application/problem+json", examples(("email_taken" = (value = json!(problem_example(RegisterError::EmailTaken)))), ("username_taken" = (value = json!(problem_example(RegisterError::UsernameTaken)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Overloaded),
    )
)]
#[post("/register", wrap = "Limit::REGISTER")]
pub async fn register(
    state: web::Data<AppState>,
    Client(context): Client,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let request = RegisterRequest::try_from(body.into_inner())?;
    let user = state.auth.register(request, context).await?;
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
        Ok(LoginRequest { identifier, password: body.password, device: None })
    }
}

/// How long after answering a refused sign-in its bookkeeping starts.
const BOOKKEEPING_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

/// A password sign-in, shared by `/login` and `/token`: looks the account up, applies the
/// per-account limit (one budget per account, whether named by email or username), checks
/// the password, and answers before the bookkeeping of a refusal, which runs after the
/// response so that a wrong password for an existing account takes as long to answer as
/// one for an unknown account.
async fn sign_in_with_password(
    state: &web::Data<AppState>,
    request: LoginRequest,
    context: gatehouse_domain::RequestContext,
) -> Result<TokenPair, ApiError> {
    let account = state.auth.find_account(&request.identifier).await?;
    state.rate_limits.check_identifier(RuleName::Login, &account.limit_key()).await?;
    let (answer, failure) = state.auth.sign_in_with_password(account, &request.password, request.device, context).await;
    if let Some(failure) = failure {
        let state = state.clone().into_inner();
        in_background("recording a failed sign-in", async move {
            // Start once the answer is on its way: on a busy host the bookkeeping's CPU and
            // I/O would otherwise compete with sending it, and show in its timing.
            actix_web::rt::time::sleep(BOOKKEEPING_DELAY).await;
            state.auth.record_failed_login(failure).await;
            Ok(())
        });
    }
    Ok(metered_login(answer)?)
}

/// Signs in with a password and starts a session.
#[utoipa::path(
    tag = "auth",
    params(CookieQuery),
    request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in.", body = TokenPairBody),
        (status = 400, response = MalformedJsonOrQuery),
        (status = 401, response = InvalidCredentials),
        (status = 403, response = SignInRefused),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Overloaded),
    )
)]
#[post("/login", wrap = "Limit::LOGIN")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    Client(context): Client,
    query: web::Query<CookieQuery>,
    body: web::Json<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let mut request = LoginRequest::try_from(body.into_inner())?;
    request.device = cookies::known_device(&req, &state.devices);
    let pair = sign_in_with_password(&state, request, context).await?;
    Ok(signed_in_response(&state, &pair, query.cookie))
}

/// Counts a password sign-in by its outcome and passes the result on.
fn metered_login<T>(result: Result<T, LoginError>) -> Result<T, LoginError> {
    crate::metrics::record_login(match &result {
        Ok(_) => "success",
        Err(LoginError::InvalidCredentials) => "invalid_credentials",
        Err(LoginError::AccountLocked) => "account_locked",
        Err(LoginError::AccountDisabled) => "account_disabled",
        Err(LoginError::EmailNotVerified) => "email_not_verified",
        Err(LoginError::Overloaded) => "overloaded",
        Err(LoginError::Unexpected(_)) => "error",
    });
    result
}

/// `POST /auth/token`: the OAuth2 password grant (RFC 6749 §4.3), so Swagger UI's
/// "Authorize" button works. Unknown fields (`scope`, `client_id`) are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"grant_type": "password", "username": "ada@example.com", "password": "correct horse battery staple"}))]
pub struct TokenForm {
    /// `password` when sent.
    grant_type: Option<String>,
    /// A username or an email.
    username: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

impl TryFrom<TokenForm> for LoginRequest {
    type Error = ValidationErrors;

    fn try_from(form: TokenForm) -> Result<Self, ValidationErrors> {
        if form.grant_type.as_deref().is_some_and(|grant| grant != "password") {
            return Err(FieldError::new("grant_type", "unsupported", "only the password grant is supported").into());
        }
        let identifier = if form.username.contains('@') {
            LoginIdentifier::Email(
                Email::parse(&form.username).map_err(|e| FieldError { field: "username", ..e.into() })?,
            )
        } else {
            LoginIdentifier::Username(Username::parse(&form.username).map_err(FieldError::from)?)
        };
        Ok(LoginRequest { identifier, password: form.password, device: None })
    }
}

/// Signs in with the OAuth2 password grant (form-encoded); otherwise the same as `/login`.
#[utoipa::path(
    tag = "auth",
    params(CookieQuery),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in.", body = TokenPairBody),
        (status = 400, response = MalformedQuery),
        (status = 401, response = InvalidCredentials),
        (status = 403, response = SignInRefused),
        (status = 413, response = BodyTooLarge),
        (status = 415, description = "Not form-encoded (`unsupported_media_type`).", body = Problem, content_type = "application/problem+json", examples(("unsupported_media_type" = (value = json!(problem_example(ApiError::new(ErrorKind::UnsupportedMediaType, "Send a form body with Content-Type: application/x-www-form-urlencoded."))))))),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Overloaded),
    )
)]
#[post("/token", wrap = "Limit::LOGIN")]
pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    Client(context): Client,
    query: web::Query<CookieQuery>,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, ApiError> {
    let mut request = LoginRequest::try_from(form.into_inner())?;
    request.device = cookies::known_device(&req, &state.devices);
    let pair = sign_in_with_password(&state, request, context).await?;
    Ok(signed_in_response(&state, &pair, query.cookie))
}

/// `POST /auth/refresh` and `/auth/logout`. The body may be left out when the refresh
/// cookie carries the token.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"refresh_token": "q0Xo3…"}))]
pub struct RefreshBody {
    /// The refresh token; omit it (and the body) to use the refresh cookie.
    #[schema(value_type = Option<String>)]
    refresh_token: Option<SecretString>,
}

/// Trades a refresh token for a new pair. The presented token is spent: presenting it again
/// revokes the whole session (`refresh_token_reused`). Limited per session
/// (`rate_limit.refresh`, 60 per minute by default), spent tokens included.
#[utoipa::path(
    tag = "auth",
    params(CookieQuery),
    request_body(content = Option<RefreshBody>, description = "Omit when the refresh cookie carries the token; then send `X-Requested-With`."),
    responses(
        (status = 200, description = "A new pair; the presented refresh token is spent.", body = TokenPairBody),
        (status = 400, response = MalformedJsonOrQuery),
        (status = 401, description = "`unauthorized` (unknown, expired or revoked) or `refresh_token_reused` (the session is now revoked).", body = Problem, content_type = "application/problem+json", examples(("unauthorized" = (value = json!(problem_example(RefreshError::InvalidToken)))), ("refresh_token_reused" = (value = json!(problem_example(RefreshError::Reused)))))),
        (status = 403, response = RefreshCookieWithoutHeader),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = NoRefreshToken),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/refresh")]
pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    Client(context): Client,
    query: web::Query<CookieQuery>,
    body: OptionalJson<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let (presented, source) = cookies::presented_refresh_token(&req, body.0.and_then(|b| b.refresh_token))?;
    if let Some(session) = state.sessions.session_of(&presented).await.map_err(ApiError::internal)? {
        state.rate_limits.check_session(session).await?;
    }
    let pair = state.sessions.refresh(&presented, context).await.inspect_err(|e| {
        if matches!(e, RefreshError::Reused) {
            crate::metrics::record_refresh_reuse();
        }
    })?;
    Ok(token_response(&state, &pair, query.cookie || source == TokenSource::Cookie))
}

/// Ends the session the refresh token belongs to. Always 204, also for unknown tokens.
#[utoipa::path(
    tag = "auth",
    request_body(content = Option<RefreshBody>, description = "Omit when the refresh cookie carries the token; then send `X-Requested-With`."),
    responses(
        (status = 204, description = "Signed out; the refresh cookie, if any, is cleared."),
        (status = 400, response = MalformedJson),
        (status = 403, response = RefreshCookieWithoutHeader),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = NoRefreshToken),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/logout")]
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    Client(context): Client,
    body: OptionalJson<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let (presented, source) = cookies::presented_refresh_token(&req, body.0.and_then(|b| b.refresh_token))?;
    state.sessions.logout(&presented, context).await.map_err(ApiError::internal)?;
    let mut response = HttpResponse::NoContent();
    if source == TokenSource::Cookie {
        cookies::clear_refresh_cookie(&mut response, state.secure_cookies);
    }
    Ok(response.finish())
}

/// `POST /auth/verify-email`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"token": "Xq3…"}))]
pub struct VerifyEmailBody {
    /// The token from the verification link.
    #[schema(value_type = String)]
    token: SecretString,
}

/// Confirms the email address with the token from the verification email. The token works
/// once and expires (24 hours by default).
#[utoipa::path(
    tag = "auth",
    request_body = VerifyEmailBody,
    responses(
        (status = 204, description = "The email address is verified."),
        (status = 400, description = "Unknown, expired or used token (`invalid_token`), or not JSON (`malformed_request`).", body = Problem, content_type = "application/problem+json", examples(("invalid_token" = (value = json!(problem_example(VerifyEmailError::InvalidToken)))), ("malformed_request" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The body is not valid JSON: expected value at line 1 column 1"))))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = NoToken),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/verify-email")]
pub async fn verify_email(
    state: web::Data<AppState>,
    Client(context): Client,
    body: web::Json<VerifyEmailBody>,
) -> Result<HttpResponse, ApiError> {
    state.recovery.verify_email(&body.token, context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /auth/verify-email/resend` and `/auth/password/forgot`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com"}))]
pub struct EmailBody {
    /// The account's email.
    #[schema(format = Email, max_length = 254)]
    email: String,
}

/// Runs `work` after the response: the answer must not wait on (or reveal) whether the
/// address belongs to an account. Failures are logged.
fn in_background<F>(what: &'static str, work: F)
where
    F: std::future::Future<Output = anyhow::Result<()>> + 'static,
{
    let span = tracing::Span::current();
    actix_web::rt::spawn(
        async move {
            if let Err(e) = work.await {
                tracing::error!(error = format!("{e:#}"), "{what} failed");
            }
        }
        .instrument(span),
    );
}

/// Sends a new verification email if the address belongs to an unverified account; older
/// links stop working. Always 202, whether or not the address is known.
#[utoipa::path(
    tag = "auth",
    request_body = EmailBody,
    responses(
        (status = 202, description = "Accepted; a link is on its way if the address belongs to an unverified account."),
        (status = 400, response = MalformedJson),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = NotAnEmail),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/verify-email/resend", wrap = "Limit::RECOVERY")]
pub async fn resend_verification(
    state: web::Data<AppState>,
    body: web::Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ValidationErrors::from(FieldError::from(e)))?;
    state.rate_limits.check_identifier(RuleName::Recovery, email.as_ref()).await?;
    let state = state.into_inner();
    in_background("resending a verification email", async move { state.recovery.resend_verification(&email).await });
    Ok(HttpResponse::Accepted().finish())
}

/// Emails a password-reset link (valid for 1 hour by default) if the address belongs to an
/// account. Always 202, answered before the account is even looked up, so neither the status
/// nor the timing tells whether it exists.
#[utoipa::path(
    tag = "auth",
    request_body = EmailBody,
    responses(
        (status = 202, description = "Accepted; a link is on its way if the address belongs to an account."),
        (status = 400, response = MalformedJson),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = NotAnEmail),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/password/forgot", wrap = "Limit::RECOVERY")]
pub async fn forgot_password(
    state: web::Data<AppState>,
    Client(context): Client,
    body: web::Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ValidationErrors::from(FieldError::from(e)))?;
    state.rate_limits.check_identifier(RuleName::Recovery, email.as_ref()).await?;
    let state = state.into_inner();
    in_background("requesting a password reset", async move { state.recovery.forgot_password(&email, context).await });
    Ok(HttpResponse::Accepted().finish())
}

/// `POST /auth/password/reset`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"token": "Xq3…", "new_password": "correct horse battery staple"}))]
pub struct ResetPasswordBody {
    /// The token from the reset link.
    #[schema(value_type = String)]
    token: SecretString,
    /// 8–128 characters, not the email, not a common password.
    #[schema(value_type = String, format = Password, min_length = 8, max_length = 128)]
    new_password: SecretString,
}

/// Sets a new password with the token from the reset email. The token works once and
/// expires (1 hour by default). Every session of the account is revoked, and the owner is
/// emailed that the password changed.
#[utoipa::path(
    tag = "auth",
    request_body = ResetPasswordBody,
    responses(
        (status = 204, description = "The password is changed; every session is signed out."),
        (status = 400, description = "Unknown, expired or used token (`invalid_token`), or not JSON (`malformed_request`).", body = Problem, content_type = "application/problem+json", examples(("invalid_token" = (value = json!(problem_example(ResetPasswordError::InvalidToken)))), ("malformed_request" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The body is not valid JSON: expected value at line 1 column 1"))))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, description = "The new password breaks the policy (`validation_failed` on `new_password`); the token stays usable.", body = Problem, content_type = "application/problem+json", examples(("validation_failed" = (value = json!(problem_example(ApiError::validation_field("new_password", "too_short", "password must be at least 8 characters"))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Overloaded),
    )
)]
#[post("/password/reset")]
pub async fn reset_password(
    state: web::Data<AppState>,
    Client(context): Client,
    body: web::Json<ResetPasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    state.recovery.reset_password(&body.token, body.new_password, context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A successful password sign-in: the token pair, and a fresh device cookie that lets this
/// browser sign in during a lockout caused by someone else's failures.
fn signed_in_response(state: &AppState, pair: &TokenPair, cookie_mode: bool) -> HttpResponse {
    let mut response = token_response(state, pair, cookie_mode);
    let cookie = cookies::device_cookie(&state.devices, pair.user_id, state.secure_cookies);
    if let Err(e) = response.add_cookie(&cookie) {
        tracing::warn!(error = %e, "could not set the device cookie");
    }
    response
}

/// `POST /auth/unlock`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"token": "Xq3…"}))]
pub struct UnlockBody {
    /// The token from the lockout email's link.
    #[schema(value_type = String)]
    token: SecretString,
}

/// Ends a lock caused by repeated failed sign-ins, with the one-time token from the lockout
/// email. The token works once and only while the lock lasts.
#[utoipa::path(
    tag = "auth",
    request_body = UnlockBody,
    responses(
        (status = 204, description = "The account is unlocked."),
        (status = 400, description = "Unknown, expired or used token (`invalid_token`), or not JSON (`malformed_request`).", body = Problem, content_type = "application/problem+json", examples(("invalid_token" = (value = json!(problem_example(UnlockError::InvalidToken)))), ("malformed_request" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The body is not valid JSON: expected value at line 1 column 1"))))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = NoToken),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/unlock")]
pub async fn unlock(
    state: web::Data<AppState>,
    Client(context): Client,
    body: web::Json<UnlockBody>,
) -> Result<HttpResponse, ApiError> {
    state.auth.unlock(&body.token, context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A `TokenPair` answer, never cached; in cookie mode the refresh token goes into the
/// cookie instead of the body.
fn token_response(state: &AppState, pair: &TokenPair, cookie_mode: bool) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if cookie_mode {
        cookies::set_refresh_cookie(&mut response, &pair.refresh_token, pair.refresh_expires_in, state.secure_cookies);
    }
    response.json(TokenPairBody::new(pair, !cookie_mode))
}
