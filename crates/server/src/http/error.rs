//! The one place where failures become HTTP responses: RFC 9457 problem details with a
//! stable `code`. Every domain error enum maps here, exhaustively. 5xx bodies are generic;
//! their cause chain goes to the log, tagged with the request id by the request span.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use gatehouse_domain::FieldError;
use gatehouse_domain::ImageRejected;
use gatehouse_domain::Unavailable;
use gatehouse_domain::ValidationErrors;
use gatehouse_domain::ports::UnlinkIdentityError;
use gatehouse_domain::services::account::{AccountSecurityError, GetMeError, UpdateMeError};
use gatehouse_domain::services::admin::{AdminError, Forbidden};
use gatehouse_domain::services::auth::{LoginError, RegisterError, UnlockError};
use gatehouse_domain::services::avatars::{GetAvatarError, RemoveAvatarError, SetAvatarError};
use gatehouse_domain::services::oauth::OAuthError;
use gatehouse_domain::services::recovery::{ResetPasswordError, VerifyEmailError};
use gatehouse_domain::services::sessions::{AuthenticateError, RefreshError, RevokeSessionError};
use gatehouse_domain::services::webhooks::WebhookError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::avatars::{MAX_UPLOAD_BYTES, UploadError};

/// The media type of problem responses.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "about:blank", "title": "Validation failed", "status": 422, "code": "validation_failed",
    "detail": "The request has invalid fields.",
    "errors": [{"field": "password", "code": "too_short", "message": "password must be at least 8 characters"}]
}))]
pub struct Problem {
    /// Always `about:blank`: `code` identifies the problem.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A short summary of the problem type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// Invalid fields, for `validation_failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

/// One invalid field in a problem.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"field": "password", "code": "too_short", "message": "password must be at least 8 characters"}))]
pub struct ProblemField {
    /// The request field.
    pub field: String,
    /// A stable code (`required`, `too_short`, `invalid_format`…).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

/// The kinds of failure the API reports, each with its status and stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 422 `validation_failed`.
    ValidationFailed,
    /// 400 `malformed_request`.
    MalformedRequest,
    /// 401 `unauthorized`.
    Unauthorized,
    /// 401 `invalid_credentials`.
    InvalidCredentials,
    /// 401 `refresh_token_reused`.
    RefreshTokenReused,
    /// 403 `email_not_verified`.
    EmailNotVerified,
    /// 403 `account_locked`.
    AccountLocked,
    /// 403 `account_disabled`.
    AccountDisabled,
    /// 403 `forbidden`.
    Forbidden,
    /// 404 `not_found`.
    NotFound,
    /// 405 `method_not_allowed`.
    MethodNotAllowed,
    /// 400 `invalid_token`: a bad, expired or used email or reset token.
    InvalidToken,
    /// 400 `email_missing`: the sign-in provider gave no email, neither in the ID token nor at
    /// userinfo.
    EmailMissing,
    /// 409 `email_taken`.
    EmailTaken,
    /// 409 `username_taken`.
    UsernameTaken,
    /// 409 `conflict`.
    Conflict,
    /// 413 `payload_too_large`.
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    UnsupportedMediaType,
    /// 429 `rate_limited`.
    RateLimited,
    /// 503 `service_unavailable`.
    ServiceUnavailable,
    /// 502 `bad_gateway`: an upstream (an OAuth provider) failed or timed out.
    BadGateway,
    /// 500 `internal`.
    Internal,
}

impl ErrorKind {
    /// Every kind, for checks that must cover them all (the OpenAPI examples test).
    pub const ALL: [Self; 22] = [
        Self::ValidationFailed,
        Self::MalformedRequest,
        Self::Unauthorized,
        Self::InvalidCredentials,
        Self::RefreshTokenReused,
        Self::EmailNotVerified,
        Self::AccountLocked,
        Self::AccountDisabled,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::InvalidToken,
        Self::EmailMissing,
        Self::EmailTaken,
        Self::UsernameTaken,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::ServiceUnavailable,
        Self::BadGateway,
        Self::Internal,
    ];

