//! `/api/v1/users` and `/api/v1/users/{id}`: user administration. Every handler takes an
//! [`Admin`] extractor, and every admin use case demands the `AdminPrincipal` only it can
//! produce, so the role check cannot be skipped.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use gatehouse_domain::ports::{AdminChanges, UserQuery, UserSort};
use gatehouse_domain::services::admin::{AdminError, NewAccount};
use gatehouse_domain::values::PasswordError;
use gatehouse_domain::{
    DisplayName, Email, FieldError, NewPassword, Role, User, UserId, UserStatus, Username, ValidationErrors,
};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::dto::UserBody;
use crate::http::error::{ApiError, Problem, problem_example};
use crate::http::extract::{Admin, Client};
use crate::http::pagination::{open_user_cursor, page_limit, seal_user_cursor};
use crate::http::problems::{
    AdminOnly, BodyTooLarge, Internal, InvalidFields, MalformedJson, MalformedPageQuery, NotJson, RateLimited,
    Unauthorized,
};
use crate::state::AppState;

/// A user as administrators see it: the `User` fields plus `deleted_at`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AdminUser)]
pub struct AdminUserBody {
    /// The account.
    #[serde(flatten)]
    user: UserBody,
    /// When the account was soft-deleted; `null` otherwise.
    #[schema(example = "2026-11-20T09:30:00Z")]
    deleted_at: Option<DateTime<Utc>>,
}

