//! `RedisRevocationList` against a real Redis: `redis://127.0.0.1:6379`, or `TEST_REDIS_URL`.
//!
//! Every test uses its own key prefix, so tests run in parallel and leave nothing behind that
//! outlives the revocations they write. A missing Redis fails the tests; it never skips them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use gatehouse_cache_redis::RedisRevocationList;
use gatehouse_domain::ids::SessionId;
use gatehouse_domain::ports::RevocationList;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const LIFETIME: TimeDelta = TimeDelta::minutes(1);
/// What "fails quickly" means here: the adapter's budget is 250 ms per command, 500 ms to connect.
const QUICKLY: Duration = Duration::from_secs(1);

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_owned())
}

fn unique_prefix() -> String {
    format!("gatehouse-test:{}:", uuid::Uuid::now_v7())
}

async fn connect_to(url: &str, prefix: &str) -> RedisRevocationList {
    match RedisRevocationList::connect(url, prefix).await {
        Ok(list) => list,
        Err(error) => panic!(
            "Redis is not reachable ({error:#}): start it with `scripts/ensure-services.sh` \
             (or `redis-server --port 6379 --daemonize yes`), or point TEST_REDIS_URL at one"
        ),
    }
}

async fn connect(prefix: &str) -> RedisRevocationList {
    connect_to(&redis_url(), prefix).await
}

fn sessions(n: usize) -> Vec<SessionId> {
    (0..n).map(|_| SessionId::generate()).collect()
}

#[tokio::test]
async fn a_revocation_on_one_instance_is_seen_by_another_at_once() {
    let prefix = unique_prefix();
    let (one, other) = (connect(&prefix).await, connect(&prefix).await);
    let session = SessionId::generate();
    assert!(!other.is_revoked(session).await.expect("is_revoked"), "not revoked yet");

    one.revoke(vec![session], Utc::now() + LIFETIME).await.expect("revoke");

    assert!(other.is_revoked(session).await.expect("is_revoked"), "the other instance sees it");
    assert!(one.is_revoked(session).await.expect("is_revoked"));
}

#[tokio::test]
async fn an_unknown_session_is_not_revoked() {
    let list = connect(&unique_prefix()).await;
    list.revoke(sessions(3), Utc::now() + LIFETIME).await.expect("revoke");

    assert!(!list.is_revoked(SessionId::generate()).await.expect("is_revoked"));
}

#[tokio::test]
async fn every_session_of_a_batch_is_revoked() {
    let list = connect(&unique_prefix()).await;
    let batch = sessions(200);

    list.revoke(batch.clone(), Utc::now() + LIFETIME).await.expect("revoke");

    for session in batch {
        assert!(list.is_revoked(session).await.expect("is_revoked"), "{session} revoked");
    }
}

#[tokio::test]
async fn an_entry_expires_at_until() {
    let list = connect(&unique_prefix()).await;
    let session = SessionId::generate();
    list.revoke(vec![session], Utc::now() + TimeDelta::seconds(3)).await.expect("revoke");
    assert!(list.is_revoked(session).await.expect("is_revoked"), "revoked before `until`");

    tokio::time::sleep(Duration::from_millis(3500)).await;

    assert!(!list.is_revoked(session).await.expect("is_revoked"), "forgotten after `until`");
}

#[tokio::test]
async fn an_until_already_past_writes_nothing() {
    let prefix = unique_prefix();
    let list = connect(&prefix).await;
    let session = SessionId::generate();

    list.revoke(vec![session], Utc::now() - TimeDelta::seconds(1)).await.expect("revoke");

    assert!(!list.is_revoked(session).await.expect("is_revoked"));
    let client = redis::Client::open(redis_url()).expect("URL");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.expect("KEYS");
    assert!(keys.is_empty(), "no key written, found {keys:?}");
}

