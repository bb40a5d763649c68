//! Liveness (never touches a dependency) and readiness (checks them, each with a timeout).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long a dependency may take to answer a readiness check (well below the usual
/// probe timeouts of load balancers and orchestrators).
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Checks the database (required: `unavailable` and 503 when it fails), and the read
/// replica, Redis and the SMTP server when configured (optional: `degraded`, still 200, when they fail). Each check
/// has its own short timeout, and they run concurrently.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve (`ok`), or serving without an optional dependency (`degraded`).", body = ReadyBody,
            example = json!({"status": "degraded", "checks": {"database": {"status": "ok", "latency_ms": 1.3}, "smtp": {"status": "degraded", "latency_ms": 0.4, "error": "unreachable"}}})),
        (status = 503, description = "The database is unavailable.", body = ReadyBody,
            example = json!({"status": "unavailable", "checks": {"database": {"status": "unavailable", "latency_ms": 2000.1, "error": "timed out"}}})),
    )
)]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let deps = &state.dependencies;
    let database = check("database", UNAVAILABLE, state.database.ping());
    // The rate limiter's connection reconnects by itself, so readiness recovers with Redis.
    let redis = async {
        match state.rate_limits.redis() {
            None => None,
            Some(redis) => Some(check("redis", DEGRADED, redis.ping()).await),
        }
    };
    let smtp = async {
        match &deps.smtp_addr {
            None => None,
            Some(addr) => Some(check("smtp", DEGRADED, tcp_reachable(addr)).await),
        }
    };
    let replica = async {
        match &deps.replica {
            None => None,
            Some(replica) => Some(check("replica", DEGRADED, replica.ping()).await),
        }
    };
    let (database, redis, smtp, replica) = futures::join!(database, redis, smtp, replica);
    let mut checks = BTreeMap::from([("database", database)]);
    checks.extend(replica.map(|c| ("replica", c)));
    checks.extend(redis.map(|c| ("redis", c)));
    checks.extend(smtp.map(|c| ("smtp", c)));
    let status = if checks.values().any(|c| c.status == UNAVAILABLE) {
        UNAVAILABLE
    } else if checks.values().any(|c| c.status == DEGRADED) {
        DEGRADED
    } else {
        OK
    };
    let body = ReadyBody { status, checks };
    if status == UNAVAILABLE { HttpResponse::ServiceUnavailable().json(body) } else { HttpResponse::Ok().json(body) }
}

const OK: &str = "ok";
const DEGRADED: &str = "degraded";
const UNAVAILABLE: &str = "unavailable";

/// Runs one check under [`CHECK_TIMEOUT`]; a failure takes the status `on_failure`.
async fn check(
    name: &'static str,
    on_failure: &'static str,
    probe: impl Future<Output = anyhow::Result<()>>,
) -> CheckBody {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(Ok(())) => CheckBody { status: OK, latency_ms, error: None },
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = format!("{e:#}"), "readiness: a dependency does not answer");
            CheckBody { status: on_failure, latency_ms, error: Some("unreachable") }
        }
        Err(_) => {
            tracing::warn!(check = name, "readiness: a dependency timed out");
            CheckBody { status: on_failure, latency_ms, error: Some("timed out") }
        }
    }
}

/// Whether a TCP connection to `addr` opens (an SMTP server that accepts connections).
async fn tcp_reachable(addr: &str) -> anyhow::Result<()> {
    tokio::net::TcpStream::connect(addr).await?;
    Ok(())
}
