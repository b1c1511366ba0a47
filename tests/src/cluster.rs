//! Deployments for the real-time tests: the embedded mode (one in-process server on SQLite
//! with in-process pub/sub) or the scale-out mode (separate `chat-node` processes on one
//! PostgreSQL database and one Redis, under a key prefix of the test's own), plus the
//! settings keys the tests tune and a few REST shortcuts.

use crate::{body, uuid, Api, Backend, NodeProcess, TestApp, TestStore, TestUser};
use protocol::rest::{CreateConversationRequest, SendMessageRequest};
use reqwest::StatusCode;
use serde_json::Value;

/// The settings the real-time tests tune, as dotted config keys (`section.key`; the
/// environment variable of a node is `CHAT_SECTION__KEY`). One place to rename them. The
/// timings use the `*_ms`/`*_secs` keys of earlier versions, which take bare numbers and
/// are still read (so the suite keeps them working end to end).
pub mod keys {
    /// Server ping interval; a session silent for two intervals is closed.
    pub const HEARTBEAT_MS: &str = "realtime.heartbeat_interval_ms";
    /// How long a user with no live session stays online before `offline`.
    pub const PRESENCE_GRACE_MS: &str = "realtime.presence_grace_ms";
    /// TTL of a node's presence lease (how soon a killed node's users go offline).
    pub const NODE_LEASE_TTL_MS: &str = "realtime.presence_lease_ttl_ms";
    /// TTL of a typing lease.
    pub const TYPING_TTL_MS: &str = "realtime.typing_ttl_ms";
    /// At most one forwarded typing refresh per user and conversation this often.
    pub const TYPING_THROTTLE_MS: &str = "realtime.typing_forward_throttle_ms";
    /// Sustained typing frames per second per session.
    pub const TYPING_PER_SECOND: &str = "realtime.typing_per_second";
    /// Typing frames a session may send at once.
    pub const TYPING_BURST: &str = "realtime.typing_burst";
    /// Frames a session may have queued for its client (for longer than the grace below,
    /// or four times as many at once, closes it with 4009).
    pub const OUTBOUND_QUEUE: &str = "realtime.outbound_queue_frames";
    /// How long a session may have more than its queue limit waiting.
    pub const SLOW_CONSUMER_GRACE_MS: &str = "realtime.slow_consumer_grace_ms";
    /// How long a closing session waits for its close frame to reach a slow client.
    pub const CLOSE_GRACE_MS: &str = "realtime.close_grace_ms";
    /// Messages per `sync` page.
    pub const SYNC_PAGE: &str = "realtime.sync_page_size";
    /// Sessions of one user across all nodes (the next is closed 1008).
    pub const MAX_SESSIONS: &str = "realtime.max_sessions_per_user";
    /// Largest client frame, in bytes (above: close 1009).
    pub const MAX_FRAME_BYTES: &str = "realtime.max_frame_bytes";
    /// Sustained messages per second per user.
    pub const MESSAGES_PER_SECOND: &str = "realtime.messages_per_second";
    /// Messages a user may send at once before the per-second rate applies.
    pub const MESSAGE_BURST: &str = "realtime.message_burst";
    /// Sustained edits, deletions and reactions per second per user.
    pub const CHANGES_PER_SECOND: &str = "realtime.changes_per_second";
    /// Edits, deletions and reactions a user may make at once.
    pub const CHANGE_BURST: &str = "realtime.change_burst";
    /// Sustained WebSocket upgrades per second per client IP.
    pub const UPGRADES_PER_SECOND: &str = "realtime.upgrades_per_second";
    /// Upgrades one IP may make at once.
    pub const UPGRADE_BURST: &str = "realtime.upgrade_burst";
    /// Most messages committed in one transaction.
    pub const COMMIT_MAX_BATCH: &str = "realtime.commit_max_batch";
    /// Longest message content, in characters.
    pub const MAX_CONTENT_CHARS: &str = "limits.max_content_chars";
    /// Access token lifetime, seconds.
    pub const ACCESS_TTL_SECS: &str = "auth.access_ttl_secs";
    /// Key prefix of everything the node keeps in Redis.
    pub const REDIS_PREFIX: &str = "redis.key_prefix";
    /// Redis URL.
    pub const REDIS_URL: &str = "redis.url";
    /// Log filter.
    pub const LOG_LEVEL: &str = "log.level";
    /// Origins besides the server's own allowed to open WebSockets.
    pub const ALLOWED_ORIGINS: &str = "http.allowed_origins";
    /// Tests only: the node commits sends but never publishes nor answers them.
    pub const STALL_AFTER_COMMIT: &str = "testing.stall_after_commit";
}