#[tokio::test]
async fn lists_with_different_prefixes_do_not_see_each_other() {
    let (one, other) = (connect(&unique_prefix()).await, connect(&unique_prefix()).await);
    let session = SessionId::generate();

    one.revoke(vec![session], Utc::now() + LIFETIME).await.expect("revoke");

    assert!(!other.is_revoked(session).await.expect("is_revoked"));
}

#[tokio::test]
async fn ping_succeeds_on_a_live_redis() {
    connect(&unique_prefix()).await.ping().await.expect("PING");
}

#[tokio::test]
async fn connecting_to_an_unreachable_redis_fails_quickly() {
    let started = Instant::now();

    let result = RedisRevocationList::connect("redis://127.0.0.1:1", "unused:").await;

    assert!(result.is_err(), "nothing listens on port 1");
    assert!(started.elapsed() < QUICKLY, "failed after {:?}", started.elapsed());
}

#[tokio::test]
async fn connecting_to_a_redis_that_never_answers_fails_quickly() {
    let proxy = StallingProxy::start().await;
    proxy.stall();
    let started = Instant::now();

    let result = RedisRevocationList::connect(&proxy.url(), "unused:").await;

    assert!(result.is_err(), "the handshake cannot complete");
    assert!(started.elapsed() < QUICKLY, "failed after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_redis_that_stops_answering_makes_calls_fail_quickly_and_then_recover() {
    let proxy = StallingProxy::start().await;
    let list = connect_to(&proxy.url(), &unique_prefix()).await;
    let session = SessionId::generate();
    list.revoke(vec![session], Utc::now() + LIFETIME).await.expect("revoke");

    proxy.stall();
    for call in ["is_revoked", "revoke", "ping"] {
        let started = Instant::now();
        let result = match call {
            "is_revoked" => list.is_revoked(session).await.map(|_| ()),
            "revoke" => list.revoke(sessions(1), Utc::now() + LIFETIME).await,
            _ => list.ping().await,
        };
        assert!(result.is_err(), "{call} fails while Redis is silent");
        assert!(started.elapsed() < QUICKLY, "{call} failed after {:?}", started.elapsed());
    }

    proxy.resume();
    assert!(list.is_revoked(session).await.expect("is_revoked after Redis answers again"));
    assert!(!list.is_revoked(SessionId::generate()).await.expect("is_revoked"), "replies stay in step");
}

#[tokio::test]
async fn the_list_reconnects_after_redis_closes_its_connection() {
    let proxy = StallingProxy::start().await;
    let list = connect_to(&proxy.url(), &unique_prefix()).await;
    let session = SessionId::generate();
    list.revoke(vec![session], Utc::now() + LIFETIME).await.expect("revoke");

    proxy.sever();

    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(list.is_revoked(session).await.map_err(|e| e.to_string()));
        if answers.last().is_some_and(Result::is_ok) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers.last(), Some(&Ok(true)), "answers after the connection closed: {answers:?}");
}

#[tokio::test]
async fn errors_never_show_the_password_in_the_url() {
    let result = RedisRevocationList::connect("redis://:hunter2-secret@127.0.0.1:1/0", "unused:").await;

    let error = result.expect_err("nothing listens on port 1");
    for shown in [format!("{error}"), format!("{error:#}"), format!("{error:?}")] {
        assert!(!shown.contains("hunter2"), "password leaked: {shown}");
    }
    let invalid = RedisRevocationList::connect("redis://:hunter2-secret@/0?protocol=9", "unused:")
        .await
        .expect_err("not a valid URL");
    assert!(!format!("{invalid:?}").contains("hunter2"), "password leaked: {invalid:?}");
}

