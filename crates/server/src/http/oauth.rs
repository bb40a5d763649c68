//! Sign-in with the configured providers (`/api/v1/auth/providers`, `/api/v1/auth/oauth/…`)
//! and the caller's linked identities (`/api/v1/users/me/identities`). No provider is named
//! here: `{provider}` is whatever `[oauth.providers.<name>]` configured.
//!
//! The authorization step binds its secrets (state, PKCE verifier, nonce, `redirect_to`) to the
//! browser in a short-lived, HMAC-sealed, `HttpOnly`, `SameSite=Lax` cookie scoped to the
//! OAuth endpoints. The callback needs that cookie and a matching `state`, and the state is
//! spent in storage, so a replayed callback is refused.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, delete, get, post, web};
use chrono::{DateTime, Duration, Utc};
use gatehouse_domain::ports::{Identity, OpaqueTokens, ProviderDescription, UnlinkIdentityError};
use gatehouse_domain::services::oauth::{Callback, OAuthError};
use gatehouse_security::RandomTokens;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::cookies::{self, CookieQuery};
use crate::http::dto::TokenPairBody;
use crate::http::error::{ApiError, ErrorKind, Problem, problem_example};
use crate::http::extract::{Authenticated, Client};
use crate::http::problems::{
    BodyTooLarge, Internal, InvalidFields, MalformedQuery, NotJson, RateLimited, Unauthorized,
};
use crate::http::redirect_path::RedirectPath;
use crate::state::AppState;

/// The state cookie's name.
const STATE_COOKIE: &str = "gatehouse_oauth";

/// The only paths the browser sends the state cookie to.
const STATE_COOKIE_PATH: &str = "/api/v1/auth/oauth";

/// How long a sign-in may take between the redirect to the provider and the callback.
const STATE_TTL_SECS: i64 = 600;

/// What the state cookie carries, sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Binding {
    /// The provider the sign-in started with.
    p: String,
    /// The `state` sent to the provider.
    s: String,
    /// The PKCE verifier.
    v: String,
    /// The OpenID Connect nonce.
    n: Option<String>,
    /// Where the front end wants to land (a relative path), passed on with the one-time code.
    r: Option<String>,
    /// Unix time after which the binding is refused.
    e: i64,
}

/// `GET /auth/oauth/{provider}/authorize`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// A plain path on the front end, passed on to `oauth.success_redirect`: one leading `/`,
    /// printable ASCII only (no whitespace, control characters or `\`, nor their
    /// percent-encodings), at most 512 bytes.
    #[param(example = "/settings/security", pattern = r"^/(?:[!-\[\]-~][!-\[\]-~]*)?$", max_length = 512)]
    redirect_to: Option<String>,
}

/// A sign-in provider, for sign-in UIs.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "keycloak", "display_name": "Staff SSO", "kind": "oidc"}))]
pub struct ProviderBody {
    /// The name in `/auth/oauth/{provider}/authorize` and in identities' `provider`.
    name: String,
    /// The label to show.
    display_name: String,
    /// `oidc` or `github`.
    kind: String,
}

impl From<ProviderDescription> for ProviderBody {
    fn from(p: ProviderDescription) -> Self {
        Self { name: p.name, display_name: p.display_name, kind: p.kind }
    }
}