/// The Redis server of the scale-out tests (`CHAT_TEST_REDIS_URL`, default the local one).
pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `section.key` -> `CHAT_SECTION__KEY`.
pub fn env_name(key: &str) -> String {
    format!("CHAT_{}", key.replace('.', "__").to_uppercase())
}

/// Renders dotted keys and values as TOML, later values winning; numbers and booleans stay
/// bare, anything else becomes a string.
pub fn render_toml(values: &[(String, String)]) -> String {
    let mut sections: std::collections::BTreeMap<&str, std::collections::BTreeMap<&str, &str>> =
        std::collections::BTreeMap::new();
    for (key, value) in values {
        let (section, name) = key.split_once('.').expect("a dotted key: section.name");
        sections
            .entry(section)
            .or_default()
            .insert(name, value.as_str());
    }
    let mut out = String::new();
    for (section, entries) in sections {
        out.push_str(&format!("[{section}]\n"));
        for (name, value) in entries {
            let bare = value.parse::<i64>().is_ok()
                || value.parse::<f64>().is_ok()
                || value == "true"
                || value == "false";
            if bare {
                out.push_str(&format!("{name} = {value}\n"));
            } else {
                // A JSON string is a valid TOML basic string.
                out.push_str(&format!("{name} = {}\n", Value::from(value)));
            }
        }
    }
    out
}

/// Timings short enough for tests and limits high enough not to trip over, which a test
/// may override (later entries win).
pub fn quick(overrides: &[(&str, &str)]) -> Vec<(&'static str, String)> {
    let mut tuning: Vec<(&'static str, String)> = vec![
        // Long enough that a test may leave a socket unread (so unanswered pings) for a
        // few seconds; the heartbeat tests set their own.
        (keys::HEARTBEAT_MS, "5000".into()),
        (keys::PRESENCE_GRACE_MS, "300".into()),
        (keys::NODE_LEASE_TTL_MS, "1500".into()),
        (keys::TYPING_TTL_MS, "1000".into()),
        (keys::MESSAGES_PER_SECOND, "100000".into()),
        (keys::MESSAGE_BURST, "100000".into()),
        (keys::CHANGES_PER_SECOND, "100000".into()),
        (keys::CHANGE_BURST, "100000".into()),
        (keys::UPGRADES_PER_SECOND, "100000".into()),
        (keys::UPGRADE_BURST, "100000".into()),
        (keys::TYPING_PER_SECOND, "1000".into()),
        (keys::TYPING_BURST, "1000".into()),
    ];
    for (k, v) in overrides {
        let key = ALL_KEYS
            .iter()
            .find(|known| *known == k)
            .copied()
            .unwrap_or_else(|| panic!("unknown tuning key {k}: add it to cluster::keys"));
        tuning.retain(|(existing, _)| *existing != key);
        tuning.push((key, (*v).to_owned()));
    }
    tuning
}