/// A TCP proxy to the test Redis that can stop forwarding without closing anything: a Redis
/// that is alive on the network but does not answer (overloaded, paused, or partitioned).
struct StallingProxy {
    port: u16,
    stalled: watch::Sender<bool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl StallingProxy {
    async fn start() -> Arc<Self> {
        let upstream = redis_host_port(&redis_url());
        let upstream = if upstream.contains(':') { upstream } else { format!("{upstream}:6379") };
        // Fail with the usual message when the test Redis itself is down.
        connect(&unique_prefix()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let (stalled, _) = watch::channel(false);
        let proxy = Arc::new(Self { port, stalled, links: Arc::default() });
        let gate = proxy.stalled.clone();
        let links = Arc::clone(&proxy.links);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else { return };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut links = links.lock().expect("links");
                links.push(tokio::spawn(forward(client_read, server_write, gate.subscribe())).abort_handle());
                links.push(tokio::spawn(forward(server_read, client_write, gate.subscribe())).abort_handle());
            }
        });
        proxy
    }

    /// The test Redis's URL (credentials and database included) with the proxy as host.
    fn url(&self) -> String {
        let url = redis_url();
        url.replacen(&redis_host_port(&url), &format!("127.0.0.1:{}", self.port), 1)
    }

    fn stall(&self) {
        self.stalled.send_replace(true);
    }

    fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Closes every proxied connection, as a Redis restart would; new ones are still accepted.
    fn sever(&self) {
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }
}

/// The `host[:port]` part of a `redis://[credentials@]host[:port][/db]` URL.
fn redis_host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.split('/').next().unwrap_or(rest);
    rest.rsplit_once('@').map_or(rest, |(_, host_port)| host_port).to_owned()
}

/// Copies bytes one way, holding each chunk while the proxy is stalled.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|stalled| !*stalled).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

mod rate_limits {
    use std::time::Duration;

    use gatehouse_cache_redis::{FallbackRateLimiter, RedisRateLimiter};
    use gatehouse_domain::ports::RateLimiter;

    use super::{redis_url, unique_prefix};

    #[tokio::test]
    async fn two_instances_sharing_redis_together_admit_exactly_the_limit() {
        let prefix = unique_prefix();
        let one = RedisRateLimiter::connect(&redis_url(), &prefix).await.expect("connects");
        let other = RedisRateLimiter::connect(&redis_url(), &prefix).await.expect("connects");
        let window = Duration::from_secs(60);
        let hits = (0..30).map(|i| {
            let limiter = if i % 2 == 0 { one.clone() } else { other.clone() };
            async move { limiter.hit("ip:192.0.2.1", 10, window).await.expect("hit").allowed }
        });
        let allowed = futures_count(hits).await;
        assert_eq!(allowed, 10, "exactly the limit is admitted across both instances");
        let decision = one.hit("ip:192.0.2.2", 10, window).await.expect("hit");
        assert_eq!((decision.remaining, decision.reset_after_secs), (9, 60));
    }

    async fn futures_count(
        hits: impl Iterator<Item = impl std::future::Future<Output = bool> + Send + 'static>,
    ) -> usize {
        let handles: Vec<_> = hits.map(tokio::spawn).collect();
        let mut allowed = 0;
        for handle in handles {
            if handle.await.expect("joined") {
                allowed += 1;
            }
        }
        allowed
    }

    #[tokio::test]
    async fn an_unreachable_redis_falls_back_to_in_process_limits_and_reports_it() {
        let limiter = FallbackRateLimiter::new("redis://127.0.0.1:1", &unique_prefix());
        let window = Duration::from_secs(60);
        let allowed = {
            let mut allowed = 0;
            for _ in 0..5 {
                if limiter.hit("ip:a", 3, window).await.expect("never fails").allowed {
                    allowed += 1;
                }
            }
            allowed
        };
        assert_eq!(allowed, 3, "in-process limits still hold");
        assert!(limiter.is_degraded());
        assert!(limiter.ping().await.is_err());
    }

    #[tokio::test]
    async fn a_reachable_redis_is_not_degraded() {
        let limiter = FallbackRateLimiter::new(&redis_url(), &unique_prefix());
        assert!(limiter.hit("ip:a", 3, Duration::from_secs(60)).await.expect("hit").allowed);
        assert!(!limiter.is_degraded());
    }
}