/// The enabled sign-in providers, by name.
#[utoipa::path(
    tag = "auth",
    responses(
        (status = 200, description = "The configured providers (possibly none).", body = [ProviderBody]),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/providers")]
pub async fn providers(state: web::Data<AppState>) -> HttpResponse {
    let providers: Vec<ProviderBody> = state.oauth.providers().into_iter().map(ProviderBody::from).collect();
    HttpResponse::Ok().json(providers)
}

/// Starts a sign-in: redirects to the provider with `state`, PKCE (S256) and, for OpenID
/// Connect, a nonce, and binds them to the browser with a short-lived cookie.
#[utoipa::path(
    tag = "auth",
    params(("provider" = String, Path, description = "A configured provider's name (`google`, `github`, `keycloak`…)", example = "github"), AuthorizeQuery),
    responses(
        (status = 302, description = "To the provider's authorization page."),
        (status = 400, response = MalformedQuery),
        (status = 404, description = "The provider is not configured (`not_found`).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(OAuthError::UnknownProvider)))))),
        (status = 422, description = "`redirect_to` is not a relative path (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("validation_failed" = (value = json!(problem_example(ApiError::validation_field("redirect_to", "invalid_format", "redirect_to must be a path like /home"))))))),
        (status = 429, response = RateLimited),
        (status = 502, description = "The provider's discovery document cannot be fetched (`bad_gateway`).", body = Problem, content_type = "application/problem+json", examples(("bad_gateway" = (value = json!(problem_example(ApiError::new(ErrorKind::BadGateway, "The sign-in provider is unavailable; try again later."))))))),
        (status = 500, response = Internal),
    )
)]
#[get("/oauth/{provider}/authorize")]
pub async fn authorize(
    state: web::Data<AppState>,
    provider: web::Path<String>,
    query: web::Query<AuthorizeQuery>,
) -> Result<HttpResponse, ApiError> {
    let provider = provider.into_inner();
    let redirect_to = query
        .into_inner()
        .redirect_to
        .map(|raw| RedirectPath::parse(&raw))
        .transpose()
        .map_err(|e| ApiError::validation_field("redirect_to", "invalid_format", e.to_string()))?
        .map(|path| path.as_str().to_owned());
    let secret = RandomTokens.generate().secret;
    let request = state.oauth.authorize(&provider, secret.expose_secret()).await?;
    let binding = Binding {
        p: provider,
        s: secret.expose_secret().to_owned(),
        v: request.pkce_verifier.expose_secret().to_owned(),
        n: request.nonce.as_ref().map(|n| n.expose_secret().to_owned()),
        r: redirect_to,
        e: (state.now() + Duration::seconds(STATE_TTL_SECS)).timestamp(),
    };
    let payload = serde_json::to_vec(&binding).map_err(|e| ApiError::internal(e.into()))?;
    let sealed = state.oauth_states.seal(&payload);
    let mut response = HttpResponse::Found();
    response.insert_header((header::LOCATION, request.url)).insert_header((header::CACHE_CONTROL, "no-store"));
    response.cookie(state_cookie(sealed, CookieDuration::seconds(STATE_TTL_SECS), state.secure_cookies));
    Ok(response.finish())
}

/// `GET /auth/oauth/{provider}/callback`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    #[param(example = "4/0AeanS0b7x9QkF2")]
    code: Option<String>,
    /// The state sent at authorization.
    #[param(example = "kq2VtW9xYz0a1b2c3d4e5f")]
    state: Option<String>,
    /// The provider's error (`access_denied`…), instead of a code.
    #[param(example = "access_denied")]
    error: Option<String>,
}

