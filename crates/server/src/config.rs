//! Layered configuration: built-in defaults < `config/default.toml` < `config/local.toml`
//! < `CHAT_SECTION__KEY` environment variables.
//!
//! Every key has a default, so the embedded mode runs with no file and no variable at all.
//! Secrets are [`Secret`]s: they print as `<redacted>`, so logging the settings is safe.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Environment variable naming the directory that holds `default.toml` and `local.toml`.
pub const CONFIG_DIR_ENV: &str = "CHAT_CONFIG_DIR";

/// Prefix of the environment variables that override the files.
pub const ENV_PREFIX: &str = "CHAT_";

/// The configuration could not be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file is malformed or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is well-typed but unusable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The offending key, dotted (`database.url`).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A value that must never be printed: Debug and Display show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Environment values are parsed by figment, so an all-digit secret arrives as a
        // number: take it back as text rather than refuse it.
        struct SecretVisitor;
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret::new(v.to_string()))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// All settings, one struct per section of `config/default.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `[http]`
    pub http: HttpSettings,
    /// `[data]`
    pub data: DataSettings,
    /// `[database]`
    pub database: DatabaseSettings,
    /// `[redis]`
    pub redis: RedisSettings,
    /// `[auth]`
    pub auth: AuthSettings,
    /// `[limits]`
    pub limits: LimitSettings,
    /// `[realtime]`
    pub realtime: RealtimeSettings,
    /// `[log]`
    pub log: LogSettings,
    /// `[testing]`: fault injection for the test suite only.
    pub testing: TestingSettings,
}

/// `[http]`: the listener and what requests may look like.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Origins other than the server's own allowed for CORS and WebSocket upgrades.
    /// From the environment, a comma-separated list is accepted.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Take the client IP (for per-IP limits) from the last `X-Forwarded-For` entry, and the
    /// scheme of the server's own origin (the `Origin` check) from `X-Forwarded-Proto`.
    /// Only behind a reverse proxy that appends it; otherwise clients could pick their IP.
    pub trust_forwarded_for: bool,
    /// The proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed when
    /// `trust_forwarded_for` is on; empty: every peer's. From the environment, a
    /// comma-separated list is accepted.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub trusted_proxies: Vec<String>,
    /// Connections the kernel queues before the server accepts them (the listen backlog;
    /// the kernel caps it at `net.core.somaxconn`). A reconnect storm needs it deep.
    pub backlog: u32,
    /// HTTP worker threads; 0 = one per CPU.
    pub workers: usize,
    /// Open connections (WebSockets included) each worker serves at most.
    pub max_connections_per_worker: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allowed_origins: Vec::new(),
            max_body_bytes: 64 * 1024,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            backlog: 4096,
            workers: 0,
            max_connections_per_worker: 100_000,
        }
    }
}

impl HttpSettings {
    /// `trusted_proxies` parsed; entries that do not parse are left out (validation at load
    /// refuses them, so only hand-made settings can have any).
    pub fn trusted_proxy_ranges(&self) -> std::sync::Arc<[crate::api::client_ip::IpRange]> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| crate::api::client_ip::IpRange::parse(p).ok())
            .collect()
    }
}

/// `[data]`: where the embedded mode keeps its files.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DataSettings {
    /// Directory of the SQLite file and the generated JWT secret.
    pub dir: PathBuf,
}

impl Default for DataSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./data"),
        }
    }
}

/// `[database]`: which store, and how many connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Unset: SQLite at `<data.dir>/chat.db`. `sqlite://path` or `sqlite:path`: SQLite there.
    /// `postgres://` or `postgresql://`: PostgreSQL. A secret, as it may hold a password.
    pub url: Option<Secret>,
    /// Connections in the pool (Postgres) or reader connections (SQLite).
    pub pool_size: u32,
    /// PostgreSQL: opening a connection may take this long, so a database that accepts and
    /// never answers becomes `unavailable` errors rather than waits.
    pub connect_timeout_ms: u64,
    /// PostgreSQL: waiting for a pooled connection (free or newly opened) may take this long.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL: a statement may run this long (`statement_timeout`), and a send, receipt
    /// or sync operation this long in all before it fails as `unavailable`.
    pub query_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 8,
            connect_timeout_ms: 5000,
            acquire_timeout_ms: 5000,
            query_timeout_ms: 5000,
        }
    }
}

