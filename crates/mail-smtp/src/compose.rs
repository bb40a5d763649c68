//! From an [`OutgoingEmail`] to a MIME message: the templates (minijinja, compiled into the
//! binary and parsed once at start-up, so a broken template stops the server from starting
//! rather than a mail from going out), the links, and the headers.

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use gatehouse_domain::{EmailContent, OutgoingEmail};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use minijinja::{Environment, context};
use secrecy::{ExposeSecret, SecretString};

/// The templates, by name. `.html` templates escape every value (a display name of
/// `<script>` stays text); `.txt` ones do not.
const TEMPLATES: &[(&str, &str)] = &[
    ("verify_email.txt", include_str!("../templates/verify_email.txt")),
    ("verify_email.html", include_str!("../templates/verify_email.html")),
    ("password_reset.txt", include_str!("../templates/password_reset.txt")),
    ("password_reset.html", include_str!("../templates/password_reset.html")),
    ("password_changed.txt", include_str!("../templates/password_changed.txt")),
    ("password_changed.html", include_str!("../templates/password_changed.html")),
    ("account_locked.txt", include_str!("../templates/account_locked.txt")),
    ("account_locked.html", include_str!("../templates/account_locked.html")),
    ("webhook_disabled.txt", include_str!("../templates/webhook_disabled.txt")),
    ("webhook_disabled.html", include_str!("../templates/webhook_disabled.html")),
];

/// What messages say about who sends them and where their links point.
#[derive(Debug, Clone)]
pub struct ComposeSettings {
    /// The product name used in subjects and bodies.
    pub product_name: String,
    /// The web front end's base URL; links go to `{frontend_url}/verify-email?token=…`,
    /// `/reset-password?token=…` and `/unlock?token=…`.
    pub frontend_url: String,
    /// The `From` mailbox, such as `Gatehouse <no-reply@example.com>`.
    pub from: String,
}

/// A rendered message before MIME encoding.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
    /// The link the message carries, if any. Holds a token: log it only where the issue
    /// allows (the development transport).
    pub link: Option<SecretString>,
}

/// Renders and builds messages.
#[derive(Debug)]
pub struct Composer {
    templates: Environment<'static>,
    settings: ComposeSettings,
    from: Mailbox,
    message_id_domain: String,
}

impl Composer {
    /// Parses every template and the sender address.
    ///
    /// # Errors
    ///
    /// A template that does not parse, or a `from` that is not a mailbox.
    pub fn new(settings: ComposeSettings) -> anyhow::Result<Self> {
        let mut templates = Environment::new();
        for (name, source) in TEMPLATES {
            templates.add_template(name, source).with_context(|| format!("the email template {name} is invalid"))?;
        }
        let from: Mailbox = settings.from.parse().map_err(|e| {
            anyhow!("mail.from: {:?} is not a mailbox such as \"Name <addr@host>\": {e}", settings.from)
        })?;
        let message_id_domain = from.email.domain().to_owned();
        Ok(Self { templates, settings, from, message_id_domain })
    }

    /// The subject, bodies and link of `email`.
    ///
    /// # Errors
    ///
    /// When a template fails to render (a bug, caught by the tests).
    pub fn render(&self, email: &OutgoingEmail) -> anyhow::Result<Rendered> {
        let product = self.settings.product_name.as_str();
        let mut url = None;
        let (subject, link, expires, at) = match &email.content {
            EmailContent::VerifyEmail { token, expires_at } => (
                format!("Confirm your email address for {product}"),
                Some(self.link("verify-email", token)),
                Some(expiry(*expires_at, email.created_at)),
                None,
            ),
            EmailContent::PasswordReset { token, expires_at } => (
                format!("Reset your {product} password"),
                Some(self.link("reset-password", token)),
                Some(expiry(*expires_at, email.created_at)),
                None,
            ),
            EmailContent::PasswordChanged { changed_at } => {
                (format!("Your {product} password was changed"), None, None, Some(instant(*changed_at)))
            }
            EmailContent::AccountLocked { token, locked_until } => (
                format!("Your {product} account was locked"),
                Some(self.link("unlock", token)),
                Some(expiry(*locked_until, email.created_at)),
                None,
            ),
            EmailContent::WebhookDisabled { url: target, failing_since } => {
                url = Some(target.clone());
                (format!("A {product} webhook endpoint was disabled"), None, None, Some(instant(*failing_since)))
            }
        };
        let values = context! {
            name => email.recipient_name,
            product => product,
            link => link.as_ref().map(|link| link.expose_secret().to_owned()),
            expires => expires,
            at => at,
            url => url,
        };
        let name = email.content.template().as_str();
        let render = |extension: &str| {
            let template = format!("{name}.{extension}");
            self.templates
                .get_template(&template)
                .and_then(|t| t.render(&values))
                .with_context(|| format!("could not render the email template {template}"))
        };
        Ok(Rendered { subject, text: render("txt")?, html: render("html")?, link })
    }

