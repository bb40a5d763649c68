//! `/api/v1/auth/sessions`: the caller's sessions.

use actix_web::{HttpResponse, delete, get, web};
use chrono::{DateTime, Utc};
use gatehouse_domain::SessionId;
use gatehouse_domain::services::sessions::{RevokeSessionError, SessionView};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::error::{ApiError, Problem, problem_example};
use crate::http::extract::{Authenticated, Client};
use crate::http::problems::{Internal, RateLimited, Unauthorized};
use crate::state::AppState;

/// A session as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Session, example = json!({
    "id": "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e", "created_at": "2026-11-26T12:00:00Z",
    "last_used_at": "2026-11-26T12:10:00Z", "expires_at": "2026-12-26T12:00:00Z",
    "user_agent": "Mozilla/5.0", "ip": "192.0.2.7", "current": true
}))]
pub struct SessionBody {
    /// The session id (`sid` in its access tokens).
    id: Uuid,
    /// The sign-in.
    created_at: DateTime<Utc>,
    /// The last refresh.
    last_used_at: DateTime<Utc>,
    /// When it can no longer be refreshed.
    expires_at: DateTime<Utc>,
    /// The browser or client that signed in.
    user_agent: Option<String>,
    /// Where it signed in from.
    ip: Option<String>,
    /// Whether the caller's token belongs to this session.
    current: bool,
}

impl From<SessionView> for SessionBody {
    fn from(view: SessionView) -> Self {
        let session = view.session;
        Self {
            id: *session.id.as_uuid(),
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
            user_agent: session.context.user_agent,
            ip: session.context.ip.map(|ip| ip.to_string()),
            current: view.current,
        }
    }
}

/// The caller's live sessions, newest first.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = []), ("password" = [])),
    responses(
        (status = 200, description = "The caller's live sessions.", body = [SessionBody]),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("/sessions")]
pub async fn list(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = state.sessions.list(&principal).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(sessions.into_iter().map(SessionBody::from).collect::<Vec<_>>()))
}

/// Revokes one of the caller's sessions; its tokens stop working at once.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The session id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No live session of the caller has this id (`not_found`).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(RevokeSessionError::NotFound)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/sessions/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
    Client(context): Client,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.sessions.revoke(&principal, SessionId::from_uuid(id.into_inner()), context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes every session of the caller except the current one.
#[utoipa::path(
    tag = "auth",
    security(("bearer" = []), ("password" = [])),
    responses(
        (status = 204, description = "The other sessions are revoked."),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/sessions")]
pub async fn revoke_others(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    state.sessions.revoke_others(&principal).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::NoContent().finish())
}
