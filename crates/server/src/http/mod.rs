//! The HTTP adapter: routes, handlers, DTOs, extractors, and the error mapping.

pub mod activity;
pub mod admin;
pub mod auth;
pub mod avatars;
pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod dto;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod oauth;
pub mod openapi;
pub mod pagination;
pub mod problems;
pub mod rate_limit;
pub mod redirect_path;
pub mod sessions;
pub mod text;
pub mod users;
pub mod webhooks;
pub mod wellknown;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::http::error::{ApiError, ErrorKind};
use crate::http::rate_limit::Limit;
use crate::state::AppState;

/// Registers every documented route. Routes can only be added here through
/// `utoipa-actix-web`, which requires a `#[utoipa::path]`, so the OpenAPI document and the
/// router cannot drift apart. Every API scope counts the general rate limit; handlers with a
/// stricter rule name it in their route attribute. Probes, metrics and the key set are not
/// limited.
pub fn routes(config: &mut ServiceConfig<'_>) {
    register(config, true);
}

/// [`routes`] but `/metrics`: the main listener's routes when `metrics.listen` serves it on
/// another address.
pub fn routes_without_metrics(config: &mut ServiceConfig<'_>) {
    register(config, false);
}

fn register(config: &mut ServiceConfig<'_>, with_metrics: bool) {
    config.service(health::live).service(health::ready);
    if with_metrics {
        config.service(metrics::scrape);
    }
    config
        .service(wellknown::jwks)
        .service(
            scope("/api/v1/auth")
                .wrap(Limit::GENERAL)
                .service(auth::register)
                .service(auth::login)
                .service(auth::token)
                .service(auth::refresh)
                .service(auth::logout)
                .service(auth::verify_email)
                .service(auth::resend_verification)
                .service(auth::forgot_password)
                .service(auth::reset_password)
                .service(auth::unlock)
                .service(oauth::providers)
                .service(oauth::authorize)
                .service(oauth::callback)
                .service(oauth::exchange)
                .service(sessions::list)
                .service(sessions::revoke)
                .service(sessions::revoke_others),
        )
        .service(
            scope("/api/v1/users")
                .wrap(Limit::GENERAL)
                .service(users::get_me)
                .service(users::update_me)
                .service(users::change_password)
                .service(users::delete_me)
                .service(oauth::identities)
                .service(oauth::unlink)
                .service(activity::mine)
                .service(admin::list)
                .service(admin::create)
                .service(admin::get)
                .service(admin::update)
                .service(admin::remove)
                .service(admin::restore)
                .service(avatars::put_avatar)
                .service(avatars::delete_avatar)
                .service(avatars::get_avatar),
        )
        .service(
            scope("/api/v1/webhooks")
                .wrap(Limit::GENERAL)
                .service(webhooks::create)
                .service(webhooks::list)
                .service(webhooks::get)
                .service(webhooks::update)
                .service(webhooks::remove)
                .service(webhooks::rotate_secret)
                .service(webhooks::test)
                .service(webhooks::deliveries)
                .service(webhooks::replay),
        )
        .service(scope("/api/v1").wrap(Limit::GENERAL).service(activity::audit));
}

/// Unmatched requests: 405 with `Allow` when the path exists for other methods (as the
/// OpenAPI document knows), 404 otherwise. Always a problem body.
pub async fn fallback(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    unrouted(&req, &state.routes)
}

/// `GET /docs`: a permanent redirect to `/docs/`, where Swagger UI is served (its assets are
/// relative, so the page itself must live under the slash). `HEAD` is answered the same.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((actix_web::http::header::LOCATION, "/docs/")).finish()
}

/// The 404 problem for every method, as if nothing were there: how the main listener
/// answers `/metrics` when `metrics.listen` serves it elsewhere (so no `405` with an `Allow`
/// hints at it either).
pub async fn not_here() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::new(ErrorKind::NotFound, "No such resource."))
}

/// The answer to a request no handler takes: see [`fallback`]. Also used when a path
/// parameter does not parse, so `GET /users/me/avatar` (which `/users/{id}/avatar` would take
/// with an id of `me`) is a 405 naming the methods of `/users/me/avatar`.
pub fn unrouted(req: &HttpRequest, routes: &openapi::RouteTable) -> HttpResponse {
    let allowed = routes.allowed_methods(req.path());
    if allowed.is_empty() || allowed.contains(req.method()) {
        return actix_web::ResponseError::error_response(&ApiError::new(ErrorKind::NotFound, "No such resource."));
    }
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let mut response = actix_web::ResponseError::error_response(&ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} is not allowed here; use {allow}.", req.method()),
    ));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    response
}
