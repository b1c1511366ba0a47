//! Presence on Redis: per-node lease keys, per-(user, node) counts, and Lua scripts that
//! make the cap check atomic and hand each dead node to exactly one reaper.
//!
//! Keys (see `keys.rs`): `node:{id}` lease with a TTL; `nodes` set of registered nodes;
//! `node-users:{id}` set of users with sessions there; `presence:{user}` hash with
//! `s:{node}` = sessions and `a:{node}` = away sessions on that node. A count only counts
//! while its node's lease key exists. The scripts build lease, user-set and hash names from
//! the prefix for nodes and users they discover, so this targets a single Redis (or a
//! replicated primary), not Redis Cluster.

use crate::keys::Keys;
use crate::Pool;
use async_trait::async_trait;
use domain::realtime::{NodeId, OpenSessionError, PresenceStore, RealtimeError, SessionCounts};
use domain::UserId;
use redis::{self, Script};
use std::sync::Arc;
use std::time::Duration;

/// Sums a user's counts over nodes whose lease exists (`live_counts(prefix, hash)`), and
/// rewrites one node's counts keeping `away <= sessions` and dropping zeros
/// (`store_counts(hash, users_key, node, user, s, a)`).
const HELPERS: &str = r"
local function live_counts(prefix, hash)
  local fields = redis.call('HGETALL', hash)
  local live = {}
  local sessions, away = 0, 0
  for i = 1, #fields, 2 do
    local node = string.sub(fields[i], 3)
    if live[node] == nil then
      live[node] = redis.call('EXISTS', prefix .. 'node:' .. node) == 1
    end
    if live[node] then
      local n = tonumber(fields[i + 1])
      if string.sub(fields[i], 1, 1) == 's' then sessions = sessions + n else away = away + n end
    end
  end
  return {sessions, away}
end

local function node_counts(hash, node)
  local s = tonumber(redis.call('HGET', hash, 's:' .. node) or '0')
  local a = tonumber(redis.call('HGET', hash, 'a:' .. node) or '0')
  return s, a
end

local function store_counts(hash, users_key, node, user, s, a)
  if s < 0 then s = 0 end
  if a > s then a = s end
  if a < 0 then a = 0 end
  if s == 0 then
    redis.call('HDEL', hash, 's:' .. node, 'a:' .. node)
    redis.call('SREM', users_key, user)
    return
  end
  redis.call('HSET', hash, 's:' .. node, s)
  if a == 0 then redis.call('HDEL', hash, 'a:' .. node) else redis.call('HSET', hash, 'a:' .. node, a) end
  redis.call('SADD', users_key, user)
end
";

/// KEYS: presence hash, node-users set, nodes set. ARGV: prefix, node, user, max.
/// Returns `{admitted (1 or 0), sessions, away}` over live nodes, after.
const OPEN_SESSION: &str = r"
local counts = live_counts(ARGV[1], KEYS[1])
if counts[1] >= tonumber(ARGV[4]) then return {0, counts[1], counts[2]} end
local s, a = node_counts(KEYS[1], ARGV[2])
store_counts(KEYS[1], KEYS[2], ARGV[2], ARGV[3], s + 1, a)
redis.call('SADD', KEYS[3], ARGV[2])
counts = live_counts(ARGV[1], KEYS[1])
return {1, counts[1], counts[2]}
";

/// KEYS: presence hash, node-users set. ARGV: prefix, node, user, sessions delta, away delta.
/// Returns `{sessions, away}` over live nodes, after.
const ADJUST: &str = r"
local s, a = node_counts(KEYS[1], ARGV[2])
store_counts(KEYS[1], KEYS[2], ARGV[2], ARGV[3], s + tonumber(ARGV[4]), a + tonumber(ARGV[5]))
return live_counts(ARGV[1], KEYS[1])
";

