//! Webhook delivery over HTTP: the [`WebhookTransport`] port on reqwest.
//!
//! Every attempt resolves the target's host itself, refuses it when any address is one
//! webhooks may not reach ([`guard`]), and connects to the checked address only (reqwest's
//! `resolve` pins it, TLS still verifies the hostname), so a DNS answer that changes between
//! the check and the connection (rebinding) cannot redirect a delivery. Redirects are not
//! followed; connect and whole-request timeouts and a cap on the response body bound every
//! attempt. Bodies are signed the Standard Webhooks way ([`signing`]).
//!
//! This crate depends on `gatehouse-domain` only; it never reaches storage.

pub mod guard;
pub mod signing;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt as _;
use gatehouse_domain::ports::{AttemptOutcome, TargetRejected, WebhookTransport};
use reqwest::Url;
use secrecy::{SecretSlice, SecretString};

/// How attempts are bounded and which targets are allowed.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// Time to establish the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time for the whole attempt, body included (the API's 15 s).
    pub request_timeout: Duration,
    /// Bytes of the response body read at most; the rest is discarded unread.
    pub max_response_bytes: usize,
    /// `webhooks.allow_private_targets`: allow loopback, private and link-local targets (tests,
    /// development).
    pub allow_private_targets: bool,
    /// Only `https` targets (production).
    pub require_https: bool,
    /// The `User-Agent` header.
    pub user_agent: String,
}

/// The transport. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpWebhookTransport {
    settings: TransportSettings,
}

impl HttpWebhookTransport {
    /// A transport with `settings`.
    #[must_use]
    pub fn new(settings: TransportSettings) -> Self {
        Self { settings }
    }

    /// The parsed URL and the checked addresses to connect to.
    async fn resolve(&self, raw: &str) -> Result<(Url, Vec<SocketAddr>), TargetRejected> {
        let url = guard::parse_target(raw, self.settings.require_https)?;
        let addresses = guard::resolve_checked(&url, self.settings.allow_private_targets).await?;
        Ok((url, addresses))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[async_trait]
impl WebhookTransport for HttpWebhookTransport {
    async fn check_target(&self, url: &str) -> Result<(), TargetRejected> {
        self.resolve(url).await.map(|_| ())
    }

    async fn deliver(&self, url: &str, event_id: &str, body: &str, keys: &[SecretSlice<u8>]) -> AttemptOutcome {
        let (url, addresses) = match self.resolve(url).await {
            Ok(resolved) => resolved,
            Err(e) => return AttemptOutcome::Unreachable { error: format!("target refused: {e}") },
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.settings.connect_timeout)
            .timeout(self.settings.request_timeout)
            .pool_max_idle_per_host(0)
            .no_proxy()
            .user_agent(&self.settings.user_agent)
            .resolve_to_addrs(&host, &addresses)
            .build()
        {
            Ok(client) => client,
            Err(e) => return AttemptOutcome::Unreachable { error: format!("could not build the HTTP client: {e}") },
        };
        let timestamp = unix_now();
        let signature = signing::signature_header(keys, event_id, timestamp, body);
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                return AttemptOutcome::Unreachable { error: format!("the request {kind}: {}", without_url(&e)) };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Read at most the cap (the receiver may stream forever); the time limit still applies.
        let mut stream = response.bytes_stream();
        let mut read = 0usize;
        while read < self.settings.max_response_bytes {
            match stream.next().await {
                Some(Ok(chunk)) => read += chunk.len(),
                Some(Err(e)) if e.is_timeout() => {
                    return AttemptOutcome::Unreachable { error: "the response body timed out".to_owned() };
                }
                Some(Err(_)) | None => break,
            }
        }
        if status.is_success() {
            AttemptOutcome::Delivered { status: status.as_u16() }
        } else {
            AttemptOutcome::Rejected { status: status.as_u16(), retry_after }
        }
    }

    fn new_secret(&self) -> anyhow::Result<SecretString> {
        signing::new_secret()
    }
}

/// The error without the URL (it may carry credentials in its user-info).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if text.is_empty() { "no detail".to_owned() } else { text }
}