    /// The complete message: `From`, `To` (with the recipient's name), `Subject`, `Date`, a
    /// `Message-ID` derived from the outbox id (so every retry of one message carries the same
    /// one), and a multipart/alternative body. Returns the link too, for the development
    /// transport.
    ///
    /// # Errors
    ///
    /// When rendering fails or the recipient is not an address lettre accepts.
    pub fn compose(&self, email: &OutgoingEmail) -> anyhow::Result<(Message, Option<SecretString>)> {
        let rendered = self.render(email)?;
        let address =
            email.to.as_ref().parse().with_context(|| format!("the recipient of email {} is invalid", email.id))?;
        let to = Mailbox::new(Some(email.recipient_name.clone()), address);
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject)
            .date_now()
            .message_id(Some(format!("<{}@{}>", email.id, self.message_id_domain)))
            .multipart(MultiPart::alternative_plain_html(rendered.text, rendered.html))
            .context("could not build the message")?;
        Ok((message, rendered.link))
    }

    /// `{frontend_url}/{path}?token=…`. Tokens are base64url; anything else is
    /// percent-encoded, so a link can never break out of its query parameter.
    fn link(&self, path: &str, token: &SecretString) -> SecretString {
        let base = self.settings.frontend_url.trim_end_matches('/');
        let mut encoded = String::new();
        for byte in token.expose_secret().bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        SecretString::from(format!("{base}/{path}?token={encoded}"))
    }
}

/// "on 2026-11-27 at 12:00 UTC (in 24 hours)".
fn expiry(at: DateTime<Utc>, from: DateTime<Utc>) -> String {
    let minutes = (at - from).num_minutes().max(0);
    let within = match minutes {
        m if m >= 90 => format!("{} hours", (m + 30) / 60),
        60 => "1 hour".to_owned(),
        1 => "1 minute".to_owned(),
        m => format!("{m} minutes"),
    };
    format!("{} (in {within})", instant(at))
}