const ALL_KEYS: [&str; 26] = [
    keys::HEARTBEAT_MS,
    keys::PRESENCE_GRACE_MS,
    keys::NODE_LEASE_TTL_MS,
    keys::TYPING_TTL_MS,
    keys::TYPING_THROTTLE_MS,
    keys::TYPING_PER_SECOND,
    keys::TYPING_BURST,
    keys::OUTBOUND_QUEUE,
    keys::SLOW_CONSUMER_GRACE_MS,
    keys::CLOSE_GRACE_MS,
    keys::SYNC_PAGE,
    keys::MAX_SESSIONS,
    keys::MAX_FRAME_BYTES,
    keys::MESSAGES_PER_SECOND,
    keys::MESSAGE_BURST,
    keys::CHANGES_PER_SECOND,
    keys::CHANGE_BURST,
    keys::UPGRADES_PER_SECOND,
    keys::UPGRADE_BURST,
    keys::COMMIT_MAX_BATCH,
    keys::MAX_CONTENT_CHARS,
    keys::ACCESS_TTL_SECS,
    keys::REDIS_PREFIX,
    keys::REDIS_URL,
    keys::LOG_LEVEL,
    keys::ALLOWED_ORIGINS,
];

/// Which deployment a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One in-process server: SQLite, in-process pub/sub, presence and typing.
    Embedded,
    /// Two `chat-node` processes on one PostgreSQL database and one Redis.
    ScaleOut,
}

