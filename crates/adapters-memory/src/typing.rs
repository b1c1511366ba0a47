//! In-process typing leases, indexed by deadline so expiry scans only what is due.

use crate::lock;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::realtime::{RealtimeError, TypingStore};
use domain::{ConversationId, UserId};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Typing leases of every node sharing this value (clones share it).
#[derive(Clone, Default)]
pub struct MemoryTyping {
    state: Arc<Mutex<TypingState>>,
}

#[derive(Default)]
struct TypingState {
    deadlines: HashMap<(ConversationId, UserId), DateTime<Utc>>,
    /// The same leases ordered by deadline.
    due: BTreeSet<(DateTime<Utc>, ConversationId, UserId)>,
}

impl MemoryTyping {
    /// No leases.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl TypingStore for MemoryTyping {
    async fn start_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, RealtimeError> {
        let deadline = chrono::Duration::from_std(ttl)
            .ok()
            .and_then(|ttl| now.checked_add_signed(ttl))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut state = lock(&self.state);
        let previous = state.deadlines.insert((conversation, user), deadline);
        if let Some(previous) = previous {
            state.due.remove(&(previous, conversation, user));
        }
        state.due.insert((deadline, conversation, user));
        Ok(previous.is_none_or(|previous| previous <= now))
    }

    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool, RealtimeError> {
        let mut state = lock(&self.state);
        // A lapsed lease nobody took yet still counts: its end has not been announced.
        match state.deadlines.remove(&(conversation, user)) {
            Some(deadline) => {
                state.due.remove(&(deadline, conversation, user));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn take_expired(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ConversationId, UserId)>, RealtimeError> {
        let mut state = lock(&self.state);
        let mut taken = Vec::new();
        while let Some(&(deadline, conversation, user)) = state.due.first() {
            if deadline > now {
                break;
            }
            state.due.pop_first();
            state.deadlines.remove(&(conversation, user));
            taken.push((conversation, user));
        }
        Ok(taken)
    }
}