impl AdminUserBody {
    fn new(user: &User, now: DateTime<Utc>) -> Self {
        Self { user: UserBody::new(user, now), deleted_at: user.deleted_at }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserPageBody {
    /// The users, in the requested order.
    items: Vec<AdminUserBody>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    next_cursor: Option<String>,
}

/// `GET /api/v1/users` query parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersParams {
    /// Case-insensitive substring of the email, username or display name.
    #[param(example = "ada")]
    q: Option<String>,
    /// `user` or `admin`.
    #[param(example = "admin")]
    role: Option<String>,
    /// `active`, `locked` or `disabled` (in effect now).
    #[param(example = "active")]
    status: Option<String>,
    /// Also list soft-deleted users.
    #[serde(default)]
    #[param(example = false)]
    include_deleted: bool,
    /// `created_at`, `-created_at` (default), `email` or `-email`.
    #[param(example = "-created_at")]
    sort: Option<String>,
    /// 1–100, default 20.
    #[param(example = 20)]
    limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    #[param(example = "Wq3cA1x9fQ0mZr7uJ2kX")]
    cursor: Option<String>,
}

fn parse_sort(raw: Option<&str>) -> Result<UserSort, FieldError> {
    match raw {
        None | Some("-created_at") => Ok(UserSort::CreatedAtDesc),
        Some("created_at") => Ok(UserSort::CreatedAt),
        Some("email") => Ok(UserSort::Email),
        Some("-email") => Ok(UserSort::EmailDesc),
        Some(_) => Err(FieldError::new("sort", "invalid", "sort must be created_at, -created_at, email or -email")),
    }
}

fn parse_role(raw: &str, field: &'static str) -> Result<Role, FieldError> {
    raw.parse().map_err(|_| FieldError::new(field, "invalid", "roles are user or admin"))
}

fn parse_status(raw: &str) -> Result<UserStatus, FieldError> {
    raw.parse().map_err(|_| FieldError::new("status", "invalid", "status is active, locked or disabled"))
}

/// Lists users with search, filters, sorting and keyset pagination.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    params(ListUsersParams),
    responses(
        (status = 200, description = "A page of users.", body = UserPageBody),
        (status = 400, response = MalformedPageQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 422, description = "`limit` outside 1–100, or an unknown role, status or sort (`validation_failed`).", body = Problem, content_type = "application/problem+json", examples(("limit_out_of_range" = (value = json!(problem_example(ApiError::validation_field("limit", "out_of_range", "limit must be between 1 and 100"))))), ("bad_sort" = (value = json!(problem_example(ApiError::validation_field("sort", "invalid", "sort must be created_at, -created_at, email or -email"))))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[get("")]
pub async fn list(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    params: web::Query<ListUsersParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let mut errors = ValidationErrors::default();
    let sort = errors.check(parse_sort(params.sort.as_deref()));
    let role = params.role.as_deref().and_then(|r| errors.check(parse_role(r, "role")));
    let status = params.status.as_deref().and_then(|s| errors.check(parse_status(s)));
    let limit = page_limit(params.limit)?;
    errors.into_result()?;
    let sort = sort.unwrap_or_default();
    let after = params.cursor.as_deref().map(|c| open_user_cursor(&state.cursors, sort, c)).transpose()?;
    let search = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase);
    let now = state.now();
    let query = UserQuery { search, role, status, include_deleted: params.include_deleted, sort, limit, after, now };
    let page = state.admin.list_users(&admin, query).await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(UserPageBody {
        items: page.items.iter().map(|u| AdminUserBody::new(u, now)).collect(),
        next_cursor: page.next.map(|c| seal_user_cursor(&state.cursors, sort, &c)),
    }))
}

/// `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "grace@example.com", "password": "a long initial passphrase", "roles": ["admin"], "email_verified": true}))]
pub struct CreateUserBody {
    /// The email.
    #[schema(format = Email, max_length = 254)]
    email: String,
    /// Optional: accounts without a password sign in by reset link or OAuth. 8–128
    /// characters, not the email, not a common password.
    #[schema(value_type = Option<String>, format = Password, min_length = 8, max_length = 128)]
    password: Option<SecretString>,
    /// 3–50 letters, digits, `.`, `_`, `-`; derived from the email when omitted.
    #[schema(min_length = 3, max_length = 50)]
    username: Option<String>,
    /// Up to 100 characters.
    #[schema(max_length = 100)]
    display_name: Option<String>,
    /// Roles besides `user`.
    #[serde(default)]
    roles: Vec<String>,
    /// Whether the email counts as verified.
    #[serde(default)]
    email_verified: bool,
}

impl TryFrom<CreateUserBody> for NewAccount {
    type Error = ValidationErrors;

    fn try_from(body: CreateUserBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let email = errors.check(Email::parse(&body.email));
        let username = body.username.as_deref().and_then(|u| errors.check(Username::parse(u)));
        let display_name = body.display_name.as_deref().and_then(|d| errors.check(DisplayName::parse(d)));
        let roles: Vec<Role> = body.roles.iter().filter_map(|r| errors.check(parse_role(r, "roles"))).collect();
        let password = match (body.password, &email) {
            (Some(raw), Some(email)) => errors
                .check(NewPassword::parse(raw, email).map_err(|e: PasswordError| e.on_field("password")))
                .map(Some),
            _ => Some(None),
        };
        errors.into_result()?;
        let (Some(email), Some(password)) = (email, password) else {
            return Err(FieldError::new("email", "invalid_format", "email is not a valid address").into());
        };
        Ok(NewAccount { email, password, username, display_name, roles, email_verified: body.email_verified })
    }
}

/// Creates an account.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    request_body = CreateUserBody,
    responses(
        (status = 201, description = "Created.", body = AdminUserBody),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 409, description = "`email_taken` or `username_taken`.", body = Problem, content_type = "application/problem+json", examples(("email_taken" = (value = json!(problem_example(AdminError::EmailTaken)))), ("username_taken" = (value = json!(problem_example(AdminError::UsernameTaken)))))),
        (status = 413, response = BodyTooLarge),
        (status = 415, response = NotJson),
        (status = 422, response = InvalidFields),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("")]
pub async fn create(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    Client(context): Client,
    body: web::Json<CreateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let account = NewAccount::try_from(body.into_inner())?;
    let user = state.admin.create_user(&admin, account, context).await?;
    Ok(HttpResponse::Created().json(AdminUserBody::new(&user, state.now())))
}

/// Any user, also soft-deleted ones.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The user id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 200, description = "The user.", body = AdminUserBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(AdminError::NotFound)))))),
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
    let user = state.admin.get_user(&admin, UserId::from_uuid(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(AdminUserBody::new(&user, state.now())))
}

/// `PATCH /api/v1/users/{id}`: fields left out stay; `display_name: null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"roles": ["admin"], "status": "disabled"}))]
pub struct UpdateUserBody {
    /// A new email.
    #[schema(format = Email, max_length = 254)]
    email: Option<String>,
    /// A new username: 3–50 letters, digits, `.`, `_`, `-`.
    #[schema(min_length = 3, max_length = 50)]
    username: Option<String>,
    /// A new display name (1–100 characters), or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    display_name: Option<Option<String>>,
    /// The complete set of roles (`user` is always kept). Revokes the user's sessions.
    roles: Option<Vec<String>>,
    /// `active`, `locked` (until an admin unlocks) or `disabled` (revokes the sessions).
    status: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

impl TryFrom<UpdateUserBody> for AdminChanges {
    type Error = ValidationErrors;

    fn try_from(body: UpdateUserBody) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let email = body.email.as_deref().and_then(|e| errors.check(Email::parse(e)));
        let username = body.username.as_deref().and_then(|u| errors.check(Username::parse(u)));
        let display_name = match body.display_name {
            None => None,
            Some(None) => Some(None),
            Some(Some(name)) => errors.check(DisplayName::parse(&name)).map(Some),
        };
        let roles = body.roles.map(|roles| roles.iter().filter_map(|r| errors.check(parse_role(r, "roles"))).collect());
        let status = body.status.as_deref().and_then(|s| errors.check(parse_status(s)));
        errors.into_result()?;
        Ok(AdminChanges { email, username, display_name, roles, status })
    }
}

/// Changes a user. Changing roles or disabling or locking revokes their sessions.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The user id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "The changed user.", body = AdminUserBody),
        (status = 400, response = MalformedJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found` (also for deleted users).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(AdminError::NotFound)))))),
        (status = 409, description = "`email_taken`, `username_taken`, or `conflict` when it would leave no active admin.", body = Problem, content_type = "application/problem+json", examples(("email_taken" = (value = json!(problem_example(AdminError::EmailTaken)))), ("username_taken" = (value = json!(problem_example(AdminError::UsernameTaken)))), ("conflict" = (value = json!(problem_example(AdminError::LastAdmin)))))),
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
    Client(context): Client,
    id: web::Path<Uuid>,
    body: web::Json<UpdateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let changes = AdminChanges::try_from(body.into_inner())?;
    let user = state.admin.update_user(&admin, UserId::from_uuid(id.into_inner()), changes, context).await?;
    Ok(HttpResponse::Ok().json(AdminUserBody::new(&user, state.now())))
}

/// Soft-deletes a user and revokes their sessions.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The user id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found` (also for users already deleted).", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(AdminError::NotFound)))))),
        (status = 409, description = "`conflict`: the last active admin.", body = Problem, content_type = "application/problem+json", examples(("conflict" = (value = json!(problem_example(AdminError::LastAdmin)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[delete("/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    Client(context): Client,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state.admin.delete_user(&admin, UserId::from_uuid(id.into_inner()), context).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Restores a soft-deleted user.
#[utoipa::path(
    tag = "admin",
    security(("bearer" = []), ("password" = [])),
    params(("id" = Uuid, Path, description = "The user id.", example = "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e")),
    responses(
        (status = 200, description = "Restored.", body = AdminUserBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = AdminOnly),
        (status = 404, description = "`not_found`: no deleted user has this id.", body = Problem, content_type = "application/problem+json", examples(("not_found" = (value = json!(problem_example(AdminError::NotFound)))))),
        (status = 409, description = "`email_taken` or `username_taken` by another account meanwhile.", body = Problem, content_type = "application/problem+json", examples(("email_taken" = (value = json!(problem_example(AdminError::EmailTaken)))), ("username_taken" = (value = json!(problem_example(AdminError::UsernameTaken)))))),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
#[post("/{id}/restore")]
pub async fn restore(
    state: web::Data<AppState>,
    Admin(admin): Admin,
    Client(context): Client,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let user = state.admin.restore_user(&admin, UserId::from_uuid(id.into_inner()), context).await?;
    Ok(HttpResponse::Ok().json(AdminUserBody::new(&user, state.now())))
}
