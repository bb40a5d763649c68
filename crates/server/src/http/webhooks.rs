//! `/api/v1/webhooks`: webhook endpoint administration, the delivery list, test pings and
//! replays. Admin role only (the [`Admin`] extractor).

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use gatehouse_domain::ports::WebhookCursor;
use gatehouse_domain::services::webhooks::{EndpointPatch, EndpointRequest, WebhookError};
use gatehouse_domain::webhooks::{Delivery, WebhookEndpoint, event_api_id};
use gatehouse_security::CursorSealer;
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::error::{ApiError, ErrorKind, Problem, problem_example};
use crate::http::extract::Admin;
use crate::http::pagination::page_limit;
use crate::http::problems::{
    AdminOnly, BodyTooLarge, Internal, InvalidFields, MalformedJson, MalformedPageQuery, NotJson, RateLimited,
    Unauthorized,
};
use crate::state::AppState;

/// A subscriber endpoint (`WebhookEndpoint`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpoint, example = json!({
    "id": "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e", "url": "https://crm.example.com/hooks/gatehouse",
    "description": "CRM sync", "event_types": ["user.*"], "enabled": true, "disabled_reason": null,
    "created_at": "2026-12-03T09:00:00Z", "updated_at": "2026-12-03T09:00:00Z"
}))]
pub struct EndpointBody {
    /// The endpoint id.
    id: Uuid,
    /// Where events are POSTed.
    url: String,
    /// Free text.
    description: Option<String>,
    /// Types, `<family>.*` or `*`.
    event_types: Vec<String>,
    /// Whether deliveries are attempted.
    enabled: bool,
    /// `failing` when Gatehouse disabled it; `null` otherwise.
    disabled_reason: Option<&'static str>,
    /// Created.
    created_at: DateTime<Utc>,
    /// Last changed.
    updated_at: DateTime<Utc>,
}

impl EndpointBody {
    fn new(endpoint: &WebhookEndpoint) -> Self {
        Self {
            id: endpoint.id,
            url: endpoint.url.clone(),
            description: endpoint.description.clone(),
            event_types: endpoint.event_types.iter().map(ToString::to_string).collect(),
            enabled: endpoint.enabled,
            disabled_reason: endpoint.disabled_reason.map(|r| r.as_str()),
            created_at: endpoint.created_at,
            updated_at: endpoint.updated_at,
        }
    }
}

/// A new endpoint with its secret: shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpointBody {
    /// The endpoint.
    #[serde(flatten)]
    endpoint: EndpointBody,
    /// `whsec_` and the base64 of 32 random bytes; signs every delivery.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=")]
    secret: String,
}

/// A new secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretBody {
    /// The new secret; the previous one keeps signing for 24 hours.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8GKYo=")]
    secret: String,
}

/// A page of endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointPageBody {
    /// Oldest first.
    items: Vec<EndpointBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    next_cursor: Option<String>,
}

/// One event on its way to one endpoint (`Delivery`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Delivery, example = json!({
    "id": "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2f", "event_id": "evt_019ac2a45b7e7c319a532f1f6f0c1d30",
    "event_type": "user.created", "status": "retrying", "attempts": 2, "created_at": "2026-12-03T09:00:00Z",
    "last_status_code": 503, "last_error": "the receiver answered 503", "next_attempt_at": "2026-12-03T09:00:20Z"
}))]
pub struct DeliveryBody {
    /// The delivery id.
    id: Uuid,
    /// The event id (`webhook-id`), the receiver's idempotency key.
    event_id: String,
    /// The event type.
    event_type: &'static str,
    /// `pending`, `succeeded`, `failed` or `retrying`.
    status: &'static str,
    /// Attempts made.
    attempts: u32,
    /// Created.
    created_at: DateTime<Utc>,
    /// The last attempt's HTTP status, if it got one.
    last_status_code: Option<u16>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    /// When the next attempt is due, while one is.
    next_attempt_at: Option<DateTime<Utc>>,
}

