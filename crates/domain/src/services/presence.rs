//! Presence: a user's status aggregated over every session on every node, announced only to
//! the people who share a conversation with them, with a grace period before `offline`.
//!
//! The store counts sessions per (user, node) under per-node leases; this service turns the
//! counts before and after each change into [`Event::Presence`] announcements:
//! - online when the first session opens (or a session that is not away joins away ones);
//! - away when every live session says so, online again when one comes back;
//! - offline never at once: the last session's close only asks for a check after the grace
//!   period ([`PresenceService::confirm_offline`]), which announces offline (with
//!   `last_seen`) only if no session exists anywhere by then, so reconnects do not flicker;
//! - a node that dies stops renewing its lease; a surviving node reaps it and confirms each
//!   of its users offline ([`PresenceService::reap_dead_nodes`]).

use super::errors::ChatError;
use crate::error::StorageError;
use crate::ids::{ConversationId, UserId};
use crate::ports::{Clock, ConversationStore, UserStore};
use crate::realtime::{
    Event, EventPublisher, NodeId, OpenSessionError, PresenceStatus, PresenceStore, RealtimeError,
    SessionCounts, Topic,
};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Default most live sessions of one user across all nodes.
pub const DEFAULT_MAX_SESSIONS_PER_USER: u32 = 10;
/// Default time without any session before a user is announced offline.
pub const DEFAULT_OFFLINE_GRACE: Duration = Duration::from_secs(5);
/// Default lifetime of a node's lease: a node silent this long is dead.
pub const DEFAULT_PRESENCE_LEASE_TTL: Duration = Duration::from_secs(15);

/// How presence behaves on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceSettings {
    /// This node (unique per process run).
    pub node: NodeId,
    /// Most live sessions of one user across all nodes; the next one is refused.
    pub max_sessions_per_user: u32,
    /// Time without any session before the user is announced offline.
    pub offline_grace: Duration,
    /// Lifetime of this node's lease; renew it well within (every third of it).
    pub lease_ttl: Duration,
}

impl PresenceSettings {
    /// The defaults for `node`.
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            offline_grace: DEFAULT_OFFLINE_GRACE,
            lease_ttl: DEFAULT_PRESENCE_LEASE_TTL,
        }
    }
}

/// One participant's presence as `GET /conversations/{id}/presence` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantPresence {
    /// Who.
    pub user_id: UserId,
    /// Aggregate status now.
    pub status: PresenceStatus,
    /// When last announced offline, if ever.
    pub last_seen: Option<DateTime<Utc>>,
}

/// What [`PresenceService::renew_lease`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRenewal {
    /// The lease was live and every change of this node had been applied: nothing to do.
    Kept,
    /// The node's registration was lost (the lease had lapsed or was reaped, or the store
    /// came back empty) or may have drifted (a change whose answer never came), and was
    /// written again from this node's own sessions.
    Restored {
        /// Users with sessions on this node, registered again.
        users: usize,
        /// Users whose status was announced again (everyone's when the registration was
        /// lost: others may have seen them offline).
        announced: usize,
    },
}

/// The store may be out of step with this node: a change failed or timed out (it may or
/// may not have been applied).
const DRIFTED: u8 = 1;
/// Others may have seen a wrong status of this node's users: announce all of them again.
const LOST: u8 = 2;

/// This node's own sessions per user: the truth its registration in the store is written
/// again from when the store lost it (a Redis restarted empty, a lease reaped during an
/// outage) or may have drifted from it (a change that failed half-way).
#[derive(Default)]
struct Ledger {
    /// Changes take it shared, around their store call and the ledger update; a restore
    /// takes it exclusively, so what it writes is exactly what the node has.
    gate: tokio::sync::RwLock<()>,
    counts: Mutex<HashMap<UserId, SessionCounts>>,
    /// Users whose last close here failed: after a restore they get the offline check
    /// the failed close could not schedule.
    orphans: Mutex<HashSet<UserId>>,
    /// [`DRIFTED`] | [`LOST`].
    needs: AtomicU8,
}

impl Ledger {
    fn change(&self, user: UserId, sessions: i64, away: i64) {
        let mut counts = lock(&self.counts);
        let entry = counts.entry(user).or_default();
        let shift = |n: u32, by: i64| u32::try_from((i64::from(n) + by).max(0)).unwrap_or(u32::MAX);
        entry.sessions = shift(entry.sessions, sessions);
        entry.away = shift(entry.away, away).min(entry.sessions);
        if entry.sessions == 0 {
            counts.remove(&user);
        }
    }

    fn drifted(&self) {
        self.needs.fetch_or(DRIFTED, Ordering::AcqRel);
    }

