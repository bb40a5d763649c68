//! Request ids, one log line and the request metrics per request, the security headers of
//! every response, and the plain-HTTP policy behind a proxy.

use std::net::IpAddr;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpResponse, ResponseError as _, web};
use gatehouse_domain::UserId;
use tracing::Instrument;
use uuid::Uuid;

use crate::http::client_ip;
use crate::http::error::{ApiError, ErrorKind};
use crate::settings::PlainHttp;
use crate::state::AppState;

/// The authenticated user of a request, left in its extensions by the `Authenticated`
/// extractor for the request log line.
#[derive(Debug, Clone, Copy)]
pub struct LoggedUser(pub UserId);

/// The request-id header, echoed when the client sent a sane one, generated otherwise.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-supplied request id that is echoed; longer ones are replaced.
const REQUEST_ID_MAX_LEN: usize = 128;

fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(REQUEST_ID)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= REQUEST_ID_MAX_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| value.to_owned())
}

/// Gives every request an id and a span carrying it, sets `X-Request-Id` on the response,
/// records the request metrics, and logs one line when the response is ready: method, route
/// pattern, status, latency, client IP and, when authenticated, the user id. Never logs
/// headers, bodies or query strings, where secrets live (the route is the pattern, not the
/// path).
///
/// # Errors
///
/// Passes through errors of the inner services.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let request_id = client_request_id(&req).unwrap_or_else(|| Uuid::now_v7().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method);
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let client_ip = match &state {
        Some(state) => client_ip::resolve(req.peer_addr().map(|a| a.ip()), req.headers(), &state.trusted_proxies),
        None => req.peer_addr().map(|a| a.ip()),
    };
    let path = req.path().to_owned();
    let mut response = match next.call(req).instrument(span.clone()).await {
        Ok(response) => response,
        Err(e) => {
            // An extractor or guard failed before a response existed: name the route from the
            // documented templates instead, so these requests are counted too.
            let route = state
                .and_then(|state| state.routes.template_of(&method, &path))
                .unwrap_or_else(|| UNMATCHED.to_owned());
            let status = e.as_response_error().status_code().as_u16();
            finish(&span, &Outcome { route: &route, method: &method, status, client_ip, user_id: None }, started);
            return Err(e);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let route = response.request().match_pattern().unwrap_or_else(|| UNMATCHED.to_owned());
    let user_id = response.request().extensions().get::<LoggedUser>().map(|user| user.0);
    let status = response.status().as_u16();
    finish(&span, &Outcome { route: &route, method: &method, status, client_ip, user_id }, started);
    Ok(response)
}

/// The route label of requests no route matched.
const UNMATCHED: &str = "<unmatched>";

/// What the request log line and metrics say about a finished request.
struct Outcome<'a> {
    route: &'a str,
    method: &'a Method,
    status: u16,
    client_ip: Option<IpAddr>,
    user_id: Option<UserId>,
}

/// Records the request's metrics and logs its one line.
fn finish(span: &tracing::Span, outcome: &Outcome<'_>, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    crate::metrics::record_request(outcome.route, outcome.method.as_str(), outcome.status, seconds);
    let latency_ms = seconds * 1000.0;
    let (route, status) = (outcome.route, outcome.status);
    let client_ip = outcome.client_ip.map(|ip| ip.to_string());
    let user_id = outcome.user_id.map(|id| id.to_string());
    span.in_scope(|| tracing::info!(route, status, latency_ms, client_ip, user_id, "request completed"));
}

/// The Content-Security-Policy of Swagger UI at `/docs`: its own scripts and styles only (it
/// needs inline ones), no framing, no plugins.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
                        img-src 'self' data:; connect-src 'self'; font-src 'self'; frame-ancestors 'none'; \
                        base-uri 'none'; form-action 'self'";

/// `Strict-Transport-Security` in production: two years, subdomains included.
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Security headers on every response: `X-Content-Type-Options: nosniff`, `Referrer-Policy:
/// no-referrer`, `X-Frame-Options: DENY` (a restrictive `Content-Security-Policy` on `/docs`
/// instead), and `Strict-Transport-Security` when `hsts` is on in the application state.
///
/// # Errors
///
/// Passes through errors of the inner services.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let hsts = req.app_data::<web::Data<AppState>>().is_some_and(|state| state.hsts);
    let docs = req.path().starts_with("/docs");
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if docs {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    } else {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    if hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    Ok(response)
}

/// `server.plain_http`: redirects (308, to the same path and query under `public.base_url`) or
/// refuses (403 `forbidden`) a request that a trusted proxy says it received over plain HTTP.
///
/// # Errors
///
/// Passes through errors of the inner services.
pub async fn require_https<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let plain = state.plain_http != PlainHttp::Allow
        && client_ip::forwarded_over_plain_http(req.peer_addr().map(|a| a.ip()), req.headers(), &state.trusted_proxies);
    if !plain {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let response = match state.plain_http {
        PlainHttp::Redirect => {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, format!("{}{target}", state.public_base_url)))
                .finish()
        }
        PlainHttp::Allow | PlainHttp::Refuse => {
            ApiError::new(ErrorKind::Forbidden, "This service is served over HTTPS only; retry with https://.")
                .error_response()
        }
    };
    Ok(req.into_response(response).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex, PoisonError};

    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpRequest, test};

    use super::*;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    async fn signed_in_handler(req: HttpRequest) -> HttpResponse {
        req.extensions_mut().insert(LoggedUser(UserId::generate()));
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn each_request_logs_one_json_line_without_its_secrets() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let app = test::init_service(
            App::new().wrap(from_fn(request_span)).route("/things/{id}", web::get().to(signed_in_handler)),
        )
        .await;

        let request = test::TestRequest::get()
            .uri("/things/42?token=query-secret")
            .insert_header((header::AUTHORIZATION, "Bearer header-secret"))
            .insert_header((REQUEST_ID, "req-1"))
            .peer_addr("203.0.113.9:4711".parse().expect("an address"))
            .to_request();
        let response = test::call_service(&app, request).await;
        assert_eq!(response.status(), 200);

        let output = String::from_utf8(captured.0.lock().expect("the sink").clone()).expect("UTF-8");
        let lines: Vec<serde_json::Value> = output
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .filter(|line: &serde_json::Value| line["fields"]["message"] == "request completed")
            .collect();
        assert_eq!(lines.len(), 1, "one line per request: {output}");
        let (fields, span) = (&lines[0]["fields"], &lines[0]["span"]);
        assert_eq!(fields["route"], "/things/{id}", "the pattern, not the path");
        assert_eq!(fields["status"], 200);
        assert!(fields["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert_eq!(fields["client_ip"], "203.0.113.9");
        assert!(fields["user_id"].as_str().is_some_and(|id| id.len() == 36), "{fields}");
        assert_eq!((span["method"].as_str(), span["request_id"].as_str()), (Some("GET"), Some("req-1")));
        assert!(!output.contains("secret"), "no token, header or query string in the log: {output}");
    }
}
