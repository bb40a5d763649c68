//! Webhook use cases: endpoint administration (admins only) and the delivery relay's batch.
//!
//! Events are not produced here: the storage adapter writes them with the audit event of the
//! change they describe, in its transaction. The relay leases due deliveries, POSTs them
//! through the [`WebhookTransport`] and records each outcome, retrying on an exponential
//! backoff with jitter until `max_retry` after the delivery was created.

use std::sync::Arc;

use chrono::Duration;
use futures::future::join_all;
use secrecy::SecretString;
use uuid::Uuid;

use crate::error::{FieldError, ValidationErrors};
use crate::pagination::{Page, PageLimit};
use crate::ports::{
    AttemptOutcome, AttemptRecord, ClaimedDelivery, Clock, EndpointChanges, NewEndpoint, TargetRejected, WebhookCursor,
    WebhookRepository, WebhookTransport,
};
use crate::services::admin::AdminPrincipal;
use crate::webhooks::{Delivery, EventFilter, WebhookEndpoint, event_api_id};

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;

/// A failed webhook administration operation.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Invalid fields (`url`, `event_types`).
    #[error("invalid fields")]
    Invalid(ValidationErrors),
    /// No such endpoint (or delivery).
    #[error("no such webhook endpoint or delivery")]
    NotFound,
    /// Storage or randomness failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// A new endpoint as an admin asks for it, before parsing.
#[derive(Debug, Clone)]
pub struct EndpointRequest {
    /// The target.
    pub url: String,
    /// Filters as given.
    pub event_types: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Defaults to true.
    pub enabled: Option<bool>,
}

/// A change as an admin asks for it, before parsing.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// A new target.
    pub url: Option<String>,
    /// New filters.
    pub event_types: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Endpoint administration.
#[derive(Clone)]
pub struct WebhookService {
    repository: Arc<dyn WebhookRepository>,
    transport: Arc<dyn WebhookTransport>,
    clock: Arc<dyn Clock>,
}

fn parse_filters(raw: &[String], errors: &mut ValidationErrors) -> Option<Vec<EventFilter>> {
    if raw.is_empty() {
        errors.push(FieldError::new("event_types", "required", "event_types needs at least one entry"));
        return None;
    }
    let mut filters = Vec::with_capacity(raw.len());
    for entry in raw {
        match entry.parse::<EventFilter>() {
            Ok(filter) if !filters.contains(&filter) => filters.push(filter),
            Ok(_) => {}
            Err(e) => {
                errors.push(FieldError::new("event_types", "invalid", e.to_string()));
                return None;
            }
        }
    }
    Some(filters)
}

fn target_error(e: &TargetRejected) -> FieldError {
    let code = match e {
        TargetRejected::Invalid(_) => "invalid_format",
        TargetRejected::Forbidden(_) => "forbidden_target",
        TargetRejected::Unresolvable(_) => "unresolvable",
    };
    FieldError::new("url", code, e.to_string())
}

impl WebhookService {
    /// Builds the service.
    #[must_use]
    pub fn new(
        repository: Arc<dyn WebhookRepository>,
        transport: Arc<dyn WebhookTransport>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { repository, transport, clock }
    }

    /// A host that does not resolve now is accepted (DNS may be down; every attempt checks
    /// again); an invalid or forbidden target is not.
    async fn check_url(&self, url: &str, errors: &mut ValidationErrors) -> bool {
        match self.transport.check_target(url).await {
            Ok(()) | Err(TargetRejected::Unresolvable(_)) => true,
            Err(e) => {
                errors.push(target_error(&e));
                false
            }
        }
    }

    /// Creates an endpoint; returns it with its secret, which is never shown again.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Invalid`] for a refused URL or filter.
    pub async fn create(
        &self,
        _admin: &AdminPrincipal,
        request: EndpointRequest,
    ) -> Result<(WebhookEndpoint, SecretString), WebhookError> {
        let mut errors = ValidationErrors::default();
        let filters = parse_filters(&request.event_types, &mut errors);
        self.check_url(&request.url, &mut errors).await;
        errors.into_result().map_err(WebhookError::Invalid)?;
        let secret = self.transport.new_secret()?;
        let endpoint = self
            .repository
            .create(NewEndpoint {
                id: Uuid::now_v7(),
                url: request.url,
                description: request.description,
                event_types: filters.unwrap_or_default(),
                enabled: request.enabled.unwrap_or(true),
                secret: secret.clone(),
                created_at: self.clock.now(),
            })
            .await?;
        Ok((endpoint, secret))
    }

