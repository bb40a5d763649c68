//! Problem responses shared by many operations of the OpenAPI document, each with an example
//! rendered by [`problem_example`], so a documented error reads exactly as the server sends it.
//!
//! Operations reference these as `(status = 401, response = Unauthorized)`; they are listed
//! as components in [`crate::http::openapi`]. A failure particular to one operation keeps its
//! own description and names its examples inline with `problem_example(...)`.

use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{ToResponse, ToSchema};

use gatehouse_domain::services::auth::LoginError;

use crate::http::error::{ApiError, ErrorKind, PROBLEM_JSON, Problem, problem_example};

/// A problem response: `description`, and one named example per error it can carry.
#[must_use]
pub fn problem_response(description: &str, examples: Vec<(&str, ApiError)>) -> Response {
    let content = examples.into_iter().fold(
        ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))),
        |content, (name, error)| {
            let summary = error.problem().title;
            content.examples_from_iter([(
                name,
                ExampleBuilder::new().summary(summary).value(Some(problem_example(error))).build(),
            )])
        },
    );
    ResponseBuilder::new().description(description).content(PROBLEM_JSON, content.build()).build()
}

/// Declares each shared problem response as a unit struct implementing `ToResponse`, and
/// [`components`] listing them all, so none can be referenced without being registered.
macro_rules! shared_problems {
    ($($(#[$doc:meta])* $name:ident, $description:expr, [$($example:expr => $error:expr),+ $(,)?];)+) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), problem_response($description, vec![$(($example, $error)),+]).into())
                }
            }
        )+

        /// The shared responses, to list as components of the document.
        #[must_use]
        pub fn components() -> Vec<(String, RefOr<Response>)> {
            [$($name::response()),+].into_iter().map(|(name, response)| (name.to_owned(), response)).collect()
        }
    };
}

