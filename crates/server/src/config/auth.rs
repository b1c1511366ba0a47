//! `[auth]`: tokens, password hashing and login throttling.

use super::{nonzero, Secret};
use serde::Deserialize;
use std::num::NonZeroU32;
use std::time::Duration;

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
    /// Access token lifetime.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub refresh_ttl: Duration,
    /// Argon2id memory cost, in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// Sustained login attempts allowed per minute, per client IP and per account.
    pub login_attempts_per_minute: NonZeroU32,
    /// Login attempts allowed at once before the per-minute rate applies.
    pub login_burst: NonZeroU32,
    /// How far in the future an access token's `iat` may lie (clock skew between nodes);
    /// beyond it the token is refused. `nbf` gets no leeway.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub iat_leeway: Duration,
    /// Sustained registrations allowed per minute per client IP (an IPv6 client counts by
    /// its /64, which one host usually holds whole).
    pub registrations_per_minute: NonZeroU32,
    /// Registrations one client IP may make at once before the per-minute rate applies.
    pub registration_burst: NonZeroU32,
    /// Password hashes (register, login) computed at once; 0 = one per CPU. Each holds
    /// `argon2_memory_kib` of memory, so this times that is the hashing memory's bound.
    pub hash_concurrency: usize,
    /// How long a register or login waits for a hashing slot before it is answered 503
    /// `unavailable` with `Retry-After`. 0: never wait.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub hash_wait_timeout: Duration,
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
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            // OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            login_attempts_per_minute: nonzero::u32(10),
            login_burst: nonzero::u32(10),
            iat_leeway: Duration::from_secs(30),
            registrations_per_minute: nonzero::u32(5),
            registration_burst: nonzero::u32(10),
            hash_concurrency: 0,
            hash_wait_timeout: Duration::from_secs(5),
        }
    }
}