/// Completes a sign-in: checks the state against the browser's cookie (once), exchanges the
/// code with the PKCE verifier, verifies the identity, and signs in, links or creates the
/// account. With `oauth.success_redirect` set, redirects there with a one-time `code` (or an
/// `error`); otherwise answers the token pair.
#[utoipa::path(
    tag = "auth",
    params(("provider" = String, Path, description = "A configured provider's name", example = "github"), CallbackQuery),
    responses(
        (status = 200, description = "Signed in (no `oauth.success_redirect`).", body = TokenPairBody),
        (status = 302, description = "To `oauth.success_redirect` with `?code=` or `?error=`."),
        (status = 400, description = "Bad, missing, expired or replayed state, a provider error, or an answer that fails verification (`invalid_token`); a query parameter given twice (`malformed_request`); no email from the provider, neither in the ID token nor at userinfo (`email_missing`).", body = Problem, content_type = "application/problem+json", examples(("email_missing" = (value = json!(problem_example(OAuthError::EmailMissing)))), ("invalid_state" = (value = json!(problem_example(OAuthError::InvalidState)))), ("provider_error" = (value = json!(problem_example(ApiError::new(ErrorKind::InvalidToken, "The provider refused the sign-in: access_denied."))))), ("rejected" = (value = json!(problem_example(OAuthError::Rejected("the ID token's nonce does not match".to_owned()))))), ("malformed_query" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The query string is invalid: duplicate field `state`"))))))),
        (status = 403, description = "`account_locked` or `account_disabled`; `forbidden` when the email domain, Google's `hd` or Entra ID's `tid` is not among the allowed ones.", body = Problem, content_type = "application/problem+json", examples(("account_locked" = (value = json!(problem_example(OAuthError::AccountLocked)))), ("account_disabled" = (value = json!(problem_example(OAuthError::AccountDisabled)))), ("forbidden" = (value = json!(problem_example(OAuthError::NotAllowed("emails of other.example may not sign in with this provider".to_owned()))))))),
        (status = 404, description = "The provider is not configured (`not_found`).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(OAuthError::UnknownProvider)))))),
        (status = 409, description = "The provider does not vouch for the email (`email_verified` is not `true`), or the account with this email has not verified it (`conflict`); nothing is linked.", body = Problem, content_type = "application/problem+json", examples(("conflict" = (value = json!(problem_example(OAuthError::UnverifiedEmail)))), ("unverified_account" = (value = json!(problem_example(OAuthError::UnverifiedAccount)))))),
        (status = 422, response = InvalidFields),
        (status = 502, description = "The provider is unreachable or timed out (`bad_gateway`).", body = Problem, content_type = "application/problem+json", examples(("bad_gateway" = (value = json!(problem_example(ApiError::new(ErrorKind::BadGateway, "The sign-in provider is unavailable; try again later."))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/oauth/{provider}/callback")]
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    Client(context): Client,
    provider: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> HttpResponse {
    let provider = provider.into_inner();
    let binding = open_binding(&req, &state);
    let outcome = complete(&state, &provider, binding, query.into_inner(), &context).await;
    let redirect_to = outcome.as_ref().ok().and_then(|(_, r)| r.clone());
    let mut response = match (&state.oauth_success_redirect, outcome) {
        (Some(target), Ok((user, _))) => match state.oauth.issue_login_code(&user).await {
            Ok(code) => {
                let mut params = vec![("code", code.expose_secret().to_owned())];
                params.extend(redirect_to.map(|r| ("redirect_to", r)));
                redirect(target, &params)
            }
            Err(e) => redirect(target, &[("error", ApiError::internal(e).code_for_redirect().to_owned())]),
        },
        (Some(target), Err(e)) => redirect(target, &[("error", e.code_for_redirect().to_owned())]),
        (None, Ok((user, _))) => match state.oauth.sign_in(&user, context).await {
            Ok(pair) => {
                let mut response = HttpResponse::Ok();
                response.insert_header((header::CACHE_CONTROL, "no-store"));
                response.json(TokenPairBody::new(&pair, true))
            }
            Err(e) => actix_web::ResponseError::error_response(&ApiError::internal(e)),
        },
        (None, Err(e)) => actix_web::ResponseError::error_response(&e),
    };
    clear_state_cookie(&mut response, &state);
    response
}

/// The callback's checks and the use case, up to the account to sign in and the front end's
/// `redirect_to`.
async fn complete(
    state: &AppState,
    provider: &str,
    binding: Option<Binding>,
    query: CallbackQuery,
    context: &gatehouse_domain::RequestContext,
) -> Result<(gatehouse_domain::User, Option<String>), ApiError> {
    if !state.oauth.has_provider(provider) {
        return Err(ApiError::new(ErrorKind::NotFound, "No such sign-in provider is configured."));
    }
    if let Some(error) = query.error {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return Err(ApiError::new(ErrorKind::InvalidToken, format!("The provider refused the sign-in: {error}.")));
    }
    let invalid = || {
        ApiError::new(ErrorKind::InvalidToken, "The sign-in state is invalid, expired or already used; start again.")
    };
    let binding = binding.ok_or_else(invalid)?;
    let (Some(code), Some(returned_state)) = (query.code, query.state) else {
        return Err(invalid());
    };
    let expires_at = DateTime::<Utc>::from_timestamp(binding.e, 0).ok_or_else(invalid)?;
    if binding.p != provider || returned_state != binding.s || expires_at <= state.now() {
        return Err(invalid());
    }
    let request = Callback {
        code: SecretString::from(code),
        state: SecretString::from(binding.s),
        state_expires_at: expires_at,
        pkce_verifier: SecretString::from(binding.v),
        nonce: binding.n.map(SecretString::from),
    };
    let user = state.oauth.callback(provider, request, context).await?;
    Ok((user, binding.r))
}

fn open_binding(req: &HttpRequest, state: &AppState) -> Option<Binding> {
    let cookie = req.cookie(STATE_COOKIE)?;
    let payload = state.oauth_states.open(cookie.value())?;
    serde_json::from_slice(&payload).ok()
}

fn state_cookie(value: String, max_age: CookieDuration, secure: bool) -> Cookie<'static> {
    Cookie::build(STATE_COOKIE, value)
        .path(STATE_COOKIE_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .finish()
}

fn clear_state_cookie(response: &mut HttpResponse, state: &AppState) {
    let _ = response.add_cookie(&state_cookie(String::new(), CookieDuration::ZERO, state.secure_cookies));
}

/// A 302 to `target` with `params` added to its query.
fn redirect(target: &str, params: &[(&str, String)]) -> HttpResponse {
    let query: String =
        params.iter().map(|(name, value)| format!("{name}={}", percent_encode(value))).collect::<Vec<_>>().join("&");
    let separator = if target.contains('?') { '&' } else { '?' };
    let mut response: HttpResponseBuilder = HttpResponse::Found();
    response
        .insert_header((header::LOCATION, format!("{target}{separator}{query}")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `POST /auth/oauth/exchange`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"code": "m4Xq8r1ZbT0c"}))]
pub struct ExchangeBody {
    /// The one-time code from the callback's redirect.
    #[schema(value_type = String)]
    code: SecretString,
}

/// Trades the one-time code of an OAuth sign-in (60 s, single use) for a token pair.
#[utoipa::path(
    tag = "auth",
    params(CookieQuery),
    request_body = ExchangeBody,
    responses(
        (status = 200, description = "Signed in.", body = TokenPairBody),
        (status = 400, description = "The code is invalid, expired or already used (`invalid_token`), the body is not valid JSON or a query parameter does not parse (`malformed_request`).", body = Problem, content_type = "application/problem+json", examples(("invalid_token" = (value = json!(problem_example(OAuthError::InvalidState)))), ("malformed_request" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The body is not valid JSON: expected value at line 1 column 1"))))), ("malformed_query" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The query string is invalid: provided string was not `true` or `false`"))))))),
        (status = 403, description = "`account_locked` or `account_disabled`.", body = Problem, content_type = "application/problem+json", examples(("account_locked" = (value = json!(problem_example(OAuthError::AccountLocked)))), ("account_disabled" = (value = json!(problem_example(OAuthError::AccountDisabled)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/oauth/exchange")]
pub async fn exchange(
    state: web::Data<AppState>,
    Client(context): Client,
    query: web::Query<CookieQuery>,
    body: web::Json<ExchangeBody>,
) -> Result<HttpResponse, ApiError> {
    let pair = state.oauth.exchange(&body.code, context).await?;
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if query.cookie {
        cookies::set_refresh_cookie(&mut response, &pair.refresh_token, pair.refresh_expires_in, state.secure_cookies);
    }
    Ok(response.json(TokenPairBody::new(&pair, !query.cookie)))
}

/// A linked identity.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "provider": "github", "provider_user_id": "583231", "email": "ada@example.com", "linked_at": "2026-11-26T12:00:00Z"
}))]
pub struct IdentityBody {
    /// The provider's configured name (`google`, `github`, `keycloak`…).
    provider: String,
    /// The provider's id of the account.
    provider_user_id: String,
    /// The email the provider gave when it was linked.
    email: Option<String>,
    /// When it was linked.
    linked_at: DateTime<Utc>,
}

impl From<Identity> for IdentityBody {
    fn from(identity: Identity) -> Self {
        Self {
            provider: identity.provider,
            provider_user_id: identity.provider_user_id,
            email: identity.email.map(|e| e.as_ref().to_owned()),
            linked_at: identity.linked_at,
        }
    }
}

/// The provider accounts linked to the caller's account.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    responses(
        (status = 200, description = "The caller's identities.", body = [IdentityBody]),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/me/identities")]
pub async fn identities(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let identities = state.oauth.identities(principal.user_id).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(identities.into_iter().map(IdentityBody::from).collect::<Vec<_>>()))
}

/// Unlinks the caller's identity of a provider, unless it is their last way to sign in.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    params(("provider" = String, Path, description = "A provider's name", example = "github")),
    responses(
        (status = 204, description = "Unlinked."),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No identity of this provider is linked (`not_found`).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(UnlinkIdentityError::NotFound)))))),
        (status = 409, description = "The last way to sign in: no password and no other identity (`conflict`).", body = Problem, content_type = "application/problem+json", examples(("conflict" = (value = json!(problem_example(UnlinkIdentityError::LastSignInMethod)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/me/identities/{provider}")]
pub async fn unlink(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
    provider: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.oauth.unlink(principal.user_id, &provider, &context).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_parameters_are_percent_encoded() {
        assert_eq!(percent_encode("a b/c?d=e&f"), "a%20b%2Fc%3Fd%3De%26f");
    }
}
