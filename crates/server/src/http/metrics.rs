//! `GET /metrics`: the Prometheus text exposition.

use actix_web::{HttpResponse, get, web};

use crate::metrics::{
    CACHE_CONNECTED, CACHE_ENTRIES, CACHE_EVICTIONS, CACHE_HITS, CACHE_INVALIDATIONS, CACHE_MISSES, DB_CIRCUIT_OPEN,
    DB_POOL_IN_USE, DB_POOL_MAX, DB_POOL_OPEN, DB_POOL_WAIT_SECONDS, DB_POOL_WAITS, HASH_QUEUE_DEPTH, OUTBOX_DEPTH,
    RATE_LIMIT_DEGRADED, WEBHOOK_OLDEST_PENDING, WEBHOOK_QUEUE_DEPTH,
};
use crate::state::AppState;

/// The content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Metrics in the Prometheus text format: requests and latency by route pattern, method and
/// status; database pool usage and waits; password-hashing queue depth and time; email outbox
/// depth, sent and failed; webhook deliveries by outcome, their latency, the queue depth and
/// the age of the oldest open delivery; sign-in outcomes; refresh-token reuse; read-cache hits,
/// misses, evictions, invalidations and size; whether rate limits fell back
/// from Redis to this instance; build info. Expose it only to the scraper: it reveals traffic
/// patterns. Served on the main listener, or with `metrics.listen` set only on that address
/// (plain HTTP, nothing else served there), the main listener then answering 404.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The metrics.", content_type = "text/plain", body = String,
        example = "# TYPE gatehouse_http_requests_total counter\ngatehouse_http_requests_total{route=\"/health/live\",method=\"GET\",status=\"200\"} 3\n"))
)]
#[get("/metrics")]
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.database.pool_stats();
    ::metrics::gauge!(DB_POOL_MAX).set(f64::from(pool.max_size));
    ::metrics::gauge!(DB_POOL_OPEN).set(f64::from(pool.connections));
    ::metrics::gauge!(DB_POOL_IN_USE).set(f64::from(pool.in_use));
    ::metrics::counter!(DB_POOL_WAITS).absolute(pool.waits);
    ::metrics::gauge!(DB_POOL_WAIT_SECONDS).set(pool.wait_seconds);
    ::metrics::gauge!(DB_CIRCUIT_OPEN).set(if pool.circuit_open { 1.0 } else { 0.0 });
    let cache = state.read_cache.stats();
    ::metrics::counter!(CACHE_HITS).absolute(cache.hits);
    ::metrics::counter!(CACHE_MISSES).absolute(cache.misses);
    ::metrics::counter!(CACHE_EVICTIONS).absolute(cache.evictions);
    ::metrics::counter!(CACHE_INVALIDATIONS).absolute(cache.invalidations);
    #[allow(clippy::cast_precision_loss)] // entry counts are far below 2^52
    {
        ::metrics::gauge!(CACHE_ENTRIES, "kind" => "user").set(cache.users as f64);
        ::metrics::gauge!(CACHE_ENTRIES, "kind" => "session").set(cache.sessions as f64);
    }
    ::metrics::gauge!(CACHE_CONNECTED).set(if state.read_cache.is_connected() { 1.0 } else { 0.0 });
    #[allow(clippy::cast_precision_loss)] // a queue depth is far below 2^52
    ::metrics::gauge!(HASH_QUEUE_DEPTH).set(state.hash_pool.queue_depth() as f64);
    match state.database.outbox_depth().await {
        #[allow(clippy::cast_precision_loss)]
        Ok(depth) => ::metrics::gauge!(OUTBOX_DEPTH).set(depth as f64),
        Err(e) => tracing::warn!(error = format!("{e:#}"), "metrics: cannot count the email outbox"),
    }
    match state.database.webhooks().queue_stats().await {
        Ok(stats) => {
            #[allow(clippy::cast_precision_loss)]
            ::metrics::gauge!(WEBHOOK_QUEUE_DEPTH).set(stats.depth as f64);
            let age = stats.oldest.map_or(0.0, |oldest| {
                #[allow(clippy::cast_precision_loss)]
                let ms = (state.now() - oldest).num_milliseconds().max(0) as f64;
                ms / 1000.0
            });
            ::metrics::gauge!(WEBHOOK_OLDEST_PENDING).set(age);
        }
        Err(e) => tracing::warn!(error = format!("{e:#}"), "metrics: cannot measure the webhook queue"),
    }
    if let Some(redis) = state.rate_limits.redis() {
        ::metrics::gauge!(RATE_LIMIT_DEGRADED).set(if redis.is_degraded() { 1.0 } else { 0.0 });
    }
    state.metrics.run_upkeep();
    HttpResponse::Ok().content_type(TEXT_FORMAT).body(state.metrics.render())
}
