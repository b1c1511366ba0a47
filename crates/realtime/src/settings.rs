//! `[realtime]`: WebSocket sessions, fan-out, presence and typing ([`RealtimeSettings`],
//! read by the server's configuration as its `realtime` section), and what every section of
//! that configuration reads with: [`duration`] (durations written with a unit) and
//! [`nonzero`] (non-zero counts from literals).

pub mod duration;

use serde::Deserialize;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// `[realtime]`: WebSocket sessions, fan-out, presence and typing. Every timing and limit
/// of a session is here, so tests can run with short timings and high limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RealtimeSettings {
    /// The server pings every session this often; a session silent for two intervals is closed.
    #[serde(deserialize_with = "duration::deserialize")]
    pub heartbeat_interval: Duration,
    /// Frames a session may have waiting for its client. More than this for longer than
    /// `slow_consumer_grace` (or four times this at any moment) closes it with 4009.
    pub outbound_queue_frames: NonZeroUsize,
    /// How long a session may have more than `outbound_queue_frames` waiting (a burst it is
    /// draining) before it is closed as a slow consumer. 0: at once.
    #[serde(deserialize_with = "duration::deserialize")]
    pub slow_consumer_grace: Duration,
    /// Messages per `sync` page (and per gap fetch).
    pub sync_page_size: NonZeroU32,
    /// After `hello`, live messages wait up to this long for the client's first frame (its
    /// `sync`), so a replay and the live stream reach the client in seq order. 0: no wait.
    #[serde(deserialize_with = "duration::deserialize")]
    pub sync_hold: Duration,
    /// A hole in a session's live feed that its own unacknowledged sends cannot explain is
    /// fetched from storage only if it is still open after this long: with Redis, another
    /// sender's message committed in the same batch as ours may reach the session over
    /// pub/sub just after our ack. 0: fetched at once.
    #[serde(deserialize_with = "duration::deserialize")]
    pub gap_grace: Duration,
    /// Largest client frame, in bytes; a larger one closes the session with 1009.
    pub max_frame_bytes: NonZeroUsize,
    /// Lines a node logs per minute about clients' protocol errors (1002, 1007, 1009,
    /// refused origins, upgrades cut short), at INFO; the rest are only counted, in the
    /// metrics and in one line a minute. 0: none logged.
    pub protocol_error_logs_per_minute: u32,
    /// Sustained messages per second per user (WebSocket and REST alike).
    pub messages_per_second: NonZeroU32,
    /// Messages a user may send at once before the per-second rate applies.
    pub message_burst: NonZeroU32,
    /// Sustained edits, deletions and reactions per second per user (WebSocket and REST).
    pub changes_per_second: NonZeroU32,
    /// Edits, deletions and reactions a user may make at once before the rate applies.
    pub change_burst: NonZeroU32,
    /// Sustained `typing` frames per second per session.
    pub typing_per_second: NonZeroU32,
    /// `typing` frames a session may send at once before the per-second rate applies.
    pub typing_burst: NonZeroU32,
    /// Sustained WebSocket upgrades per second per client IP.
    pub upgrades_per_second: NonZeroU32,
    /// Upgrades one IP may make at once before the per-second rate applies.
    pub upgrade_burst: NonZeroU32,
    /// Most messages committed in one transaction by the group-commit batcher.
    pub commit_max_batch: NonZeroUsize,
    /// Most watermark updates written in one receipt flush.
    pub receipt_max_batch: NonZeroUsize,
    /// How long the receipt writer gathers marks before each flush (fewer, larger writes
    /// and publishes; receipts reach senders this much later). 0: as soon as the previous
    /// flush ends.
    #[serde(deserialize_with = "duration::deserialize")]
    pub receipt_linger: Duration,
    /// How long a closing session waits for its close frame to reach a slow client.
    #[serde(deserialize_with = "duration::deserialize")]
    pub close_grace: Duration,
    /// How long a user with no live session still shows online (reconnects do not flicker).
    #[serde(deserialize_with = "duration::deserialize")]
    pub presence_grace: Duration,
    /// TTL of this node's presence lease: a node that stops renewing it is dead after this.
    #[serde(deserialize_with = "duration::deserialize")]
    pub presence_lease_ttl: Duration,
    /// A typing start without a refresh ends after this.
    #[serde(deserialize_with = "duration::deserialize")]
    pub typing_ttl: Duration,
    /// At most one forwarded typing refresh per user and conversation this often.
    #[serde(deserialize_with = "duration::deserialize")]
    pub typing_forward_throttle: Duration,
    /// Live sessions of one user across all nodes; the next one is closed with 1008.
    pub max_sessions_per_user: NonZeroU32,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            outbound_queue_frames: nonzero::usize(256),
            slow_consumer_grace: Duration::from_secs(1),
            sync_page_size: nonzero::u32(100),
            sync_hold: Duration::from_millis(500),
            gap_grace: Duration::from_millis(100),
            max_frame_bytes: nonzero::usize(64 * 1024),
            protocol_error_logs_per_minute: 10,
            messages_per_second: nonzero::u32(10),
            message_burst: nonzero::u32(20),
            changes_per_second: nonzero::u32(5),
            change_burst: nonzero::u32(20),
            typing_per_second: nonzero::u32(5),
            typing_burst: nonzero::u32(10),
            upgrades_per_second: nonzero::u32(20),
            upgrade_burst: nonzero::u32(100),
            commit_max_batch: nonzero::usize(256),
            receipt_max_batch: nonzero::usize(1024),
            receipt_linger: Duration::from_millis(10),
            close_grace: Duration::from_secs(2),
            presence_grace: Duration::from_secs(5),
            presence_lease_ttl: Duration::from_secs(15),
            typing_ttl: Duration::from_secs(5),
            typing_forward_throttle: Duration::from_secs(1),
            max_sessions_per_user: nonzero::u32(10),
        }
    }
}

/// Non-zero counts from literals: a zero becomes 1 (so no panic; the call sites pass
/// constants).
pub mod nonzero {
    use std::num::{NonZeroU32, NonZeroUsize};

    /// `n` as a [`NonZeroU32`], 0 read as 1.
    pub const fn u32(n: u32) -> NonZeroU32 {
        NonZeroU32::MIN.saturating_add(n.saturating_sub(1))
    }

    /// `n` as a [`NonZeroUsize`], 0 read as 1.
    pub const fn usize(n: usize) -> NonZeroUsize {
        NonZeroUsize::MIN.saturating_add(n.saturating_sub(1))
    }
}
