//! What the Redis tests share: the server's address, a fresh key prefix per test, and a
//! backend handing out nodes on one prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use adapters_redis::{PubSubTimings, RedisPresence, RedisPubSub, RedisTyping};
use async_trait::async_trait;
use domain::realtime::{PresenceStore, PubSub, PubSubSink, TypingStore};
use realtime_contract::Backend;
use std::sync::Arc;
use std::time::Duration;

/// `REDIS_URL`, or the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A pool on the test Redis; panics, saying how to start one, when it is unreachable.
pub async fn pool() -> adapters_redis::Pool {
    let url = redis_url();
    match adapters_redis::pool(&url, 4).await {
        Ok(pool) => pool,
        Err(e) => panic!(
            "Redis is not reachable at {url} ({e}): start it with \
             `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no`"
        ),
    }
}

/// A key prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4())
}

/// Timings that notice a dead connection and reconnect quickly.
pub fn quick_timings() -> PubSubTimings {
    PubSubTimings {
        ping_interval: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(20),
        reconnect_max: Duration::from_millis(200),
        unsubscribe_linger: Duration::ZERO,
    }
}

/// Nodes on one key prefix: each call opens new connections (its own pool, its own
/// subscription connection), as a separate server process would.
pub struct RedisBackend {
    pub prefix: String,
}

impl RedisBackend {
    pub async fn fresh() -> Self {
        Self {
            prefix: fresh_prefix(),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn pubsub(&self, sink: Arc<dyn PubSubSink>) -> Arc<dyn PubSub> {
        let pubsub = RedisPubSub::connect_with(
            &redis_url(),
            pool().await,
            &self.prefix,
            sink,
            quick_timings(),
        )
        .await
        .unwrap();
        Arc::new(pubsub)
    }
    async fn presence(&self) -> Arc<dyn PresenceStore> {
        Arc::new(RedisPresence::new(pool().await, &self.prefix))
    }
    async fn typing(&self) -> Arc<dyn TypingStore> {
        Arc::new(RedisTyping::new(pool().await, &self.prefix))
    }
}
