//! The outbox relay's work: lease due messages, deliver them, and record the outcome, with
//! retries on an exponential backoff with jitter. The loop around it (timers, shutdown) is
//! the server's; this part is one batch, so it can be tested without time passing.

use std::sync::Arc;

use chrono::Duration;
use uuid::Uuid;

use crate::ports::{ClaimedEmail, Clock, EmailOutbox, EmailSender, SendError};

/// How the relay leases and retries.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// How long a claimed message is reserved for the relay that claimed it. Must exceed the
    /// time a batch can take to send (batch size × the SMTP timeout); a relay that dies
    /// mid-batch delays its messages by this much.
    pub lease: Duration,
    /// Messages claimed at once.
    pub batch_size: u32,
    /// Attempts before a message is marked failed.
    pub max_attempts: u32,
    /// Delay before the first retry; each further retry doubles it.
    pub backoff_base: Duration,
    /// The longest delay between two attempts.
    pub backoff_max: Duration,
}

impl RelaySettings {
    /// The delay before the attempt after attempt number `attempts` (1 for the first):
    /// `backoff_base × 2^(attempts−1)`, capped at `backoff_max`, then scaled into its upper
    /// half by `jitter` ∈ [0, 1] ("equal jitter"), so that messages that failed together do
    /// not all come back together, while no retry comes sooner than half its delay.
    #[must_use]
    pub fn backoff(&self, attempts: u32, jitter: f64) -> Duration {
        equal_jitter_backoff(self.backoff_base, self.backoff_max, attempts, jitter)
    }
}

/// The retry delay of every relay (mail, webhooks): `base × 2^(attempts−1)` (attempts counted
/// from 1), capped at `max`, then scaled into its upper half by `jitter` ∈ [0, 1] ("equal
/// jitter"): what failed together does not come back together, and no retry comes sooner than
/// half its delay.
#[must_use]
pub fn equal_jitter_backoff(base: Duration, max: Duration, attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let base_ms = base.num_milliseconds().max(1);
    let max_ms = max.num_milliseconds().max(base_ms);
    let delay_ms = base_ms.saturating_mul(1_i64 << exponent).min(max_ms);
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let jittered = (delay_ms as f64 * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))) as i64;
    Duration::milliseconds(jittered.max(1))
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Messages claimed.
    pub claimed: usize,
    /// Delivered and marked sent.
    pub sent: usize,
    /// Scheduled for another attempt.
    pub retried: usize,
    /// Given up on.
    pub failed: usize,
}

/// Delivers the outbox.
#[derive(Clone)]
pub struct MailRelay {
    outbox: Arc<dyn EmailOutbox>,
    sender: Arc<dyn EmailSender>,
    clock: Arc<dyn Clock>,
    settings: RelaySettings,
}

impl MailRelay {
    /// Builds the relay.
    #[must_use]
    pub fn new(
        outbox: Arc<dyn EmailOutbox>,
        sender: Arc<dyn EmailSender>,
        clock: Arc<dyn Clock>,
        settings: RelaySettings,
    ) -> Self {
        Self { outbox, sender, clock, settings }
    }

    /// Claims up to one batch of due messages and tries to deliver each once. A failure to
    /// record an outcome is logged: the lease then runs out and the message is tried again.
    ///
    /// # Errors
    ///
    /// Only when the claim itself fails (storage unreachable).
    pub async fn relay_batch(&self) -> anyhow::Result<BatchReport> {
        let now = self.clock.now();
        let claimed = self.outbox.claim(now, self.settings.lease, self.settings.batch_size).await?;
        let mut report = BatchReport { claimed: claimed.len(), ..BatchReport::default() };
        for message in claimed {
            self.deliver(message, &mut report).await;
        }
        Ok(report)
    }

