//! Typing: a lease per (user, conversation) that lapses unless refreshed, and the rule that
//! every end of a lease is announced, so nobody stays "typing" forever, even behind a client
//! that never sends the stop.
//!
//! - A start is forwarded at once; refreshes at most once per throttle period (default 1 s)
//!   per (user, conversation), often enough that a receiver hiding the indicator after 4 s of
//!   silence keeps showing it while the other side types.
//! - A stop, a sent message or a closed session ends the lease (the WebSocket session calls
//!   [`TypingService::message_sent`] and [`TypingService::session_closed`] only where it
//!   started one itself, so a session that never typed costs the store nothing); a lease
//!   nobody refreshed for the TTL (default 5 s) is taken by one node's
//!   [`TypingService::sweep`]. Each of these
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::{MockEventPublisher, MockTypingStore};
    use async_trait::async_trait;
    use chrono::TimeZone;
    use mockall::predicate::eq;
    use std::collections::BTreeMap;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct FakeClock(Arc<Mutex<DateTime<Utc>>>);

    impl FakeClock {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(t0())))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += delta(by);
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    /// What the publisher was given, in order.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(Topic, Event)>>>);

    impl Recorder {
        fn publisher(&self) -> MockEventPublisher {
            let sink = self.0.clone();
            let mut events = MockEventPublisher::new();
            events.expect_publish().returning(move |topic, event| {
                sink.lock().unwrap().push((topic, event));
                Ok(())
            });
            events
        }
        fn typing(&self) -> Vec<(ConversationId, UserId, bool)> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .map(|(topic, event)| match (topic, event) {
                    (
                        Topic::Conversation(c),
                        Event::Typing {
                            conversation_id,
                            user_id,
                            is_typing,
                        },
                    ) if c == conversation_id => (*conversation_id, *user_id, *is_typing),
                    other => panic!("not a typing event on its conversation: {other:?}"),
                })
                .collect()
        }
    }

    fn service(
        store: impl TypingStore,
        events: impl EventPublisher,
        clock: &FakeClock,
    ) -> TypingService {
        TypingService::new(
            Arc::new(store),
            Arc::new(events),
            Arc::new(clock.clone()),
            TypingSettings::default(),
        )
    }

    fn store_answering_start(started: bool) -> MockTypingStore {
        let mut store = MockTypingStore::new();
        store
            .expect_start_typing()
            .returning(move |_, _, _, _| Ok(started));
        store
    }

    #[tokio::test]
    async fn a_start_is_forwarded_at_once_on_the_conversation_with_the_lease_ttl() {
        let (c, u, clock, seen) = (
            ConversationId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = MockTypingStore::new();
        store
            .expect_start_typing()
            .with(eq(c), eq(u), eq(t0()), eq(DEFAULT_TYPING_TTL))
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let forwarded = service(store, seen.publisher(), &clock)
            .typing(c, u, true)
            .await
            .unwrap();
        assert!(forwarded);
        assert_eq!(seen.typing(), vec![(c, u, true)]);
    }

    #[tokio::test]
    async fn refreshes_are_forwarded_at_most_once_per_throttle_period() {
        let (c, u, clock, seen) = (
            ConversationId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = MockTypingStore::new();
        let mut first = true;
        store
            .expect_start_typing()
            .returning(move |_, _, _, _| Ok(std::mem::replace(&mut first, false)));
        let svc = service(store, seen.publisher(), &clock);
        let mut forwarded = Vec::new();
        // Keystrokes every 300 ms for 3 s: the start (0 ms), then refreshes at 1200 and 2400 ms.
        for _ in 0..10 {
            forwarded.push(svc.typing(c, u, true).await.unwrap());
            clock.advance(Duration::from_millis(300));
        }
        assert_eq!(
            forwarded,
            [true, false, false, false, true, false, false, false, true, false]
        );
        assert_eq!(seen.typing(), vec![(c, u, true); 3]);
    }

    #[tokio::test]
    async fn the_throttle_is_per_user_and_conversation() {
        let (c1, c2, a, b, clock, seen) = (
            ConversationId::new(),
            ConversationId::new(),
            UserId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let svc = service(store_answering_start(false), seen.publisher(), &clock);
        for (c, u) in [(c1, a), (c1, b), (c2, a)] {
            assert!(svc.typing(c, u, true).await.unwrap());
        }
        assert!(!svc.typing(c1, a, true).await.unwrap());
        assert_eq!(
            seen.typing(),
            vec![(c1, a, true), (c1, b, true), (c2, a, true)]
        );
    }

    #[tokio::test]
    async fn a_stop_that_ended_a_live_lease_announces_false_and_one_without_a_lease_announces_nothing(
    ) {
        let (c, u, clock, seen) = (
            ConversationId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = MockTypingStore::new();
        let mut live = true;
        store
            .expect_stop_typing()
            .with(eq(c), eq(u))
            .times(2)
            .returning(move |_, _| Ok(std::mem::replace(&mut live, false)));
        let svc = service(store, seen.publisher(), &clock);
        assert!(svc.typing(c, u, false).await.unwrap());
        assert!(!svc.typing(c, u, false).await.unwrap());
        assert_eq!(seen.typing(), vec![(c, u, false)]);
    }

    #[tokio::test]
    async fn a_start_right_after_a_stop_is_forwarded_despite_the_throttle() {
        let (c, u, clock, seen) = (
            ConversationId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = store_answering_start(true);
        store.expect_stop_typing().returning(|_, _| Ok(true));
        let svc = service(store, seen.publisher(), &clock);
        svc.typing(c, u, true).await.unwrap();
        svc.typing(c, u, false).await.unwrap();
        svc.typing(c, u, true).await.unwrap();
        assert_eq!(
            seen.typing(),
            vec![(c, u, true), (c, u, false), (c, u, true)]
        );
    }

    #[tokio::test]
    async fn a_sent_message_ends_the_lease_and_announces_false() {
        let (c, u, clock, seen) = (
            ConversationId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = MockTypingStore::new();
        store
            .expect_stop_typing()
            .with(eq(c), eq(u))
            .times(1)
            .returning(|_, _| Ok(true));
        let announced = service(store, seen.publisher(), &clock)
            .message_sent(c, u)
            .await
            .unwrap();
        assert!(announced);
        assert_eq!(seen.typing(), vec![(c, u, false)]);
    }

    #[tokio::test]
    async fn a_closed_session_ends_the_users_leases_in_each_of_its_conversations() {
        let (typing_in, idle_in, u, clock, seen) = (
            ConversationId::new(),
            ConversationId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = MockTypingStore::new();
        store
            .expect_stop_typing()
            .returning(move |c, _| Ok(c == typing_in));
        let announced = service(store, seen.publisher(), &clock)
            .session_closed(u, &[typing_in, idle_in])
            .await
            .unwrap();
        assert_eq!(announced, 1);
        assert_eq!(seen.typing(), vec![(typing_in, u, false)]);
    }

    #[tokio::test]
    async fn a_sweep_announces_false_for_every_lease_it_took() {
        let (c, a, b, clock, seen) = (
            ConversationId::new(),
            UserId::new(),
            UserId::new(),
            FakeClock::new(),
            Recorder::default(),
        );
        let mut store = MockTypingStore::new();
        store
            .expect_take_expired()
            .with(eq(t0()))
            .returning(move |_| Ok(vec![(c, a), (c, b)]));
        let ended = service(store, seen.publisher(), &clock)
            .sweep()
            .await
            .unwrap();
        assert_eq!(ended, 2);
        assert_eq!(seen.typing(), vec![(c, a, false), (c, b, false)]);
    }

    #[tokio::test]
    async fn a_failed_publication_does_not_stop_a_sweep_from_announcing_the_rest() {
        let (c, a, b, clock) = (
            ConversationId::new(),
            UserId::new(),
            UserId::new(),
            FakeClock::new(),
        );
        let mut store = MockTypingStore::new();
        store
            .expect_take_expired()
            .returning(move |_| Ok(vec![(c, a), (c, b)]));
        let mut events = MockEventPublisher::new();
        events
            .expect_publish()
            .withf(move |_, e| matches!(e, Event::Typing { user_id, .. } if *user_id == a))
            .returning(|_, _| Err(RealtimeError::msg("redis down")));
        events
            .expect_publish()
            .withf(move |_, e| matches!(e, Event::Typing { user_id, .. } if *user_id == b))
            .times(1)
            .returning(|_, _| Ok(()));
        assert!(service(store, events, &clock).sweep().await.is_err());
    }

    /// The typing store as the adapters implement it: a deadline per lease; a lease at or
    /// past its deadline is lapsed (a start makes a new one) but still ends with a stop
    /// until a sweep takes it.
    #[derive(Default)]
    struct FakeTypingStore(Mutex<BTreeMap<(ConversationId, UserId), DateTime<Utc>>>);

    #[async_trait]
    impl TypingStore for FakeTypingStore {
        async fn start_typing(
            &self,
            conversation: ConversationId,
            user: UserId,
            now: DateTime<Utc>,
            ttl: Duration,
        ) -> Result<bool, RealtimeError> {
            let previous = self
                .0
                .lock()
                .unwrap()
                .insert((conversation, user), now + delta(ttl));
            Ok(previous.is_none_or(|deadline| deadline <= now))
        }

        async fn stop_typing(
            &self,
            conversation: ConversationId,
            user: UserId,
        ) -> Result<bool, RealtimeError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .remove(&(conversation, user))
                .is_some())
        }

        async fn take_expired(
            &self,
            now: DateTime<Utc>,
        ) -> Result<Vec<(ConversationId, UserId)>, RealtimeError> {
            let mut leases = self.0.lock().unwrap();
            let expired: Vec<_> = leases
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(key, _)| *key)
                .collect();
            for key in &expired {
                leases.remove(key);
            }
            Ok(expired)
        }
    }

    mod typing_timeout_property {
        use super::*;
        use proptest::prelude::*;

        const USERS: usize = 3;
        const CONVERSATIONS: usize = 2;

        #[derive(Debug, Clone)]
        enum Step {
            Typing {
                user: usize,
                conversation: usize,
                is_typing: bool,
            },
            Send {
                user: usize,
                conversation: usize,
            },
            CloseSession {
                user: usize,
            },
            Sweep,
            Wait {
                millis: u64,
            },
        }

        fn step() -> impl Strategy<Value = Step> {
            let user = 0..USERS;
            let conversation = 0..CONVERSATIONS;
            prop_oneof![
                4 => (user.clone(), conversation.clone()).prop_map(|(user, conversation)| {
                    Step::Typing { user, conversation, is_typing: true }
                }),
                1 => (user.clone(), conversation.clone()).prop_map(|(user, conversation)| {
                    Step::Typing { user, conversation, is_typing: false }
                }),
                1 => (user.clone(), conversation).prop_map(|(user, conversation)| {
                    Step::Send { user, conversation }
                }),
                1 => user.prop_map(|user| Step::CloseSession { user }),
                1 => Just(Step::Sweep),
                4 => (0u64..3_000).prop_map(|millis| Step::Wait { millis }),
            ]
        }

        type Pair = (ConversationId, UserId);

        /// A typing event: when, for whom, and `is_typing`.
        type Published = (DateTime<Utc>, Pair, bool);

        /// A start as the client sent it, whether it was forwarded, and how many events
        /// had been published before it.
        struct Start {
            key: (ConversationId, UserId),
            at: DateTime<Utc>,
            forwarded: bool,
            after_events: usize,
        }

        /// Runs the steps, then waits one TTL past the last and sweeps once. Returns the
        /// typing events with their times, every start, and the leases left.
        fn run(steps: &[Step]) -> (Vec<Published>, Vec<Start>, usize) {
            let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
            let conversations: Vec<ConversationId> =
                (0..CONVERSATIONS).map(|_| ConversationId::new()).collect();
            let (clock, seen) = (FakeClock::new(), Recorder::default());
            let store = Arc::new(FakeTypingStore::default());
            let svc = TypingService::new(
                store.clone(),
                Arc::new(seen.publisher()),
                Arc::new(clock.clone()),
                TypingSettings::default(),
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut events = Vec::new();
            let mut starts = Vec::new();
            runtime.block_on(async {
                let mut record = |seen_before: usize| {
                    for (c, u, is_typing) in seen.typing().into_iter().skip(seen_before) {
                        events.push((clock.now(), (c, u), is_typing));
                    }
                };
                for step in steps {
                    let before = seen.typing().len();
                    match *step {
                        Step::Typing {
                            user,
                            conversation,
                            is_typing,
                        } => {
                            let (c, u) = (conversations[conversation], users[user]);
                            let forwarded = svc.typing(c, u, is_typing).await.unwrap();
                            if is_typing {
                                starts.push(Start {
                                    key: (c, u),
                                    at: clock.now(),
                                    forwarded,
                                    after_events: before,
                                });
                            }
                        }
                        Step::Send { user, conversation } => {
                            svc.message_sent(conversations[conversation], users[user])
                                .await
                                .unwrap();
                        }
                        Step::CloseSession { user } => {
                            svc.session_closed(users[user], &conversations)
                                .await
                                .unwrap();
                        }
                        Step::Sweep => {
                            svc.sweep().await.unwrap();
                        }
                        Step::Wait { millis } => clock.advance(Duration::from_millis(millis)),
                    }
                    record(before);
                }
                let before = seen.typing().len();
                clock.advance(DEFAULT_TYPING_TTL);
                svc.sweep().await.unwrap();
                record(before);
            });
            let left = store.0.lock().unwrap().len();
            (events, starts, left)
        }

        proptest! {
            #[test]
            fn after_the_last_event_and_one_ttl_a_sweep_leaves_nobody_typing_and_every_lease_ends_once(
                steps in proptest::collection::vec(step(), 0..60)
            ) {
                let (events, starts, left) = run(&steps);
                prop_assert_eq!(left, 0, "leases left after the final sweep");
                let mut by_pair: HashMap<Pair, Vec<(DateTime<Utc>, bool)>> = HashMap::new();
                for (at, key, is_typing) in &events {
                    by_pair.entry(*key).or_default().push((*at, *is_typing));
                }
                for (key, stream) in &by_pair {
                    // Trues (start and forwarded refreshes) then exactly one false, again and
                    // again: a false always ends something shown, and the last word is false.
                    let mut shown = false;
                    let mut last_true: Option<DateTime<Utc>> = None;
                    for (at, is_typing) in stream {
                        if *is_typing {
                            if let Some(previous) = last_true.filter(|_| shown) {
                                prop_assert!(
                                    *at - previous >= delta(DEFAULT_TYPING_FORWARD_THROTTLE),
                                    "{key:?}: two trues within the throttle"
                                );
                            }
                            shown = true;
                            last_true = Some(*at);
                        } else {
                            prop_assert!(shown, "{key:?}: a false with no true before it");
                            shown = false;
                        }
                    }
                    prop_assert!(!shown, "{key:?}: still typing at the end");
                }
                // No start is held back unless the same lease's true went out within the
                // throttle, so receivers hiding after 4 s of silence keep showing it.
                for start in starts.iter().filter(|s| !s.forwarded) {
                    let latest = events[..start.after_events]
                        .iter()
                        .rfind(|(_, key, _)| *key == start.key);
                    prop_assert!(
                        matches!(latest, Some((at, _, true))
                            if start.at - *at < delta(DEFAULT_TYPING_FORWARD_THROTTLE)),
                        "{:?}: a refresh held back with no recent forward: {latest:?}",
                        start.key
                    );
                }
            }
        }
    }
}
