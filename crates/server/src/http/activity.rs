//! The audit trail: `GET /api/v1/users/me/activity` and `GET /api/v1/audit-events`.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use gatehouse_domain::ports::{ActivityEvent, ActivityQuery};
use gatehouse_domain::{ActivityAction, FieldError, UserId, ValidationErrors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::error::{ApiError, ErrorKind, Problem, problem_example};
use crate::http::extract::{Admin, Authenticated};
use crate::http::pagination::{open_activity_cursor, page_limit, seal_activity_cursor};
use crate::http::problems::{AdminOnly, Internal, MalformedPageQuery, RateLimited, Unauthorized};
use crate::state::AppState;

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ActivityEvent, example = json!({
    "id": "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e", "user_id": "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2f",
    "actor_id": null, "action": "auth.login_failed", "ip": "192.0.2.7", "user_agent": "curl/8.0",
    "created_at": "2026-11-26T12:00:00Z", "details": {"reason": "wrong_password"}
}))]
pub struct ActivityEventBody {
    id: Uuid,
    /// The account the event is about.
    user_id: Uuid,
    /// Who acted: the user, an admin, or `null` for the system.
    actor_id: Option<Uuid>,
    /// What happened, such as `auth.login_succeeded`.
    action: &'static str,
    /// Where the request came from.
    ip: Option<String>,
    /// The client that sent it.
    user_agent: Option<String>,
    /// When.
    created_at: DateTime<Utc>,
    /// Extra facts; never secrets.
    details: BTreeMap<String, String>,
}

impl From<ActivityEvent> for ActivityEventBody {
    fn from(event: ActivityEvent) -> Self {
        Self {
            id: *event.id.as_uuid(),
            user_id: *event.user_id.as_uuid(),
            actor_id: event.actor_id.map(|a| *a.as_uuid()),
            action: event.action.as_str(),
            ip: event.context.ip.map(|ip| ip.to_string()),
            user_agent: event.context.user_agent,
            created_at: event.created_at,
            details: event.details,
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityPageBody {
    /// The events, newest first.
    items: Vec<ActivityEventBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    next_cursor: Option<String>,
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

/// Events about the caller's own account, newest first.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("password" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of events.", body = ActivityPageBody),
        (status = 400, response = MalformedPageQuery),
        (status = 401, response = Unauthorized),
        (status = 422, description = "`limit` outside 1–100 (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("limit_out_of_range" = (value = json!(problem_example(ApiError::validation_field("limit", "out_of_range", "limit must be between 1 and 100"))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/me/activity")]
pub async fn mine(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(params.limit)?;
    let after = params.cursor.as_deref().map(|c| open_activity_cursor(&state.cursors, c)).transpose()?;
    let page = state.activity.mine(&principal, limit, after).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(page_body(&state, page)))
}

/// `GET /api/v1/audit-events` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Events about this user.
    #[param(example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")]
    user_id: Option<Uuid>,
    /// Events of this action, such as `auth.login_failed`.
    #[param(example = "auth.login_failed")]
    action: Option<String>,
    /// At or after this instant (RFC 3339).
    #[param(example = "2026-11-01T00:00:00Z")]
    since: Option<DateTime<Utc>>,
    /// Before this instant (RFC 3339).
    #[param(example = "2026-12-01T00:00:00Z")]
    until: Option<DateTime<Utc>>,
    /// 1–100, default 20.
    #[param(example = 50)]
    limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    #[param(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    cursor: Option<String>,
}

/// Every account's events, newest first, with filters.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of events.", body = ActivityPageBody),
        (status = 400, description = "`malformed_request` (bad cursor, limit, id or time).", body = Problem, content_type = "application/problem+json", examples(("bad_cursor" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The cursor is not one this server issued for this list."))))), ("bad_query" = (value = json!(problem_example(ApiError::new(ErrorKind::MalformedRequest, "The query string is invalid: since: premature end of input"))))))),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 422, description = "Unknown action or `limit` outside 1–100 (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("unknown_action" = (value = json!(problem_example(ApiError::validation_field("action", "invalid", "unknown action"))))), ("limit_out_of_range" = (value = json!(problem_example(ApiError::validation_field("limit", "out_of_range", "limit must be between 1 and 100"))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/audit-events")]
pub async fn audit(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let mut errors = ValidationErrors::default();
    let action = params.action.as_deref().and_then(|a| {
        errors.check(a.parse::<ActivityAction>().map_err(|_| FieldError::new("action", "invalid", "unknown action")))
    });
    errors.into_result()?;
    let query = ActivityQuery {
        user_id: params.user_id.map(UserId::from_uuid),
        action,
        since: params.since,
        until: params.until,
        limit: page_limit(params.limit)?,
        after: params.cursor.as_deref().map(|c| open_activity_cursor(&state.cursors, c)).transpose()?,
    };
    let page = state.activity.search(&admin, query).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(page_body(&state, page)))
}

fn page_body(
    state: &AppState,
    page: gatehouse_domain::pagination::Page<ActivityEvent, gatehouse_domain::ports::ActivityCursor>,
) -> ActivityPageBody {
    ActivityPageBody {
        next_cursor: page.next.map(|c| seal_activity_cursor(&state.cursors, &c)),
        items: page.items.into_iter().map(ActivityEventBody::from).collect(),
    }
}
