#![doc = include_str!("../README.md")]

mod keys;
mod presence;
mod pubsub;
mod typing;

pub use presence::RedisPresence;
pub use pubsub::{PubSubTimings, RedisPubSub};
pub use typing::RedisTyping;

/// The `redis` crate these adapters are built on, for callers' own commands (`PING`).
pub use redis;

use domain::realtime::RealtimeError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a command may wait for its answer, or for a connection to be made, before the
/// caller answers `unavailable` instead of hanging while Redis is down.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The connections for publishing, presence and typing (not for subscriptions: each
/// [`RedisPubSub`] owns its dedicated connection). Cheap to clone.
///
/// Each connection is multiplexed: every command issued on it concurrently goes out in one
/// pipeline on its socket, so callers never wait for a free connection, and handing one out
/// costs nothing. (A checkout from a deadpool-redis pool cost a round trip of its own, an
/// `UNWATCH` + `PING` to check the connection: 186,000 of them in one reconnect-storm run.)
/// A connection that breaks is made again by itself on its next use
/// ([`ConnectionManager`]); while Redis is down, a command fails within [`TIMEOUT`].
#[derive(Clone)]
pub struct Pool {
    connections: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    /// The next connection, in turn.
    pub fn connection(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

/// `size` connections to `url` (at least one), each opened and checked with a `PING` now, so
/// a wrong URL or an unreachable server fails at start-up rather than at the first message.
pub async fn pool(url: &str, size: usize) -> Result<Pool, RealtimeError> {
    let client = redis::Client::open(url).map_err(RealtimeError::new)?;
    // One attempt per reconnection, bounded: a command waits for at most one (failed)
    // attempt while Redis is down, and the next command tries again.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(0);
    let mut connections = Vec::with_capacity(size.max(1));
    for _ in 0..size.max(1) {
        let mut connection = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(RealtimeError::new)?;
        redis::cmd("PING")
            .exec_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        connections.push(connection);
    }
    Ok(Pool {
        connections: connections.into(),
        next: Arc::new(AtomicUsize::new(0)),
    })
}
