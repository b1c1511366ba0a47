//! In-process presence: per-(user, node) session counts under per-node leases.

use crate::lock;
use async_trait::async_trait;
use domain::realtime::{NodeId, OpenSessionError, PresenceStore, RealtimeError, SessionCounts};
use domain::UserId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Presence of every node sharing this value (clones share it). A node must hold a live
/// lease ([`PresenceStore::renew_lease`]) for its sessions to count.
#[derive(Clone, Default)]
pub struct MemoryPresence {
    state: Arc<Mutex<PresenceState>>,
}

#[derive(Default)]
struct PresenceState {
    /// Each known node's lease deadline.
    leases: HashMap<NodeId, Instant>,
    /// Per user, per node: sessions and away sessions there.
    sessions: HashMap<UserId, HashMap<NodeId, SessionCounts>>,
    /// The users with sessions on each node, so a node's removal touches only them.
    node_users: HashMap<NodeId, HashSet<UserId>>,
}

impl MemoryPresence {
    /// Empty presence.
    pub fn new() -> Self {
        Self::default()
    }
}

impl PresenceState {
    fn is_live(&self, node: &NodeId, now: Instant) -> bool {
        self.leases
            .get(node)
            .is_some_and(|deadline| now < *deadline)
    }

    fn live_counts(&self, user: UserId, now: Instant) -> SessionCounts {
        let mut total = SessionCounts::default();
        for (node, counts) in self.sessions.get(&user).into_iter().flatten() {
            if self.is_live(node, now) {
                total.sessions += counts.sessions;
                total.away += counts.away;
            }
        }
        total
    }

    /// Applies `change` to the counts of `user` on `node`, dropping entries that reach zero.
    fn update(&mut self, user: UserId, node: &NodeId, change: impl FnOnce(&mut SessionCounts)) {
        let per_node = self.sessions.entry(user).or_default();
        let counts = per_node.entry(node.clone()).or_default();
        change(counts);
        counts.away = counts.away.min(counts.sessions);
        if counts.sessions == 0 {
            per_node.remove(node);
            if per_node.is_empty() {
                self.sessions.remove(&user);
            }
            if let Some(users) = self.node_users.get_mut(node) {
                users.remove(&user);
                if users.is_empty() {
                    self.node_users.remove(node);
                }
            }
        } else {
            self.node_users
                .entry(node.clone())
                .or_default()
                .insert(user);
        }
    }

    /// Forgets everything `node` registered; returns the users who had sessions there.
    fn forget(&mut self, node: &NodeId) -> HashSet<UserId> {
        self.leases.remove(node);
        let users = self.node_users.remove(node).unwrap_or_default();
        for user in &users {
            if let Some(per_node) = self.sessions.get_mut(user) {
                per_node.remove(node);
                if per_node.is_empty() {
                    self.sessions.remove(user);
                }
            }
        }
        users
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn open_session(
        &self,
        user: UserId,
        node: &NodeId,
        max_sessions: u32,
    ) -> Result<SessionCounts, OpenSessionError> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if state.live_counts(user, now).sessions >= max_sessions {
            return Err(OpenSessionError::TooManySessions);
        }
        state.update(user, node, |c| c.sessions += 1);
        Ok(state.live_counts(user, now))
    }

    async fn close_session(
        &self,
        user: UserId,
        node: &NodeId,
        was_away: bool,
    ) -> Result<SessionCounts, RealtimeError> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.update(user, node, |c| {
            c.sessions = c.sessions.saturating_sub(1);
            if was_away {
                c.away = c.away.saturating_sub(1);
            }
        });
        Ok(state.live_counts(user, now))
    }

    async fn set_away(
        &self,
        user: UserId,
        node: &NodeId,
        away: bool,
    ) -> Result<SessionCounts, RealtimeError> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.update(user, node, |c| {
            c.away = if away {
                c.away.saturating_add(1)
            } else {
                c.away.saturating_sub(1)
            };
        });
        Ok(state.live_counts(user, now))
    }

    async fn counts(&self, users: &[UserId]) -> Result<Vec<SessionCounts>, RealtimeError> {
        let now = Instant::now();
        let state = lock(&self.state);
        Ok(users.iter().map(|u| state.live_counts(*u, now)).collect())
    }

    async fn renew_lease(&self, node: &NodeId, ttl: Duration) -> Result<bool, RealtimeError> {
        let now = Instant::now();
        let deadline = now
            .checked_add(ttl)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        let mut state = lock(&self.state);
        let was_live = state.is_live(node, now);
        state.leases.insert(node.clone(), deadline);
        Ok(was_live)
    }

    async fn restore_node(
        &self,
        node: &NodeId,
        sessions: &[(UserId, SessionCounts)],
    ) -> Result<Vec<UserId>, RealtimeError> {
        let mut state = lock(&self.state);
        let mut changed = Vec::new();
        let listed: HashSet<UserId> = sessions.iter().map(|(user, _)| *user).collect();
        let stale: Vec<UserId> = state
            .node_users
            .get(node)
            .into_iter()
            .flatten()
            .filter(|user| !listed.contains(user))
            .copied()
            .collect();
        for user in stale {
            state.update(user, node, |c| *c = SessionCounts::default());
            changed.push(user);
        }
        for (user, wanted) in sessions {
            let wanted = SessionCounts {
                sessions: wanted.sessions,
                away: wanted.away.min(wanted.sessions),
            };
            let before = state
                .sessions
                .get(user)
                .and_then(|per_node| per_node.get(node))
                .copied()
                .unwrap_or_default();
            if before != wanted {
                state.update(*user, node, |c| *c = wanted);
                changed.push(*user);
            }
        }
        Ok(changed)
    }

    async fn reap_dead_nodes(&self, this_node: &NodeId) -> Result<Vec<UserId>, RealtimeError> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        // Nodes with sessions but no lease at all count as dead too: nothing would ever
        // make their sessions count again.
        let dead: Vec<NodeId> = state
            .leases
            .keys()
            .chain(state.node_users.keys())
            .filter(|n| *n != this_node && !state.is_live(n, now))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut users = HashSet::new();
        for node in dead {
            users.extend(state.forget(&node));
        }
        Ok(users.into_iter().collect())
    }

    async fn remove_node(&self, node: &NodeId) -> Result<(), RealtimeError> {
        lock(&self.state).forget(node);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_lapses_when_paused_time_passes_its_ttl_and_not_before() {
        let presence = MemoryPresence::new();
        let (node, reaper) = (NodeId("dying".into()), NodeId("reaper".into()));
        let user = UserId::new();
        presence
            .renew_lease(&node, Duration::from_secs(30))
            .await
            .unwrap();
        presence.open_session(user, &node, 10).await.unwrap();

        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(presence.counts(&[user]).await.unwrap()[0].sessions, 1);
        assert_eq!(presence.reap_dead_nodes(&reaper).await.unwrap(), vec![]);

        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(presence.counts(&[user]).await.unwrap()[0].sessions, 0);
        assert_eq!(presence.reap_dead_nodes(&reaper).await.unwrap(), vec![user]);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_opened_before_any_lease_count_once_the_lease_exists() {
        let presence = MemoryPresence::new();
        let node = NodeId("late".into());
        let user = UserId::new();
        presence.open_session(user, &node, 10).await.unwrap();
        assert_eq!(presence.counts(&[user]).await.unwrap()[0].sessions, 0);

        presence
            .renew_lease(&node, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(presence.counts(&[user]).await.unwrap()[0].sessions, 1);
    }
}