/// `[redis]`: cross-node pub/sub, presence and typing (scale-out mode).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// Unset: everything in process. A secret, as it may hold a password.
    pub url: Option<Secret>,
    /// Prefix of every key and channel this node uses, so deployments (and test runs) can
    /// share one Redis.
    pub key_prefix: String,
    /// Connections for publishing, presence and typing, used in turn; each multiplexes every
    /// concurrent command (the subscription connection is separate, one per node).
    pub pool_size: u32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "chat:".to_owned(),
            pool_size: 4,
        }
    }
}

/// `[realtime]`: WebSocket sessions, fan-out, presence and typing. Every timing and limit
/// of a session is here, so tests can run with short timings and high limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RealtimeSettings {
    /// The server pings every session this often; a session silent for two intervals is closed.
    pub heartbeat_interval_ms: u64,
    /// Frames a session may have waiting for its client. More than this for longer than
    /// `slow_consumer_grace_ms` (or four times this at any moment) closes it with 4009.
    pub outbound_queue_frames: usize,
    /// How long a session may have more than `outbound_queue_frames` waiting (a burst it is
    /// draining) before it is closed as a slow consumer. 0: at once.
    pub slow_consumer_grace_ms: u64,
    /// Messages per `sync` page (and per gap fetch).
    pub sync_page_size: u32,
    /// After `hello`, live messages wait up to this long for the client's first frame (its
    /// `sync`), so a replay and the live stream reach the client in seq order. 0: no wait.
    pub sync_hold_ms: u64,
    /// Largest client frame, in bytes; a larger one closes the session with 1009.
    pub max_frame_bytes: usize,
    /// Lines a node logs per minute about clients' protocol errors (1002, 1007, 1009,
    /// refused origins, upgrades cut short), at INFO; the rest are only counted, in the
    /// metrics and in one line a minute. 0: none logged.
    pub protocol_error_logs_per_minute: u32,
    /// Sustained messages per second per user (WebSocket and REST alike).
    pub messages_per_second: u32,
    /// Messages a user may send at once before the per-second rate applies.
    pub message_burst: u32,
    /// Sustained `typing` frames per second per session.
    pub typing_per_second: u32,
    /// `typing` frames a session may send at once before the per-second rate applies.
    pub typing_burst: u32,
    /// Sustained WebSocket upgrades per second per client IP.
    pub upgrades_per_second: u32,
    /// Upgrades one IP may make at once before the per-second rate applies.
    pub upgrade_burst: u32,
    /// Most messages committed in one transaction by the group-commit batcher.
    pub commit_max_batch: usize,
    /// Most watermark updates written in one receipt flush.
    pub receipt_max_batch: usize,
    /// How long the receipt writer gathers marks before each flush (fewer, larger writes
    /// and publishes; receipts reach senders this much later). 0: as soon as the previous
    /// flush ends.
    pub receipt_linger_ms: u64,
    /// How long a closing session waits for its close frame to reach a slow client.
    pub close_grace_ms: u64,
    /// How long a user with no live session still shows online (reconnects do not flicker).
    pub presence_grace_ms: u64,
    /// TTL of this node's presence lease: a node that stops renewing it is dead after this.
    pub presence_lease_ttl_ms: u64,
    /// A typing start without a refresh ends after this.
    pub typing_ttl_ms: u64,
    /// At most one forwarded typing refresh per user and conversation this often.
    pub typing_forward_throttle_ms: u64,
    /// Live sessions of one user across all nodes; the next one is closed with 1008.
    pub max_sessions_per_user: u32,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 30_000,
            outbound_queue_frames: 256,
            slow_consumer_grace_ms: 1_000,
            sync_page_size: 100,
            sync_hold_ms: 500,
            max_frame_bytes: 64 * 1024,
            protocol_error_logs_per_minute: 10,
            messages_per_second: 10,
            message_burst: 20,
            typing_per_second: 5,
            typing_burst: 10,
            upgrades_per_second: 20,
            upgrade_burst: 100,
            commit_max_batch: 256,
            receipt_max_batch: 1024,
            receipt_linger_ms: 10,
            close_grace_ms: 2_000,
            presence_grace_ms: 5_000,
            presence_lease_ttl_ms: 15_000,
            typing_ttl_ms: 5_000,
            typing_forward_throttle_ms: 1_000,
            max_sessions_per_user: 10,
        }
    }
}

