//! Request ids, one log line and the request metrics per request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;
use uuid::Uuid;

use crate::state::AppState;

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
/// and logs one line when the response is ready: method, route pattern, status, latency.
/// Never logs headers, bodies or query strings, where secrets live.
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
            finish(&span, &route, &method, status, started);
            return Err(e);
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let route = response.request().match_pattern().unwrap_or_else(|| UNMATCHED.to_owned());
    finish(&span, &route, &method, response.status().as_u16(), started);
    Ok(response)
}

/// The route label of requests no route matched.
const UNMATCHED: &str = "<unmatched>";

/// Records the request's metrics and logs its one line.
fn finish(span: &tracing::Span, route: &str, method: &Method, status: u16, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    crate::metrics::record_request(route, method.as_str(), status, seconds);
    let latency_ms = seconds * 1000.0;
    span.in_scope(|| tracing::info!(route, status, latency_ms, "request completed"));
}
