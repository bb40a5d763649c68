//! Runs the webhook relay: a tokio task that delivers due webhook deliveries batch after
//! batch, sleeps `webhooks.relay_poll_ms` when there is none, and stops between batches when
//! asked. A crash between claim and acknowledgement only delays a delivery by its lease.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_domain::ports::{Clock, WebhookTransport};
use gatehouse_domain::services::webhooks::{WebhookRelay, WebhookRelaySettings};
use gatehouse_store_diesel::Database;
use gatehouse_webhooks_http::{HttpWebhookTransport, TransportSettings};
use tokio::sync::watch;

use crate::background::BackgroundTask;
use crate::settings::{AppEnv, Settings, WebhooksSettings};

/// The HTTP transport the configuration asks for.
#[must_use]
pub fn transport(settings: &Settings) -> Arc<dyn WebhookTransport> {
    let w = &settings.webhooks;
    Arc::new(HttpWebhookTransport::new(TransportSettings {
        connect_timeout: Duration::from_secs(u64::from(w.connect_timeout_secs.max(1))),
        request_timeout: Duration::from_secs(u64::from(w.request_timeout_secs.max(1))),
        max_response_bytes: usize::try_from(w.max_response_bytes).unwrap_or(usize::MAX),
        allow_private_targets: w.allow_private_targets,
        require_https: settings.env == AppEnv::Production,
        user_agent: format!("Gatehouse-Webhooks/{}", env!("CARGO_PKG_VERSION")),
    }))
}

/// The relay over `database`'s deliveries.
#[must_use]
pub fn webhook_relay(settings: &Settings, database: &Database, clock: Arc<dyn Clock>) -> WebhookRelay {
    let w = &settings.webhooks;
    WebhookRelay::new(
        database.webhooks(),
        transport(settings),
        clock,
        WebhookRelaySettings {
            lease: chrono::Duration::seconds(i64::from(w.relay_lease_secs.max(w.request_timeout_secs + 1))),
            batch_size: w.relay_batch_size,
            per_endpoint: w.per_endpoint_concurrency,
            backoff_base: chrono::Duration::milliseconds(i64::from(w.backoff_base_ms)),
            backoff_max: chrono::Duration::seconds(i64::from(w.backoff_max_secs)),
            max_retry: WebhooksSettings::hours(w.max_retry_hours),
            disable_after: WebhooksSettings::hours(w.disable_after_hours),
        },
    )
}

/// Starts the relay loop on the current runtime; it stops between batches when asked.
#[must_use]
pub fn spawn(relay: WebhookRelay, poll: Duration, batch_size: u32) -> BackgroundTask {
    BackgroundTask::spawn("webhook relay", move |stopped| run(relay, poll, batch_size, stopped))
}

async fn run(relay: WebhookRelay, poll: Duration, batch_size: u32, mut stopped: watch::Receiver<bool>) {
    tracing::info!("webhook relay started");
    let full_batch = usize::try_from(batch_size).unwrap_or(usize::MAX);
    loop {
        if *stopped.borrow() {
            break;
        }
        let busy = match relay.relay_batch().await {
            Ok(report) => {
                crate::metrics::record_webhook_batch(&report);
                report.claimed >= full_batch
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "the webhook relay could not claim deliveries; retrying");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = stopped.changed() => {}
        }
    }
    tracing::info!("webhook relay stopped");
}
