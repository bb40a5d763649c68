//! Prometheus metrics: the names, the recorder, and the few places that record them.
//!
//! Counters and histograms go through the `metrics` facade to one process-wide recorder;
//! gauges that mirror a state (pool usage, queue and outbox depth) are read when `/metrics`
//! is scraped, so they are never stale. The route renders the text itself: no second
//! listener. Labels carry route patterns, never raw paths, so their number stays bounded.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use gatehouse_domain::ports::{HashError, PasswordCheck, PasswordHash, PasswordHasher};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::SecretString;

/// HTTP requests by `route` pattern, `method` and `status`.
pub const HTTP_REQUESTS: &str = "gatehouse_http_requests_total";
/// HTTP request latency in seconds by `route`, `method` and `status`.
pub const HTTP_DURATION: &str = "gatehouse_http_request_duration_seconds";
/// The most connections the database pool opens.
pub const DB_POOL_MAX: &str = "gatehouse_db_pool_max_connections";
/// Database connections open now.
pub const DB_POOL_OPEN: &str = "gatehouse_db_pool_connections";
/// Database connections checked out now.
pub const DB_POOL_IN_USE: &str = "gatehouse_db_pool_in_use";
/// Checkouts that found no idle connection and waited.
pub const DB_POOL_WAITS: &str = "gatehouse_db_pool_waits_total";
/// Total seconds those checkouts waited (a gauge: it mirrors the pool's own tally).
pub const DB_POOL_WAIT_SECONDS: &str = "gatehouse_db_pool_wait_seconds";
/// 1 while the database circuit breaker is open or half open (requests fail at once), else 0.
pub const DB_CIRCUIT_OPEN: &str = "gatehouse_db_circuit_open";
/// Reads (users, session checks) answered from the read cache.
pub const CACHE_HITS: &str = "gatehouse_read_cache_hits_total";
/// Reads that went to the database.
pub const CACHE_MISSES: &str = "gatehouse_read_cache_misses_total";
/// Entries dropped to stay within `cache.capacity`.
pub const CACHE_EVICTIONS: &str = "gatehouse_read_cache_evictions_total";
/// Changes applied to the read cache (this instance's and the other instances'), flushes included.
pub const CACHE_INVALIDATIONS: &str = "gatehouse_read_cache_invalidations_total";
/// Entries in the read cache now, by `kind` (`user`, `session`).
pub const CACHE_ENTRIES: &str = "gatehouse_read_cache_entries";
/// 1 while the change feed is up (the cache answers), 0 while it is down.
pub const CACHE_CONNECTED: &str = "gatehouse_read_cache_connected";
/// Password-hashing jobs queued or running.
pub const HASH_QUEUE_DEPTH: &str = "gatehouse_password_hash_queue_depth";
/// Time to hash or verify a password, queueing included, by `operation`.
pub const HASH_DURATION: &str = "gatehouse_password_hash_duration_seconds";
/// Outbox messages still pending.
pub const OUTBOX_DEPTH: &str = "gatehouse_email_outbox_depth";
/// Outbox messages delivered by this process's relay.
pub const OUTBOX_SENT: &str = "gatehouse_email_outbox_sent_total";
/// Outbox messages given up on by this process's relay.
pub const OUTBOX_FAILED: &str = "gatehouse_email_outbox_failed_total";
/// Outbox messages scheduled for another attempt by this process's relay.
pub const OUTBOX_RETRIED: &str = "gatehouse_email_outbox_retried_total";
/// Unreferenced avatar files removed by the sweep.
pub const AVATAR_FILES_SWEPT: &str = "gatehouse_avatar_files_swept_total";
/// Password sign-ins by `outcome` (`success` or the failure reason).
pub const LOGINS: &str = "gatehouse_logins_total";
/// Spent refresh tokens presented again (the session was revoked).
pub const REFRESH_REUSE: &str = "gatehouse_refresh_token_reuse_total";
/// Requests rejected by a rate limit, by `scope`.
pub const RATE_LIMIT_REJECTIONS: &str = "gatehouse_rate_limit_rejections_total";
/// 1 while the configured Redis did not answer the last attempt and limits are held per
/// instance, 0 while they are shared on Redis; absent without `redis.url`.
pub const RATE_LIMIT_DEGRADED: &str = "gatehouse_rate_limit_degraded";
/// Webhook delivery attempts by `outcome` (`succeeded`, `retried`, `failed`).
pub const WEBHOOK_DELIVERIES: &str = "gatehouse_webhook_deliveries_total";
/// Seconds a webhook delivery attempt took.
pub const WEBHOOK_DURATION: &str = "gatehouse_webhook_delivery_duration_seconds";
/// Webhook endpoints this process disabled for failing.
pub const WEBHOOK_ENDPOINTS_DISABLED: &str = "gatehouse_webhook_endpoints_disabled_total";
/// Webhook deliveries pending or retrying.
pub const WEBHOOK_QUEUE_DEPTH: &str = "gatehouse_webhook_queue_depth";
/// Age in seconds of the oldest pending or retrying webhook delivery (0 when none).
pub const WEBHOOK_OLDEST_PENDING: &str = "gatehouse_webhook_oldest_pending_seconds";
/// Always 1, labelled with the `version` of this build.
pub const BUILD_INFO: &str = "gatehouse_build_info";

