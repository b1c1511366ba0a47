//! `[data]`, `[database]` and `[redis]`: where the state lives.

use super::nonzero;
use super::Secret;
use serde::Deserialize;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

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
    pub pool_size: NonZeroU32,
    /// PostgreSQL: opening a connection may take this long, so a database that accepts and
    /// never answers becomes `unavailable` errors rather than waits.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub connect_timeout: Duration,
    /// PostgreSQL: waiting for a pooled connection (free or newly opened) may take this long.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub acquire_timeout: Duration,
    /// PostgreSQL: a statement may run this long (`statement_timeout`), and a send, receipt
    /// or sync operation this long in all before it fails as `unavailable`.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub query_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: nonzero::u32(8),
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(5),
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
    pub pool_size: NonZeroU32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: "chat:".to_owned(),
            pool_size: nonzero::u32(4),
        }
    }
}
