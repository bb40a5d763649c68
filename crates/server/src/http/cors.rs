//! Cross-origin requests from `cors.allowed_origins`: exact origins only (a wildcard is
//! refused by the settings, since browsers send credentials: the refresh and device cookies).

use actix_cors::Cors;
use actix_web::http::{Method, header};

/// The CORS middleware for `origins`. With no origins, every cross-origin request is refused
/// (same-origin requests are unaffected).
pub fn cors(origins: &[String]) -> Cors {
    let cors = origins.iter().fold(Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-requested-with"),
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("ratelimit-limit"),
            header::HeaderName::from_static("ratelimit-remaining"),
            header::HeaderName::from_static("ratelimit-reset"),
            header::RETRY_AFTER,
        ])
        .supports_credentials()
        .max_age(600)
}
