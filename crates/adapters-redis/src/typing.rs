//! Typing leases on Redis: one sorted set of `{conversation}:{user}` scored by deadline in
//! milliseconds since the epoch; Lua makes start and take-expired atomic.

use crate::keys::Keys;
use crate::Pool;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::realtime::{RealtimeError, TypingStore};
use domain::{ConversationId, UserId};
use redis::{self, Script};
use std::sync::Arc;
use std::time::Duration;

/// KEYS: typing set. ARGV: member, now, deadline. 1 when no live lease existed (a member
/// whose deadline is at or before now has lapsed, even if nobody took it yet).
const START: &str = r"
local previous = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if previous and tonumber(previous) > tonumber(ARGV[2]) then return 0 end
return 1
";

/// KEYS: typing set. ARGV: now. Removes and returns every member due at or before now, in
/// one script, so concurrent callers never get the same member.
const TAKE_EXPIRED: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 1, #due, 500 do
  redis.call('ZREM', KEYS[1], unpack(due, i, math.min(i + 499, #due)))
end
return due
";

/// Typing leases shared by every node using the same Redis and key prefix.
#[derive(Clone)]
pub struct RedisTyping {
    pool: Pool,
    keys: Keys,
    scripts: Arc<Scripts>,
}

struct Scripts {
    start: Script,
    take_expired: Script,
}

impl RedisTyping {
    /// Typing leases over `pool`, the set named `{key_prefix}typing`.
    pub fn new(pool: Pool, key_prefix: &str) -> Self {
        Self {
            pool,
            keys: Keys::new(key_prefix),
            scripts: Arc::new(Scripts {
                start: Script::new(START),
                take_expired: Script::new(TAKE_EXPIRED),
            }),
        }
    }
}

fn member(conversation: ConversationId, user: UserId) -> String {
    format!("{conversation}:{user}")
}

fn parse_member(member: &str) -> Option<(ConversationId, UserId)> {
    let (conversation, user) = member.split_once(':')?;
    Some((conversation.parse().ok()?, user.parse().ok()?))
}

#[async_trait]
impl TypingStore for RedisTyping {
    async fn start_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, RealtimeError> {
        let now = now.timestamp_millis();
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut connection = self.pool.connection();
        let started: u8 = self
            .scripts
            .start
            .key(self.keys.typing())
            .arg(member(conversation, user))
            .arg(now)
            .arg(now.saturating_add(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        Ok(started == 1)
    }

    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool, RealtimeError> {
        let mut connection = self.pool.connection();
        // A lapsed lease nobody took yet is removed here too: its end was never announced.
        let removed: u32 = redis::cmd("ZREM")
            .arg(self.keys.typing())
            .arg(member(conversation, user))
            .query_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        Ok(removed == 1)
    }

    async fn take_expired(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ConversationId, UserId)>, RealtimeError> {
        let mut connection = self.pool.connection();
        let due: Vec<String> = self
            .scripts
            .take_expired
            .key(self.keys.typing())
            .arg(now.timestamp_millis())
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        Ok(due
            .iter()
            .filter_map(|m| {
                let lease = parse_member(m);
                if lease.is_none() {
                    tracing::warn!(member = %m, "skipped a malformed typing lease");
                }
                lease
            })
            .collect())
    }
}