    async fn deliver(&self, message: ClaimedEmail, report: &mut BatchReport) {
        let ClaimedEmail { email, claim, attempts } = message;
        let id = email.id;
        let template = email.content.template().as_str();
        let outcome = self.sender.send(&email).await;
        let now = self.clock.now();
        let recorded = match outcome {
            Ok(()) => {
                report.sent += 1;
                tracing::debug!(email_id = %id, template, attempts, "email sent");
                self.outbox.mark_sent(id, claim, now).await
            }
            Err(SendError::Transient(error)) if attempts < self.settings.max_attempts => {
                report.retried += 1;
                let delay = self.settings.backoff(attempts, jitter());
                tracing::warn!(
                    email_id = %id, template, attempts, retry_in_ms = delay.num_milliseconds(), error = format!("{error:#}"),
                    "email delivery failed; will retry"
                );
                self.outbox.schedule_retry(id, claim, now + delay, format!("{error:#}")).await
            }
            Err(SendError::Transient(error) | SendError::Permanent(error)) => {
                report.failed += 1;
                tracing::error!(
                    email_id = %id, template, attempts, error = format!("{error:#}"),
                    "email delivery failed for good; giving up"
                );
                self.outbox.mark_failed(id, claim, now, format!("{error:#}")).await
            }
        };
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                email_id = %id, attempts,
                "the lease on an email ran out before its outcome was recorded; another relay may send it again"
            ),
            Err(e) => tracing::error!(
                email_id = %id, attempts, error = format!("{e:#}"),
                "could not record an email's outcome; it will be retried when its lease ends"
            ),
        }
    }
}

/// A number in [0, 1] from the random bits of a fresh UUIDv7: spreading retries needs no
/// cryptographic quality, only independence between relays.
fn jitter() -> f64 {
    let random = Uuid::now_v7().as_u128() & u128::from(u32::MAX);
    #[allow(clippy::cast_precision_loss)]
    let fraction = random as f64 / f64::from(u32::MAX);
    fraction
}

#[cfg(test)]
mod tests {
    use mockall::predicate::eq;
    use secrecy::SecretString;

    use super::*;
    use crate::email::{EmailContent, OutgoingEmail};
    use crate::ids::EmailId;
    use crate::ports::{MockClock, MockEmailOutbox, MockEmailSender};
    use crate::services::testing::now;
    use crate::values::Email;

    fn settings() -> RelaySettings {
        RelaySettings {
            lease: Duration::seconds(60),
            batch_size: 10,
            max_attempts: 3,
            backoff_base: Duration::seconds(2),
            backoff_max: Duration::seconds(60),
        }
    }

    fn claimed(attempts: u32) -> ClaimedEmail {
        ClaimedEmail {
            email: OutgoingEmail {
                id: EmailId::generate(),
                to: Email::parse("ada@example.com").expect("valid"),
                recipient_name: "ada".to_owned(),
                content: EmailContent::VerifyEmail { token: SecretString::from("t".to_owned()), expires_at: now() },
                created_at: now(),
            },
            claim: Uuid::now_v7(),
            attempts,
        }
    }

    fn relay(outbox: MockEmailOutbox, sender: MockEmailSender) -> MailRelay {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        MailRelay::new(Arc::new(outbox), Arc::new(sender), Arc::new(clock), settings())
    }

