//! Rate limits per API.md's table: a middleware for the per-IP and per-user rules, and
//! [`RateLimits::check_identifier`] and [`RateLimits::check_session`] for the per-email and
//! per-session rules the handlers apply once they have read the body. Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining` and
//! `RateLimit-Reset`; a 429 `rate_limited` also carries `Retry-After`.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{ResponseError as _, web};
use gatehouse_cache_redis::FallbackRateLimiter;
use gatehouse_domain::SessionId;
use gatehouse_domain::ports::{RateDecision, RateLimiter};

use crate::http::client_ip;
use crate::http::error::ApiError;
use crate::settings::{RateLimitSettings, RateRule};
use crate::state::AppState;

const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The configured rules and the limiter that counts them.
#[derive(Clone)]
pub struct RateLimits {
    settings: RateLimitSettings,
    limiter: Arc<dyn RateLimiter>,
    redis: Option<Arc<FallbackRateLimiter>>,
}

/// Which rule a request falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleName {
    /// Sign-in.
    Login,
    /// Sign-up.
    Register,
    /// Password reset and verification resends.
    Recovery,
    /// Refresh-token rotation.
    Refresh,
    /// Everything else.
    General,
}

impl RuleName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::Recovery => "recovery",
            Self::Refresh => "refresh",
            Self::General => "general",
        }
    }

    /// The rule for a request, or `None` for unlimited paths (health probes, documentation).
    #[must_use]
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        if path.starts_with("/health/") || path.starts_with("/docs") || path == "/api-docs/openapi.json" {
            return None;
        }
        if method != Method::POST {
            return Some(Self::General);
        }
        Some(match path.strip_prefix("/api/v1/auth") {
            Some("/login" | "/token") => Self::Login,
            Some("/register") => Self::Register,
            Some("/password/forgot" | "/verify-email/resend") => Self::Recovery,
            // `Refresh` is per session, which only the token names: the handler applies it.
            // Until then the per-IP general rule guards against floods of made-up tokens.
            _ => Self::General,
        })
    }
}

impl RateLimits {
    /// Rules from `settings`, counted by `limiter`; `redis` is the Redis-backed limiter when one
    /// is configured, for readiness reports.
    #[must_use]
    pub fn new(
        settings: RateLimitSettings,
        limiter: Arc<dyn RateLimiter>,
        redis: Option<Arc<FallbackRateLimiter>>,
    ) -> Self {
        Self { settings, limiter, redis }
    }

    /// The Redis-backed limiter, when `redis.url` is set.
    #[must_use]
    pub fn redis(&self) -> Option<&FallbackRateLimiter> {
        self.redis.as_deref()
    }

    fn rule(&self, name: RuleName) -> RateRule {
        let s = &self.settings;
        match name {
            RuleName::Login => s.login,
            RuleName::Register => s.register,
            RuleName::Recovery => s.recovery,
            RuleName::Refresh => s.refresh,
            RuleName::General => s.general,
        }
    }

    /// Counts one request of `rule` on `key`; `None` when limits are off. A limiter failure
    /// lets the request through (and is logged): limits protect the service, they must not
    /// take it down.
    async fn hit(&self, name: RuleName, key: &str) -> Option<RateDecision> {
        if !self.settings.enabled {
            return None;
        }
        let rule = self.rule(name);
        let key = format!("{}:{key}", name.as_str());
        match self.limiter.hit(&key, rule.limit, rule.window()).await {
            Ok(decision) => {
                if !decision.allowed {
                    crate::metrics::record_rate_limit_rejection(name.as_str());
                }
                Some(decision)
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter failed; request let through");
                None
            }
        }
    }

    /// The per-email (or per-username) part of a rule, applied by handlers after reading the
    /// body, whatever IP the request comes from.
    ///
    /// # Errors
    ///
    /// 429 `rate_limited` with `Retry-After` once the identifier is over the limit.
    pub async fn check_identifier(&self, name: RuleName, identifier: &str) -> Result<(), ApiError> {
        self.check(name, &format!("id:{}", identifier.trim().to_lowercase())).await
    }

    /// The per-session refresh rule, applied once the presented refresh token has named its
    /// session (spent tokens included: replaying old tokens counts against the session too).
    ///
    /// # Errors
    ///
    /// 429 `rate_limited` with `Retry-After` once the session is over the limit.
    pub async fn check_session(&self, session: SessionId) -> Result<(), ApiError> {
        self.check(RuleName::Refresh, &format!("session:{session}")).await
    }

    async fn check(&self, name: RuleName, key: &str) -> Result<(), ApiError> {
        match self.hit(name, key).await {
            Some(decision) if !decision.allowed => Err(ApiError::rate_limited(decision.reset_after_secs)),
            _ => Ok(()),
        }
    }
}

fn set_headers(headers: &mut HeaderMap, decision: &RateDecision) {
    headers.insert(LIMIT, HeaderValue::from(decision.limit));
    headers.insert(REMAINING, HeaderValue::from(decision.remaining));
    headers.insert(RESET, HeaderValue::from(decision.reset_after_secs));
}

/// The per-IP and per-user limits, in front of every route.
///
/// # Errors
///
/// Passes through errors of the inner services.
pub async fn limit_requests<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let Some(name) = RuleName::of(req.method(), req.path()) else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let ip = client_ip::resolve(req.peer_addr().map(|a| a.ip()), req.headers(), &state.trusted_proxies);
    let user = (name == RuleName::General)
        .then(|| crate::http::extract::bearer_token(req.request()).and_then(|t| state.access_tokens.verify(t).ok()))
        .flatten()
        .map(|claims| format!("user:{}", claims.user_id));
    let key = user.unwrap_or_else(|| format!("ip:{}", ip.map_or_else(|| "unknown".to_owned(), client_ip::limit_key)));
    let decision = state.rate_limits.hit(name, &key).await;
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        tracing::info!(rule = name.as_str(), "rate limited");
        let mut response = ApiError::rate_limited(decision.reset_after_secs).error_response();
        set_headers(response.headers_mut(), &decision);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    if let Some(decision) = decision {
        set_headers(response.headers_mut(), &decision);
    }
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_falls_under_its_rule() {
        assert_eq!(RuleName::of(&Method::POST, "/api/v1/auth/login"), Some(RuleName::Login));
        assert_eq!(RuleName::of(&Method::POST, "/api/v1/auth/token"), Some(RuleName::Login));
        assert_eq!(RuleName::of(&Method::POST, "/api/v1/auth/register"), Some(RuleName::Register));
        assert_eq!(RuleName::of(&Method::POST, "/api/v1/auth/password/forgot"), Some(RuleName::Recovery));
        assert_eq!(
            RuleName::of(&Method::POST, "/api/v1/auth/refresh"),
            Some(RuleName::General),
            "per session in the handler"
        );
        assert_eq!(RuleName::of(&Method::GET, "/api/v1/users/me"), Some(RuleName::General));
        assert_eq!(RuleName::of(&Method::GET, "/health/ready"), None);
    }
}
