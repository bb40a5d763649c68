//! Response bodies shared by several endpoints. Request bodies live beside their handlers.

use chrono::{DateTime, Utc};
use gatehouse_domain::User;
use gatehouse_domain::services::auth::TokenPair;
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A user account as clients see it. Never carries a password or its hash.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = User, example = json!({
    "id": "019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e", "username": "ada", "email": "ada@example.com",
    "display_name": "Ada", "roles": ["user"], "status": "active", "email_verified": false,
    "avatar_url": null, "created_at": "2026-11-26T12:00:00Z", "updated_at": "2026-11-26T12:00:00Z",
    "last_login_at": null
}))]
pub struct UserBody {
    /// UUIDv7.
    pub id: Uuid,
    /// Unique case-insensitively.
    pub username: String,
    /// Unique case-insensitively.
    pub email: String,
    /// Optional human name.
    pub display_name: Option<String>,
    /// `user`, and `admin` for operators.
    pub roles: Vec<&'static str>,
    /// `active`, `locked` or `disabled`.
    #[schema(example = "active")]
    pub status: &'static str,
    /// Whether the email address was verified.
    pub email_verified: bool,
    /// Where the avatar is served, if the user has one. The `v` parameter changes whenever
    /// the image does, so the URL can be cached for good.
    #[schema(example = "/api/v1/users/019ac2a4-5b7e-7c31-9a53-2f1f6f0c1d2e/avatar?v=9f86d081884c7d65")]
    pub avatar_url: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last successful sign-in.
    pub last_login_at: Option<DateTime<Utc>>,
}

impl UserBody {
    /// The body of `user` as seen at `now` (a lock that ran out shows as `active`).
    #[must_use]
    pub fn new(user: &User, now: DateTime<Utc>) -> Self {
        Self {
            id: *user.id.as_uuid(),
            username: user.username.to_string(),
            email: user.email.to_string(),
            display_name: user.display_name.as_ref().map(ToString::to_string),
            roles: user.roles.iter().map(|r| r.as_str()).collect(),
            status: user.status_at(now).as_str(),
            email_verified: user.email_verified(),
            avatar_url: user
                .avatar
                .as_ref()
                .map(|avatar| format!("/api/v1/users/{}/avatar?v={}", user.id, avatar.key.version())),
            created_at: user.created_at,
            updated_at: user.updated_at,
            last_login_at: user.last_login_at,
        }
    }
}

/// Tokens handed out at sign-in.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TokenPair, example = json!({
    "access_token": "eyJhbGciOiJIUzI1NiJ9…", "token_type": "Bearer", "expires_in": 900,
    "refresh_token": "q0Xo3…", "refresh_expires_in": 2592000
}))]
pub struct TokenPairBody {
    /// A JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque, single use; trade it at `/auth/refresh` for a new pair. Absent in cookie
    /// mode (`?cookie=true`), where it travels in the refresh cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the session expires.
    pub refresh_expires_in: i64,
}

impl TokenPairBody {
    /// The body of `pair`, with or without its refresh token.
    #[must_use]
    pub fn new(pair: &TokenPair, include_refresh_token: bool) -> Self {
        Self {
            access_token: pair.access_token.clone(),
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_token: include_refresh_token.then(|| pair.refresh_token.expose_secret().to_owned()),
            refresh_expires_in: pair.refresh_expires_in,
        }
    }
}