    /// Status, code and title.
    #[must_use]
    pub const fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::ValidationFailed => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", "Validation failed"),
            Self::MalformedRequest => (StatusCode::BAD_REQUEST, "malformed_request", "Malformed request"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Self::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials", "Invalid credentials"),
            Self::RefreshTokenReused => (StatusCode::UNAUTHORIZED, "refresh_token_reused", "Refresh token reused"),
            Self::EmailNotVerified => (StatusCode::FORBIDDEN, "email_not_verified", "Email not verified"),
            Self::AccountLocked => (StatusCode::FORBIDDEN, "account_locked", "Account locked"),
            Self::AccountDisabled => (StatusCode::FORBIDDEN, "account_disabled", "Account disabled"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed"),
            Self::InvalidToken => (StatusCode::BAD_REQUEST, "invalid_token", "Invalid token"),
            Self::EmailMissing => (StatusCode::BAD_REQUEST, "email_missing", "Email missing"),
            Self::EmailTaken => (StatusCode::CONFLICT, "email_taken", "Email taken"),
            Self::UsernameTaken => (StatusCode::CONFLICT, "username_taken", "Username taken"),
            Self::Conflict => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type")
            }
            Self::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            Self::ServiceUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", "Service unavailable"),
            Self::BadGateway => (StatusCode::BAD_GATEWAY, "bad_gateway", "Bad gateway"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error"),
        }
    }
}

/// A failed request. Converts from every domain error; renders as a [`Problem`].
pub struct ApiError {
    kind: ErrorKind,
    detail: String,
    errors: Vec<ProblemField>,
    retry_after_secs: Option<u32>,
    /// Logged, never sent.
    cause: Option<anyhow::Error>,
}

impl ApiError {
    /// An error of `kind` with a client-facing `detail`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into(), errors: Vec::new(), retry_after_secs: None, cause: None }
    }

    /// A 500 whose cause is logged and never shown; or, when the cause chain holds an
    /// [`Unavailable`] (the database is down or the store's circuit is open), a 503
    /// `service_unavailable` with its `Retry-After`. Every `Unexpected` domain error comes here,
    /// so an outage is a 503 on every route without each one knowing.
    #[must_use]
    pub fn internal(cause: anyhow::Error) -> Self {
        if let Some(unavailable) = Unavailable::find(&cause) {
            return Self::unavailable(unavailable, cause);
        }
        Self { cause: Some(cause), ..Self::new(ErrorKind::Internal, "An unexpected error occurred.") }
    }

    /// A 503 for a dependency that is down, with its `Retry-After`. The cause is logged at
    /// warning level (an outage is expected to end), never shown.
    fn unavailable(unavailable: Unavailable, cause: anyhow::Error) -> Self {
        Self {
            retry_after_secs: Some(unavailable.retry_after_secs.max(1)),
            cause: Some(cause),
            ..Self::new(
                ErrorKind::ServiceUnavailable,
                "A dependency is unavailable; retry after the time in Retry-After.",
            )
        }
    }

    /// A 422 listing every invalid field.
    #[must_use]
    pub fn validation(errors: &[FieldError]) -> Self {
        let errors = errors
            .iter()
            .map(|e| ProblemField { field: e.field.to_owned(), code: e.code.to_owned(), message: e.message.clone() })
            .collect();
        Self { errors, ..Self::new(ErrorKind::ValidationFailed, "The request has invalid fields.") }
    }

    /// A 422 about one field.
    pub fn validation_field(field: &str, code: &str, message: impl Into<String>) -> Self {
        let errors = vec![ProblemField { field: field.to_owned(), code: code.to_owned(), message: message.into() }];
        Self { errors, ..Self::new(ErrorKind::ValidationFailed, "The request has invalid fields.") }
    }