/// `[auth]`: tokens, password hashing and login throttling.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// HMAC key of access tokens, at least 32 bytes. Unset in embedded mode: generated once
    /// and kept in `<data.dir>/jwt_secret`. Required with Postgres, where every node must share it.
    pub jwt_secret: Option<Secret>,
    /// `iss` of issued tokens, and the only one accepted.
    pub issuer: String,
    /// `aud` of issued tokens, and the only one accepted.
    pub audience: String,
    /// Access token lifetime, in seconds.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime, in seconds.
    pub refresh_ttl_secs: u64,
    /// Argon2id memory cost, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Sustained login attempts allowed per minute, per client IP and per account.
    pub login_attempts_per_minute: u32,
    /// Login attempts allowed at once before the per-minute rate applies.
    pub login_burst: u32,
    /// How far in the future an access token's `iat` may lie (clock skew between nodes),
    /// in seconds; beyond it the token is refused. `nbf` gets no leeway.
    pub iat_leeway_secs: u64,
    /// Sustained registrations allowed per minute per client IP (an IPv6 client counts by
    /// its /64, which one host usually holds whole).
    pub registrations_per_minute: u32,
    /// Registrations one client IP may make at once before the per-minute rate applies.
    pub registration_burst: u32,
    /// Password hashes (register, login) computed at once; 0 = one per CPU. Each holds
    /// `argon2_memory_kib` of memory, so this times that is the hashing memory's bound.
    pub hash_concurrency: usize,
    /// How long a register or login waits for a hashing slot before it is answered 503
    /// `unavailable` with `Retry-After`, in milliseconds. 0: never wait.
    pub hash_wait_timeout_ms: u64,
}

impl AuthSettings {
    /// `hash_concurrency`, with 0 resolved to the number of CPUs.
    pub fn hash_slots(&self) -> usize {
        match self.hash_concurrency {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: None,
            issuer: "chat-server".to_owned(),
            audience: "chat".to_owned(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 60 * 60,
            // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            login_attempts_per_minute: 10,
            login_burst: 10,
            iat_leeway_secs: 30,
            registrations_per_minute: 5,
            registration_burst: 10,
            hash_concurrency: 0,
            hash_wait_timeout_ms: 5_000,
        }
    }
}

/// `[limits]`: what users may send and fetch.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Longest message, in characters.
    pub max_content_chars: usize,
    /// Most messages one history page may return.
    pub max_page_size: u32,
    /// Most members of a group, owner included.
    pub max_group_members: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let limits = domain::Limits::default();
        Self {
            max_content_chars: limits.max_content_chars,
            max_page_size: limits.max_page_size,
            max_group_members: limits.max_group_members,
        }
    }
}

