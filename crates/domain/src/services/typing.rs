//! Typing: a lease per (user, conversation) that lapses unless refreshed, and the rule that
//! every end of a lease is announced, so nobody stays "typing" forever, even behind a client
//! that never sends the stop.
//!
//! - A start is forwarded at once; refreshes at most once per throttle period (default 1 s)
//!   per (user, conversation), often enough that a receiver hiding the indicator after 4 s of
//!   silence keeps showing it while the other side types.
//! - A stop, a sent message or a closed session ends the lease; a lease nobody refreshed for
//!   the TTL (default 5 s) is taken by one node's [`TypingService::sweep`]. Each of these
//!   announces `is_typing: false` exactly when it ended a lease (the store's answer tells),
//!   so one lease gets one `false`, whichever way it ends and however many nodes sweep.
//!
//! Membership is the caller's business: the WebSocket session holds the live membership
//! and calls this service only for conversations the user belongs to.

use crate::ids::{ConversationId, UserId};
use crate::ports::Clock;
use crate::realtime::{Event, EventPublisher, RealtimeError, Topic, TypingStore};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Default lifetime of a typing lease without a refresh.
pub const DEFAULT_TYPING_TTL: Duration = Duration::from_secs(5);
/// Default shortest time between two forwarded refreshes of one (user, conversation).
pub const DEFAULT_TYPING_FORWARD_THROTTLE: Duration = Duration::from_secs(1);

/// Typing timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypingSettings {
    /// Lifetime of a lease without a refresh.
    pub lease_ttl: Duration,
    /// Shortest time between two forwarded refreshes of one (user, conversation).
    pub forward_throttle: Duration,
}

impl Default for TypingSettings {
    fn default() -> Self {
        Self {
            lease_ttl: DEFAULT_TYPING_TTL,
            forward_throttle: DEFAULT_TYPING_FORWARD_THROTTLE,
        }
    }
}

/// When each (conversation, user) last had `is_typing: true` forwarded from this node.
type ForwardTimes = HashMap<(ConversationId, UserId), DateTime<Utc>>;

/// Starts, refreshes and ends typing leases and announces them.
#[derive(Clone)]
pub struct TypingService {
    store: Arc<dyn TypingStore>,
    events: Arc<dyn EventPublisher>,
    clock: Arc<dyn Clock>,
    settings: TypingSettings,
    /// Node-local: the throttle only spares receivers, so each node keeping its own is
    /// enough (a user typing in one conversation from two nodes at once is rare).
    forwarded: Arc<Mutex<ForwardTimes>>,
}

impl TypingService {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn TypingStore>,
        events: Arc<dyn EventPublisher>,
        clock: Arc<dyn Clock>,
        settings: TypingSettings,
    ) -> Self {
        Self {
            store,
            events,
            clock,
            settings,
            forwarded: Arc::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> TypingSettings {
        self.settings
    }

    /// A `typing` frame of `user` in `conversation` (a member: the caller checked).
    /// `is_typing: true` starts or refreshes the lease and is forwarded if it started one or
    /// the last forward is a throttle period old; `false` ends the lease and is forwarded if
    /// one was live. `true` when an event was published.
    pub async fn typing(
        &self,
        conversation: ConversationId,
        user: UserId,
        is_typing: bool,
    ) -> Result<bool, RealtimeError> {
        if !is_typing {
            return self.end(conversation, user).await;
        }
        let now = self.clock.now();
        let started = self
            .store
            .start_typing(conversation, user, now, self.settings.lease_ttl)
            .await?;
        let throttle = delta(self.settings.forward_throttle);
        let forward = {
            let mut forwarded = self.forwarded();
            let key = (conversation, user);
            let due = started
                || forwarded
                    .get(&key)
                    .is_none_or(|last| now - *last >= throttle);
            if due {
                forwarded.insert(key, now);
            }
            due
        };
        if forward {
            self.publish(conversation, user, true).await?;
        }
        Ok(forward)
    }

    /// `user` sent a message in `conversation`: the message says more than the indicator,
    /// so the lease ends (announced if it was live). `true` when an event was published.
    pub async fn message_sent(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool, RealtimeError> {
        self.end(conversation, user).await
    }

    /// A session of `user` closed: ends their leases in `conversations` (those the session
    /// served), announcing each that was live. Every conversation is tried; the first
    /// failure is returned. Otherwise, how many were announced.
    pub async fn session_closed(
        &self,
        user: UserId,
        conversations: &[ConversationId],
    ) -> Result<usize, RealtimeError> {
        let mut announced = 0;
        let mut first_error = None;
        for conversation in conversations {
            match self.end(*conversation, user).await {
                Ok(true) => announced += 1,
                Ok(false) => {}
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(announced), Err)
    }

    /// Takes every lease that lapsed (this node's share, when several sweep) and announces
    /// `is_typing: false` for each. Returns how many ended; on a failed publication the rest
    /// are still announced and the first failure returned.
    pub async fn sweep(&self) -> Result<usize, RealtimeError> {
        let now = self.clock.now();
        let expired = self.store.take_expired(now).await?;
        {
            let mut forwarded = self.forwarded();
            for key in &expired {
                forwarded.remove(key);
            }
            // Entries of leases another node took, or that ended elsewhere: once this old,
            // their lease lapsed (the last refresh came within a throttle of the forward), so
            // dropping them forwards nothing twice.
            let stale = delta(self.settings.lease_ttl)
                .checked_add(&delta(self.settings.forward_throttle))
                .unwrap_or(TimeDelta::MAX);
            forwarded.retain(|_, last| now - *last < stale);
        }
        let mut first_error = None;
        for (conversation, user) in &expired {
            if let Err(err) = self.publish(*conversation, *user, false).await {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(expired.len()), Err)
    }

    /// Ends the lease, announcing `false` if it was live.
    async fn end(&self, conversation: ConversationId, user: UserId) -> Result<bool, RealtimeError> {
        let ended = self.store.stop_typing(conversation, user).await?;
        self.forwarded().remove(&(conversation, user));
        if ended {
            self.publish(conversation, user, false).await?;
        }
        Ok(ended)
    }

    async fn publish(
        &self,
        conversation: ConversationId,
        user: UserId,
        is_typing: bool,
    ) -> Result<(), RealtimeError> {
        self.events
            .publish(
                Topic::Conversation(conversation),
                Event::Typing {
                    conversation_id: conversation,
                    user_id: user,
                    is_typing,
                },
            )
            .await
    }

    fn forwarded(&self) -> std::sync::MutexGuard<'_, ForwardTimes> {
        // The map holds only throttle times: what a panicking holder left is still usable.
        self.forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `duration` as a chrono delta, saturating (settings are small; this never saturates).
fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