    /// A 503 that tells the client when to retry.
    #[must_use]
    pub fn overloaded() -> Self {
        Self {
            retry_after_secs: Some(1),
            ..Self::new(ErrorKind::ServiceUnavailable, "The server is busy; retry shortly.")
        }
    }

    /// A 429 `rate_limited` that tells the client when to retry.
    #[must_use]
    pub fn rate_limited(retry_after_secs: u32) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(ErrorKind::RateLimited, "Too many requests; retry after the time in Retry-After.")
        }
    }

    /// A 401 for a missing, malformed, invalid or expired bearer token.
    #[must_use]
    pub fn unauthorized() -> Self {
        Self::new(ErrorKind::Unauthorized, "A valid bearer access token is required.")
    }

    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code (`invalid_token`…), for redirects that carry `?error=<code>`. Logs the
    /// cause of a server-side failure, as rendering the problem would.
    #[must_use]
    pub fn code_for_redirect(&self) -> &'static str {
        if let Some(cause) = &self.cause {
            tracing::error!(error = ?cause, "request failed");
        }
        self.kind.parts().1
    }
}

impl ApiError {
    /// The body this error renders as. The cause of a 5xx is never part of it.
    #[must_use]
    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.kind.parts();
        Problem {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            code,
            detail: self.detail.clone(),
            errors: self
                .errors
                .iter()
                .map(|e| ProblemField { field: e.field.clone(), code: e.code.clone(), message: e.message.clone() })
                .collect(),
        }
    }
}