shared_problems! {
    /// 400 `malformed_request`: a JSON body that does not parse.
    MalformedJson,
    "The body is not valid JSON (`malformed_request`).",
    ["malformed_request" => ApiError::new(ErrorKind::MalformedRequest, "The body is not valid JSON: expected `,` or `}` at line 1 column 29")];

    /// 400 `malformed_request`: a JSON body that does not parse, or a query parameter that
    /// does not parse as its type.
    MalformedJsonOrQuery,
    "The body is not valid JSON, or a query parameter does not parse as its type or is given twice (`malformed_request`).",
    [
        "malformed_request" => ApiError::new(ErrorKind::MalformedRequest, "The body is not valid JSON: expected `,` or `}` at line 1 column 29"),
        "malformed_query" => ApiError::new(ErrorKind::MalformedRequest, "The query string is invalid: provided string was not `true` or `false`"),
    ];

    /// 400 `malformed_request`: a query parameter that does not parse as its type, or is
    /// given twice.
    MalformedQuery,
    "A query parameter does not parse as its type, or is given twice (`malformed_request`).",
    ["malformed_request" => ApiError::new(ErrorKind::MalformedRequest, "The query string is invalid: provided string was not `true` or `false`")];

    /// 400 `malformed_request`: a page query with a parameter that does not parse or a cursor
    /// this server did not issue.
    MalformedPageQuery,
    "A query parameter that does not parse as its type (a `limit` that is not a number, a malformed id or time) or is given twice, or a `cursor` this server did not issue for this list (`malformed_request`).",
    [
        "malformed_request" => ApiError::new(ErrorKind::MalformedRequest, "The cursor is not one this server issued for this list."),
        "malformed_query" => ApiError::new(ErrorKind::MalformedRequest, "The query string is invalid: invalid digit found in string"),
    ];

    /// 401 `unauthorized`: the bearer token is missing, invalid or expired.
    Unauthorized,
    "Missing, invalid or expired bearer token (`unauthorized`); the response carries `WWW-Authenticate: Bearer`.",
    ["unauthorized" => ApiError::unauthorized()];

    /// 403 `forbidden`: an administration call by someone without the admin role.
    AdminOnly,
    "The caller is not an admin (`forbidden`).",
    ["forbidden" => ApiError::from(gatehouse_domain::services::admin::Forbidden)];

    /// 401 `invalid_credentials`: a password sign-in with an unknown account or a wrong
    /// password (the two look the same from outside).
    InvalidCredentials,
    "Unknown account or wrong password (`invalid_credentials`); the failure that reaches the lockout threshold still answers this.",
    ["invalid_credentials" => ApiError::from(LoginError::InvalidCredentials)];

    /// 403 `email_not_verified`, `account_locked` or `account_disabled`: a correct password
    /// for an account that may not sign in now.
    SignInRefused,
    "The account may not sign in now: `email_not_verified` (when verification is required), `account_locked` (after repeated failures, until the lock ends or the unlock link is used) or `account_disabled`.",
    [
        "email_not_verified" => ApiError::from(LoginError::EmailNotVerified),
        "account_locked" => ApiError::from(LoginError::AccountLocked),
        "account_disabled" => ApiError::from(LoginError::AccountDisabled),
    ];

    /// 413 `payload_too_large`: a JSON or form body over the configured limit.
    BodyTooLarge,
    "The body is larger than the server accepts (`payload_too_large`).",
    ["payload_too_large" => ApiError::new(ErrorKind::PayloadTooLarge, "The body must be at most 65536 bytes.")];

    /// 415 `unsupported_media_type`: a body that is not `application/json`.
    NotJson,
    "Not `application/json` (`unsupported_media_type`).",
    ["unsupported_media_type" => ApiError::new(ErrorKind::UnsupportedMediaType, "Send a JSON body with Content-Type: application/json.")];

    /// 422 `validation_failed`: fields that break their rules, each listed in `errors`.
    InvalidFields,
    "Invalid or missing fields (`validation_failed`); `errors` lists each one.",
    ["validation_failed" => ApiError::validation_field("email", "invalid_format", "email is not a valid address")];

    /// 403 `forbidden`: the refresh cookie used without the CSRF header.
    RefreshCookieWithoutHeader,
    "The refresh cookie was used without `X-Requested-With` (`forbidden`).",
    ["forbidden" => ApiError::new(ErrorKind::Forbidden, "Requests authenticated by the refresh cookie must send an X-Requested-With header.")];

    /// 422 `validation_failed`: no refresh token in the body or the cookie.
    NoRefreshToken,
    "No refresh token in the body or the cookie (`validation_failed`).",
    ["validation_failed" => ApiError::validation_field("refresh_token", "required", "refresh_token is required, in the body or in the refresh cookie")];

    /// 422 `validation_failed`: a body without the emailed `token`.
    NoToken,
    "No token (`validation_failed`).",
    ["validation_failed" => ApiError::validation_field("token", "required", "token is required")];

    /// 422 `validation_failed`: an `email` that is not an address.
    NotAnEmail,
    "Not an email address (`validation_failed`).",
    ["validation_failed" => ApiError::validation_field("email", "invalid_format", "email is not a valid address")];

    /// 429 `rate_limited`: too many requests for the limit's key.
    RateLimited,
    "Too many requests (`rate_limited`); `Retry-After` says when to try again, and `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` describe the limit.",
    ["rate_limited" => ApiError::rate_limited(42)];

    /// 500 `internal`: an unexpected failure (a database error…); the cause is logged with the
    /// request id, never sent.
    Internal,
    "An unexpected failure (`internal`); the detail is always generic and the cause is logged with the request id (`X-Request-Id`).",
    ["internal" => ApiError::internal(anyhow::anyhow!("a documented example"))];

    /// 503 `service_unavailable`: the password-hashing pool is saturated.
    Overloaded,
    "Password hashing is saturated (`service_unavailable`); retry after `Retry-After` seconds.",
    ["service_unavailable" => ApiError::overloaded()];
}
