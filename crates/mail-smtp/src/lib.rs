//! Gatehouse's email adapter: renders the domain's [`OutgoingEmail`]s from templates into
//! multipart (plain text + HTML) messages and delivers them, implementing the
//! [`EmailSender`](gatehouse_domain::ports::EmailSender) port.
//!
//! - [`SmtpSender`] sends over SMTP with lettre: `smtp://` (plain, or STARTTLS with
//!   `?tls=starttls`), `smtps://` (TLS from the first byte), credentials from the URL, a
//!   timeout per command, pooled connections. TLS is rustls with the ring provider only.
//! - [`FileSender`] is the embedded default for development: each message becomes an `.eml`
//!   file in a folder and its link is logged ([`LinkLogging`]), so a developer can finish a
//!   sign-up with no mail server at all.
//!
//! This crate depends on `gatehouse-domain` only; it must never depend on the server, a web
//! framework or the store.

mod compose;
mod senders;

pub use compose::{ComposeSettings, Composer, Rendered};
pub use senders::{FileSender, LinkLogging, SmtpSender};
