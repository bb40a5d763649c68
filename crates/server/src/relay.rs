//! Runs the outbox relay: a tokio task that delivers due mail batch after batch, waits when
//! there is none until mail is queued (woken in-process on commit, and on PostgreSQL by
//! `LISTEN/NOTIFY` from any instance) or `mail.relay_poll_ms` passes (the safety net, and what
//! brings retries due), and stops between batches when asked, so a graceful shutdown never
//! abandons a message mid-send (and a crash only delays it by a lease).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gatehouse_domain::ports::{Clock, EmailSender};
use gatehouse_domain::services::mail_relay::{MailRelay, RelaySettings};
use gatehouse_mail_smtp::{ComposeSettings, Composer, FileSender, LinkLogging, SmtpSender};
use gatehouse_store_diesel::{Database, OutboxListener, OutboxSignal};
use tokio::sync::watch;

use crate::background::BackgroundTask;
use crate::settings::{AppEnv, Settings};

/// The sender the configuration asks for: SMTP when `mail.smtp_url` is set, `.eml` files in
/// `mail.outbox_dir` otherwise (their links logged, except in production). Call it within a
/// Tokio runtime.
///
/// # Errors
///
/// A template that does not parse, a `mail.from` that is not a mailbox, or an invalid URL.
pub fn email_sender(settings: &Settings) -> anyhow::Result<Arc<dyn EmailSender>> {
    let composer = Arc::new(Composer::new(ComposeSettings {
        product_name: settings.mail.product_name.clone(),
        frontend_url: settings.public.frontend_url.clone(),
        from: settings.mail.from.clone(),
    })?);
    match &settings.mail.smtp_url {
        Some(url) => {
            let timeout = Duration::from_secs(u64::from(settings.mail.timeout_secs));
            Ok(Arc::new(SmtpSender::new(url, timeout, composer)?))
        }
        None => {
            // Production requires mail.smtp_url (Settings::validate); should a production
            // process get here anyway, its links still stay out of the log.
            let links = if settings.env == AppEnv::Production { LinkLogging::Omit } else { LinkLogging::Log };
            tracing::warn!(
                dir = %settings.mail.outbox_dir.display(),
                links_logged = links == LinkLogging::Log,
                "mail.smtp_url is not set: emails are written to this folder"
            );
            Ok(Arc::new(FileSender::new(settings.mail.outbox_dir.clone(), composer, links)))
        }
    }
}

/// The relay over `database`'s outbox, delivering with the configured sender.
///
/// # Errors
///
/// See [`email_sender`].
pub fn mail_relay(settings: &Settings, database: &Database, clock: Arc<dyn Clock>) -> anyhow::Result<MailRelay> {
    let mail = &settings.mail;
    let relay_settings = RelaySettings {
        lease: chrono::Duration::seconds(i64::from(mail.relay_lease_secs)),
        batch_size: mail.relay_batch_size,
        max_attempts: mail.max_attempts,
        backoff_base: chrono::Duration::milliseconds(i64::from(mail.backoff_base_ms)),
        backoff_max: chrono::Duration::seconds(i64::from(mail.backoff_max_secs)),
    };
    Ok(MailRelay::new(database.email_outbox(), email_sender(settings).context("mail")?, clock, relay_settings))
}

/// Starts the relay loop on the current runtime, woken by `database`'s outbox signal (and, on
/// PostgreSQL, by a listener for every instance's outbox writes); it stops between batches
/// when asked.
///
/// # Errors
///
/// The PostgreSQL listener's thread cannot be started.
pub fn spawn(relay: MailRelay, database: &Database, poll: Duration, batch_size: u32) -> anyhow::Result<BackgroundTask> {
    let wake = database.outbox_signal();
    let listener = database.listen_for_outbox().context("the outbox listener")?;
    Ok(BackgroundTask::spawn("mail relay", move |stopped| run(relay, wake, listener, poll, batch_size, stopped)))
}

async fn run(
    relay: MailRelay,
    wake: OutboxSignal,
    listener: Option<OutboxListener>,
    poll: Duration,
    batch_size: u32,
    mut stopped: watch::Receiver<bool>,
) {
    tracing::info!(listens = listener.is_some(), "mail relay started");
    let full_batch = usize::try_from(batch_size).unwrap_or(usize::MAX);
    loop {
        if *stopped.borrow() {
            break;
        }
        let busy = match relay.relay_batch().await {
            // A full batch means more may be due: go on at once.
            Ok(report) => {
                crate::metrics::record_relay_batch(report.sent, report.retried, report.failed);
                report.claimed >= full_batch
            }
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "the mail relay could not claim messages; retrying");
                false
            }
        };
        if busy {
            continue;
        }
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            () = wake.notified() => {}
            _ = stopped.changed() => {}
        }
    }
    drop(listener);
    tracing::info!("mail relay stopped");
}
