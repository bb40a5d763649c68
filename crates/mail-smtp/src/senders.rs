//! The two transports: SMTP, and `.eml` files for development.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use gatehouse_domain::OutgoingEmail;
use gatehouse_domain::ports::{EmailSender, SendError};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::compose::Composer;

/// Delivers over SMTP. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    composer: Arc<Composer>,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport's Debug would show the credentials.
        f.debug_struct("SmtpSender").finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for `url`:
    ///
    /// - `smtp://host:port`: plain SMTP (a local relay or a mail catcher);
    /// - `smtp://host:587?tls=starttls` (or lettre's own `?tls=required`): STARTTLS required;
    ///   `?tls=opportunistic` upgrades when the server offers it;
    /// - `smtps://host:465`: TLS from the first byte.
    ///
    /// `user:password@` before the host authenticates (percent-encode special characters).
    /// `timeout` bounds connecting and each SMTP command. Call it within a Tokio runtime (the
    /// pool starts a task).
    ///
    /// # Errors
    ///
    /// When the URL cannot be parsed. The error never contains the URL (it may hold a password).
    pub fn new(url: &SecretString, timeout: Duration, composer: Arc<Composer>) -> anyhow::Result<Self> {
        let url = url.expose_secret().replace("tls=starttls", "tls=required");
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            anyhow::bail!("mail.smtp_url must start with smtp:// or smtps://");
        }
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
            .map_err(|_| {
                anyhow!(
                    "mail.smtp_url is not a valid SMTP URL (smtp://[user:pass@]host[:port][?tls=starttls] or smtps://…)"
                )
            })?
            .timeout(Some(timeout))
            .build();
        Ok(Self { transport, composer })
    }
}

#[async_trait]
impl EmailSender for SmtpSender {
    #[tracing::instrument(level = "debug", skip_all, fields(email_id = %email.id), err)]
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let (message, _link) = self.composer.compose(email).map_err(SendError::Permanent)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.is_permanent() => {
                Err(SendError::Permanent(anyhow::Error::new(error).context("the SMTP server refused the message")))
            }
            Err(error) => Err(SendError::Transient(anyhow::Error::new(error).context("SMTP delivery failed"))),
        }
    }
}

/// Whether [`FileSender`] logs the link of each message it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLogging {
    /// Log it (development: `cargo run` alone is enough to finish a sign-up).
    Log,
    /// Never: links carry tokens, and logs travel further than the mail folder.
    Omit,
}

/// The development transport: writes each message as an `.eml` file (open it with any mail
/// client, or read it as text) into a folder and, with [`LinkLogging::Log`], logs its link, so
/// that `cargo run` alone is enough to finish a sign-up. Links carry tokens: this is the one
/// place they are ever logged, and only because no mail server is configured (production
/// requires one, and would omit them anyway).
#[derive(Debug, Clone)]
pub struct FileSender {
    dir: PathBuf,
    composer: Arc<Composer>,
    links: LinkLogging,
}

impl FileSender {
    /// A sender writing into `dir` (created when missing), logging links or not.
    #[must_use]
    pub fn new(dir: PathBuf, composer: Arc<Composer>, links: LinkLogging) -> Self {
        Self { dir, composer, links }
    }
}