impl DeliveryBody {
    fn new(delivery: &Delivery) -> Self {
        Self {
            id: delivery.id,
            event_id: event_api_id(delivery.event_id),
            event_type: delivery.event_type.as_str(),
            status: delivery.status.as_str(),
            attempts: delivery.attempts,
            created_at: delivery.created_at,
            last_status_code: delivery.last_status_code,
            last_error: delivery.last_error.clone(),
            next_attempt_at: delivery.next_attempt_at,
        }
    }
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPageBody {
    /// Newest first.
    items: Vec<DeliveryBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    next_cursor: Option<String>,
}

/// `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://crm.example.com/hooks/gatehouse", "event_types": ["user.*", "session.revoked"], "description": "CRM sync"}))]
pub struct CreateEndpointBody {
    /// `https` (`http` outside production); must not resolve to a loopback, private,
    /// link-local or metadata address.
    url: String,
    /// Event types, `<family>.*` or `*`; at least one.
    event_types: Vec<String>,
    /// Free text.
    description: Option<String>,
    /// Default `true`.
    enabled: Option<bool>,
}

/// `PATCH /api/v1/webhooks/{id}`: fields left out stay; `description: null` clears it;
/// `enabled: true` clears `disabled_reason`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true}))]
pub struct UpdateEndpointBody {
    /// A new target.
    url: Option<String>,
    /// New filters.
    event_types: Option<Vec<String>>,
    /// New text, or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// Enable or disable.
    enabled: Option<bool>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// `?limit&cursor`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1–100, default 20.
    #[param(example = 20)]
    limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    #[param(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    cursor: Option<String>,
}

fn seal_cursor(sealer: &CursorSealer, kind: &str, cursor: &WebhookCursor) -> String {
    sealer.seal(format!("{kind}\0{}\0{}", cursor.created_at.timestamp_micros(), cursor.id).as_bytes())
}

fn open_cursor(sealer: &CursorSealer, expected: &str, raw: &str) -> Result<WebhookCursor, ApiError> {
    let malformed =
        || ApiError::new(ErrorKind::MalformedRequest, "The cursor is not one this server issued for this list.");
    let bytes = sealer.open(raw).ok_or_else(malformed)?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let mut parts = text.split('\0');
    let (Some(kind), Some(micros), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    if kind != expected {
        return Err(malformed());
    }
    let created_at =
        micros.parse::<i64>().ok().and_then(DateTime::<Utc>::from_timestamp_micros).ok_or_else(malformed)?;
    let id = id.parse::<Uuid>().map_err(|_| malformed())?;
    Ok(WebhookCursor { created_at, id })
}

/// Creates an endpoint. The secret is in this response only.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    request_body = CreateEndpointBody,
    responses(
        (status = 201, description = "The endpoint and its secret.", body = CreatedEndpointBody),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, description = "A refused `url` (not https in production, or resolving to a loopback, private, link-local or metadata address) or `event_types` entry (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("forbidden_target" = (value = json!(problem_example(ApiError::validation_field("url", "forbidden_target", "url resolves to 127.0.0.1, a loopback address; webhooks may not target it"))))), ("bad_event_type" = (value = json!(problem_example(ApiError::validation_field("event_types", "invalid", "\"user.nope\" is not a webhook event type, a <family>.* wildcard or *"))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("")]
pub async fn create(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    body: web::Json<CreateEndpointBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let request = EndpointRequest {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    let (endpoint, secret) = state.webhooks.create(&admin, request).await?;
    Ok(HttpResponse::Created().json(CreatedEndpointBody {
        endpoint: EndpointBody::new(&endpoint),
        secret: secret.expose_secret().to_owned(),
    }))
}

/// Lists endpoints, oldest first.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of endpoints.", body = EndpointPageBody),
        (status = 400, response = MalformedPageQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("")]
pub async fn list(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(params.limit)?;
    let after = params.cursor.as_deref().map(|c| open_cursor(&state.cursors, "webhooks", c)).transpose()?;
    let page = state.webhooks.list(&admin, limit, after).await?;
    Ok(HttpResponse::Ok().json(EndpointPageBody {
        items: page.items.iter().map(EndpointBody::new).collect(),
        next_cursor: page.next.map(|c| seal_cursor(&state.cursors, "webhooks", &c)),
    }))
}

/// One endpoint.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 200, description = "The endpoint.", body = EndpointBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = state.webhooks.get(&admin, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(EndpointBody::new(&endpoint)))
}

/// Changes an endpoint; `enabled: true` clears `disabled_reason`.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    request_body = UpdateEndpointBody,
    responses(
        (status = 200, description = "The changed endpoint.", body = EndpointBody),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[patch("/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    id: web::Path<Uuid>,
    body: web::Json<UpdateEndpointBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let patch = EndpointPatch {
        url: body.url,
        event_types: body.event_types,
        description: body.description,
        enabled: body.enabled,
    };
    let endpoint = state.webhooks.update(&admin, id.into_inner(), patch).await?;
    Ok(HttpResponse::Ok().json(EndpointBody::new(&endpoint)))
}

/// Deletes an endpoint and its deliveries.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.webhooks.delete(&admin, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new secret. Deliveries carry two signatures, new and old, for 24 hours.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 200, description = "The new secret.", body = SecretBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/{id}/rotate-secret")]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let secret = state.webhooks.rotate_secret(&admin, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(SecretBody { secret: secret.expose_secret().to_owned() }))
}

/// Sends a `webhook.test` event (`data: {}`) to the endpoint.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 202, description = "Queued."),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/{id}/test")]
pub async fn test(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.webhooks.test(&admin, id.into_inner()).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e"), PageParams),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPageBody),
        (status = 400, response = MalformedPageQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/{id}/deliveries")]
pub async fn deliveries(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    id: web::Path<Uuid>,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(params.limit)?;
    let after = params.cursor.as_deref().map(|c| open_cursor(&state.cursors, "deliveries", c)).transpose()?;
    let page = state.webhooks.deliveries(&admin, id.into_inner(), limit, after).await?;
    Ok(HttpResponse::Ok().json(DeliveryPageBody {
        items: page.items.iter().map(DeliveryBody::new).collect(),
        next_cursor: page.next.map(|c| seal_cursor(&state.cursors, "deliveries", &c)),
    }))
}

/// Delivers the delivery's event again, as a new delivery with the same event id.
#[utoipa::path(
    tag = "webhooks",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The endpoint id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e"), ("delivery_id" = Uuid, Path, description = "The delivery to replay.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2f")),
    responses(
        (status = 202, description = "The new delivery.", body = DeliveryBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`: no such endpoint, or no such delivery of it.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(WebhookError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/{id}/deliveries/{delivery_id}/replay")]
pub async fn replay(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery) = path.into_inner();
    let delivery = state.webhooks.replay(&admin, id, delivery).await?;
    Ok(HttpResponse::Accepted().json(DeliveryBody::new(&delivery)))
}