    /// A page of endpoints, oldest first.
    ///
    /// # Errors
    ///
    /// Only storage failures.
    pub async fn list(
        &self,
        _admin: &AdminPrincipal,
        limit: PageLimit,
        after: Option<WebhookCursor>,
    ) -> Result<Page<WebhookEndpoint, WebhookCursor>, WebhookError> {
        Ok(self.repository.list(limit, after).await?)
    }

    /// One endpoint.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`].
    pub async fn get(&self, _admin: &AdminPrincipal, id: Uuid) -> Result<WebhookEndpoint, WebhookError> {
        self.repository.get(id).await?.ok_or(WebhookError::NotFound)
    }

    /// Changes an endpoint; enabling clears `disabled_reason`.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Invalid`], [`WebhookError::NotFound`].
    pub async fn update(
        &self,
        _admin: &AdminPrincipal,
        id: Uuid,
        patch: EndpointPatch,
    ) -> Result<WebhookEndpoint, WebhookError> {
        let mut errors = ValidationErrors::default();
        let event_types = patch.event_types.as_deref().and_then(|raw| parse_filters(raw, &mut errors));
        if let Some(url) = &patch.url {
            self.check_url(url, &mut errors).await;
        }
        errors.into_result().map_err(WebhookError::Invalid)?;
        let changes =
            EndpointChanges { url: patch.url, description: patch.description, event_types, enabled: patch.enabled };
        self.repository.update(id, changes, self.clock.now()).await?.ok_or(WebhookError::NotFound)
    }

    /// Deletes an endpoint and its deliveries.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`].
    pub async fn delete(&self, _admin: &AdminPrincipal, id: Uuid) -> Result<(), WebhookError> {
        if self.repository.delete(id).await? { Ok(()) } else { Err(WebhookError::NotFound) }
    }

    /// A new secret; the old one signs alongside it for [`ROTATION_OVERLAP_HOURS`].
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`].
    pub async fn rotate_secret(&self, _admin: &AdminPrincipal, id: Uuid) -> Result<SecretString, WebhookError> {
        let secret = self.transport.new_secret()?;
        let now = self.clock.now();
        let until = now + Duration::hours(ROTATION_OVERLAP_HOURS);
        if self.repository.rotate_secret(id, secret.clone(), until, now).await? {
            Ok(secret)
        } else {
            Err(WebhookError::NotFound)
        }
    }

    /// Queues a `webhook.test` event to the endpoint; returns the event's API id.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`].
    pub async fn test(&self, _admin: &AdminPrincipal, id: Uuid) -> Result<String, WebhookError> {
        let event = self.repository.enqueue_test(id, self.clock.now()).await?.ok_or(WebhookError::NotFound)?;
        Ok(event_api_id(event))
    }

    /// The endpoint's deliveries, newest first.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`].
    pub async fn deliveries(
        &self,
        _admin: &AdminPrincipal,
        id: Uuid,
        limit: PageLimit,
        after: Option<WebhookCursor>,
    ) -> Result<Page<Delivery, WebhookCursor>, WebhookError> {
        self.repository.deliveries(id, limit, after).await?.ok_or(WebhookError::NotFound)
    }

    /// Delivers a delivery's event again, as a new delivery.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`].
    pub async fn replay(&self, _admin: &AdminPrincipal, id: Uuid, delivery: Uuid) -> Result<Delivery, WebhookError> {
        self.repository.replay(id, delivery, self.clock.now()).await?.ok_or(WebhookError::NotFound)
    }
}

/// How the relay leases, retries and gives up.
#[derive(Debug, Clone)]
pub struct WebhookRelaySettings {
    /// How long a claimed delivery is reserved; must exceed the request timeout.
    pub lease: Duration,
    /// Deliveries claimed at once.
    pub batch_size: u32,
    /// Deliveries in flight per endpoint, across relays.
    pub per_endpoint: u32,
    /// First retry delay; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest delay between two attempts.
    pub backoff_max: Duration,
    /// `webhooks.max_retry_hours`: no attempt is scheduled later than this after creation.
    pub max_retry: Duration,
    /// `webhooks.disable_after_hours`: an endpoint failing this long is disabled.
    pub disable_after: Duration,
}

impl WebhookRelaySettings {
    /// `backoff_base × 2^(attempts−1)`, capped at `backoff_max`, scaled by `jitter` ∈ [0, 1]
    /// into its upper half (equal jitter).
    #[must_use]
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        crate::services::mail_relay::equal_jitter_backoff(self.backoff_base, self.backoff_max, attempts, jitter)
    }
}