#[async_trait]
impl EmailSender for FileSender {
    #[tracing::instrument(level = "debug", skip_all, fields(email_id = %email.id), err)]
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendError> {
        let (message, link) = self.composer.compose(email).map_err(SendError::Permanent)?;
        let path = self.dir.join(format!("{}-{}.eml", email.created_at.format("%Y%m%dT%H%M%S"), email.id));
        let dir = self.dir.clone();
        let file = path.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
            std::fs::write(&file, message.formatted()).with_context(|| format!("could not write {}", file.display()))
        })
        .await
        .map_err(|e| SendError::Transient(anyhow::Error::new(e).context("the mail writer panicked")))?
        .map_err(SendError::Transient)?;
        let template = email.content.template().as_str();
        match link.filter(|_| self.links == LinkLogging::Log) {
            Some(link) => tracing::info!(
                to = %email.to, template, path = %path.display(), link = link.expose_secret(),
                "email written to the outbox folder (mail.smtp_url is not set); open the link to continue"
            ),
            None => tracing::info!(
                to = %email.to, template, path = %path.display(),
                "email written to the outbox folder (mail.smtp_url is not set)"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration as ChronoDuration, Utc};
    use gatehouse_domain::{Email, EmailContent, EmailId};

    use super::*;
    use crate::compose::ComposeSettings;

    fn composer() -> Arc<Composer> {
        Arc::new(
            Composer::new(ComposeSettings {
                product_name: "Gatehouse".to_owned(),
                frontend_url: "http://127.0.0.1:8080".to_owned(),
                from: "Gatehouse <no-reply@localhost>".to_owned(),
            })
            .expect("composer"),
        )
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail {
            id: EmailId::generate(),
            to: Email::parse("ada@example.com").expect("valid"),
            recipient_name: "Ada".to_owned(),
            content: EmailContent::VerifyEmail {
                token: SecretString::from("tok".to_owned()),
                expires_at: Utc::now() + ChronoDuration::hours(24),
            },
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn the_file_sender_writes_one_eml_file_per_message() {
        let dir = std::env::temp_dir().join(format!("gatehouse-mail-{}", uuid_like()));
        let sender = FileSender::new(dir.clone(), composer(), LinkLogging::Log);
        let email = email();

        sender.send(&email).await.expect("written");

        let files: Vec<_> = std::fs::read_dir(&dir).expect("the folder exists").flatten().collect();
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!("{}.eml", email.id)), "{name}");
        let raw = std::fs::read_to_string(files[0].path()).expect("readable");
        // The bodies are quoted-printable: undo the soft line breaks and the escaped `=`.
        let raw = raw.replace("=\r\n", "").replace("=3D", "=");
        assert!(raw.contains("http://127.0.0.1:8080/verify-email?token=tok"), "{raw}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A log sink for one test thread.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What the file sender logs while sending one message whose token is `token`.
    async fn logged_while_sending(links: LinkLogging, token: &str) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let dir = std::env::temp_dir().join(format!("gatehouse-mail-{}", uuid_like()));
        let email = OutgoingEmail {
            content: EmailContent::PasswordReset {
                token: SecretString::from(token.to_owned()),
                expires_at: Utc::now() + ChronoDuration::hours(1),
            },
            ..email()
        };

        FileSender::new(dir.clone(), composer(), links).send(&email).await.expect("written");

        std::fs::remove_dir_all(&dir).ok();
        let logged = captured.0.lock().expect("the sink").clone();
        String::from_utf8(logged).expect("UTF-8")
    }

    #[tokio::test]
    async fn a_file_sender_that_omits_links_never_logs_the_token() {
        let omitted = logged_while_sending(LinkLogging::Omit, "omitted-token-4f1c").await;
        let logged = logged_while_sending(LinkLogging::Log, "logged-token-9b2e").await;

        assert!(omitted.contains("email written to the outbox folder"), "the message is still logged: {omitted}");
        assert!(!omitted.contains("omitted-token-4f1c"), "the token reached the log: {omitted}");
        assert!(logged.contains("logged-token-9b2e"), "development logs the link: {logged}");
    }

    #[tokio::test]
    async fn smtp_urls_are_parsed_and_never_echoed() {
        for url in
            ["smtp://127.0.0.1:1025", "smtp://u:p@mail.example.com:587?tls=starttls", "smtps://u:p@mail.example.com"]
        {
            let sender = SmtpSender::new(&SecretString::from(url.to_owned()), Duration::from_secs(5), composer());
            assert!(sender.is_ok(), "{url}");
        }
        for url in ["http://u:hunter2@example.com", "smtp://u:hunter2@"] {
            let error = SmtpSender::new(&SecretString::from(url.to_owned()), Duration::from_secs(5), composer())
                .expect_err("refused")
                .to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_temporary_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let sender = SmtpSender::new(
            &SecretString::from(format!("smtp://127.0.0.1:{port}")),
            Duration::from_secs(2),
            composer(),
        )
        .expect("sender");

        let result = sender.send(&email()).await;

        assert!(matches!(result, Err(SendError::Transient(_))), "{result:?}");
    }

    fn uuid_like() -> String {
        format!("{}", EmailId::generate())
    }
}