/// Latency buckets in seconds: 1 ms to 10 s.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle, installing the recorder on first use. Several
/// applications in one process (tests) share it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = match PrometheusBuilder::new().set_buckets(BUCKETS) {
                Ok(builder) => builder,
                Err(e) => {
                    tracing::error!(error = %e, "metrics: invalid buckets; histograms render as summaries");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if ::metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("metrics: another recorder is installed; /metrics stays empty");
            }
            describe();
            for outcome in ["succeeded", "retried", "failed"] {
                ::metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(0);
            }
            ::metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    ::metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route pattern, method and status.");
    ::metrics::describe_histogram!(HTTP_DURATION, ::metrics::Unit::Seconds, "HTTP request latency.");
    ::metrics::describe_gauge!(DB_POOL_MAX, "The most connections the database pool opens.");
    ::metrics::describe_gauge!(DB_POOL_OPEN, "Database connections open now.");
    ::metrics::describe_gauge!(DB_POOL_IN_USE, "Database connections checked out now.");
    ::metrics::describe_counter!(DB_POOL_WAITS, "Connection checkouts that had to wait.");
    ::metrics::describe_gauge!(DB_POOL_WAIT_SECONDS, "Seconds spent waiting for a connection.");
    ::metrics::describe_gauge!(DB_CIRCUIT_OPEN, "1 while the database circuit breaker is open, else 0.");
    ::metrics::describe_counter!(CACHE_HITS, "Reads answered from the read cache.");
    ::metrics::describe_counter!(CACHE_MISSES, "Reads that went to the database.");
    ::metrics::describe_counter!(CACHE_EVICTIONS, "Read-cache entries dropped to stay within the capacity.");
    ::metrics::describe_counter!(CACHE_INVALIDATIONS, "Changes applied to the read cache, flushes included.");
    ::metrics::describe_gauge!(CACHE_ENTRIES, "Read-cache entries now, by kind.");
    ::metrics::describe_gauge!(CACHE_CONNECTED, "1 while the read cache's change feed is up.");
    ::metrics::describe_gauge!(HASH_QUEUE_DEPTH, "Password-hashing jobs queued or running.");
    ::metrics::describe_histogram!(HASH_DURATION, ::metrics::Unit::Seconds, "Time to hash or verify a password.");
    ::metrics::describe_gauge!(OUTBOX_DEPTH, "Email outbox messages still pending.");
    ::metrics::describe_counter!(OUTBOX_SENT, "Emails delivered by this process.");
    ::metrics::describe_counter!(OUTBOX_FAILED, "Emails given up on by this process.");
    ::metrics::describe_counter!(OUTBOX_RETRIED, "Email deliveries scheduled for another attempt.");
    ::metrics::describe_counter!(AVATAR_FILES_SWEPT, "Unreferenced avatar files removed by this process's sweep.");
    ::metrics::describe_counter!(LOGINS, "Password sign-ins by outcome.");
    ::metrics::describe_counter!(REFRESH_REUSE, "Spent refresh tokens presented again.");
    ::metrics::describe_counter!(RATE_LIMIT_REJECTIONS, "Requests rejected by a rate limit.");
    ::metrics::describe_gauge!(
        RATE_LIMIT_DEGRADED,
        "1 while Redis is unreachable and rate limits are held per instance, 0 while shared on Redis."
    );
    ::metrics::describe_counter!(WEBHOOK_DELIVERIES, "Webhook delivery attempts by outcome.");
    ::metrics::describe_histogram!(WEBHOOK_DURATION, ::metrics::Unit::Seconds, "Webhook delivery attempt latency.");
    ::metrics::describe_counter!(WEBHOOK_ENDPOINTS_DISABLED, "Webhook endpoints disabled for failing.");
    ::metrics::describe_gauge!(WEBHOOK_QUEUE_DEPTH, "Webhook deliveries pending or retrying.");
    ::metrics::describe_gauge!(WEBHOOK_OLDEST_PENDING, "Age of the oldest open webhook delivery, in seconds.");
    ::metrics::describe_gauge!(BUILD_INFO, "Always 1; the labels describe the build.");
}

