//! The refresh-token cookie of browser apps (`?cookie=true`): the token lives in an
//! `HttpOnly` cookie that scripts cannot read, scoped to the auth endpoints, and requests
//! that rely on it must carry `X-Requested-With`, which a cross-site form cannot send.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, HttpResponseBuilder};
use gatehouse_domain::UserId;
use gatehouse_domain::services::auth::KnownDevice;
use gatehouse_security::CursorSealer;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::error::{ApiError, ErrorKind};

/// The cookie's name.
pub const REFRESH_COOKIE: &str = "gatehouse_refresh";

/// The only path the browser sends the cookie to.
const COOKIE_PATH: &str = "/api/v1/auth";

/// The CSRF defence header required when the refresh token comes from the cookie.
const REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");

/// `?cookie=true`: deliver the refresh token as a cookie instead of in the body.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CookieQuery {
    /// Put the refresh token in an `HttpOnly`, `SameSite=Strict` cookie scoped to
    /// `/api/v1/auth` and leave it out of the body.
    #[serde(default)]
    #[param(example = true)]
    pub cookie: bool,
}

/// Where a presented refresh token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// The JSON body.
    Body,
    /// The refresh cookie.
    Cookie,
}

/// The refresh token of a request: the body's, or else the cookie's, which needs
/// `X-Requested-With`.
///
/// # Errors
///
/// 422 when neither carries one; 403 `forbidden` for the cookie without the header.
pub fn presented_refresh_token(
    req: &HttpRequest,
    from_body: Option<SecretString>,
) -> Result<(SecretString, TokenSource), ApiError> {
    if let Some(token) = from_body {
        return Ok((token, TokenSource::Body));
    }
    let Some(cookie) = req.cookie(REFRESH_COOKIE) else {
        return Err(ApiError::validation_field(
            "refresh_token",
            "required",
            "refresh_token is required, in the body or in the refresh cookie",
        ));
    };
    if !req.headers().contains_key(REQUESTED_WITH) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            "Requests authenticated by the refresh cookie must send an X-Requested-With header.",
        ));
    }
    Ok((SecretString::from(cookie.value().to_owned()), TokenSource::Cookie))
}

/// Sets the refresh cookie on a response.
pub fn set_refresh_cookie(response: &mut HttpResponseBuilder, token: &SecretString, max_age_secs: i64, secure: bool) {
    let cookie = Cookie::build(REFRESH_COOKIE, token.expose_secret().to_owned())
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish();
    response.cookie(cookie);
}

/// Tells the browser to forget the refresh cookie.
pub fn clear_refresh_cookie(response: &mut HttpResponseBuilder, secure: bool) {
    let cookie = Cookie::build(REFRESH_COOKIE, "")
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::ZERO)
        .finish();
    response.cookie(cookie);
}

/// The device cookie: a browser that signed in successfully before (OWASP "device cookies").
pub const DEVICE_COOKIE: &str = "gatehouse_device";

/// How long a device stays known without signing in again.
const DEVICE_COOKIE_DAYS: i64 = 365;

/// The known device the request's device cookie names, if its signature checks. Which account
/// it belongs to is for the sign-in use case to compare.
#[must_use]
pub fn known_device(req: &HttpRequest, sealer: &CursorSealer) -> Option<KnownDevice> {
    let cookie = req.cookie(DEVICE_COOKIE)?;
    let payload = String::from_utf8(sealer.open(cookie.value())?).ok()?;
    let (user_id, nonce) = payload.split_once(':')?;
    let user_id = UserId::from_uuid(uuid::Uuid::parse_str(user_id).ok()?);
    Some(KnownDevice { user_id, nonce: nonce.to_owned() })
}

/// A fresh device cookie for `user_id`: a new nonce and an HMAC over the user id and it.
#[must_use]
pub fn device_cookie(sealer: &CursorSealer, user_id: UserId, secure: bool) -> Cookie<'static> {
    let nonce = uuid::Uuid::now_v7().simple().to_string();
    let value = sealer.seal(format!("{}:{nonce}", user_id.as_uuid()).as_bytes());
    Cookie::build(DEVICE_COOKIE, value)
        .path(COOKIE_PATH)
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::days(DEVICE_COOKIE_DAYS))
        .finish()
}

/// Whether cookies must be `Secure` for this public URL: always, except for plain-HTTP
/// development on the loopback interface, where browsers would drop a `Secure` cookie.
#[must_use]
pub fn cookies_must_be_secure(public_base_url: &str) -> bool {
    let Some(rest) = public_base_url.strip_prefix("http://") else {
        return true;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(host, _port)| host);
    !matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_on_loopback_gets_cookies_without_secure() {
        assert!(!cookies_must_be_secure("http://127.0.0.1:8080"));
        assert!(!cookies_must_be_secure("http://localhost"));
        assert!(!cookies_must_be_secure("http://[::1]:8080/base"));
        assert!(cookies_must_be_secure("https://127.0.0.1:8080"));
        assert!(cookies_must_be_secure("http://auth.example.com"));
        assert!(cookies_must_be_secure("https://auth.example.com"));
    }
}
