//! Extractors and their error handlers: JSON bodies, query strings and paths fail as
//! problem details; bearer tokens become a [`Principal`]; the caller's IP and user agent
//! become a [`RequestContext`].

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use gatehouse_domain::RequestContext;
use gatehouse_domain::services::auth::Principal;
use serde_json::error::Category;

use crate::http::error::{ApiError, ErrorKind};
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
        JsonPayloadError::Deserialize(e) if e.classify() == Category::Data => shape_error(&e),
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(ErrorKind::MalformedRequest, format!("The body is not valid JSON: {e}"))
        }
        _ => ApiError::new(ErrorKind::MalformedRequest, "The body could not be read."),
    }
}

/// Well-formed JSON that does not fit the expected shape: a missing field is reported on
/// that field; other mismatches (wrong types) carry serde's description.
fn shape_error(error: &serde_json::Error) -> ApiError {
    let message = error.to_string();
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')).map(|(f, _)| f);
    match missing {
        Some(field) => ApiError::validation_field(field, "required", format!("{field} is required")),
        None => ApiError::validation_field("body", "invalid_type", message),
    }
}

/// Query strings that do not parse answer 400 `malformed_request`.
#[must_use]
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error: QueryPayloadError, _| {
        ApiError::new(ErrorKind::MalformedRequest, format!("The query string is invalid: {error}")).into()
    })
}

/// Path parameters that do not parse (a malformed id) answer 404: no such resource.
#[must_use]
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_: PathError, _| ApiError::new(ErrorKind::NotFound, "No such resource.").into())
}

/// The verified bearer of the request's access token.
#[derive(Debug)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(Authenticated))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Principal, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state is not configured")))?;
    let token = bearer_token(req).ok_or_else(ApiError::unauthorized)?;
    Ok(state.auth.authenticate(token)?)
}

/// The token of an `Authorization: Bearer …` header; the scheme is case-insensitive.
fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Where the request comes from: the peer's IP and the `User-Agent`.
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
        ready(Ok(Client(RequestContext { ip: req.peer_addr().map(|addr| addr.ip()), user_agent })))
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
        let error = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>("{}")
            .and_then(|_| serde_json::from_str::<Needs>("{}"))
            .expect_err("missing");
        let api_error = shape_error(&error);
        assert_eq!(api_error.kind(), ErrorKind::ValidationFailed);
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Needs {
        email: String,
    }
}
