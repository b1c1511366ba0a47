//! `[http]`: the listener and what requests may look like.

use super::list_or_comma_separated;
use serde::Deserialize;
use std::net::SocketAddr;

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
