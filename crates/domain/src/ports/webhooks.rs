//! Webhook endpoints and deliveries in storage, and the HTTP transport that delivers them.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::{SecretSlice, SecretString};
use uuid::Uuid;

use crate::pagination::{Page, PageLimit};
use crate::webhooks::{Delivery, EventFilter, WebhookEndpoint};

/// Fields of a new endpoint, already parsed.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// UUIDv7.
    pub id: Uuid,
    /// The target, checked by [`WebhookTransport::check_target`].
    pub url: String,
    /// Free text.
    pub description: Option<String>,
    /// At least one filter.
    pub event_types: Vec<EventFilter>,
    /// Whether deliveries start at once.
    pub enabled: bool,
    /// `whsec_…`, stored sealed.
    pub secret: SecretString,
    /// Now.
    pub created_at: DateTime<Utc>,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointChanges {
    /// A new target, checked.
    pub url: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// New filters.
    pub event_types: Option<Vec<EventFilter>>,
    /// Enabling clears `disabled_reason` and the failure streak.
    pub enabled: Option<bool>,
}

/// A keyset position in a list: `(created_at, id)` of the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookCursor {
    /// The row's creation time.
    pub created_at: DateTime<Utc>,
    /// The row's id.
    pub id: Uuid,
}

/// A delivery leased to one relay.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: Uuid,
    /// The lease: outcomes are recorded only under it.
    pub claim: Uuid,
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Its URL now.
    pub url: String,
    /// Keys to sign with (decoded from `whsec_`): the current one, then the previous one
    /// while it still signs.
    pub keys: Vec<SecretSlice<u8>>,
    /// The event.
    pub event_id: Uuid,
    /// The exact body to POST.
    pub body: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// When the delivery was created (retries stop `max_retry` after it).
    pub created_at: DateTime<Utc>,
}

/// What the relay records after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptRecord {
    /// A 2xx.
    Succeeded {
        /// The status.
        status: u16,
    },
    /// Try again at `retry_at`.
    Retry {
        /// The status, when the receiver answered.
        status: Option<u16>,
        /// Why.
        error: String,
        /// When.
        retry_at: DateTime<Utc>,
    },
    /// Given up on.
    Failed {
        /// The status, when the receiver answered.
        status: Option<u16>,
        /// Why.
        error: String,
    },
}

/// What recording an attempt did to the endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptEffect {
    /// Whether the lease was still ours (else nothing was written).
    pub recorded: bool,
    /// Whether this failure disabled the endpoint (it had failed for `disable_after`); the
    /// admins were emailed in the same transaction.
    pub disabled_endpoint: bool,
}

/// How many deliveries are open, and how old the oldest is (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Pending or retrying.
    pub depth: u64,
    /// The oldest open delivery's creation time.
    pub oldest: Option<DateTime<Utc>>,
}

