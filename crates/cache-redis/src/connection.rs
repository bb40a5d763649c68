//! Connecting to Redis and bounding every command in time, shared by the Redis adapters.
//!
//! A Redis outage must degrade requests (callers fall back to the database), never hang them,
//! so connecting and every command run under a short timeout.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{IntoConnectionInfo as _, RedisResult};

/// The longest one command (or pipeline) may take, connection wait included.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);

/// The longest [`connect`] may take, retries included.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Unacknowledged data older than this closes the socket (Linux `TCP_USER_TIMEOUT`), so a
/// silently dead peer turns into an I/O error and the manager reconnects, instead of every
/// command timing out on a half-open connection.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(2);

/// A reconnecting connection to one Redis server.
///
/// Driver errors are flattened into one message: their `Display` already includes their
/// source, which would otherwise be printed twice.
#[derive(Clone)]
pub(crate) struct Redis {
    manager: ConnectionManager,
    /// `host:port` (or the socket path): what errors and logs may name. Never the URL.
    addr: String,
}

impl Redis {
    /// Connects to `url`, failing within [`CONNECT_TIMEOUT`].
    ///
    /// Errors name the server's address, never the URL (it may hold a password).
    pub(crate) async fn connect(url: &str) -> anyhow::Result<Self> {
        let info = url.into_connection_info().map_err(invalid_url)?;
        let addr = info.addr().to_string();
        let tcp = TcpSettings::default().set_nodelay(true);
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        let tcp = tcp.set_user_timeout(TCP_USER_TIMEOUT);
        let client = redis::Client::open(info.set_tcp_settings(tcp)).map_err(invalid_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            // One quick retry: a longer backoff would outlast the callers' timeouts, and every
            // failed command already triggers a fresh reconnect.
            .set_number_of_retries(1);
        let manager = tokio::time::timeout(CONNECT_TIMEOUT, ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| anyhow::anyhow!("connecting to Redis at {addr} timed out after {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("connecting to Redis at {addr}: {e}"))?;
        Ok(Self { manager, addr })
    }

    /// Runs `command` on a handle to the connection, failing within [`COMMAND_TIMEOUT`].
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, command: F) -> anyhow::Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let addr = &self.addr;
        tokio::time::timeout(COMMAND_TIMEOUT, command(self.manager.clone()))
            .await
            .map_err(|_| anyhow::anyhow!("Redis {what} at {addr} timed out after {COMMAND_TIMEOUT:?}"))?
            .map_err(|e| anyhow::anyhow!("Redis {what} at {addr}: {e}"))
    }

    /// Checks that the server answers `PING`.
    pub(crate) async fn ping(&self) -> anyhow::Result<()> {
        self.run("PING", |mut conn| async move { redis::cmd("PING").query_async::<()>(&mut conn).await }).await
    }

    /// The server's address, safe to log.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }
}

/// Only the error's kind: the driver's message could quote parts of the URL.
fn invalid_url(error: redis::RedisError) -> anyhow::Error {
    anyhow::anyhow!("invalid Redis URL ({:?}); expected redis://[[user]:password@]host[:port][/db]", error.kind())
}
