//! An SMTP sink for the end-to-end suite: a real SMTP server on 127.0.0.1 that accepts every
//! message and keeps it in memory, so tests can read what the server sent. It speaks just
//! enough ESMTP for lettre: EHLO/HELO, MAIL, RCPT, DATA (with dot-unstuffing), RSET, NOOP, QUIT.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub envelope_from: String,
    /// The envelope recipients (`RCPT TO`).
    pub envelope_to: Vec<String>,
    /// The message as sent after `DATA`, with CRLF line ends.
    pub data: String,
    /// When the sink had the whole message (the end of `DATA`).
    pub received_at: std::time::Instant,
}

impl ReceivedMail {
    /// The value of a top-level header (folded lines joined), matched case-insensitively.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = value.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The whole message with quoted-printable soft line breaks and `=XX` escapes undone, for
    /// searching the bodies.
    #[must_use]
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() && is_qp_hex(bytes[i + 1]) && is_qp_hex(bytes[i + 2]) {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The token of the first link to `{base}/{path}?token=…` in the message.
    #[must_use]
    pub fn token_in_link(&self, base: &str, path: &str) -> Option<String> {
        let decoded = self.decoded();
        let prefix = format!("{base}/{path}?token=");
        let start = decoded.find(&prefix)? + prefix.len();
        let token: String =
            decoded[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
        (!token.is_empty()).then_some(token)
    }
}

/// A running sink. Stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a sink on a free port.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    /// Starts a sink on `port` (0 picks a free one).
    ///
    /// # Panics
    ///
    /// When the port cannot be bound.
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the SMTP sink binds");
        let port = listener.local_addr().expect("a local address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    // A client that hangs up mid-session just loses that session.
                    let _ = serve(stream, store).await;
                });
            }
        });
        Self { port, received, task }
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:{port}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far.
    #[must_use]
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until at least `count` messages have arrived and returns them all.
    ///
    /// # Panics
    ///
    /// When they have not arrived within `timeout`.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} emails within {timeout:?}, got {}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A free port on 127.0.0.1 with nothing listening on it (yet).
///
/// # Panics
///
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("a local address").port()
}

async fn serve(stream: TcpStream, store: Arc<Mutex<Vec<ReceivedMail>>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut from = String::new();
    let mut to = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" => write.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n").await?,
            "HELO" | "NOOP" => write.write_all(b"250 OK\r\n").await?,
            "MAIL" => {
                from = address_in(&command);
                to.clear();
                write.write_all(b"250 OK\r\n").await?;
            }
            "RCPT" => {
                to.push(address_in(&command));
                write.write_all(b"250 OK\r\n").await?;
            }
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                store.lock().unwrap_or_else(PoisonError::into_inner).push(ReceivedMail {
                    envelope_from: std::mem::take(&mut from),
                    envelope_to: std::mem::take(&mut to),
                    data,
                    received_at: std::time::Instant::now(),
                });
                write.write_all(b"250 OK queued\r\n").await?;
            }
            "RSET" => {
                from.clear();
                to.clear();
                write.write_all(b"250 OK\r\n").await?;
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => write.write_all(b"502 command not implemented\r\n").await?,
        }
    }
}

/// The address between `<` and `>` of a `MAIL FROM:`/`RCPT TO:` command.
fn address_in(command: &str) -> String {
    command.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(a, _)| a.to_owned()).unwrap_or_default()
}

/// Quoted-printable escapes use upper-case hexadecimal digits.
fn is_qp_hex(byte: u8) -> bool {
    byte.is_ascii_digit() || (b'A'..=b'F').contains(&byte)
}