/// "on 2026-11-27 at 12:00 UTC".
fn instant(at: DateTime<Utc>) -> String {
    at.format("on %Y-%m-%d at %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use gatehouse_domain::{Email, EmailId, EmailTemplate};

    use super::*;

    fn composer() -> Composer {
        Composer::new(ComposeSettings {
            product_name: "Gatehouse".to_owned(),
            frontend_url: "https://app.example.com/".to_owned(),
            from: "Gatehouse <no-reply@example.com>".to_owned(),
        })
        .expect("the templates parse")
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).single().expect("valid")
    }

    fn email(name: &str, content: EmailContent) -> OutgoingEmail {
        OutgoingEmail {
            id: EmailId::generate(),
            to: Email::parse("ada@example.com").expect("valid"),
            recipient_name: name.to_owned(),
            content,
            created_at: now(),
        }
    }

    fn every_content() -> Vec<EmailContent> {
        let token = || SecretString::from("tok_EN-123".to_owned());
        vec![
            EmailContent::VerifyEmail { token: token(), expires_at: now() + Duration::hours(24) },
            EmailContent::PasswordReset { token: token(), expires_at: now() + Duration::hours(1) },
            EmailContent::PasswordChanged { changed_at: now() },
            EmailContent::AccountLocked { token: token(), locked_until: now() + Duration::minutes(15) },
            EmailContent::WebhookDisabled { url: "https://hooks.example.com/in".to_owned(), failing_since: now() },
        ]
    }

    #[test]
    fn every_template_renders_with_the_product_the_name_and_its_facts() {
        let composer = composer();
        for content in every_content() {
            let template = content.template();
            let rendered = composer.render(&email("Ada", content)).expect("renders");
            for body in [&rendered.text, &rendered.html] {
                assert!(body.contains("Gatehouse") && body.contains("Ada"), "{template:?}: {body}");
                assert!(!body.contains("{{"), "{template:?}: unrendered placeholder in {body}");
            }
            assert!(rendered.subject.contains("Gatehouse"), "{}", rendered.subject);
            if let Some(link) = &rendered.link {
                assert!(rendered.text.contains(link.expose_secret()), "{template:?}: the link is in the text");
            }
        }
        assert_eq!(EmailTemplate::ALL.len(), every_content().len(), "every template is covered");
    }

    #[test]
    fn links_point_at_the_front_end_and_carry_the_token() {
        let composer = composer();
        let links: Vec<String> = every_content()
            .into_iter()
            .filter_map(|content| composer.render(&email("Ada", content)).expect("renders").link)
            .map(|link| link.expose_secret().to_owned())
            .collect();
        assert_eq!(
            links,
            vec![
                "https://app.example.com/verify-email?token=tok_EN-123",
                "https://app.example.com/reset-password?token=tok_EN-123",
                "https://app.example.com/unlock?token=tok_EN-123",
            ]
        );
    }

    #[test]
    fn the_expiry_is_stated() {
        let rendered = composer()
            .render(&email(
                "Ada",
                EmailContent::PasswordReset {
                    token: SecretString::from("t".to_owned()),
                    expires_at: now() + Duration::hours(1),
                },
            ))
            .expect("renders");
        assert!(rendered.text.contains("expires on 2026-11-26 at 13:00 UTC (in 1 hour)"), "{}", rendered.text);
        let rendered = composer().render(&email("Ada", every_content().remove(0))).expect("renders");
        assert!(rendered.html.contains("(in 24 hours)"), "{}", rendered.html);
    }

    #[test]
    fn html_escapes_the_display_name_and_text_keeps_it_as_written() {
        let rendered =
            composer().render(&email("<script>alert(1)</script>", every_content().remove(0))).expect("renders");
        assert!(!rendered.html.contains("<script>"), "{}", rendered.html);
        assert!(rendered.html.contains("&lt;script&gt;"), "{}", rendered.html);
        assert!(rendered.text.contains("<script>alert(1)</script>"), "plain text is not HTML");
    }

    #[test]
    fn odd_characters_in_a_token_cannot_break_out_of_the_link() {
        let content = EmailContent::VerifyEmail {
            token: SecretString::from("a b&c\"<".to_owned()),
            expires_at: now() + Duration::hours(1),
        };
        let rendered = composer().render(&email("Ada", content)).expect("renders");
        let link = rendered.link.expect("a link");
        assert_eq!(link.expose_secret(), "https://app.example.com/verify-email?token=a%20b%26c%22%3C");
    }

    #[test]
    fn the_message_has_every_header_and_two_alternative_parts() {
        let email = email("Ada Lovelace", every_content().remove(0));
        let (message, link) = composer().compose(&email).expect("composes");
        let raw = String::from_utf8(message.formatted()).expect("ASCII");
        assert!(raw.contains("From: Gatehouse <no-reply@example.com>"), "{raw}");
        assert!(raw.contains("To: \"Ada Lovelace\" <ada@example.com>"), "{raw}");
        assert!(raw.contains("Subject: Confirm your email address for Gatehouse"), "{raw}");
        assert!(raw.contains(&format!("Message-ID: <{}@example.com>", email.id)), "{raw}");
        assert!(raw.contains("Date: "), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
        assert!(link.is_some());
    }

    #[test]
    fn a_bad_sender_address_is_refused_at_start_up() {
        let error = Composer::new(ComposeSettings {
            product_name: "G".to_owned(),
            frontend_url: "http://x".to_owned(),
            from: "not an address".to_owned(),
        })
        .expect_err("refused");
        assert!(error.to_string().contains("mail.from"), "{error}");
    }
}
