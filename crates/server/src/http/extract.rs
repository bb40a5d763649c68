//! Extractors and their error handlers: JSON bodies, query strings and paths fail as
//! problem details; bearer tokens become a [`Principal`]; the caller's IP and user agent
//! become a [`RequestContext`].

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError, UrlencodedError};
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use futures::future::{Either, LocalBoxFuture, MapOk, TryFutureExt};
use gatehouse_domain::RequestContext;
use gatehouse_domain::services::admin::AdminPrincipal;
use gatehouse_domain::services::sessions::Principal;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::http::error::{ApiError, ErrorKind};
use crate::http::{client_ip, unrouted};
use crate::state::AppState;

/// The longest `User-Agent` kept on sessions and audit events, in characters.
const USER_AGENT_MAX_CHARS: usize = 512;

/// JSON bodies: a size limit, `Content-Type: application/json` required, and failures as
/// problems (413, 415, 400 for bad syntax, 422 for well-formed JSON of the wrong shape).
#[must_use]
pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .content_type_required(true)
        .error_handler(|error, _| json_error(error).into())
}

fn json_error(error: JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => {
            ApiError::new(ErrorKind::PayloadTooLarge, format!("The body must be at most {limit} bytes."))
        }
        JsonPayloadError::ContentType => {
            ApiError::new(ErrorKind::UnsupportedMediaType, "Send a JSON body with Content-Type: application/json.")
        }
        JsonPayloadError::Deserialize(e) if e.classify() == Category::Data => shape_error(&e.to_string()),
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(ErrorKind::MalformedRequest, format!("The body is not valid JSON: {e}"))
        }
        _ => ApiError::new(ErrorKind::MalformedRequest, "The body could not be read."),
    }
}

/// A well-formed body that does not fit the expected shape: a missing field is reported on
/// that field; other mismatches (wrong types) carry serde's description.
fn shape_error(message: &str) -> ApiError {
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
    match missing {
        Some(field) => ApiError::validation_field(field, "required", format!("{field} is required")),
        None => ApiError::validation_field("body", "invalid_type", message),
    }
}

/// Form bodies (`application/x-www-form-urlencoded`, the OAuth2 password grant): the same
/// problems as JSON bodies.
#[must_use]
pub fn form_config(limit_bytes: usize) -> web::FormConfig {
    web::FormConfig::default().limit(limit_bytes).error_handler(|error, _| form_error(error).into())
}

fn form_error(error: UrlencodedError) -> ApiError {
    match error {
        UrlencodedError::Overflow { limit, .. } => {
            ApiError::new(ErrorKind::PayloadTooLarge, format!("The body must be at most {limit} bytes."))
        }
        UrlencodedError::ContentType => ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "Send a form body with Content-Type: application/x-www-form-urlencoded.",
        ),
        UrlencodedError::Parse(e) => shape_error(&e.to_string()),
        _ => ApiError::new(ErrorKind::MalformedRequest, "The form body could not be read."),
    }
}

/// A JSON body that may be left out entirely (no `Content-Type`, no body, or `null`), as when
/// a browser refreshes with its cookie. A body that is sent is held to the same rules as
/// [`web::Json`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJson<T> {
    type Error = actix_web::Error;
    #[allow(clippy::type_complexity)]
    type Future = Either<
        Ready<Result<Self, actix_web::Error>>,
        MapOk<<web::Json<Option<T>> as FromRequest>::Future, fn(web::Json<Option<T>>) -> Self>,
    >;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let no_body = !req.headers().contains_key(header::CONTENT_TYPE)
            && req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|length| length.trim() == "0");
        if no_body {
            return Either::Left(ready(Ok(OptionalJson(None))));
        }
        // A literal `null` body means no body, as leaving it out does.
        let wrap: fn(web::Json<Option<T>>) -> Self = |json| OptionalJson(json.into_inner());
        Either::Right(web::Json::<Option<T>>::from_request(req, payload).map_ok(wrap))
    }
}

/// Query strings that do not parse answer 400 `malformed_request`.
#[must_use]
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _| {
        // serde's message alone ("invalid digit found in string"), without actix's prefix.
        let reason = match &error {
            QueryPayloadError::Deserialize(cause) => cause.to_string(),
            other => other.to_string(),
        };
        ApiError::new(ErrorKind::MalformedRequest, format!("The query string is invalid: {reason}")).into()
    })
}

