//! A webhook receiver for the end-to-end tests: a tiny HTTP/1.1 server on 127.0.0.1 that
//! records every request and answers as the test says (2xx, an error status, slowly, with a
//! huge body, never, or not at all when down), plus the signature checks: ours
//! (`gatehouse_webhooks_http::signing::verify`) and the spec authors' JavaScript library
//! (`tests/webhook-verifier`, installed by `scripts/install-deps.sh`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// This status, empty body.
    Status(u16),
    /// 429 with `Retry-After: 1`.
    TooManyRequests,
    /// 200 after this long.
    Slow(Duration),
    /// 200 with an endless body (the relay must stop reading).
    HugeBody,
    /// Reads the request and never answers.
    Hang,
    /// 307 to this path on the same receiver (a relay must not follow it).
    Redirect(&'static str),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request target, such as `/hook`.
    pub path: String,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: String,
}

impl Received {
    /// A header's value, or "".
    #[must_use]
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The body as JSON.
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct Shared {
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    behaviour: Mutex<Behaviour>,
    received: Mutex<Vec<Received>>,
    arrived: Notify,
}

/// The receiver. Stops listening when dropped.
pub struct Receiver {
    /// Where it listens.
    pub address: SocketAddr,
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    /// Listens on a free port, answering 200.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        let shared = Arc::new(Shared {
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            behaviour: Mutex::new(Behaviour::Status(200)),
            received: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let task = tokio::spawn(serve(listener, shared.clone()));
        Self { address, shared, task: Mutex::new(Some(task)) }
    }

    /// `http://127.0.0.1:{port}/hook`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    /// Changes how it answers from now on.
    pub fn answer(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().expect("not poisoned") = behaviour;
    }

    /// Stops listening (connections are refused) until [`up`](Self::up).
    pub fn down(&self) {
        if let Some(task) = self.task.lock().expect("not poisoned").take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(self.address).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let listener = listener.expect("the receiver's port can be bound again");
        *self.task.lock().expect("not poisoned") = Some(tokio::spawn(serve(listener, self.shared.clone())));
    }

    /// The most requests it was answering at once.
    #[must_use]
    pub fn most_in_flight(&self) -> usize {
        self.shared.most_in_flight.load(Ordering::SeqCst)
    }

    /// Everything received so far.
    #[must_use]
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("not poisoned").clone()
    }

    /// Waits up to `within` until `done` holds for what was received; returns it.
    pub async fn wait_until(&self, within: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.arrived.notified();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let received = self.received();
                assert!(done(&received), "the receiver's condition did not hold within {within:?}: {received:#?}");
                return received;
            }
        }
    }

    /// Waits for at least `n` requests.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        self.wait_until(within, |r| r.len() >= n).await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(handle(stream, shared.clone()));
    }
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buffer.len() < head_end + length {
        let Ok(n) = stream.read(&mut chunk).await else { return };
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[head_end..]).to_string();
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    shared.received.lock().expect("not poisoned").push(Received { path, headers, body });
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
    answer(&mut stream, &shared).await;
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    let _ = stream.shutdown().await;
}

async fn answer(stream: &mut TcpStream, shared: &Shared) {
    shared.arrived.notify_waiters();
    let behaviour = shared.behaviour.lock().expect("not poisoned").clone();
    let reply = |status: u16, extra: &str| {
        format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n{extra}\r\n")
    };
    match behaviour {
        Behaviour::Status(status) => {
            let _ = stream.write_all(reply(status, "").as_bytes()).await;
        }
        Behaviour::TooManyRequests => {
            let _ = stream.write_all(reply(429, "retry-after: 1\r\n").as_bytes()).await;
        }
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            let _ = stream.write_all(reply(200, "").as_bytes()).await;
        }
        Behaviour::HugeBody => {
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\nconnection: close\r\n\r\n";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..16_384 {
                if stream.write_all(&block).await.is_err() {
                    return;
                }
            }
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Behaviour::Redirect(path) => {
            let _ = stream.write_all(reply(307, &format!("location: {path}\r\n")).as_bytes()).await;
        }
    }
}

/// Checks `request` with our own verifier against `secret`.
#[must_use]
pub fn verifies_with_ours(secret: &str, request: &Received) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let timestamp = request.header("webhook-timestamp").parse().unwrap_or(0);
    gatehouse_webhooks_http::signing::verify(
        secret,
        request.header("webhook-id"),
        timestamp,
        request.header("webhook-signature"),
        &request.body,
        now,
        300,
    )
    .is_ok()
}

fn verifier_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("webhook-verifier")
}

/// Checks every `(secret, request)` with the Standard Webhooks authors' JavaScript library;
/// one answer per pair, `"ok"` or `"invalid: …"`.
///
/// # Panics
///
/// When Node.js or the library is missing (run `scripts/install-deps.sh`).
pub async fn verify_with_reference(pairs: &[(&str, &Received)]) -> Vec<String> {
    let dir = verifier_dir();
    assert!(
        dir.join("node_modules/standardwebhooks").is_dir(),
        "the reference verifier is not installed: run scripts/install-deps.sh (npm ci in tests/webhook-verifier)"
    );
    let mut input = String::new();
    for (secret, request) in pairs {
        let line = json!({
            "secret": secret,
            "headers": {
                "webhook-id": request.header("webhook-id"),
                "webhook-timestamp": request.header("webhook-timestamp"),
                "webhook-signature": request.header("webhook-signature"),
            },
            "body": request.body,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("verify.mjs"))
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (install Node.js: scripts/install-deps.sh)");
    let mut stdin = child.stdin.take().expect("a stdin pipe");
    stdin.write_all(input.as_bytes()).await.expect("the verifier reads its input");
    drop(stdin);
    let output = child.wait_with_output().await.expect("the verifier finishes");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}