    fn outbox_with(messages: Vec<ClaimedEmail>) -> MockEmailOutbox {
        let mut outbox = MockEmailOutbox::new();
        outbox
            .expect_claim()
            .with(eq(now()), eq(Duration::seconds(60)), eq(10))
            .times(1)
            .return_once(move |_, _, _| Ok(messages));
        outbox
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap_with_jitter_in_the_upper_half() {
        let s = settings();
        assert_eq!(s.backoff(1, 1.0), Duration::seconds(2));
        assert_eq!(s.backoff(2, 1.0), Duration::seconds(4));
        assert_eq!(s.backoff(3, 1.0), Duration::seconds(8));
        assert_eq!(s.backoff(10, 1.0), Duration::seconds(60), "capped");
        assert_eq!(s.backoff(40, 1.0), Duration::seconds(60), "no overflow");
        assert_eq!(s.backoff(1, 0.0), Duration::seconds(1), "half the delay at the least");
        assert_eq!(s.backoff(2, 0.5), Duration::seconds(3));
        let j = jitter();
        assert!((0.0..=1.0).contains(&j), "{j}");
    }

    #[tokio::test]
    async fn a_delivered_message_is_marked_sent_under_its_claim() {
        let message = claimed(1);
        let (id, claim) = (message.email.id, message.claim);
        let mut outbox = outbox_with(vec![message]);
        outbox.expect_mark_sent().with(eq(id), eq(claim), eq(now())).times(1).returning(|_, _, _| Ok(true));
        let mut sender = MockEmailSender::new();
        sender.expect_send().withf(move |email| email.id == id).times(1).returning(|_| Ok(()));

        let report = relay(outbox, sender).relay_batch().await.expect("batch");

        assert_eq!(report, BatchReport { claimed: 1, sent: 1, retried: 0, failed: 0 });
    }

    #[tokio::test]
    async fn a_temporary_failure_is_retried_after_a_backoff() {
        let message = claimed(2);
        let (id, claim) = (message.email.id, message.claim);
        let mut outbox = outbox_with(vec![message]);
        outbox
            .expect_schedule_retry()
            .withf(move |i, c, retry_at, error| {
                *i == id
                    && *c == claim
                    && *retry_at >= now() + Duration::seconds(2)
                    && *retry_at <= now() + Duration::seconds(4)
                    && error.contains("connection refused")
            })
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let mut sender = MockEmailSender::new();
        sender.expect_send().times(1).returning(|_| Err(SendError::Transient(anyhow::anyhow!("connection refused"))));

        let report = relay(outbox, sender).relay_batch().await.expect("batch");

        assert_eq!(report, BatchReport { claimed: 1, sent: 0, retried: 1, failed: 0 });
    }

    #[tokio::test]
    async fn the_last_attempt_and_permanent_failures_mark_the_message_failed() {
        let last = claimed(3);
        let permanent = claimed(1);
        let (last_id, permanent_id) = (last.email.id, permanent.email.id);
        let mut outbox = outbox_with(vec![last, permanent]);
        outbox
            .expect_mark_failed()
            .withf(move |id, _, at, error| {
                *at == now()
                    && ((*id == last_id && error.contains("timed out"))
                        || (*id == permanent_id && error.contains("550")))
            })
            .times(2)
            .returning(|_, _, _, _| Ok(true));
        outbox.expect_schedule_retry().never();
        let mut sender = MockEmailSender::new();
        sender.expect_send().times(2).returning(move |email| {
            if email.id == last_id {
                Err(SendError::Transient(anyhow::anyhow!("timed out")))
            } else {
                Err(SendError::Permanent(anyhow::anyhow!("550 no such mailbox")))
            }
        });

        let report = relay(outbox, sender).relay_batch().await.expect("batch");

        assert_eq!(report, BatchReport { claimed: 2, sent: 0, retried: 0, failed: 2 });
    }

    #[tokio::test]
    async fn a_lost_lease_or_a_failed_update_does_not_stop_the_batch() {
        let (first, second) = (claimed(1), claimed(1));
        let mut outbox = outbox_with(vec![first, second]);
        let mut seq = mockall::Sequence::new();
        outbox.expect_mark_sent().times(1).in_sequence(&mut seq).returning(|_, _, _| Ok(false));
        outbox.expect_mark_sent().times(1).in_sequence(&mut seq).returning(|_, _, _| Err(anyhow::anyhow!("down")));
        let mut sender = MockEmailSender::new();
        sender.expect_send().times(2).returning(|_| Ok(()));

        let report = relay(outbox, sender).relay_batch().await.expect("batch");

        assert_eq!(report.sent, 2);
    }

    #[tokio::test]
    async fn an_empty_outbox_sends_nothing_and_a_failed_claim_is_an_error() {
        let report = relay(outbox_with(Vec::new()), MockEmailSender::new()).relay_batch().await.expect("batch");
        assert_eq!(report, BatchReport::default());

        let mut outbox = MockEmailOutbox::new();
        outbox.expect_claim().times(1).returning(|_, _, _| Err(anyhow::anyhow!("down")));
        assert!(relay(outbox, MockEmailSender::new()).relay_batch().await.is_err());
    }
}