/// The problem body the server sends for `error`, as JSON: the examples of the OpenAPI
/// document are rendered by the same code as real responses, so they cannot drift from them.
pub fn problem_example(error: impl Into<ApiError>) -> serde_json::Value {
    serde_json::to_value(error.into().problem()).unwrap_or_default()
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError").field("kind", &self.kind).field("detail", &self.detail).finish_non_exhaustive()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, code, _) = self.kind.parts();
        write!(f, "{code}: {}", self.detail)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause:#}")?;
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.kind.parts().0;
        match &self.cause {
            Some(cause) if self.kind == ErrorKind::ServiceUnavailable => {
                tracing::warn!(error = format!("{cause:#}"), "request refused: a dependency is unavailable");
            }
            Some(cause) => tracing::error!(error = ?cause, "request failed"),
            None => {}
        }
        let problem = self.problem();
        let mut response = HttpResponse::build(status);
        response.content_type(PROBLEM_JSON);
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if self.kind == ErrorKind::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(problem)
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        Self::validation(errors.errors())
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::EmailTaken => Self::new(ErrorKind::EmailTaken, "An account with this email already exists."),
            RegisterError::UsernameTaken => Self::new(ErrorKind::UsernameTaken, "This username is already taken."),
            RegisterError::Overloaded => Self::overloaded(),
            RegisterError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials => {
                Self::new(ErrorKind::InvalidCredentials, "The email, username or password is wrong.")
            }
            LoginError::AccountLocked => {
                Self::new(ErrorKind::AccountLocked, "The account is temporarily locked; try again later.")
            }
            LoginError::AccountDisabled => Self::new(ErrorKind::AccountDisabled, "The account is disabled."),
            LoginError::EmailNotVerified => {
                Self::new(ErrorKind::EmailNotVerified, "Verify your email address before signing in.")
            }
            LoginError::Overloaded => Self::overloaded(),
            LoginError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(e: AuthenticateError) -> Self {
        match e {
            AuthenticateError::InvalidToken => Self::unauthorized(),
            AuthenticateError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<RefreshError> for ApiError {
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::InvalidToken => {
                Self::new(ErrorKind::Unauthorized, "The refresh token is invalid, expired or revoked.")
            }
            RefreshError::Reused => Self::new(
                ErrorKind::RefreshTokenReused,
                "The refresh token was already used; the session has been revoked. Sign in again.",
            ),
            RefreshError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<RevokeSessionError> for ApiError {
    fn from(e: RevokeSessionError) -> Self {
        match e {
            RevokeSessionError::NotFound => Self::new(ErrorKind::NotFound, "No such session."),
            RevokeSessionError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<UpdateMeError> for ApiError {
    fn from(e: UpdateMeError) -> Self {
        match e {
            UpdateMeError::NotFound => Self::unauthorized(),
            UpdateMeError::UsernameTaken => Self::new(ErrorKind::UsernameTaken, "This username is already taken."),
            UpdateMeError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<AccountSecurityError> for ApiError {
    fn from(e: AccountSecurityError) -> Self {
        match e {
            AccountSecurityError::NotFound => Self::unauthorized(),
            AccountSecurityError::InvalidCredentials => {
                Self::new(ErrorKind::InvalidCredentials, "The password is wrong.")
            }
            AccountSecurityError::PasswordRequired => {
                Self::validation_field("password", "required", "the account's password is required")
            }
            AccountSecurityError::WeakPassword(e) => Self::validation(&[e.on_field("new_password")]),
            AccountSecurityError::LastAdmin => Self::new(
                ErrorKind::Conflict,
                "You are the last active admin; make someone else an admin before deleting your account.",
            ),
            AccountSecurityError::Overloaded => Self::overloaded(),
            AccountSecurityError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<GetMeError> for ApiError {
    fn from(e: GetMeError) -> Self {
        match e {
            // The token verified, but its account is gone: the token no longer names anyone.
            GetMeError::NotFound => Self::unauthorized(),
            GetMeError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<Forbidden> for ApiError {
    fn from(_: Forbidden) -> Self {
        Self::new(ErrorKind::Forbidden, "This operation needs the admin role.")
    }
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(errors) => errors.into(),
            WebhookError::NotFound => Self::new(ErrorKind::NotFound, "No such webhook endpoint or delivery."),
            WebhookError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotFound => Self::new(ErrorKind::NotFound, "No such user."),
            AdminError::EmailTaken => Self::new(ErrorKind::EmailTaken, "An account with this email already exists."),
            AdminError::UsernameTaken => Self::new(ErrorKind::UsernameTaken, "This username is already taken."),
            AdminError::LastAdmin => {
                Self::new(ErrorKind::Conflict, "This would leave no active admin; make someone else an admin first.")
            }
            AdminError::Overloaded => Self::overloaded(),
            AdminError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::NotMultipart => Self::new(
                ErrorKind::UnsupportedMediaType,
                "Send the image as multipart/form-data, in one part named file.",
            ),
            UploadError::TooLarge => Self::new(
                ErrorKind::PayloadTooLarge,
                format!("The image must be at most {} MiB.", MAX_UPLOAD_BYTES / (1024 * 1024)),
            ),
            UploadError::MissingFile => {
                Self::validation_field("file", "required", "send the image in a multipart part named file")
            }
            UploadError::MultipleParts => {
                Self::validation_field("file", "too_many_parts", "send exactly one part, named file")
            }
            UploadError::Malformed(detail) => {
                Self::new(ErrorKind::MalformedRequest, format!("The multipart body could not be read: {detail}."))
            }
        }
    }
}

impl From<VerifyEmailError> for ApiError {
    fn from(e: VerifyEmailError) -> Self {
        match e {
            VerifyEmailError::InvalidToken => {
                Self::new(ErrorKind::InvalidToken, "The verification link is invalid, expired or already used.")
            }
            VerifyEmailError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<UnlockError> for ApiError {
    fn from(e: UnlockError) -> Self {
        match e {
            UnlockError::InvalidToken => {
                Self::new(ErrorKind::InvalidToken, "The unlock link is invalid, expired or already used.")
            }
            UnlockError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<ImageRejected> for ApiError {
    fn from(e: ImageRejected) -> Self {
        let code = match e {
            ImageRejected::UnsupportedFormat => "unsupported_format",
            ImageRejected::Corrupt => "invalid_image",
            ImageRejected::TooManyPixels { .. } => "too_many_pixels",
        };
        Self::validation_field("file", code, e.to_string())
    }
}

impl From<SetAvatarError> for ApiError {
    fn from(e: SetAvatarError) -> Self {
        match e {
            SetAvatarError::Rejected(rejected) => rejected.into(),
            SetAvatarError::NotFound => Self::unauthorized(),
            SetAvatarError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<ResetPasswordError> for ApiError {
    fn from(e: ResetPasswordError) -> Self {
        match e {
            ResetPasswordError::InvalidToken => {
                Self::new(ErrorKind::InvalidToken, "The reset link is invalid, expired or already used.")
            }
            ResetPasswordError::WeakPassword(e) => Self::validation(&[e.on_field("new_password")]),
            ResetPasswordError::Overloaded => Self::overloaded(),
            ResetPasswordError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<RemoveAvatarError> for ApiError {
    fn from(e: RemoveAvatarError) -> Self {
        match e {
            RemoveAvatarError::NotFound => Self::unauthorized(),
            RemoveAvatarError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<GetAvatarError> for ApiError {
    fn from(e: GetAvatarError) -> Self {
        match e {
            GetAvatarError::NotFound => Self::new(ErrorKind::NotFound, "This user has no avatar."),
            GetAvatarError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::UnknownProvider => Self::new(ErrorKind::NotFound, "No such sign-in provider is configured."),
            OAuthError::InvalidState => Self::new(
                ErrorKind::InvalidToken,
                "The sign-in state or code is invalid, expired or already used; start again.",
            ),
            OAuthError::Rejected(why) => {
                Self::new(ErrorKind::InvalidToken, format!("The provider's answer could not be accepted: {why}."))
            }
            OAuthError::ProviderUnavailable(cause) => Self {
                cause: Some(cause),
                ..Self::new(ErrorKind::BadGateway, "The sign-in provider is unavailable; try again later.")
            },
            OAuthError::EmailMissing => Self::new(
                ErrorKind::EmailMissing,
                "The provider gave no email address, neither in the ID token nor at userinfo; allow Gatehouse to \
                 read the email (scope email) at the provider.",
            ),
            OAuthError::UnverifiedEmail => Self::new(
                ErrorKind::Conflict,
                "The provider does not vouch for this email address (email_verified is not true), so it is neither \
                 linked to an account nor used for a new one.",
            ),
            OAuthError::NotAllowed(why) => {
                Self::new(ErrorKind::Forbidden, format!("This provider account may not sign in here: {why}."))
            }
            OAuthError::UnverifiedAccount => Self::new(
                ErrorKind::Conflict,
                "An account with this email exists but has not verified it, so nothing was linked; verify the \
                 email or reset the account's password by email, then sign in with the provider again.",
            ),
            OAuthError::AccountLocked => Self::new(ErrorKind::AccountLocked, "An administrator locked the account."),
            OAuthError::AccountDisabled => Self::new(ErrorKind::AccountDisabled, "The account is disabled."),
            OAuthError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<UnlinkIdentityError> for ApiError {
    fn from(e: UnlinkIdentityError) -> Self {
        match e {
            UnlinkIdentityError::NotFound => Self::new(ErrorKind::NotFound, "No identity of this provider is linked."),
            UnlinkIdentityError::LastSignInMethod => Self::new(
                ErrorKind::Conflict,
                "This is your last way to sign in; set a password or link another provider first.",
            ),
            UnlinkIdentityError::Unexpected(cause) => Self::internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_dependency_anywhere_in_the_cause_chain_is_a_503_with_retry_after() {
        let cause = anyhow::Error::new(Unavailable { dependency: "database", retry_after_secs: 2 })
            .context("loading the user")
            .context("signing in");
        let response = ApiError::internal(cause).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()), Some("2"));
    }

    #[test]
    fn any_other_cause_stays_a_500_without_retry_after() {
        let response = ApiError::internal(anyhow::anyhow!("a bug")).error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