/// Servers sharing one store: node 0, node 1... In embedded mode every index names the
/// one in-process server.
pub struct Deployment {
    /// Which mode.
    pub mode: Mode,
    app: Option<TestApp>,
    store: Option<TestStore>,
    nodes: Vec<Option<NodeProcess>>,
    env: Vec<(&'static str, String)>,
    /// The Redis key prefix of this deployment (scale-out).
    pub redis_prefix: Option<String>,
    /// The Redis the nodes use (scale-out).
    redis_url: String,
}

impl Deployment {
    /// A deployment in `mode` with `tuning`.
    pub async fn start(mode: Mode, tuning: &[(&'static str, String)]) -> Self {
        match mode {
            Mode::Embedded => Self::embedded(tuning).await,
            Mode::ScaleOut => Self::scale_out(tuning, 2).await,
        }
    }

    /// One in-process server on SQLite.
    pub async fn embedded(tuning: &[(&'static str, String)]) -> Self {
        let app = TestApp::spawn_tuned(Backend::Sqlite, tuning).await;
        Self {
            mode: Mode::Embedded,
            app: Some(app),
            store: None,
            nodes: Vec::new(),
            env: Vec::new(),
            redis_prefix: None,
            redis_url: String::new(),
        }
    }

    /// `count` node processes on a fresh PostgreSQL database and Redis under a fresh prefix.
    pub async fn scale_out(tuning: &[(&'static str, String)], count: usize) -> Self {
        let store = TestStore::new(Backend::Postgres).await;
        Self::scale_out_on(store, &redis_url(), tuning, count).await
    }

    /// `count` node processes on `store` (PostgreSQL) and the Redis at `redis`, under a
    /// fresh prefix: for tests that run their own PostgreSQL and Redis
    /// ([`crate::services`]).
    pub async fn scale_out_on(
        store: TestStore,
        redis: &str,
        tuning: &[(&'static str, String)],
        count: usize,
    ) -> Self {
        let prefix = format!("chat-e2e-{}:", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(&'static str, String)> = vec![
            ("CHAT_REDIS__URL", redis.to_owned()),
            ("CHAT_REDIS__KEY_PREFIX", prefix.clone()),
        ];
        for (key, value) in tuning {
            let name: &'static str = Box::leak(env_name(key).into_boxed_str());
            env.push((name, value.clone()));
        }
        let mut nodes = Vec::new();
        for _ in 0..count {
            nodes.push(Some(NodeProcess::start(&store, &env).await));
        }
        Self {
            mode: Mode::ScaleOut,
            app: None,
            store: Some(store),
            nodes,
            env,
            redis_prefix: Some(prefix),
            redis_url: redis.to_owned(),
        }
    }

    /// The PostgreSQL URL of a scale-out deployment.
    pub fn database_url(&self) -> Option<&str> {
        self.store.as_ref().and_then(|s| s.database_url.as_deref())
    }

    /// The base URL of node `i` (`http://127.0.0.1:PORT`).
    pub fn base(&self, i: usize) -> String {
        match &self.app {
            Some(app) => app.address.clone(),
            None => self.nodes[i]
                .as_ref()
                .unwrap_or_else(|| panic!("node {i} is not running"))
                .address
                .clone(),
        }
    }

    /// A JSON client for node `i`.
    pub fn api(&self, i: usize) -> Api {
        Api::at(&self.base(i))
    }

    /// The process of node `i` (scale-out only).
    pub fn node_mut(&mut self, i: usize) -> &mut NodeProcess {
        self.nodes[i].as_mut().expect("a running node process")
    }

    /// kill -9 of node `i` (scale-out only); the slot stays empty until restarted.
    pub async fn kill9(&mut self, i: usize) {
        let mut node = self.nodes[i].take().expect("a running node process");
        node.kill9().await;
    }

    /// Starts a fresh node process in slot `i` with the deployment's settings.
    pub async fn restart(&mut self, i: usize) {
        let store = self.store.as_ref().expect("scale-out");
        self.nodes[i] = Some(NodeProcess::start(store, &self.env).await);
    }

    /// Starts one more node process (scale-out only) with the deployment's settings plus
    /// `extra` (dotted keys, later winning): a node unlike the others, say one with a
    /// `testing.*` fault. Its index.
    pub async fn add_node(&mut self, extra: &[(&str, &str)]) -> usize {
        let store = self.store.as_ref().expect("scale-out");
        let mut env = self.env.clone();
        for (key, value) in extra {
            let name: &'static str = Box::leak(env_name(key).into_boxed_str());
            env.push((name, (*value).to_owned()));
        }
        self.nodes.push(Some(NodeProcess::start(store, &env).await));
        self.nodes.len() - 1
    }

    /// A node index different from `i` in scale-out mode (the same one embedded).
    pub fn other(&self, i: usize) -> usize {
        match self.mode {
            Mode::Embedded => i,
            Mode::ScaleOut => (i + 1) % self.nodes.len(),
        }
    }
}

impl Drop for Deployment {
    /// Stops the nodes, then deletes the deployment's Redis keys (best effort), so test
    /// runs do not pile keys up in a shared Redis.
    fn drop(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.start_kill();
        }
        let Some(prefix) = self.redis_prefix.clone() else {
            return;
        };
        let url = self.redis_url.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(delete_keys(&url, &prefix));
        });
        let _ = cleanup.join();
    }
}

/// Deletes every Redis key under `prefix`; errors are ignored (cleanup only).
async fn delete_keys(url: &str, prefix: &str) {
    let Ok(mut conn) = redis_connection(url).await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: Result<u64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A direct conversation of `a` with `b`; its id.
pub async fn direct(api: &Api, a: &TestUser, b: &TestUser) -> String {
    let reply = api
        .post(
            "/api/v1/conversations",
            a.t(),
            body(&CreateConversationRequest {
                kind: "direct".into(),
                participant_ids: vec![uuid(&b.id)],
                title: None,
                encrypted: false,
            }),
        )
        .await;
    assert!(
        reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
        "direct conversation: {:?}",
        reply.body
    );
    reply.body["id"].as_str().expect("id").to_owned()
}

/// A group owned by `owner` with `members`; its id.
pub async fn group(api: &Api, owner: &TestUser, members: &[&TestUser]) -> String {
    let ids = members.iter().map(|m| uuid(&m.id)).collect();
    let reply = api
        .post(
            "/api/v1/conversations",
            owner.t(),
            body(&CreateConversationRequest {
                kind: "group".into(),
                participant_ids: ids,
                title: Some("Team".into()),
                encrypted: false,
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "group: {:?}", reply.body);
    reply.body["id"].as_str().expect("id").to_owned()
}

/// Sends over REST; the message body (201 or 200).
pub async fn send_rest(
    api: &Api,
    user: &TestUser,
    conversation: &str,
    content: &str,
    temp_id: &str,
) -> Value {
    let reply = api
        .post(
            &format!("/api/v1/conversations/{conversation}/messages"),
            user.t(),
            body(&SendMessageRequest {
                content: content.into(),
                content_type: Some("text".into()),
                temp_id: Some(temp_id.into()),
                reply_to: None,
                attachment_ids: Vec::new(),
            }),
        )
        .await;
    assert!(
        reply.status == StatusCode::CREATED || reply.status == StatusCode::OK,
        "send over REST: {} {:?}",
        reply.status,
        reply.body
    );
    reply.body
}

/// The whole history of a conversation as `user` sees it, oldest first, page by page.
pub async fn history(api: &Api, user: &TestUser, conversation: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().map_or(0, |m| m["seq"].as_i64().expect("a seq"));
        let reply = api
            .get(
                &format!(
                    "/api/v1/conversations/{conversation}/messages?after_seq={after}&limit=100"
                ),
                user.t(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "history: {:?}", reply.body);
        let page = reply.body.as_array().expect("a list");
        if page.is_empty() {
            return out;
        }
        out.extend(page.iter().cloned());
    }
}

/// One connection to the Redis at `url`.
async fn redis_connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// Runs a Redis command against the test Redis.
pub async fn redis_command<T: redis::FromRedisValue>(cmd: &mut redis::Cmd) -> T {
    let mut conn = redis_connection(&redis_url())
        .await
        .expect("redis connection");
    cmd.query_async(&mut conn).await.expect("redis command")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renamed server setting would otherwise be ignored in silence (unknown keys are, in
    /// config files): every numeric tuning key must reach the settings.
    #[tokio::test]
    async fn every_numeric_tuning_key_reaches_the_server_settings() {
        let store = TestStore::new(Backend::Sqlite).await;
        let numeric: Vec<&str> = ALL_KEYS
            .iter()
            .copied()
            .filter(|k| {
                !matches!(
                    *k,
                    keys::REDIS_PREFIX | keys::REDIS_URL | keys::LOG_LEVEL | keys::ALLOWED_ORIGINS
                )
            })
            .collect();
        let tuning: Vec<(&str, String)> = numeric
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, (4321 + i).to_string()))
            .collect();
        let printed = format!("{:?}", store.tuned_settings(&tuning));
        for (key, value) in &tuning {
            let field = key.split_once('.').unwrap().1;
            // The timing keys are the `*_ms`/`*_secs` keys of earlier versions: they reach
            // the settings as the Duration of the key without its unit.
            let n: u64 = value.parse().unwrap();
            let expected = if let Some(name) = field.strip_suffix("_ms") {
                format!("{name}: {:?}", std::time::Duration::from_millis(n))
            } else if let Some(name) = field.strip_suffix("_secs") {
                format!("{name}: {:?}", std::time::Duration::from_secs(n))
            } else {
                format!("{field}: {value}")
            };
            assert!(
                printed.contains(&expected),
                "{key} did not reach the settings as {expected}: {printed}"
            );
        }
        let printed = format!(
            "{:?}",
            store.tuned_settings(&[
                (keys::REDIS_PREFIX, "pfx-under-test:".into()),
                (keys::ALLOWED_ORIGINS, "http://a.example".into()),
            ])
        );
        assert!(printed.contains("pfx-under-test:"), "{printed}");
        assert!(printed.contains("http://a.example"), "{printed}");
    }

    #[test]
    fn dotted_keys_name_their_environment_variables() {
        assert_eq!(
            env_name(keys::HEARTBEAT_MS),
            "CHAT_REALTIME__HEARTBEAT_INTERVAL_MS"
        );
    }
}