/// What one relay batch did, per outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookBatchReport {
    /// Deliveries claimed.
    pub claimed: usize,
    /// Delivered (2xx).
    pub succeeded: usize,
    /// Scheduled for another attempt.
    pub retried: usize,
    /// Given up on.
    pub failed: usize,
    /// Endpoints this batch disabled.
    pub disabled: usize,
    /// Seconds each attempt took.
    pub latencies: Vec<f64>,
}

/// Delivers due webhook deliveries.
#[derive(Clone)]
pub struct WebhookRelay {
    repository: Arc<dyn WebhookRepository>,
    transport: Arc<dyn WebhookTransport>,
    clock: Arc<dyn Clock>,
    settings: WebhookRelaySettings,
}

enum Done {
    Succeeded,
    Retried,
    Failed,
}

impl WebhookRelay {
    /// Builds the relay.
    #[must_use]
    pub fn new(
        repository: Arc<dyn WebhookRepository>,
        transport: Arc<dyn WebhookTransport>,
        clock: Arc<dyn Clock>,
        settings: WebhookRelaySettings,
    ) -> Self {
        Self { repository, transport, clock, settings }
    }

    /// Claims one batch and attempts every delivery in it once, concurrently. A failure to
    /// record an outcome is logged; the lease then runs out and the delivery is tried again.
    ///
    /// # Errors
    ///
    /// Only when the claim fails.
    pub async fn relay_batch(&self) -> anyhow::Result<WebhookBatchReport> {
        let s = &self.settings;
        let claimed = self.repository.claim(self.clock.now(), s.lease, s.batch_size, s.per_endpoint).await?;
        let mut report = WebhookBatchReport { claimed: claimed.len(), ..WebhookBatchReport::default() };
        let results = join_all(claimed.into_iter().map(|delivery| self.attempt(delivery))).await;
        for (done, disabled, seconds) in results.into_iter().flatten() {
            match done {
                Done::Succeeded => report.succeeded += 1,
                Done::Retried => report.retried += 1,
                Done::Failed => report.failed += 1,
            }
            report.disabled += usize::from(disabled);
            report.latencies.push(seconds);
        }
        Ok(report)
    }

    async fn attempt(&self, delivery: ClaimedDelivery) -> Option<(Done, bool, f64)> {
        let ClaimedDelivery { id, claim, url, keys, event_id, body, attempts, created_at, .. } = delivery;
        let started = self.clock.now();
        let outcome = self.transport.deliver(&url, &event_api_id(event_id), &body, &keys).await;
        let now = self.clock.now();
        #[allow(clippy::cast_precision_loss)]
        let seconds = (now - started).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        let (status, error, retry_after) = match outcome {
            AttemptOutcome::Delivered { status } => {
                tracing::debug!(delivery_id = %id, status, attempts, "webhook delivered");
                return self.record(id, claim, AttemptRecord::Succeeded { status }, Done::Succeeded, seconds).await;
            }
            AttemptOutcome::Rejected { status, retry_after } => {
                (Some(status), format!("the receiver answered {status}"), retry_after)
            }
            AttemptOutcome::Unreachable { error } => (None, error, None),
        };
        let mut retry_at = now + self.settings.backoff(attempts, jitter(id, claim));
        if let Some(seconds) = retry_after.and_then(|s| i64::try_from(s).ok()) {
            retry_at = retry_at.max(now + Duration::seconds(seconds.min(3600)));
        }
        let (record, done) = if retry_at > created_at + self.settings.max_retry {
            tracing::warn!(delivery_id = %id, attempts, error, "webhook delivery failed for good");
            (AttemptRecord::Failed { status, error }, Done::Failed)
        } else {
            tracing::info!(delivery_id = %id, attempts, %retry_at, error, "webhook delivery failed; will retry");
            (AttemptRecord::Retry { status, error, retry_at }, Done::Retried)
        };
        self.record(id, claim, record, done, seconds).await
    }

    async fn record(
        &self,
        id: Uuid,
        claim: Uuid,
        record: AttemptRecord,
        done: Done,
        seconds: f64,
    ) -> Option<(Done, bool, f64)> {
        let now = self.clock.now();
        match self.repository.record_attempt(id, claim, record, now, self.settings.disable_after).await {
            Ok(effect) if effect.recorded => {
                if effect.disabled_endpoint {
                    tracing::warn!(delivery_id = %id, "a webhook endpoint failed too long and was disabled");
                }
                Some((done, effect.disabled_endpoint, seconds))
            }
            Ok(_) => {
                tracing::warn!(delivery_id = %id, "the lease on a webhook delivery ran out before its outcome was recorded");
                None
            }
            Err(e) => {
                tracing::error!(delivery_id = %id, error = format!("{e:#}"), "could not record a webhook attempt");
                None
            }
        }
    }
}