/// KEYS: one presence hash per user. ARGV: prefix. Returns `{s1, a1, s2, a2, ...}`.
const COUNTS: &str = r"
local out = {}
for i = 1, #KEYS do
  local counts = live_counts(ARGV[1], KEYS[i])
  out[#out + 1] = counts[1]
  out[#out + 1] = counts[2]
end
return out
";

/// Drops everything a node registered; the caller of `forget` decided it must go.
const FORGET: &str = r"
local function forget(prefix, node, seen, out)
  local users_key = prefix .. 'node-users:' .. node
  for _, user in ipairs(redis.call('SMEMBERS', users_key)) do
    redis.call('HDEL', prefix .. 'presence:' .. user, 's:' .. node, 'a:' .. node)
    if not seen[user] then
      seen[user] = true
      out[#out + 1] = user
    end
  end
  redis.call('DEL', users_key, prefix .. 'node:' .. node)
  redis.call('SREM', prefix .. 'nodes', node)
end
";

/// KEYS: nodes set. ARGV: prefix, this node. Removing a dead node from the set and its
/// counts happen in one script, so of concurrent reapers exactly one sees each dead node.
/// Returns the users who had sessions on the reaped nodes, each once.
const REAP: &str = r"
local seen, out = {}, {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[2] and redis.call('EXISTS', ARGV[1] .. 'node:' .. node) == 0 then
    forget(ARGV[1], node, seen, out)
  end
end
return out
";

/// KEYS: nodes set. ARGV: prefix, node.
const REMOVE_NODE: &str = r"
forget(ARGV[1], ARGV[2], {}, {})
return 1
";

/// KEYS: lease, nodes set. ARGV: TTL in ms, node. Renews the lease and registers the node;
/// returns 1 when the lease still existed, 0 when it had lapsed, was reaped, or Redis lost
/// it (restarted empty): then the node's counts may be gone too.
const RENEW: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return existed
";

/// KEYS: node-users set, nodes set. ARGV: prefix, node, then `user, sessions, away` for
/// each user. Sets each user's counts on the node to the given ones; returns the users
/// whose counts were different.
const RESTORE: &str = r"
local out = {}
for i = 3, #ARGV, 3 do
  local user = ARGV[i]
  local hash = ARGV[1] .. 'presence:' .. user
  local s, a = node_counts(hash, ARGV[2])
  local want_s, want_a = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if want_a > want_s then want_a = want_s end
  if s ~= want_s or a ~= want_a or (want_s > 0 and redis.call('SISMEMBER', KEYS[1], user) == 0) then
    store_counts(hash, KEYS[1], ARGV[2], user, want_s, want_a)
    out[#out + 1] = user
  end
end
redis.call('SADD', KEYS[2], ARGV[2])
return out
";

/// KEYS: node-users set. ARGV: prefix, node, then users. Drops each user's counts on the
/// node; returns the users that had any.
const DROP_USERS: &str = r"
local out = {}
for i = 3, #ARGV do
  local user = ARGV[i]
  local hash = ARGV[1] .. 'presence:' .. user
  local s, a = node_counts(hash, ARGV[2])
  store_counts(hash, KEYS[1], ARGV[2], user, 0, 0)
  if s > 0 or a > 0 then out[#out + 1] = user end
end
return out
";

/// Users per restore script call: large nodes restore in several short scripts rather than
/// one that blocks Redis for long.
const RESTORE_CHUNK: usize = 500;

struct Scripts {
    open_session: Script,
    adjust: Script,
    counts: Script,
    reap: Script,
    remove_node: Script,
    renew: Script,
    restore: Script,
    drop_users: Script,
}

impl Scripts {
    fn new() -> Self {
        let with = |helpers: &str, body: &str| Script::new(&format!("{helpers}\n{body}"));
        Self {
            open_session: with(HELPERS, OPEN_SESSION),
            adjust: with(HELPERS, ADJUST),
            counts: with(HELPERS, COUNTS),
            reap: with(FORGET, REAP),
            remove_node: with(FORGET, REMOVE_NODE),
            renew: Script::new(RENEW),
            restore: with(HELPERS, RESTORE),
            drop_users: with(HELPERS, DROP_USERS),
        }
    }
}

/// Presence shared by every node using the same Redis and key prefix. Each node must renew
/// its lease ([`PresenceStore::renew_lease`]) before opening sessions and then well within
/// the TTL: sessions of a node without a live lease count for nobody and are reaped.
#[derive(Clone)]
pub struct RedisPresence {
    pool: Pool,
    keys: Keys,
    scripts: Arc<Scripts>,
}

impl RedisPresence {
    /// Presence over `pool`, every key under `key_prefix` (e.g. `chat:`).
    pub fn new(pool: Pool, key_prefix: &str) -> Self {
        Self {
            pool,
            keys: Keys::new(key_prefix),
            scripts: Arc::new(Scripts::new()),
        }
    }

    async fn adjust(
        &self,
        user: UserId,
        node: &NodeId,
        sessions: i64,
        away: i64,
    ) -> Result<SessionCounts, RealtimeError> {
        let mut connection = self.pool.connection();
        let (s, a): (u32, u32) = self
            .scripts
            .adjust
            .key(self.keys.presence(user))
            .key(self.keys.node_users(node))
            .arg(self.keys.prefix())
            .arg(&node.0)
            .arg(user.to_string())
            .arg(sessions)
            .arg(away)
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        Ok(SessionCounts {
            sessions: s,
            away: a,
        })
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn open_session(
        &self,
        user: UserId,
        node: &NodeId,
        max_sessions: u32,
    ) -> Result<SessionCounts, OpenSessionError> {
        let mut connection = self.pool.connection();
        let (admitted, sessions, away): (u8, u32, u32) = self
            .scripts
            .open_session
            .key(self.keys.presence(user))
            .key(self.keys.node_users(node))
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&node.0)
            .arg(user.to_string())
            .arg(max_sessions)
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        if admitted == 1 {
            Ok(SessionCounts { sessions, away })
        } else {
            Err(OpenSessionError::TooManySessions)
        }
    }

    async fn close_session(
        &self,
        user: UserId,
        node: &NodeId,
        was_away: bool,
    ) -> Result<SessionCounts, RealtimeError> {
        self.adjust(user, node, -1, if was_away { -1 } else { 0 })
            .await
    }

    async fn set_away(
        &self,
        user: UserId,
        node: &NodeId,
        away: bool,
    ) -> Result<SessionCounts, RealtimeError> {
        self.adjust(user, node, 0, if away { 1 } else { -1 }).await
    }

    async fn counts(&self, users: &[UserId]) -> Result<Vec<SessionCounts>, RealtimeError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.scripts.counts.prepare_invoke();
        for user in users {
            invocation.key(self.keys.presence(*user));
        }
        invocation.arg(self.keys.prefix());
        let mut connection = self.pool.connection();
        let flat: Vec<u32> = invocation
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        if flat.len() != users.len() * 2 {
            return Err(RealtimeError::msg("presence counts came back malformed"));
        }
        Ok(flat
            .chunks_exact(2)
            .map(|pair| SessionCounts {
                sessions: pair[0],
                away: pair[1],
            })
            .collect())
    }

    async fn renew_lease(&self, node: &NodeId, ttl: Duration) -> Result<bool, RealtimeError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut connection = self.pool.connection();
        let existed: u8 = self
            .scripts
            .renew
            .key(self.keys.node_lease(node))
            .key(self.keys.nodes())
            .arg(millis)
            .arg(&node.0)
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        Ok(existed == 1)
    }

    /// In steps (a few hundred users per script): the listed users' counts first, then the
    /// users still registered on the node but not listed are dropped. Not atomic as a whole,
    /// which is fine while the node itself changes nothing meanwhile (the caller's promise);
    /// other nodes never write this node's counts (a reaper only deletes them, and only once
    /// the lease lapsed, which the renewal before this made live).
    async fn restore_node(
        &self,
        node: &NodeId,
        sessions: &[(UserId, SessionCounts)],
    ) -> Result<Vec<UserId>, RealtimeError> {
        let mut connection = self.pool.connection();
        let mut changed: Vec<String> = Vec::new();
        for chunk in sessions.chunks(RESTORE_CHUNK) {
            let mut invocation = self.scripts.restore.prepare_invoke();
            invocation
                .key(self.keys.node_users(node))
                .key(self.keys.nodes())
                .arg(self.keys.prefix())
                .arg(&node.0);
            for (user, counts) in chunk {
                invocation
                    .arg(user.to_string())
                    .arg(counts.sessions)
                    .arg(counts.away);
            }
            let out: Vec<String> = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(RealtimeError::new)?;
            changed.extend(out);
        }
        let registered: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_users(node))
            .query_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        let listed: std::collections::HashSet<String> =
            sessions.iter().map(|(user, _)| user.to_string()).collect();
        let stale: Vec<String> = registered
            .into_iter()
            .filter(|user| !listed.contains(user))
            .collect();
        for chunk in stale.chunks(RESTORE_CHUNK) {
            let mut invocation = self.scripts.drop_users.prepare_invoke();
            invocation
                .key(self.keys.node_users(node))
                .arg(self.keys.prefix())
                .arg(&node.0);
            for user in chunk {
                invocation.arg(user);
            }
            let out: Vec<String> = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(RealtimeError::new)?;
            changed.extend(out);
        }
        Ok(parse_users(&changed))
    }

    async fn reap_dead_nodes(&self, this_node: &NodeId) -> Result<Vec<UserId>, RealtimeError> {
        let mut connection = self.pool.connection();
        let users: Vec<String> = self
            .scripts
            .reap
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&this_node.0)
            .invoke_async(&mut connection)
            .await
            .map_err(RealtimeError::new)?;
        Ok(parse_users(&users))
    }

    async fn remove_node(&self, node: &NodeId) -> Result<(), RealtimeError> {
        let mut connection = self.pool.connection();
        self.scripts
            .remove_node
            .key(self.keys.nodes())
            .arg(self.keys.prefix())
            .arg(&node.0)
            .invoke_async::<()>(&mut connection)
            .await
            .map_err(RealtimeError::new)
    }
}

/// User ids read back from Redis; a malformed one (not written by this adapter) is skipped.
fn parse_users(users: &[String]) -> Vec<UserId> {
    users
        .iter()
        .filter_map(|u| match u.parse() {
            Ok(user) => Some(user),
            Err(_) => {
                tracing::warn!(user = %u, "skipped a malformed user id in presence");
                None
            }
        })
        .collect()
}