    fn snapshot(&self) -> Vec<(UserId, SessionCounts)> {
        lock(&self.counts).iter().map(|(u, c)| (*u, *c)).collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps: what a panicking holder left is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Users per `counts` call when announcing again after a restore.
const REANNOUNCE_CHUNK: usize = 200;

/// Counts sessions, announces presence changes, and cleans up after dead nodes.
#[derive(Clone)]
pub struct PresenceService {
    store: Arc<dyn PresenceStore>,
    events: Arc<dyn EventPublisher>,
    conversations: Arc<dyn ConversationStore>,
    users: Arc<dyn UserStore>,
    clock: Arc<dyn Clock>,
    settings: PresenceSettings,
    ledger: Arc<Ledger>,
}

impl PresenceService {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn PresenceStore>,
        events: Arc<dyn EventPublisher>,
        conversations: Arc<dyn ConversationStore>,
        users: Arc<dyn UserStore>,
        clock: Arc<dyn Clock>,
        settings: PresenceSettings,
    ) -> Self {
        Self {
            store,
            events,
            conversations,
            users,
            clock,
            settings,
            ledger: Arc::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &PresenceSettings {
        &self.settings
    }

    /// Registers a new session of `user` on this node, refusing it with
    /// [`OpenSessionError::TooManySessions`] when the user already has the maximum on live
    /// nodes. Announces `online` when the user was offline (or in the grace period) or every
    /// other session was away; a reconnect within the grace period announces `online` again,
    /// which receivers already show (they never saw `offline`). If the announcement fails the
    /// session is uncounted again and the error returned, so a refused session never holds a
    /// slot.
    ///
    /// The node's lease must have been renewed ([`Self::renew_lease`]) first.
    pub async fn session_opened(&self, user: UserId) -> Result<SessionCounts, OpenSessionError> {
        self.open(user, None).await
    }

    /// [`Self::session_opened`] for a caller that has just read the user's conversations
    /// (`ConversationStore::conversation_ids`): an announcement goes to those, without
    /// reading them again.
    pub async fn session_opened_in(
        &self,
        user: UserId,
        conversations: &[ConversationId],
    ) -> Result<SessionCounts, OpenSessionError> {
        self.open(user, Some(conversations)).await
    }

    async fn open(
        &self,
        user: UserId,
        conversations: Option<&[ConversationId]>,
    ) -> Result<SessionCounts, OpenSessionError> {
        let _gate = self.ledger.gate.read().await;
        let after = match self
            .store
            .open_session(
                user,
                &self.settings.node,
                self.settings.max_sessions_per_user,
            )
            .await
        {
            Ok(after) => after,
            Err(OpenSessionError::Unavailable(err)) => {
                // A timed-out open may still have been counted.
                self.ledger.drifted();
                return Err(err.into());
            }
            Err(refused) => return Err(refused),
        };
        self.ledger.change(user, 1, 0);
        let before = SessionCounts {
            sessions: after.sessions.saturating_sub(1),
            away: after.away,
        };
        if let Err(err) = self
            .announce_change(user, before, after, conversations)
            .await
        {
            self.ledger.change(user, -1, 0);
            // Best effort: the error being returned is the one the caller must see.
            if self
                .store
                .close_session(user, &self.settings.node, false)
                .await
                .is_err()
            {
                self.ledger.drifted();
            }
            return Err(err.into());
        }
        Ok(after)
    }

    /// Unregisters a session of `user` on this node (`was_away`: whether it had said it was
    /// away). Announces `away` if the only active session closed while away ones remain.
    /// `true` when it was the user's last session anywhere: the caller schedules
    /// [`Self::confirm_offline`] after the grace period.
    pub async fn session_closed(
        &self,
        user: UserId,
        was_away: bool,
    ) -> Result<bool, RealtimeError> {
        let _gate = self.ledger.gate.read().await;
        // The session is gone whatever the store answers.
        self.ledger.change(user, -1, -i64::from(was_away));
        let after = match self
            .store
            .close_session(user, &self.settings.node, was_away)
            .await
        {
            Ok(after) => after,
            Err(err) => {
                self.ledger.drifted();
                lock(&self.ledger.orphans).insert(user);
                return Err(err);
            }
        };
        if after.sessions == 0 {
            return Ok(true);
        }
        let before = SessionCounts {
            sessions: after.sessions + 1,
            away: after.away + u32::from(was_away),
        };
        self.announce_change(user, before, after, None).await?;
        Ok(false)
    }

    /// One session of `user` on this node said it is away (`true`) or back (`false`). Call
    /// only when that session's own flag changes. Announces the aggregate when it changes.
    pub async fn set_away(&self, user: UserId, away: bool) -> Result<SessionCounts, RealtimeError> {
        let _gate = self.ledger.gate.read().await;
        let after = match self.store.set_away(user, &self.settings.node, away).await {
            Ok(after) => after,
            Err(err) => {
                // The caller keeps the session's flag as it was; the store may not have.
                self.ledger.drifted();
                return Err(err);
            }
        };
        self.ledger.change(user, 0, if away { 1 } else { -1 });
        let before = SessionCounts {
            sessions: after.sessions,
            away: if away {
                after.away.saturating_sub(1)
            } else {
                after.away + 1
            },
        };
        self.announce_change(user, before, after, None).await?;
        Ok(after)
    }

    /// After the grace period: if `user` has no live session on any node, records
    /// `last_seen_at` and announces `offline` with it; otherwise does nothing (the user
    /// reconnected, so nobody saw them leave). `true` when announced.
    pub async fn confirm_offline(&self, user: UserId) -> Result<bool, RealtimeError> {
        let counts = self.store.counts(&[user]).await?;
        if counts.first().copied().unwrap_or_default().sessions > 0 {
            return Ok(false);
        }
        let last_seen = self.clock.now();
        self.users
            .touch_last_seen(user, last_seen)
            .await
            .map_err(RealtimeError::new)?;
        self.announce(user, PresenceStatus::Offline, Some(last_seen), None)
            .await?;
        Ok(true)
    }

    /// Renews this node's lease for the configured TTL. Before the first session and then
    /// well within the TTL, or other nodes reap this one's sessions.
    ///
    /// When the lease had lapsed (reaped during an outage, or the store came back empty) or
    /// a change of this node failed meanwhile, the node's registration is written again from
    /// its own sessions ([`PresenceStore::restore_node`]), with session changes held for
    /// the few round trips that takes, and the status of the users concerned is announced
    /// again: every user of this node after a lost lease (others may have seen them
    /// offline, or asked and been told so), else those whose counts were wrong. A user whose
    /// last close failed gets the offline check it missed. What fails is tried again at
    /// the next renewal; a renewal that failed makes the next one rewrite the counts too.
    pub async fn renew_lease(&self) -> Result<LeaseRenewal, RealtimeError> {
        let live = match self
            .store
            .renew_lease(&self.settings.node, self.settings.lease_ttl)
            .await
        {
            Ok(live) => live,
            Err(err) => {
                // A renewal that timed out may still be applied later, after a reaper took
                // this node's counts: the next renewal would then find a live lease over
                // nothing. So the next one rewrites the counts whatever it finds.
                self.ledger.drifted();
                return Err(err);
            }
        };
        let needs = self.ledger.needs.swap(0, Ordering::AcqRel) | if live { 0 } else { LOST };
        if needs == 0 {
            return Ok(LeaseRenewal::Kept);
        }
        let (sessions, changed) = {
            let _gate = self.ledger.gate.write().await;
            let sessions = self.ledger.snapshot();
            match self
                .store
                .restore_node(&self.settings.node, &sessions)
                .await
            {
                Ok(changed) => (sessions, changed),
                Err(err) => {
                    self.ledger.needs.fetch_or(needs, Ordering::AcqRel);
                    return Err(err);
                }
            }
        };
        let mut users: Vec<UserId> = changed;
        let orphans: Vec<UserId> = lock(&self.ledger.orphans).drain().collect();
        users.extend(&orphans);
        if needs & LOST != 0 {
            users.extend(sessions.iter().map(|(user, _)| *user));
        }
        users.sort_unstable();
        users.dedup();
        let announced = users.len();
        if let Err(err) = self.reannounce(&users).await {
            // Announce everyone again next time (and check the orphans again): which of
            // these went out is unknown.
            lock(&self.ledger.orphans).extend(orphans);
            self.ledger.needs.fetch_or(LOST, Ordering::AcqRel);
            return Err(err);
        }
        Ok(LeaseRenewal::Restored {
            users: sessions.len(),
            announced,
        })
    }

    /// Announces the current status of each of `users` over every node: online or away,
    /// or offline (with `last_seen`) for those without a live session anywhere.
    async fn reannounce(&self, users: &[UserId]) -> Result<(), RealtimeError> {
        let mut first_error = None;
        for chunk in users.chunks(REANNOUNCE_CHUNK) {
            let counts = self.store.counts(chunk).await?;
            for (user, counts) in chunk.iter().zip(counts) {
                let outcome = if counts.sessions == 0 {
                    self.confirm_offline(*user).await.map(|_| ())
                } else {
                    self.announce(*user, counts.status(), None, None).await
                };
                if let Err(err) = outcome {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the sessions of nodes whose lease lapsed and confirms each of their users
    /// offline (at once: the node died at least a lease ago, longer than any grace). Returns
    /// how many were announced offline. Every user is tried; the first failure is returned.
    pub async fn reap_dead_nodes(&self) -> Result<usize, RealtimeError> {
        let users = self.store.reap_dead_nodes(&self.settings.node).await?;
        let mut announced = 0;
        let mut first_error = None;
        for user in users {
            match self.confirm_offline(user).await {
                Ok(true) => announced += 1,
                Ok(false) => {}
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(announced), Err)
    }

    /// Drops every session this node registered (graceful shutdown). Users whose last
    /// session was here are then offline once their grace checks run.
    pub async fn remove_node(&self) -> Result<(), RealtimeError> {
        self.store.remove_node(&self.settings.node).await
    }

    /// Aggregate statuses of `users`, in input order (no grace: a user in the grace period
    /// is offline here). For lists that show presence dots.
    pub async fn statuses(&self, users: &[UserId]) -> Result<Vec<PresenceStatus>, RealtimeError> {
        let counts = self.store.counts(users).await?;
        Ok(counts.into_iter().map(SessionCounts::status).collect())
    }

    /// The presence of every member of `conversation` (oldest member first), for a viewer
    /// who is a member: [`ChatError::NotParticipant`] otherwise, also for an unknown id.
    pub async fn presence_of(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> Result<Vec<ParticipantPresence>, ChatError> {
        let details = self
            .conversations
            .conversation(conversation)
            .await?
            .ok_or(ChatError::NotParticipant)?;
        if details.participant(viewer).is_none() {
            return Err(ChatError::NotParticipant);
        }
        let users: Vec<UserId> = details
            .participants
            .iter()
            .map(|p| p.participant.user_id)
            .collect();
        let statuses = self.statuses(&users).await.map_err(StorageError::new)?;
        if statuses.len() != users.len() {
            return Err(StorageError::msg(
                "presence store answered a different number of counts than users asked",
            )
            .into());
        }
        Ok(details
            .participants
            .iter()
            .zip(statuses)
            .map(|(p, status)| ParticipantPresence {
                user_id: p.participant.user_id,
                status,
                last_seen: p.last_seen_at,
            })
            .collect())
    }

    /// Announces `after`'s status if it differs from `before`'s. Offline is never announced
    /// here: only [`Self::confirm_offline`] does, after the grace.
    async fn announce_change(
        &self,
        user: UserId,
        before: SessionCounts,
        after: SessionCounts,
        conversations: Option<&[ConversationId]>,
    ) -> Result<(), RealtimeError> {
        let status = after.status();
        if status == before.status() || status == PresenceStatus::Offline {
            return Ok(());
        }
        self.announce(user, status, None, conversations).await
    }

    /// Publishes the status on every conversation of `user` (`conversations` when the
    /// caller knows them, else read now), in one `publish_all`: presence is for those who
    /// share one with them, nobody else.
    async fn announce(
        &self,
        user: UserId,
        status: PresenceStatus,
        last_seen: Option<DateTime<Utc>>,
        conversations: Option<&[ConversationId]>,
    ) -> Result<(), RealtimeError> {
        let read;
        let conversations = match conversations {
            Some(known) => known,
            None => {
                read = self
                    .conversations
                    .conversation_ids(user)
                    .await
                    .map_err(RealtimeError::new)?;
                &read
            }
        };
        if conversations.is_empty() {
            return Ok(());
        }
        let event = Event::Presence {
            user_id: user,
            status,
            last_seen,
        };
        let items = conversations
            .iter()
            .map(|c| (Topic::Conversation(*c), event.clone()))
            .collect();
        self.events.publish_all(items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{
        Conversation, ConversationDetails, ConversationKind, Participant, ParticipantProfile, Role,
    };
    use crate::ports::{MockClock, MockConversationStore, MockUserStore};
    use crate::realtime::{MockEventPublisher, MockPresenceStore};
    use chrono::TimeZone;
    use mockall::predicate::{always, eq};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn node() -> NodeId {
        NodeId("node-a".into())
    }

    fn counts(sessions: u32, away: u32) -> SessionCounts {
        SessionCounts { sessions, away }
    }

    /// What the publisher was given, in order.
    type Published = Arc<std::sync::Mutex<Vec<(Topic, Event)>>>;

    /// Ports with nothing expected: each test adds what it needs.
    struct Ports {
        store: MockPresenceStore,
        events: MockEventPublisher,
        conversations: MockConversationStore,
        users: MockUserStore,
    }

    impl Ports {
        fn new() -> Self {
            Self {
                store: MockPresenceStore::new(),
                events: MockEventPublisher::new(),
                conversations: MockConversationStore::new(),
                users: MockUserStore::new(),
            }
        }

        /// `user` belongs to `conversations`.
        fn member_of(mut self, user: UserId, conversations: Vec<ConversationId>) -> Self {
            self.conversations
                .expect_conversation_ids()
                .with(eq(user))
                .returning(move |_| Ok(conversations.clone()));
            self
        }

        /// Every publication is recorded; none fails.
        fn recording(mut self) -> (Self, Published) {
            let published = Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = published.clone();
            self.events.expect_publish_all().returning(move |items| {
                sink.lock().unwrap().extend(items);
                Ok(())
            });
            (self, published)
        }

        fn service(self) -> PresenceService {
            let mut clock = MockClock::new();
            clock.expect_now().returning(t0);
            PresenceService::new(
                Arc::new(self.store),
                Arc::new(self.events),
                Arc::new(self.conversations),
                Arc::new(self.users),
                Arc::new(clock),
                PresenceSettings {
                    max_sessions_per_user: 3,
                    offline_grace: Duration::from_secs(5),
                    lease_ttl: Duration::from_secs(15),
                    ..PresenceSettings::new(node())
                },
            )
        }
    }

    fn presence(user: UserId, status: PresenceStatus, last_seen: Option<DateTime<Utc>>) -> Event {
        Event::Presence {
            user_id: user,
            status,
            last_seen,
        }
    }

    #[tokio::test]
    async fn the_first_session_announces_online_in_every_conversation_of_the_user_and_nowhere_else()
    {
        let (user, c1, c2) = (UserId::new(), ConversationId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(user, vec![c1, c2]).recording();
        ports
            .store
            .expect_open_session()
            .with(eq(user), eq(node()), eq(3))
            .times(1)
            .returning(|_, _, _| Ok(counts(1, 0)));
        let got = ports.service().session_opened(user).await.unwrap();
        assert_eq!(got, counts(1, 0));
        let online = presence(user, PresenceStatus::Online, None);
        assert_eq!(
            *published.lock().unwrap(),
            vec![
                (Topic::Conversation(c1), online.clone()),
                (Topic::Conversation(c2), online)
            ]
        );
    }

    #[tokio::test]
    async fn a_session_opened_with_its_conversations_announces_to_them_without_reading_them() {
        let (user, c1, c2) = (UserId::new(), ConversationId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().recording();
        ports.conversations.expect_conversation_ids().never();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(1, 0)));
        ports
            .service()
            .session_opened_in(user, &[c1, c2])
            .await
            .unwrap();
        let online = presence(user, PresenceStatus::Online, None);
        assert_eq!(
            *published.lock().unwrap(),
            vec![
                (Topic::Conversation(c1), online.clone()),
                (Topic::Conversation(c2), online)
            ]
        );
    }

    #[tokio::test]
    async fn a_second_active_session_announces_nothing() {
        let user = UserId::new();
        let mut ports = Ports::new();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(2, 0)));
        ports.conversations.expect_conversation_ids().never();
        ports.events.expect_publish_all().never();
        ports.service().session_opened(user).await.unwrap();
    }

    #[tokio::test]
    async fn a_new_session_among_away_ones_announces_online() {
        let (user, c) = (UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(user, vec![c]).recording();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(3, 2)));
        ports.service().session_opened(user).await.unwrap();
        assert_eq!(
            *published.lock().unwrap(),
            vec![(
                Topic::Conversation(c),
                presence(user, PresenceStatus::Online, None)
            )]
        );
    }

    #[tokio::test]
    async fn a_session_over_the_cap_is_refused_and_announces_nothing() {
        let mut ports = Ports::new();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Err(OpenSessionError::TooManySessions));
        ports.events.expect_publish_all().never();
        let err = ports
            .service()
            .session_opened(UserId::new())
            .await
            .unwrap_err();
        assert!(matches!(err, OpenSessionError::TooManySessions), "{err:?}");
    }

    #[tokio::test]
    async fn a_session_whose_announcement_fails_is_uncounted_and_unavailable() {
        let user = UserId::new();
        let mut ports = Ports::new().member_of(user, vec![ConversationId::new()]);
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(1, 0)));
        ports
            .events
            .expect_publish_all()
            .returning(|_| Err(RealtimeError::msg("redis down")));
        ports
            .store
            .expect_close_session()
            .with(eq(user), eq(node()), eq(false))
            .times(1)
            .returning(|_, _, _| Ok(counts(0, 0)));
        let err = ports.service().session_opened(user).await.unwrap_err();
        assert!(matches!(err, OpenSessionError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn closing_the_last_session_announces_nothing_yet_and_asks_for_an_offline_check() {
        let user = UserId::new();
        let mut ports = Ports::new();
        ports
            .store
            .expect_close_session()
            .with(eq(user), eq(node()), eq(false))
            .returning(|_, _, _| Ok(counts(0, 0)));
        ports.events.expect_publish_all().never();
        assert!(ports.service().session_closed(user, false).await.unwrap());
    }

    #[tokio::test]
    async fn closing_one_of_several_active_sessions_announces_nothing() {
        let mut ports = Ports::new();
        ports
            .store
            .expect_close_session()
            .returning(|_, _, _| Ok(counts(1, 0)));
        ports.events.expect_publish_all().never();
        let check = ports
            .service()
            .session_closed(UserId::new(), false)
            .await
            .unwrap();
        assert!(!check);
    }

    #[tokio::test]
    async fn closing_the_only_active_session_while_away_ones_remain_announces_away() {
        let (user, c) = (UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(user, vec![c]).recording();
        ports
            .store
            .expect_close_session()
            .returning(|_, _, _| Ok(counts(1, 1)));
        let check = ports.service().session_closed(user, false).await.unwrap();
        assert!(!check);
        assert_eq!(
            *published.lock().unwrap(),
            vec![(
                Topic::Conversation(c),
                presence(user, PresenceStatus::Away, None)
            )]
        );
    }

    #[tokio::test]
    async fn the_last_session_going_away_announces_away_and_coming_back_announces_online() {
        let (user, c) = (UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(user, vec![c]).recording();
        ports
            .store
            .expect_set_away()
            .with(eq(user), eq(node()), eq(true))
            .returning(|_, _, _| Ok(counts(2, 2)));
        ports
            .store
            .expect_set_away()
            .with(eq(user), eq(node()), eq(false))
            .returning(|_, _, _| Ok(counts(2, 1)));
        let svc = ports.service();
        svc.set_away(user, true).await.unwrap();
        svc.set_away(user, false).await.unwrap();
        let topic = Topic::Conversation(c);
        assert_eq!(
            *published.lock().unwrap(),
            vec![
                (topic, presence(user, PresenceStatus::Away, None)),
                (topic, presence(user, PresenceStatus::Online, None)),
            ]
        );
    }

    #[tokio::test]
    async fn one_of_several_active_sessions_going_away_announces_nothing() {
        let mut ports = Ports::new();
        ports
            .store
            .expect_set_away()
            .returning(|_, _, _| Ok(counts(2, 1)));
        ports.events.expect_publish_all().never();
        ports.service().set_away(UserId::new(), true).await.unwrap();
    }

    #[tokio::test]
    async fn with_no_session_left_after_the_grace_last_seen_is_recorded_and_offline_announced() {
        let (user, c) = (UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(user, vec![c]).recording();
        ports
            .store
            .expect_counts()
            .withf(move |users| users == [user])
            .returning(|_| Ok(vec![counts(0, 0)]));
        ports
            .users
            .expect_touch_last_seen()
            .with(eq(user), eq(t0()))
            .times(1)
            .returning(|_, _| Ok(()));
        assert!(ports.service().confirm_offline(user).await.unwrap());
        assert_eq!(
            *published.lock().unwrap(),
            vec![(
                Topic::Conversation(c),
                presence(user, PresenceStatus::Offline, Some(t0()))
            )]
        );
    }

    #[tokio::test]
    async fn a_user_who_reconnected_within_the_grace_is_not_announced_offline() {
        let mut ports = Ports::new();
        ports
            .store
            .expect_counts()
            .returning(|_| Ok(vec![counts(1, 0)]));
        ports.users.expect_touch_last_seen().never();
        ports.events.expect_publish_all().never();
        let announced = ports
            .service()
            .confirm_offline(UserId::new())
            .await
            .unwrap();
        assert!(!announced);
    }

    #[tokio::test]
    async fn the_offline_check_fails_without_announcing_when_last_seen_cannot_be_stored() {
        let mut ports = Ports::new();
        ports
            .store
            .expect_counts()
            .returning(|_| Ok(vec![counts(0, 0)]));
        ports
            .users
            .expect_touch_last_seen()
            .returning(|_, _| Err(StorageError::msg("db down")));
        ports.events.expect_publish_all().never();
        assert!(ports
            .service()
            .confirm_offline(UserId::new())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_users_of_a_dead_node_are_announced_offline_unless_connected_elsewhere() {
        let (gone, moved, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(gone, vec![c]).recording();
        ports
            .store
            .expect_reap_dead_nodes()
            .with(eq(node()))
            .returning(move |_| Ok(vec![gone, moved]));
        ports.store.expect_counts().returning(move |users| {
            Ok(users
                .iter()
                .map(|u| {
                    if *u == moved {
                        counts(1, 0)
                    } else {
                        counts(0, 0)
                    }
                })
                .collect())
        });
        ports
            .users
            .expect_touch_last_seen()
            .with(eq(gone), always())
            .times(1)
            .returning(|_, _| Ok(()));
        assert_eq!(ports.service().reap_dead_nodes().await.unwrap(), 1);
        assert_eq!(
            *published.lock().unwrap(),
            vec![(
                Topic::Conversation(c),
                presence(gone, PresenceStatus::Offline, Some(t0()))
            )]
        );
    }

    #[tokio::test]
    async fn the_lease_is_renewed_for_this_node_with_the_configured_ttl() {
        let mut ports = Ports::new();
        ports
            .store
            .expect_renew_lease()
            .with(eq(node()), eq(Duration::from_secs(15)))
            .times(1)
            .returning(|_, _| Ok(true));
        assert_eq!(
            ports.service().renew_lease().await.unwrap(),
            LeaseRenewal::Kept
        );
    }

    #[tokio::test]
    async fn a_close_the_store_never_confirmed_is_repaired_at_the_next_renewal() {
        let (user, c) = (UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new().member_of(user, vec![c]).recording();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(1, 0)));
        ports
            .store
            .expect_close_session()
            .times(1)
            .returning(|_, _, _| Err(RealtimeError::msg("redis did not answer in time")));
        ports.store.expect_renew_lease().returning(|_, _| Ok(true));
        // The node has no session left: its registration is rewritten empty...
        ports
            .store
            .expect_restore_node()
            .withf(|n, sessions| *n == node() && sessions.is_empty())
            .times(1)
            .returning(move |_, _| Ok(vec![user]));
        // ...and the user, with no session anywhere, gets the offline check it missed.
        ports
            .store
            .expect_counts()
            .returning(|users| Ok(vec![counts(0, 0); users.len()]));
        ports
            .users
            .expect_touch_last_seen()
            .times(1)
            .returning(|_, _| Ok(()));
        let service = ports.service();
        service.session_opened(user).await.unwrap();
        assert!(service.session_closed(user, false).await.is_err());

        assert_eq!(
            service.renew_lease().await.unwrap(),
            LeaseRenewal::Restored {
                users: 0,
                announced: 1
            }
        );
        assert_eq!(
            published.lock().unwrap().last(),
            Some(&(
                Topic::Conversation(c),
                presence(user, PresenceStatus::Offline, Some(t0()))
            ))
        );
        assert_eq!(service.renew_lease().await.unwrap(), LeaseRenewal::Kept);
    }

    #[tokio::test]
    async fn after_a_failed_renewal_the_next_one_rewrites_the_counts() {
        let user = UserId::new();
        let (mut ports, _published) = Ports::new().member_of(user, vec![]).recording();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(1, 0)));
        let mut renewals = vec![
            Ok(true),
            Ok(true),
            Err(RealtimeError::msg("redis did not answer in time")),
        ];
        ports
            .store
            .expect_renew_lease()
            .times(3)
            .returning(move |_, _| renewals.pop().unwrap());
        // A reaper took the counts meanwhile and the late renewal made the lease live again.
        ports
            .store
            .expect_restore_node()
            .withf(move |_, sessions| sessions == [(user, counts(1, 0))])
            .times(1)
            .returning(move |_, _| Ok(vec![user]));
        ports
            .store
            .expect_counts()
            .returning(|users| Ok(vec![counts(1, 0); users.len()]));
        let service = ports.service();
        service.session_opened(user).await.unwrap();
        assert!(service.renew_lease().await.is_err());
        assert_eq!(
            service.renew_lease().await.unwrap(),
            LeaseRenewal::Restored {
                users: 1,
                announced: 1
            }
        );
        assert_eq!(service.renew_lease().await.unwrap(), LeaseRenewal::Kept);
    }

    #[tokio::test]
    async fn a_lost_lease_rewrites_this_nodes_sessions_and_announces_every_user_again() {
        let (here, away, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let (mut ports, published) = Ports::new()
            .member_of(here, vec![c])
            .member_of(away, vec![c])
            .recording();
        ports
            .store
            .expect_open_session()
            .returning(|_, _, _| Ok(counts(1, 0)));
        ports
            .store
            .expect_set_away()
            .returning(|_, _, _| Ok(counts(1, 1)));
        let mut renewals = vec![true, false];
        ports
            .store
            .expect_renew_lease()
            .returning(move |_, _| Ok(renewals.pop().unwrap_or(true)));
        ports
            .store
            .expect_restore_node()
            .withf(move |_, sessions| {
                let mut got = sessions.to_vec();
                got.sort_unstable_by_key(|(u, _)| *u);
                let mut want = vec![(here, counts(2, 0)), (away, counts(1, 1))];
                want.sort_unstable_by_key(|(u, _)| *u);
                got == want
            })
            .times(1)
            .returning(|_, _| Ok(vec![]));
        ports.store.expect_counts().returning(move |users| {
            Ok(users
                .iter()
                .map(|u| {
                    if *u == away {
                        counts(1, 1)
                    } else {
                        counts(2, 0)
                    }
                })
                .collect())
        });
        let service = ports.service();
        service.session_opened(here).await.unwrap();
        service.session_opened(here).await.unwrap();
        service.session_opened(away).await.unwrap();
        service.set_away(away, true).await.unwrap();
        published.lock().unwrap().clear();

        // The store came back empty (or the lease was reaped): nothing this node registered
        // is there, though no change of it failed.
        assert_eq!(
            service.renew_lease().await.unwrap(),
            LeaseRenewal::Restored {
                users: 2,
                announced: 2
            }
        );
        let mut again: Vec<(UserId, PresenceStatus)> = published
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Presence {
                    user_id, status, ..
                } => Some((*user_id, *status)),
                _ => None,
            })
            .collect();
        again.sort_unstable_by_key(|(u, _)| *u);
        let mut want = vec![(here, PresenceStatus::Online), (away, PresenceStatus::Away)];
        want.sort_unstable_by_key(|(u, _)| *u);
        assert_eq!(again, want);
        assert_eq!(service.renew_lease().await.unwrap(), LeaseRenewal::Kept);
    }

    fn details(
        id: ConversationId,
        members: &[(UserId, Option<DateTime<Utc>>)],
    ) -> ConversationDetails {
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Group,
                title: Some("Team".into()),
                created_by: members[0].0,
                created_at: t0(),
                last_seq: 0,
                last_message_at: None,
                last_change: 0,
            },
            participants: members
                .iter()
                .map(|(user_id, last_seen_at)| ParticipantProfile {
                    participant: Participant {
                        conversation_id: id,
                        user_id: *user_id,
                        role: Role::Member,
                        joined_at: t0(),
                        delivered_seq: 0,
                        read_seq: 0,
                    },
                    display_name: "U".into(),
                    email: format!("{user_id}@example.com"),
                    avatar_url: None,
                    last_seen_at: *last_seen_at,
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_member_sees_every_members_status_and_last_seen_in_member_order() {
        let (me, away, gone, c) = (
            UserId::new(),
            UserId::new(),
            UserId::new(),
            ConversationId::new(),
        );
        let seen = t0() - chrono::Duration::minutes(3);
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .with(eq(c))
            .returning(move |id| {
                Ok(Some(details(
                    id,
                    &[(me, None), (away, None), (gone, Some(seen))],
                )))
            });
        ports
            .store
            .expect_counts()
            .withf(move |users| users == [me, away, gone])
            .returning(|_| Ok(vec![counts(1, 0), counts(2, 2), counts(0, 0)]));
        let got = ports.service().presence_of(me, c).await.unwrap();
        assert_eq!(
            got,
            vec![
                ParticipantPresence {
                    user_id: me,
                    status: PresenceStatus::Online,
                    last_seen: None
                },
                ParticipantPresence {
                    user_id: away,
                    status: PresenceStatus::Away,
                    last_seen: None
                },
                ParticipantPresence {
                    user_id: gone,
                    status: PresenceStatus::Offline,
                    last_seen: Some(seen)
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_non_member_asking_for_presence_is_not_a_participant_whether_or_not_it_exists() {
        let (me, other, foreign, unknown) = (
            UserId::new(),
            UserId::new(),
            ConversationId::new(),
            ConversationId::new(),
        );
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .with(eq(foreign))
            .returning(move |id| Ok(Some(details(id, &[(other, None)]))));
        ports
            .conversations
            .expect_conversation()
            .with(eq(unknown))
            .returning(|_| Ok(None));
        ports.store.expect_counts().never();
        let svc = ports.service();
        for id in [foreign, unknown] {
            let err = svc.presence_of(me, id).await.unwrap_err();
            assert!(matches!(err, ChatError::NotParticipant), "{err:?}");
        }
    }

    #[tokio::test]
    async fn presence_is_unavailable_when_the_presence_store_fails() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut ports = Ports::new();
        ports
            .conversations
            .expect_conversation()
            .returning(move |id| Ok(Some(details(id, &[(me, None)]))));
        ports
            .store
            .expect_counts()
            .returning(|_| Err(RealtimeError::msg("redis down")));
        let err = ports.service().presence_of(me, c).await.unwrap_err();
        assert!(matches!(err, ChatError::Storage(_)), "{err:?}");
    }
}
