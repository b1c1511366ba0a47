#![doc = include_str!("../README.md")]

mod keys;
mod presence;
mod pubsub;
mod typing;

pub use presence::RedisPresence;
pub use pubsub::{PubSubTimings, RedisPubSub};
pub use typing::RedisTyping;

/// The pool type every store here takes (re-exported so callers need no direct dependency).
pub use deadpool_redis::Pool;

use domain::realtime::RealtimeError;
use std::time::Duration;

/// How long a pooled operation may wait for a connection, or to make one, before the caller
/// answers `unavailable` instead of hanging while Redis is down.
const POOL_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection pool for publishing, presence and typing (not for subscriptions: each
/// [`RedisPubSub`] owns its dedicated connection). At most `max_size` connections; waiting
/// for one, making one or checking one is bounded by a 2-second timeout.
///
/// Pings Redis once, so a wrong URL or an unreachable server fails at start-up rather than at
/// the first message.
pub async fn pool(url: &str, max_size: usize) -> Result<Pool, RealtimeError> {
    let mut config = deadpool_redis::Config::from_url(url);
    let mut pool_config = deadpool_redis::PoolConfig::new(max_size.max(1));
    pool_config.timeouts = deadpool_redis::Timeouts {
        wait: Some(POOL_TIMEOUT),
        create: Some(POOL_TIMEOUT),
        recycle: Some(POOL_TIMEOUT),
    };
    config.pool = Some(pool_config);
    let pool = config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .map_err(RealtimeError::new)?;
    let mut connection = pool.get().await.map_err(RealtimeError::new)?;
    deadpool_redis::redis::cmd("PING")
        .exec_async(&mut connection)
        .await
        .map_err(RealtimeError::new)?;
    Ok(pool)
}

/// A connection from `pool`, or `unavailable`.
async fn connection(pool: &Pool) -> Result<deadpool_redis::Connection, RealtimeError> {
    pool.get().await.map_err(RealtimeError::new)
}
