//! The adapters the real-time engine runs on, built at start-up: in process
//! (`adapters-memory`, the embedded single-node mode) or Redis (`adapters-redis`, any number
//! of nodes). The engine (`realtime`) gets them as ports, with Redis's readiness check.

use crate::config::RedisSettings;
use adapters_memory::{MemoryPresence, MemoryPubSub, MemoryTyping};
use async_trait::async_trait;
use domain::realtime::RealtimeError;
use realtime::hub::Hub;
use realtime::metrics::Metrics;
use realtime::{Backend, Parts, Readiness};
use std::sync::Arc;

/// In-process adapters: the embedded single-node mode.
pub(crate) fn in_process() -> Parts {
    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(metrics.clone()));
    let backend = Backend {
        pubsub: Arc::new(MemoryPubSub::new(hub.clone())),
        presence: Arc::new(MemoryPresence::new()),
        typing: Arc::new(MemoryTyping::new()),
        readiness: None,
    };
    Parts {
        metrics,
        hub,
        backend,
    }
}

/// Redis adapters: one dedicated subscription connection for this node, a pool for the
/// rest, every key under `redis.key_prefix`. Fails when Redis cannot be reached now.
pub(crate) async fn redis(url: &str, settings: &RedisSettings) -> Result<Parts, RealtimeError> {
    let metrics = Arc::new(Metrics::default());
    let hub = Arc::new(Hub::new(metrics.clone()));
    let pool_size = usize::try_from(settings.pool_size.get()).unwrap_or(16);
    let pool = adapters_redis::pool(url, pool_size).await?;
    let prefix = &settings.key_prefix;
    let pubsub =
        adapters_redis::RedisPubSub::connect(url, pool.clone(), prefix, hub.clone()).await?;
    let backend = Backend {
        pubsub: Arc::new(pubsub),
        presence: Arc::new(adapters_redis::RedisPresence::new(pool.clone(), prefix)),
        typing: Arc::new(adapters_redis::RedisTyping::new(pool.clone(), prefix)),
        readiness: Some(Arc::new(RedisPing(pool))),
    };
    Ok(Parts {
        metrics,
        hub,
        backend,
    })
}

/// Redis answers a `PING` on the pool the adapters share.
struct RedisPing(adapters_redis::Pool);

#[async_trait]
impl Readiness for RedisPing {
    async fn check(&self) -> Result<(), RealtimeError> {
        let mut connection = self.0.connection();
        adapters_redis::redis::cmd("PING")
            .exec_async(&mut connection)
            .await
            .map_err(RealtimeError::new)
    }
}
