//! Liveness and readiness.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long a dependency may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `{"status": "ok"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveBody {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// Answers 200 while the process runs; touches no dependency.
#[utoipa::path(tag = "operations", responses((status = 200, description = "The process is alive.", body = LiveBody)))]
#[get("/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(LiveBody { status: "ok" })
}

/// The outcome of one dependency check.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckBody {
    /// `ok`, `degraded` or `unavailable`.
    #[schema(example = "ok")]
    status: &'static str,
    /// How long the check took.
    #[schema(example = 1.3)]
    latency_ms: f64,
    /// Why it failed, in general terms.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

/// The overall readiness and each check.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "checks": {"database": {"status": "ok", "latency_ms": 1.3}}}))]
pub struct ReadyBody {
    /// `ok`, `degraded` or `unavailable`.
    status: &'static str,
    /// Each dependency by name.
    checks: BTreeMap<&'static str, CheckBody>,
}

/// Checks the dependencies the service cannot serve without. 503 only when one of them is
/// unavailable; an unreachable Redis only degrades the service (rate limits fall back to
/// per-instance counting), so it answers 200 with `redis: degraded`.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve.", body = ReadyBody),
        (status = 503, description = "A required dependency is unavailable.", body = ReadyBody),
    )
)]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, state.database.ping()).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let database = match outcome {
        Ok(Ok(())) => CheckBody { status: "ok", latency_ms, error: None },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database does not answer");
            CheckBody { status: "unavailable", latency_ms, error: Some("query failed") }
        }
        Err(_) => CheckBody { status: "unavailable", latency_ms, error: Some("timed out") },
    };
    let ok = database.status == "ok";
    let mut checks = BTreeMap::from([("database", database)]);
    let mut degraded = false;
    if let Some(redis) = state.rate_limits.redis() {
        let started = Instant::now();
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, redis.ping()).await;
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        let check = match outcome {
            Ok(Ok(())) => CheckBody { status: "ok", latency_ms, error: None },
            Ok(Err(_)) => CheckBody { status: "degraded", latency_ms, error: Some("unreachable; limits per instance") },
            Err(_) => CheckBody { status: "degraded", latency_ms, error: Some("timed out; limits per instance") },
        };
        degraded = check.status != "ok";
        checks.insert("redis", check);
    }
    let status = match (ok, degraded) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ok",
    };
    let body = ReadyBody { status, checks };
    if ok { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}