/// Path parameters that do not parse (a malformed id) answer 404: no such resource; or 405
/// when the path names a more specific resource that lacks the method (see [`unrouted`]).
#[must_use]
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error: PathError, req| match req.app_data::<web::Data<AppState>>() {
        Some(state) => actix_web::error::InternalError::from_response(error, unrouted(req, &state.routes)).into(),
        None => ApiError::new(ErrorKind::NotFound, "No such resource.").into(),
    })
}

/// The verified bearer of the request's access token.
#[derive(Debug)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req).map(str::to_owned);
        let req = req.clone();
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state is not configured")))?;
            let token = token.ok_or_else(ApiError::unauthorized)?;
            let principal = state.sessions.authenticate(&token).await?;
            req.extensions_mut().insert(crate::http::middleware::LoggedUser(principal.user_id));
            Ok(Authenticated(principal))
        })
    }
}

/// The token of an `Authorization: Bearer …` header; the scheme is case-insensitive.
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The verified bearer of an access token holding the `admin` role: the one place the
/// role is checked (403 `forbidden` otherwise). Admin use cases demand the
/// [`AdminPrincipal`] it yields.
#[derive(Debug)]
pub struct Admin(pub AdminPrincipal);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let authenticated = Authenticated::from_request(req, payload);
        Box::pin(async move {
            let Authenticated(principal) = authenticated.await?;
            Ok(Admin(AdminPrincipal::authorize(principal)?))
        })
    }
}

/// Where the request comes from: the client's IP (the peer, or what a trusted proxy forwarded
/// for, see [`crate::http::client_ip`]) and the `User-Agent`.
#[derive(Debug)]
pub struct Client(pub RequestContext);

impl FromRequest for Client {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(USER_AGENT_MAX_CHARS).collect());
        let peer = req.peer_addr().map(|addr| addr.ip());
        let ip = match req.app_data::<web::Data<AppState>>() {
            Some(state) => client_ip::resolve(peer, req.headers(), &state.trusted_proxies),
            None => peer,
        };
        ready(Ok(Client(RequestContext { ip, user_agent })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let token = |value: &str| {
            let req = TestRequest::default().insert_header((header::AUTHORIZATION, value)).to_http_request();
            bearer_token(&req).map(str::to_owned)
        };
        assert_eq!(token("Bearer abc"), Some("abc".to_owned()));
        assert_eq!(token("bearer abc"), Some("abc".to_owned()));
        assert_eq!(token("Bearer "), None);
        assert_eq!(token("Basic abc"), None);
        assert_eq!(token("abc"), None);
    }

    #[test]
    fn a_missing_field_is_reported_on_that_field() {
        let error = serde_json::from_str::<Needs>("{}").expect_err("missing");
        let api_error = shape_error(&error.to_string());
        assert_eq!(api_error.kind(), ErrorKind::ValidationFailed);
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Needs {
        email: String,
    }

    async fn optional_body(request: TestRequest) -> Result<Option<String>, String> {
        let (req, mut payload) = request.to_http_parts();
        OptionalJson::<Needs>::from_request(&req, &mut payload)
            .await
            .map(|OptionalJson(body)| body.map(|needs| needs.email))
            .map_err(|e| e.to_string())
    }

    #[actix_web::test]
    async fn an_optional_body_may_be_absent_or_null_but_not_malformed() {
        let json = || TestRequest::default().insert_header((header::CONTENT_TYPE, "application/json"));

        assert_eq!(optional_body(TestRequest::default()).await, Ok(None), "no body at all");
        assert_eq!(optional_body(json().set_payload("null")).await, Ok(None), "a null body");
        assert_eq!(optional_body(json().set_payload(r#"{"email": "a@b.c"}"#)).await, Ok(Some("a@b.c".to_owned())));
        assert!(optional_body(json().set_payload("{")).await.is_err(), "a malformed body is still refused");
        assert!(optional_body(json().set_payload("{}")).await.is_err(), "a sent body keeps its rules");
    }
}