impl From<&LimitSettings> for domain::Limits {
    fn from(s: &LimitSettings) -> Self {
        Self {
            max_content_chars: s.max_content_chars,
            max_page_size: s.max_page_size,
            max_group_members: s.max_group_members,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for a log pipeline.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `pretty` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `server=debug,info`... `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

/// `[testing]`: faults the end-to-end suite injects into a node to prove what happens around
/// them. For tests only; everything is off by default, and a production node must never set
/// any of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TestingSettings {
    /// The node commits sends but never publishes nor acknowledges them, as a node that
    /// stalls (or dies) between commit and publish: the sender times out and resends elsewhere.
    pub stall_after_commit: bool,
}

/// The store the settings select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// The embedded SQLite file at this path.
    Sqlite(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(Secret),
}

impl Settings {
    /// Reads the settings from the directory named by `CHAT_CONFIG_DIR` (default `./config`)
    /// and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os(CONFIG_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir)
    }

    /// Reads the settings from `dir` (a missing directory or file is fine) and the environment.
    pub fn load_from(dir: &Path) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        for name in ["default.toml", "local.toml"] {
            let file = dir.join(name);
            // `file_exact` so no parent directory is searched; absent files are skipped.
            if file.is_file() {
                figment = figment.merge(Toml::file_exact(file));
            }
        }
        figment = figment.merge(
            Env::prefixed(ENV_PREFIX)
                .ignore(&["config_dir"])
                .split("__"),
        );
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Settings for tests: a free port on localhost, data under `data_dir`, cheap password
    /// hashing, a fixed JWT secret and login limits no test trips over.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let mut settings = Self::default();
        settings.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.data.dir = data_dir.into();
        settings.auth.jwt_secret = Some(Secret::new("test-secret-test-secret-test-secret!"));
        settings.auth.argon2_memory_kib = 64;
        settings.auth.argon2_iterations = 1;
        settings.auth.login_attempts_per_minute = 10_000;
        settings.auth.login_burst = 10_000;
        settings.auth.registrations_per_minute = 10_000;
        settings.auth.registration_burst = 10_000;
        settings.realtime.messages_per_second = 10_000;
        settings.realtime.message_burst = 10_000;
        settings.realtime.upgrades_per_second = 10_000;
        settings.realtime.upgrade_burst = 10_000;
        settings.log.level = "warn".to_owned();
        settings
    }

    /// The store selected by `database.url`.
    pub fn database_target(&self) -> Result<DatabaseTarget, ConfigError> {
        let Some(url) = &self.database.url else {
            return Ok(DatabaseTarget::Sqlite(self.data.dir.join("chat.db")));
        };
        let raw = url.expose().trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(Secret::new(raw)));
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"));
        match path {
            Some(path) if !path.is_empty() => Ok(DatabaseTarget::Sqlite(PathBuf::from(path))),
            // The URL is not echoed: it may hold a password.
            _ => Err(ConfigError::Invalid {
                key: "database.url",
                reason: "must start with sqlite:, postgres:// or postgresql://".to_owned(),
            }),
        }
    }

    /// Refuses values that would only fail later, deep inside start-up.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        for proxy in &self.http.trusted_proxies {
            if let Err(reason) = crate::api::client_ip::IpRange::parse(proxy) {
                return invalid("http.trusted_proxies", &reason);
            }
        }
        if let Err(e) = crate::origin::check_listed(&self.http.allowed_origins) {
            return invalid("http.allowed_origins", &e.to_string());
        }
        for (key, value) in [
            (
                "database.connect_timeout_ms",
                self.database.connect_timeout_ms,
            ),
            (
                "database.acquire_timeout_ms",
                self.database.acquire_timeout_ms,
            ),
            ("database.query_timeout_ms", self.database.query_timeout_ms),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.auth.login_attempts_per_minute == 0 {
            return invalid("auth.login_attempts_per_minute", "must be at least 1");
        }
        if self.auth.login_burst == 0 {
            return invalid("auth.login_burst", "must be at least 1");
        }
        if self.auth.registrations_per_minute == 0 {
            return invalid("auth.registrations_per_minute", "must be at least 1");
        }
        if self.auth.registration_burst == 0 {
            return invalid("auth.registration_burst", "must be at least 1");
        }
        if self.auth.access_ttl_secs == 0 {
            return invalid("auth.access_ttl_secs", "must be at least 1");
        }
        if self.limits.max_page_size == 0 {
            return invalid("limits.max_page_size", "must be at least 1");
        }
        let rt = &self.realtime;
        for (key, value) in [
            ("realtime.heartbeat_interval_ms", rt.heartbeat_interval_ms),
            (
                "realtime.outbound_queue_frames",
                rt.outbound_queue_frames as u64,
            ),
            ("realtime.sync_page_size", u64::from(rt.sync_page_size)),
            ("realtime.max_frame_bytes", rt.max_frame_bytes as u64),
            (
                "realtime.messages_per_second",
                u64::from(rt.messages_per_second),
            ),
            ("realtime.message_burst", u64::from(rt.message_burst)),
            (
                "realtime.typing_per_second",
                u64::from(rt.typing_per_second),
            ),
            ("realtime.typing_burst", u64::from(rt.typing_burst)),
            (
                "realtime.upgrades_per_second",
                u64::from(rt.upgrades_per_second),
            ),
            ("realtime.upgrade_burst", u64::from(rt.upgrade_burst)),
            ("realtime.commit_max_batch", rt.commit_max_batch as u64),
            ("realtime.receipt_max_batch", rt.receipt_max_batch as u64),
            ("realtime.presence_lease_ttl_ms", rt.presence_lease_ttl_ms),
            ("realtime.typing_ttl_ms", rt.typing_ttl_ms),
            (
                "realtime.max_sessions_per_user",
                u64::from(rt.max_sessions_per_user),
            ),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        self.database_target().map(|_| ())
    }
}

/// Accepts `["a", "b"]` from a file and `a,b` from an environment variable.
fn list_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(list) => list,
        ListOrString::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    // `Jail::expect_with` closures must return figment's (large) error type.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

    use super::*;
    use figment::Jail;

    fn load_in(jail: &Jail) -> Settings {
        Settings::load_from(&jail.directory().join("config")).expect("settings load")
    }

    #[test]
    fn with_no_file_and_no_variable_every_key_has_its_default() {
        Jail::expect_with(|jail| {
            let s = load_in(jail);
            assert_eq!(s.http.addr, "127.0.0.1:8080".parse().unwrap());
            assert_eq!(s.http.max_body_bytes, 65_536);
            assert!(s.http.allowed_origins.is_empty());
            assert_eq!(s.data.dir, PathBuf::from("./data"));
            assert_eq!(s.database.pool_size, 8);
            assert_eq!(s.auth.issuer, "chat-server");
            assert_eq!(s.auth.audience, "chat");
            assert_eq!(s.auth.access_ttl_secs, 900);
            assert_eq!(s.auth.refresh_ttl_secs, 2_592_000);
            assert_eq!(s.auth.argon2_memory_kib, 19_456);
            assert_eq!(s.auth.login_attempts_per_minute, 10);
            assert_eq!(s.auth.iat_leeway_secs, 30);
            assert_eq!(s.auth.registrations_per_minute, 5);
            assert_eq!(s.auth.registration_burst, 10);
            assert_eq!(s.auth.hash_concurrency, 0);
            assert_eq!(s.auth.hash_wait_timeout_ms, 5_000);
            assert_eq!(s.limits.max_content_chars, 4_000);
            assert_eq!(s.redis.key_prefix, "chat:");
            assert_eq!(s.realtime.heartbeat_interval_ms, 30_000);
            assert_eq!(s.realtime.max_frame_bytes, 65_536);
            assert_eq!(s.realtime.messages_per_second, 10);
            assert_eq!(s.realtime.message_burst, 20);
            assert_eq!(s.realtime.max_sessions_per_user, 10);
            assert_eq!(s.log.format, LogFormat::Pretty);
            assert_eq!(
                s.database_target().unwrap(),
                DatabaseTarget::Sqlite(PathBuf::from("./data/chat.db"))
            );
            Ok(())
        });
    }

    #[test]
    fn the_shipped_default_toml_states_the_built_in_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
        let shipped: Settings = Figment::new()
            .merge(Toml::file_exact(file))
            .extract()
            .unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{:?}", Settings::default()));
    }

    #[test]
    fn env_overrides_local_toml_which_overrides_default_toml_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[http]\naddr = \"0.0.0.0:1000\"\nmax_body_bytes = 1000\n\
                 [limits]\nmax_page_size = 10\nmax_content_chars = 10\n",
            )?;
            jail.create_file(
                "config/local.toml",
                "[http]\nmax_body_bytes = 2000\n[limits]\nmax_page_size = 20\n",
            )?;
            jail.set_env("CHAT_LIMITS__MAX_PAGE_SIZE", "30");
            let s = load_in(jail);
            assert_eq!(
                s.http.addr,
                "0.0.0.0:1000".parse().unwrap(),
                "from default.toml"
            );
            assert_eq!(s.http.max_body_bytes, 2000, "local.toml beats default.toml");
            assert_eq!(s.limits.max_page_size, 30, "env beats both files");
            assert_eq!(
                s.limits.max_content_chars, 10,
                "untouched keys keep the file value"
            );
            assert_eq!(
                s.limits.max_group_members, 1000,
                "absent keys keep the default"
            );
            Ok(())
        });
    }

    #[test]
    fn allowed_origins_come_from_a_list_or_a_comma_separated_variable() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[http]\nallowed_origins = [\"https://a.example\"]\n",
            )?;
            assert_eq!(load_in(jail).http.allowed_origins, ["https://a.example"]);
            jail.set_env(
                "CHAT_HTTP__ALLOWED_ORIGINS",
                "https://b.example, http://localhost:3000",
            );
            assert_eq!(
                load_in(jail).http.allowed_origins,
                ["https://b.example", "http://localhost:3000"]
            );
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_come_from_a_comma_separated_variable_and_bad_ones_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("CHAT_HTTP__TRUST_FORWARDED_FOR", "true");
            jail.set_env(
                "CHAT_HTTP__TRUSTED_PROXIES",
                "127.0.0.1, 10.0.0.0/8,fd00::/8",
            );
            let http = load_in(jail).http;
            assert!(http.trust_forwarded_for);
            assert_eq!(
                http.trusted_proxies,
                ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
            );
            assert_eq!(http.trusted_proxy_ranges().len(), 3);
            jail.set_env("CHAT_HTTP__TRUSTED_PROXIES", "10.0.0.0/8,nginx");
            let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
            assert!(
                err.to_string().contains("http.trusted_proxies")
                    && err.to_string().contains("nginx"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn an_allowed_origin_that_is_not_an_origin_is_refused_at_load() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "CHAT_HTTP__ALLOWED_ORIGINS",
                "https://a.example, app.example.com",
            );
            let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("http.allowed_origins"), "{text}");
            assert!(text.contains("app.example.com"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "CHAT_AUTH__JWT_SECRET",
                "super-secret-signing-key-0123456789",
            );
            jail.set_env("CHAT_DATABASE__URL", "postgres://chat:hunter2@db/chat");
            jail.set_env("CHAT_REDIS__URL", "redis://:hunter3@cache");
            let s = load_in(jail);
            let printed = format!("{s:?} {s:#?}");
            for secret in ["super-secret", "hunter2", "hunter3"] {
                assert!(!printed.contains(secret), "{secret} leaked: {printed}");
            }
            assert!(printed.contains("<redacted>"));
            let jwt = s.auth.jwt_secret.as_ref().unwrap();
            assert_eq!(jwt.expose(), "super-secret-signing-key-0123456789");
            assert_eq!(jwt.to_string(), "<redacted>");
            Ok(())
        });
    }

    #[test]
    fn an_all_digit_secret_from_the_environment_is_kept_as_text() {
        Jail::expect_with(|jail| {
            jail.set_env("CHAT_AUTH__JWT_SECRET", "12345678901234567890123456789012");
            let s = load_in(jail);
            assert_eq!(
                s.auth.jwt_secret.unwrap().expose(),
                "12345678901234567890123456789012"
            );
            Ok(())
        });
    }

    #[test]
    fn the_database_url_selects_the_store() {
        let mut s = Settings::default();
        for (url, expected) in [
            (
                "sqlite:///tmp/x.db",
                DatabaseTarget::Sqlite("/tmp/x.db".into()),
            ),
            ("sqlite:rel/x.db", DatabaseTarget::Sqlite("rel/x.db".into())),
            (
                "postgres://u:p@h/db",
                DatabaseTarget::Postgres(Secret::new("postgres://u:p@h/db")),
            ),
            (
                "postgresql://h/db",
                DatabaseTarget::Postgres(Secret::new("postgresql://h/db")),
            ),
        ] {
            s.database.url = Some(Secret::new(url));
            assert_eq!(s.database_target().unwrap(), expected, "{url}");
        }
        s.database.url = Some(Secret::new("mysql://u:pw@h/db"));
        let err = s.database_target().unwrap_err().to_string();
        assert!(err.contains("database.url") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file("config/default.toml", "[http]\nmax_body_bytes = \"lots\"\n")?;
            let err = Settings::load_from(&jail.directory().join("config"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("max_body_bytes"), "{err}");
            Ok(())
        });
    }
}
