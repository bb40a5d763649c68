//! [`ChangeFeed`] on Redis pub/sub, for deployments with Redis.
//!
//! Each instance subscribes to `{key_prefix}changes` and `{key_prefix}acks` on a connection of
//! its own. Publishing sends `<barrier>|<change>` to `changes` ([`Change::encode`]); `PUBLISH`
//! answers how many subscribers received it, and the publisher waits (at most the configured
//! timeout) for that many acknowledgements on `acks`, each sent by a subscriber after it
//! applied the change. So when the request that changed something answers, every instance
//! has forgotten it.
//!
//! While the subscription is down the cache is switched off ([`ReadCache::set_connected`]); on
//! resubscription it is flushed, because messages sent in between are lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use futures::StreamExt as _;
use gatehouse_domain::ports::{Change, ChangeFeed};
use gatehouse_domain::read_cache::ReadCache;
use redis::IntoConnectionInfo as _;
use tokio::sync::Notify;

use crate::connection::Redis;

/// The longest the first subscription may take at start.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait before subscribing again after a failure.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Barrier {
    acks: usize,
    notify: Arc<Notify>,
}

type Barriers = Arc<Mutex<HashMap<String, Barrier>>>;

/// The Redis change feed; see the module documentation.
#[derive(Clone)]
pub struct RedisChangeFeed {
    redis: Redis,
    changes: String,
    barriers: Barriers,
    ack_timeout: Duration,
}

impl std::fmt::Debug for RedisChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChangeFeed").field("channel", &self.changes).finish_non_exhaustive()
    }
}

impl RedisChangeFeed {
    /// Connects to `url`, subscribes (so when this returns, this instance hears every later
    /// change) and starts the subscriber task, which applies every change to `cache`. Must be
    /// called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// An invalid URL, or Redis unreachable.
    pub async fn start(
        url: &str,
        key_prefix: &str,
        cache: Arc<ReadCache>,
        ack_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let redis = Redis::connect(url).await?;
        let client =
            redis::Client::open(url.into_connection_info().map_err(|e| anyhow!("invalid Redis URL ({:?})", e.kind()))?)
                .map_err(|e| anyhow!("invalid Redis URL ({:?})", e.kind()))?;
        let feed = Self { redis, changes: format!("{key_prefix}changes"), barriers: Arc::default(), ack_timeout };
        let acks = format!("{key_prefix}acks");
        let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscribe(&client, &feed.changes, &acks))
            .await
            .map_err(|_| anyhow!("subscribing to changes on Redis at {} timed out", feed.redis.addr()))?
            .map_err(|e| anyhow!("subscribing to changes on Redis at {}: {e}", feed.redis.addr()))?;
        cache.set_connected(true);
        let subscriber = feed.clone();
        tokio::spawn(async move { subscriber.subscribe_forever(first, &client, &acks, &cache).await });
        Ok(feed)
    }

    async fn subscribe_forever(
        &self,
        first: redis::aio::PubSub,
        client: &redis::Client,
        acks: &str,
        cache: &ReadCache,
    ) {
        let mut first = Some(first);
        loop {
            let next = match first.take() {
                Some(pubsub) => Ok(pubsub),
                None => subscribe(client, &self.changes, acks).await.inspect(|_| {
                    // Anything may have changed while nobody listened.
                    cache.set_connected(true);
                    tracing::info!(
                        addr = self.redis.addr(),
                        "subscribed to changes on Redis again; the read cache is on"
                    );
                }),
            };
            match next {
                Ok(pubsub) => {
                    let mut messages = pubsub.into_on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else { continue };
                        if message.get_channel_name() == acks {
                            self.acknowledged(&payload);
                        } else {
                            self.received(&payload, acks, cache).await;
                        }
                    }
                    cache.set_connected(false);
                    tracing::error!("the Redis change subscription ended; the read cache is off");
                }
                Err(e) => tracing::error!(error = %e, "cannot subscribe to changes on Redis; the read cache is off"),
            }
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    }
}

/// A pub/sub connection subscribed to both channels.
async fn subscribe(client: &redis::Client, changes: &str, acks: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(changes).await?;
    pubsub.subscribe(acks).await?;
    Ok(pubsub)
}

impl RedisChangeFeed {
    fn acknowledged(&self, barrier: &str) {
        let mut barriers = self.barriers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(barrier) = barriers.get_mut(barrier) {
            barrier.acks += 1;
            barrier.notify.notify_one();
        }
    }

    async fn received(&self, payload: &str, acks: &str, cache: &ReadCache) {
        let (barrier, text) = payload.split_once('|').unwrap_or(("", payload));
        match Change::decode(text) {
            Some(change) => cache.apply(&change),
            None => {
                tracing::warn!(payload = %text, "an unreadable change message; forgetting everything");
                cache.flush();
            }
        }
        if barrier.is_empty() {
            return;
        }
        let (acks, barrier) = (acks.to_owned(), barrier.to_owned());
        let sent = self
            .redis
            .run("PUBLISH", |mut conn| async move {
                redis::cmd("PUBLISH").arg(acks).arg(barrier).query_async::<i64>(&mut conn).await
            })
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not acknowledge a change");
        }
    }
}

#[async_trait]
impl ChangeFeed for RedisChangeFeed {
    async fn publish(&self, change: Change) -> anyhow::Result<()> {
        let barrier = uuid::Uuid::now_v7().to_string();
        let notify = {
            let mut barriers = self.barriers.lock().unwrap_or_else(PoisonError::into_inner);
            barriers.entry(barrier.clone()).or_default().notify.clone()
        };
        let outcome = self.wait_for_subscribers(&barrier, &change, &notify).await;
        self.barriers.lock().unwrap_or_else(PoisonError::into_inner).remove(&barrier);
        outcome
    }
}

impl RedisChangeFeed {
    async fn wait_for_subscribers(&self, barrier: &str, change: &Change, notify: &Notify) -> anyhow::Result<()> {
        let message = format!("{barrier}|{}", change.encode());
        let channel = self.changes.clone();
        let receivers = self
            .redis
            .run("PUBLISH", |mut conn| async move {
                redis::cmd("PUBLISH").arg(channel).arg(message).query_async::<i64>(&mut conn).await
            })
            .await?;
        let receivers = usize::try_from(receivers).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + self.ack_timeout;
        loop {
            let notified = notify.notified();
            let acks = self.barriers.lock().unwrap_or_else(PoisonError::into_inner).get(barrier).map_or(0, |b| b.acks);
            if acks >= receivers {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                anyhow::bail!(
                    "only {acks} of {receivers} instances confirmed a change within {:?}; the others may answer \
                     from their cache until its time-to-live",
                    self.ack_timeout
                );
            }
        }
    }
}
