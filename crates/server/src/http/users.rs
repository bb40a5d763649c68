//! `/api/v1/users/me`: the caller's own account.

use actix_web::{HttpResponse, get, web};

use crate::http::dto::UserBody;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::Authenticated;
use crate::state::AppState;

/// The caller's account.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account.", body = UserBody),
        (status = 401, description = "Missing, invalid or expired token (`unauthorized`).", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/me")]
pub async fn get_me(
    state: web::Data<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state.account.get_me(principal.user_id).await?;
    Ok(HttpResponse::Ok().json(UserBody::new(&user, state.now())))
}