/// Records one finished HTTP request.
pub fn record_request(route: &str, method: &str, status: u16, seconds: f64) {
    let labels = [("route", route.to_owned()), ("method", method.to_owned()), ("status", status.to_string())];
    ::metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(HTTP_DURATION, &labels).record(seconds);
}

/// Records a password sign-in: `success`, or the reason it failed.
pub fn record_login(outcome: &'static str) {
    ::metrics::counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// Records a refresh-token reuse detection.
pub fn record_refresh_reuse() {
    ::metrics::counter!(REFRESH_REUSE).increment(1);
}

/// Records a request a rate limit rejected; `scope` names the limit (`login`, `register`…).
pub fn record_rate_limit_rejection(scope: &'static str) {
    ::metrics::counter!(RATE_LIMIT_REJECTIONS, "scope" => scope).increment(1);
}

/// Records what one relay batch did.
pub fn record_relay_batch(sent: usize, retried: usize, failed: usize) {
    ::metrics::counter!(OUTBOX_SENT).increment(sent as u64);
    ::metrics::counter!(OUTBOX_RETRIED).increment(retried as u64);
    ::metrics::counter!(OUTBOX_FAILED).increment(failed as u64);
}

/// Records what one webhook relay batch did.
pub fn record_webhook_batch(report: &gatehouse_domain::services::webhooks::WebhookBatchReport) {
    ::metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => "succeeded").increment(report.succeeded as u64);
    ::metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => "retried").increment(report.retried as u64);
    ::metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => "failed").increment(report.failed as u64);
    ::metrics::counter!(WEBHOOK_ENDPOINTS_DISABLED).increment(report.disabled as u64);
    for seconds in &report.latencies {
        ::metrics::histogram!(WEBHOOK_DURATION).record(*seconds);
    }
}

/// Records the avatar files one sweep removed.
pub fn record_avatar_sweep(removed: usize) {
    ::metrics::counter!(AVATAR_FILES_SWEPT).increment(removed as u64);
}

/// A [`PasswordHasher`] that times every call of the one it wraps.
pub struct TimedHasher {
    inner: Arc<dyn PasswordHasher>,
}

impl TimedHasher {
    /// Times `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn PasswordHasher>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl PasswordHasher for TimedHasher {
    async fn hash(&self, password: &SecretString) -> Result<PasswordHash, HashError> {
        let started = Instant::now();
        let result = self.inner.hash(password).await;
        ::metrics::histogram!(HASH_DURATION, "operation" => "hash").record(started.elapsed().as_secs_f64());
        result
    }

    async fn verify<'a>(
        &self,
        password: &SecretString,
        hash: Option<&'a PasswordHash>,
    ) -> Result<PasswordCheck, HashError> {
        let started = Instant::now();
        let result = self.inner.verify(password, hash).await;
        ::metrics::histogram!(HASH_DURATION, "operation" => "verify").record(started.elapsed().as_secs_f64());
        result
    }
}