/// Endpoints, events and deliveries. Events themselves are written by the storage adapter
/// together with the audit event of the change they describe, in its transaction.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookRepository: Send + Sync {
    /// Stores an endpoint with its secret sealed.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn create(&self, endpoint: NewEndpoint) -> anyhow::Result<WebhookEndpoint>;

    /// A page, oldest first.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn list(
        &self,
        limit: PageLimit,
        after: Option<WebhookCursor>,
    ) -> anyhow::Result<Page<WebhookEndpoint, WebhookCursor>>;

    /// One endpoint; MUST return `Ok(None)` when there is none.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn get(&self, id: Uuid) -> anyhow::Result<Option<WebhookEndpoint>>;

    /// Applies `changes`; MUST return `Ok(None)` when there is no such endpoint. Enabling MUST
    /// clear `disabled_reason` and the failure streak.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn update(
        &self,
        id: Uuid,
        changes: EndpointChanges,
        at: DateTime<Utc>,
    ) -> anyhow::Result<Option<WebhookEndpoint>>;

    /// Deletes the endpoint and its deliveries; MUST return `false` when there was none.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn delete(&self, id: Uuid) -> anyhow::Result<bool>;

    /// Makes `secret` current; the old one keeps signing until `previous_until`. MUST return
    /// `false` when there is no such endpoint.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn rotate_secret(
        &self,
        id: Uuid,
        secret: SecretString,
        previous_until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> anyhow::Result<bool>;

    /// Writes a `webhook.test` event and its one delivery to `id`; MUST return `Ok(None)`
    /// when there is no such endpoint.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn enqueue_test(&self, id: Uuid, at: DateTime<Utc>) -> anyhow::Result<Option<Uuid>>;

    /// The endpoint's deliveries, newest first; MUST return `Ok(None)` when there is no such
    /// endpoint.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn deliveries(
        &self,
        endpoint: Uuid,
        limit: PageLimit,
        after: Option<WebhookCursor>,
    ) -> anyhow::Result<Option<Page<Delivery, WebhookCursor>>>;

    /// A new pending delivery of `delivery`'s event to the same endpoint; MUST return
    /// `Ok(None)` when the endpoint has no such delivery.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn replay(&self, endpoint: Uuid, delivery: Uuid, at: DateTime<Utc>) -> anyhow::Result<Option<Delivery>>;

    /// Leases up to `limit` due deliveries of enabled endpoints for `lease`, at most
    /// `per_endpoint` in flight per endpoint (leases of other relays included). MUST NOT hand
    /// a delivery leased by another relay whose lease has not run out.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
        per_endpoint: u32,
    ) -> anyhow::Result<Vec<ClaimedDelivery>>;

    /// Records an attempt under `claim`. A failure starts or continues the endpoint's failure
    /// streak; when the streak is at least `disable_after` old the endpoint MUST be disabled
    /// with reason `failing` and every active admin emailed, in one transaction. A success
    /// ends the streak.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn record_attempt(
        &self,
        delivery: Uuid,
        claim: Uuid,
        record: AttemptRecord,
        now: DateTime<Utc>,
        disable_after: Duration,
    ) -> anyhow::Result<AttemptEffect>;

    /// The open queue.
    ///
    /// # Errors
    ///
    /// Only infrastructure failures.
    async fn queue_stats(&self) -> anyhow::Result<QueueStats>;
}

/// Why a target URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetRejected {
    /// Not an absolute `https` (or, outside production, `http`) URL with a host.
    #[error("{0}")]
    Invalid(String),
    /// It resolves to an address webhooks may not reach (loopback, private, link-local…).
    #[error("{0}")]
    Forbidden(String),
    /// The host does not resolve.
    #[error("{0}")]
    Unresolvable(String),
}

/// What one HTTP attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx within the time limit.
    Delivered {
        /// The status.
        status: u16,
    },
    /// A non-2xx answer (redirects included).
    Rejected {
        /// The status.
        status: u16,
        /// Seconds from `Retry-After`, when sent.
        retry_after: Option<u64>,
    },
    /// No answer: refused target, connection failure, timeout.
    Unreachable {
        /// Why.
        error: String,
    },
}

/// Signs and POSTs webhook bodies.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookTransport: Send + Sync {
    /// Checks that `url` may be a target, resolving its host.
    ///
    /// # Errors
    ///
    /// MUST return [`TargetRejected::Forbidden`] when any address the host resolves to is
    /// forbidden, unless private targets are allowed.
    async fn check_target(&self, url: &str) -> Result<(), TargetRejected>;

    /// One attempt: checks the target again, connects to the checked address, POSTs `body`
    /// signed with every key, follows no redirect. MUST NOT fail: every problem is an
    /// [`AttemptOutcome::Unreachable`].
    async fn deliver(&self, url: &str, event_id: &str, body: &str, keys: &[SecretSlice<u8>]) -> AttemptOutcome;

    /// A fresh signing secret, `whsec_` and the base64 of 32 random bytes.
    ///
    /// # Errors
    ///
    /// MUST fail only when the operating system's random generator fails.
    fn new_secret(&self) -> anyhow::Result<SecretString>;
}