/// A fraction in [0, 1] from the random bits of two v7 UUIDs.
fn jitter(a: Uuid, b: Uuid) -> f64 {
    let random = (a.as_u128() ^ b.as_u128()) & u128::from(u32::MAX);
    #[allow(clippy::cast_precision_loss)]
    let fraction = random as f64 / f64::from(u32::MAX);
    fraction
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use mockall::predicate::always;

    use super::*;
    use crate::ports::{AttemptEffect, MockClock, MockWebhookRepository, MockWebhookTransport};

    fn settings() -> WebhookRelaySettings {
        WebhookRelaySettings {
            lease: Duration::seconds(60),
            batch_size: 10,
            per_endpoint: 2,
            backoff_base: Duration::seconds(10),
            backoff_max: Duration::hours(1),
            max_retry: Duration::hours(24),
            disable_after: Duration::hours(72),
        }
    }

    #[test]
    fn webhook_backoff_doubles_with_jitter_and_stops_at_the_cap() {
        let s = settings();
        assert_eq!(s.backoff(1, 1.0), Duration::seconds(10));
        assert_eq!(s.backoff(1, 0.0), Duration::seconds(5));
        assert_eq!(s.backoff(3, 1.0), Duration::seconds(40));
        assert_eq!(s.backoff(40, 1.0), Duration::hours(1));
    }

    fn claimed(created_hours_ago: i64, now: chrono::DateTime<Utc>) -> ClaimedDelivery {
        ClaimedDelivery {
            id: Uuid::now_v7(),
            claim: Uuid::now_v7(),
            endpoint_id: Uuid::now_v7(),
            url: "https://example.com/hook".to_owned(),
            keys: vec![],
            event_id: Uuid::now_v7(),
            body: "{}".to_owned(),
            attempts: 3,
            created_at: now - Duration::hours(created_hours_ago),
        }
    }

    async fn run_one(outcome: AttemptOutcome, created_hours_ago: i64) -> (WebhookBatchReport, AttemptRecord) {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).single().unwrap_or_default();
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        let mut repository = MockWebhookRepository::new();
        let delivery = claimed(created_hours_ago, now);
        repository.expect_claim().times(1).return_once(move |_, _, _, _| Ok(vec![delivery]));
        let recorded = Arc::new(std::sync::Mutex::new(None));
        let sink = recorded.clone();
        repository.expect_record_attempt().with(always(), always(), always(), always(), always()).times(1).returning(
            move |_, _, record, _, _| {
                if let Ok(mut slot) = sink.lock() {
                    *slot = Some(record);
                }
                Ok(AttemptEffect { recorded: true, disabled_endpoint: false })
            },
        );
        let mut transport = MockWebhookTransport::new();
        transport.expect_deliver().times(1).return_const(outcome);
        let relay = WebhookRelay::new(Arc::new(repository), Arc::new(transport), Arc::new(clock), settings());
        let report = relay.relay_batch().await.unwrap_or_default();
        let record = recorded.lock().ok().and_then(|mut slot| slot.take());
        (report, record.unwrap_or(AttemptRecord::Succeeded { status: 0 }))
    }

    #[tokio::test]
    async fn a_2xx_marks_the_webhook_delivery_succeeded() {
        let (report, record) = run_one(AttemptOutcome::Delivered { status: 204 }, 0).await;
        assert_eq!(report.succeeded, 1);
        assert_eq!(record, AttemptRecord::Succeeded { status: 204 });
    }

    #[tokio::test]
    async fn a_webhook_failure_retries_until_max_retry_hours_then_fails() {
        let (report, record) = run_one(AttemptOutcome::Rejected { status: 500, retry_after: None }, 1).await;
        assert_eq!(report.retried, 1);
        assert!(matches!(record, AttemptRecord::Retry { status: Some(500), .. }), "{record:?}");
        let (report, record) = run_one(AttemptOutcome::Unreachable { error: "refused".into() }, 24).await;
        assert_eq!(report.failed, 1);
        assert!(matches!(record, AttemptRecord::Failed { status: None, .. }), "{record:?}");
    }

    #[tokio::test]
    async fn a_webhook_429_waits_at_least_its_retry_after() {
        let (_, record) = run_one(AttemptOutcome::Rejected { status: 429, retry_after: Some(600) }, 0).await;
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).single().unwrap_or_default();
        match record {
            AttemptRecord::Retry { retry_at, .. } => assert!(retry_at >= now + Duration::seconds(600)),
            other => panic!("expected a retry, got {other:?}"),
        }
    }
}
