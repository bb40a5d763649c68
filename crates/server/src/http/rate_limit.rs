//! Rate limits per API.md's table, bound to the routes they guard.
//!
//! A rule is attached where its route or scope is registered: `wrap = "Limit::LOGIN"` on
//! a handler, [`Limit::GENERAL`] on every API scope. The router has already decoded and
//! matched the path when the middleware runs, so however a client spells a path
//! (percent-encoding in either case, an extra slash), a request that reaches a handler meets that
//! handler's limit; a spelling the router does not match reaches no handler at all.
//!
//! The middleware counts per IP (the general rule per user when a valid bearer token names
//! one); [`RateLimits::check_identifier`] and [`RateLimits::check_session`] are the per-account
//! and per-session parts the handlers apply once they have read the body. Every limited response
//! carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` of the innermost rule
//! that counted it; a 429 `rate_limited` also carries `Retry-After`.

use std::sync::Arc;

use std::future::{Ready, ready};
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::{ResponseError as _, web};
use futures::future::LocalBoxFuture;
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

    /// The per-account (or per-email) part of a rule, applied by handlers after reading the
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

/// The middleware that applies one rule to the routes it wraps. Registered with the route
/// (`#[post("/login", wrap = "Limit::LOGIN")]`) or its scope, never by path.
#[derive(Debug, Clone, Copy)]
pub struct Limit(RuleName);

impl Limit {
    /// Sign-in: `/auth/login` and `/auth/token`.
    pub const LOGIN: Self = Self(RuleName::Login);
    /// Sign-up.
    pub const REGISTER: Self = Self(RuleName::Register);
    /// Password reset requests and verification resends.
    pub const RECOVERY: Self = Self(RuleName::Recovery);
    /// Everything in the API, per user when authenticated and per IP otherwise.
    pub const GENERAL: Self = Self(RuleName::General);
}

impl<S, B> Transform<S, ServiceRequest> for Limit
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = LimitService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(LimitService { rule: self.0, service: Rc::new(service) }))
    }
}

/// [`Limit`] in front of one service.
pub struct LimitService<S> {
    rule: RuleName,
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for LimitService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let (rule, service) = (self.rule, Rc::clone(&self.service));
        Box::pin(limit(rule, req, service))
    }
}

/// Counts `req` under `rule`, answers 429 once over the limit, and otherwise lets `service`
/// answer, adding the rule's headers unless an inner (more specific) rule set its own.
async fn limit<S, B>(
    rule: RuleName,
    req: ServiceRequest,
    service: Rc<S>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return service.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    let ip = client_ip::resolve(req.peer_addr().map(|a| a.ip()), req.headers(), &state.trusted_proxies);
    let user = (rule == RuleName::General)
        .then(|| crate::http::extract::bearer_token(req.request()).and_then(|t| state.access_tokens.verify(t).ok()))
        .flatten()
        .map(|claims| format!("user:{}", claims.user_id));
    let key = user.unwrap_or_else(|| format!("ip:{}", ip.map_or_else(|| "unknown".to_owned(), client_ip::limit_key)));
    let decision = state.rate_limits.hit(rule, &key).await;
    if let Some(decision) = decision.filter(|d| !d.allowed) {
        tracing::info!(rule = rule.as_str(), "rate limited");
        let mut response = ApiError::rate_limited(decision.reset_after_secs).error_response();
        set_headers(response.headers_mut(), &decision);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = service.call(req).await?;
    if let Some(decision) = decision
        && !response.headers().contains_key(LIMIT)
    {
        set_headers(response.headers_mut(), &decision);
    }
    Ok(response.map_into_left_body())
}
