//! [`Hub`]: the node's fan-out. It implements [`PubSubSink`]: for each event the node's
//! subscriptions bring, it parses the envelope header once, then hands the same frame
//! (a reference-counted `ByteString`, which the socket writes without copying) to the bounded queue of every local session routed to the topic that should
//! get it. A session that falls behind is closed with 4009 rather than waited for, so one
//! slow client never holds up the others.
//!
//! Falling behind is judged over time, not on one burst: a group-commit batch published at
//! once can put hundreds of frames in a queue before the session's task is even scheduled,
//! and a client that reads is not slow for that. A session is closed when its queue has held
//! more than its limit (`realtime.outbound_queue_frames`) for the grace
//! (`realtime.slow_consumer_grace`) while events kept coming, or at once when it is full:
//! the channel holds [`QUEUE_HEADROOM`] times the limit, which bounds the memory a session
//! that does not read can hold. When events stop coming, the session judges itself: a write
//! that waited a whole grace for its client with more than the limit queued behind it
//! closes it too ([`Hub::stalled`]).
//!
//! Routing is local (topic -> sessions on this node); whether the node receives a topic at all
//! is the pub/sub adapter's reference count, held by the sessions. Which of a topic's
//! sessions get an event is decided by the pure rules of `routing.rs`. Membership events change
//! routing here, synchronously, before any later event on the topic is routed: a removed
//! member's sessions stop receiving the conversation at once.

use super::envelope::{self, Header, Kind};
use super::metrics::Metrics;
use super::routing::{self, OwnSeqs, Recipient, Verdict};
use bytestring::ByteString;
use domain::realtime::{Payload, PubSubSink, SessionId, Topic};
use domain::{ConversationId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// Close code: the client did not read fast enough.
pub const CLOSE_SLOW_CONSUMER: u16 = 4009;

/// A session's channel holds this many times its frame limit: room for bursts the session
/// drains within the grace; full, it closes the session at once.
pub(crate) const QUEUE_HEADROOM: usize = 4;

/// How far behind a session may fall: more than `limit` frames waiting for longer than
/// `grace` closes it.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// Frames that may wait for the client.
    pub limit: usize,
    /// How long more than `limit` may wait.
    pub grace: Duration,
}

impl Backlog {
    /// The capacity of the session's channel.
    pub fn capacity(&self) -> usize {
        self.limit.max(1).saturating_mul(QUEUE_HEADROOM)
    }
}

/// An event routed to a session: the parsed header and the frame, both shared.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Routing header.
    pub header: Arc<Header>,
    /// The frame to write: shared by every recipient, written without a copy.
    pub frame: ByteString,
}

/// What a session's queue carries.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// An event for the client.
    Event(Delivery),
    /// Pub/sub lost events while reconnecting: fetch every gap from storage.
    Resync,
}

/// How a session is told, from outside its task, to close (4009, 1001...). The first code wins.
///
/// It also carries when the session's queue went over its limit (see [`Backlog`]): set by the
/// hub as it queues, cleared by the session as it drains.
#[derive(Debug, Default)]
pub struct CloseSignal {
    code: AtomicU16,
    notify: Notify,
    /// Milliseconds after the hub's epoch (plus one; 0 = within the limit) at which the
    /// queue was first seen over its limit.
    over_since: AtomicU64,
}

impl CloseSignal {
    /// Asks the session to close with `code`; `false` when it was already asked.
    pub(crate) fn close(&self, code: u16) -> bool {
        let first = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            self.notify.notify_one();
        }
        first
    }

    /// The code asked for, if any.
    pub fn code(&self) -> Option<u16> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// The session drained its queue back to its limit: the grace starts over next time.
    pub fn drained(&self) {
        if self.over_since.load(Ordering::Relaxed) != 0 {
            self.over_since.store(0, Ordering::Release);
        }
    }

    /// The queue is over its limit at `now` (ms after the hub's epoch): whether it has been
    /// since `grace` ago or longer.
    fn over_limit_for(&self, now: u64, grace: Duration) -> bool {
        let now = now.saturating_add(1);
        match self
            .over_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => grace.is_zero(),
            Err(since) => u128::from(now.saturating_sub(since)) >= grace.as_millis(),
        }
    }

    /// Waits until a close is asked for; its code.
    pub async fn wait(&self) -> u16 {
        loop {
            if let Some(code) = self.code() {
                return code;
            }
            self.notify.notified().await;
        }
    }
}

/// A session joining the hub.
pub struct Registration {
    /// The session.
    pub session: SessionId,
    /// Its user.
    pub user: UserId,
    /// The conversation of `/ws/chat/{id}`; `None` on `/ws`.
    pub scope: Option<ConversationId>,
    /// Its bounded queue, of [`Backlog::capacity`].
    pub queue: mpsc::Sender<Inbound>,
    /// How far behind it may fall.
    pub backlog: Backlog,
    /// How to close it.
    pub close: Arc<CloseSignal>,
}

struct Entry {
    user: UserId,
    scope: Option<ConversationId>,
    queue: mpsc::Sender<Inbound>,
    backlog: Backlog,
    close: Arc<CloseSignal>,
    topics: Vec<Topic>,
}

impl Entry {
    /// Queues `inbound`; `false` when the session fell too far behind (to be closed).
    fn offer(&self, inbound: Inbound, epoch: Instant) -> bool {
        match self.queue.try_send(inbound) {
            Ok(()) => {
                let depth = self.queue.max_capacity() - self.queue.capacity();
                if depth <= self.backlog.limit {
                    return true;
                }
                let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                !self.close.over_limit_for(now, self.backlog.grace)
            }
            Err(mpsc::error::TrySendError::Full(_)) => false,
            // The session is ending: nothing to close.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }
}

/// A session routed to a topic, and the seqs its user sent there (which receipts on the
/// topic concern the session: [`OwnSeqs`]).
struct Route {
    session: SessionId,
    own: Mutex<OwnSeqs>,
}

impl Route {
    fn new(session: SessionId) -> Self {
        Self {
            session,
            own: Mutex::new(OwnSeqs::default()),
        }
    }

    fn own(&self) -> MutexGuard<'_, OwnSeqs> {
        self.own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Entry>,
    users: HashMap<UserId, Vec<SessionId>>,
    topics: HashMap<Topic, Vec<Route>>,
    /// Set by [`Hub::close_all`]: a session registered later is asked to close at once.
    closing_all: Option<u16>,
}

impl State {
    fn route(&mut self, session: SessionId, topic: Topic) -> bool {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return false;
        };
        if entry.topics.contains(&topic) {
            return false;
        }
        entry.topics.push(topic);
        self.topics
            .entry(topic)
            .or_default()
            .push(Route::new(session));
        true
    }

    fn unroute(&mut self, session: SessionId, topic: Topic) -> bool {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return false;
        };
        let Some(i) = entry.topics.iter().position(|t| *t == topic) else {
            return false;
        };
        entry.topics.swap_remove(i);
        remove_route(&mut self.topics, &topic, session);
        true
    }
}

fn remove_route(map: &mut HashMap<Topic, Vec<Route>>, topic: &Topic, session: SessionId) {
    if let Some(routes) = map.get_mut(topic) {
        if let Some(i) = routes.iter().position(|r| r.session == session) {
            routes.swap_remove(i);
        }
        if routes.is_empty() {
            map.remove(topic);
        }
    }
}

fn remove_from<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Vec<SessionId>>,
    key: &K,
    session: SessionId,
) {
    if let Some(ids) = map.get_mut(key) {
        if let Some(i) = ids.iter().position(|s| *s == session) {
            ids.swap_remove(i);
        }
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

/// The node's sessions and what each is routed to.
pub struct Hub {
    state: RwLock<State>,
    metrics: Arc<Metrics>,
    /// What [`CloseSignal`]'s backlog times count from.
    epoch: Instant,
    /// Times pub/sub came back after losing events (see [`Hub::resubscriptions`]).
    resubscriptions: AtomicU64,
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            state: RwLock::new(State::default()),
            metrics,
            epoch: Instant::now(),
            resubscriptions: AtomicU64::new(0),
        }
    }

    /// How many times pub/sub resubscribed after losing events so far. A session whose
    /// snapshot was read when this was `n` has received live everything committed after
    /// it only while this is still `n` (else it may have fetched gaps, or failed to).
    pub fn resubscriptions(&self) -> u64 {
        self.resubscriptions.load(Ordering::Acquire)
    }

    // Every critical section leaves the maps consistent before anything that could panic,
    // so a poisoned lock is safe to use.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a session, routed to nothing yet.
    pub fn register(&self, registration: Registration) {
        let mut state = self.write();
        if let Some(code) = state.closing_all {
            // Upgraded just before the shutdown began, registered just after it.
            registration.close.close(code);
        }
        state
            .users
            .entry(registration.user)
            .or_default()
            .push(registration.session);
        state.sessions.insert(
            registration.session,
            Entry {
                user: registration.user,
                scope: registration.scope,
                queue: registration.queue,
                backlog: registration.backlog,
                close: registration.close,
                topics: Vec::new(),
            },
        );
    }

    /// Removes a session and every route of it.
    pub fn unregister(&self, session: SessionId) {
        let mut state = self.write();
        let Some(entry) = state.sessions.remove(&session) else {
            return;
        };
        for topic in &entry.topics {
            remove_route(&mut state.topics, topic, session);
        }
        remove_from(&mut state.users, &entry.user, session);
    }

    /// Routes `topic` to `session`; `true` when it was not routed yet.
    pub fn route(&self, session: SessionId, topic: Topic) -> bool {
        self.write().route(session, topic)
    }

    /// Stops routing `topic` to `session`; `true` when it was routed.
    pub fn unroute(&self, session: SessionId, topic: Topic) -> bool {
        self.write().unroute(session, topic)
    }

    /// The session's user may have sent messages in `conversation` up to `floor` (the
    /// conversation's `last_seq` when not every member has read it, else 0): from now on
    /// the session gets only the receipts that can concern them. Routes nobody sets a floor
    /// for get every receipt.
    pub fn receipt_floor(&self, session: SessionId, conversation: ConversationId, floor: i64) {
        let state = self.read();
        if let Some(route) = state
            .topics
            .get(&Topic::Conversation(conversation))
            .and_then(|routes| routes.iter().find(|r| r.session == session))
        {
            route.own().tell_floor(floor);
        }
    }

    /// Whether `topic` is routed to `session`.
    #[cfg(test)]
    pub(crate) fn is_routed(&self, session: SessionId, topic: Topic) -> bool {
        self.read()
            .sessions
            .get(&session)
            .is_some_and(|e| e.topics.contains(&topic))
    }

    /// Asks every session to close with `code` (1001 at shutdown), and every session
    /// registered from now on.
    pub fn close_all(&self, code: u16) {
        let mut state = self.write();
        state.closing_all = Some(code);
        for entry in state.sessions.values() {
            entry.close.close(code);
        }
    }

    /// The session's write has waited a whole grace for its client: closes it with 4009
    /// when more than its limit waits behind that write, in its queue and in the session's
    /// hands (`in_hand`: frames it took out of the queue or fetched from storage and has
    /// not written yet, say the rest of a page). Events may have stopped coming (a burst
    /// that ended), so [`Entry::offer`] would never judge it; a client that reads drains
    /// the queue instead and is never closed. `true` when it was closed.
    pub fn stalled(&self, session: SessionId, in_hand: usize) -> bool {
        let state = self.read();
        let Some(entry) = state.sessions.get(&session) else {
            return false;
        };
        let depth = entry.queue.max_capacity() - entry.queue.capacity();
        if depth.saturating_add(in_hand) <= entry.backlog.limit {
            return false;
        }
        if entry.close.close(CLOSE_SLOW_CONSUMER) {
            self.metrics.slow_consumer();
        }
        true
    }

    /// Sessions on this node.
    pub fn session_count(&self) -> usize {
        self.read().sessions.len()
    }

    /// Frames waiting in the sessions' outbound queues: the sum over the node's sessions, and
    /// the fullest session's.
    pub(crate) fn outbound_queue_depth(&self) -> (usize, usize) {
        self.read()
            .sessions
            .values()
            .map(|e| e.queue.max_capacity() - e.queue.capacity())
            .fold((0, 0), |(sum, max), depth| (sum + depth, max.max(depth)))
    }

    /// Applies what a conversation event says about membership: the joining user's sessions
    /// are routed to the conversation, the leaving user's are not any more.
    fn apply_membership(&self, header: &Header) {
        let Some(conversation) = header.conversation else {
            return;
        };
        if header.joined.is_none() && header.left.is_none() {
            return;
        }
        let topic = Topic::Conversation(conversation);
        let mut state = self.write();
        if let Some(user) = header.joined {
            let sessions = state.users.get(&user).cloned().unwrap_or_default();
            for session in sessions {
                let in_scope = state
                    .sessions
                    .get(&session)
                    .is_some_and(|e| routing::follows_on_join(e.scope, conversation));
                if in_scope {
                    state.route(session, topic);
                }
            }
        }
        if let Some(user) = header.left {
            let sessions = state.users.get(&user).cloned().unwrap_or_default();
            for session in sessions {
                state.unroute(session, topic);
            }
        }
    }
}

/// Whether the session `id` (`entry`), routed to `topic` (`route`), gets an event with
/// `header`: the rules of [`routing::verdict`], a receipt checked against the seqs the
/// route's user sent.
fn wants(id: SessionId, entry: &Entry, route: &Route, topic: Topic, header: &Header) -> bool {
    let recipient = Recipient {
        session: id,
        user: entry.user,
        scope: entry.scope,
    };
    match routing::verdict(&recipient, topic, header) {
        Verdict::Deliver => true,
        Verdict::Skip => false,
        Verdict::IfOwnIn { since, seq } => route.own().covers(since, seq),
    }
}

impl PubSubSink for Hub {
    fn deliver(&self, topic: Topic, payload: Payload) {
        self.metrics.event_received();
        let (header, frame) = match envelope::decode(&payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "dropping an event that is not an envelope");
                return;
            }
        };
        if header.kind == Kind::Conversation {
            self.apply_membership(&header);
        }
        let delivery = Delivery {
            header: Arc::new(header),
            frame: ByteString::from(frame),
        };
        let mut overflowed = Vec::new();
        {
            let state = self.read();
            let Some(routes) = state.topics.get(&topic) else {
                return;
            };
            let header = &delivery.header;
            // A message by a user with sessions here: their receipts concern those sessions.
            let own_message = match (header.kind, header.seq) {
                (Kind::Message, Some(seq)) => header.user.map(|u| (u, seq)),
                _ => None,
            };
            for route in routes {
                let id = &route.session;
                let Some(entry) = state.sessions.get(id) else {
                    continue;
                };
                if let Some((sender, seq)) = own_message {
                    if entry.user == sender {
                        route.own().record(seq);
                    }
                }
                if !wants(*id, entry, route, topic, header) {
                    continue;
                }
                if !entry.offer(Inbound::Event(delivery.clone()), self.epoch) {
                    overflowed.push(entry.close.clone());
                }
            }
        }
        for close in overflowed {
            if close.close(CLOSE_SLOW_CONSUMER) {
                self.metrics.slow_consumer();
            }
        }
    }

    fn resubscribed(&self) {
        tracing::info!("pub/sub resubscribed: every session fetches its gaps");
        self.resubscriptions.fetch_add(1, Ordering::AcqRel);
        let state = self.read();
        for entry in state.sessions.values() {
            if !entry.offer(Inbound::Resync, self.epoch) && entry.close.close(CLOSE_SLOW_CONSUMER) {
                self.metrics.slow_consumer();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::publisher::envelope_of;
    use chrono::Utc;
    use domain::conversation::{Conversation, ConversationDetails, ConversationKind};
    use domain::message::{ContentType, Message};
    use domain::realtime::{ConversationChange, Event};
    use domain::MessageId;

    struct Client {
        id: SessionId,
        rx: mpsc::Receiver<Inbound>,
        close: Arc<CloseSignal>,
    }

    impl Client {
        fn frames(&mut self) -> Vec<ByteString> {
            let mut out = Vec::new();
            while let Ok(inbound) = self.rx.try_recv() {
                if let Inbound::Event(d) = inbound {
                    out.push(d.frame);
                }
            }
            out
        }
    }

    fn hub() -> Hub {
        Hub::new(Arc::new(Metrics::default()))
    }

    /// A session that may have `limit` frames waiting, with no grace.
    fn connect(hub: &Hub, user: UserId, scope: Option<ConversationId>, limit: usize) -> Client {
        connect_with(hub, user, scope, limit, Duration::ZERO)
    }

    fn connect_with(
        hub: &Hub,
        user: UserId,
        scope: Option<ConversationId>,
        limit: usize,
        grace: Duration,
    ) -> Client {
        let backlog = Backlog { limit, grace };
        let (tx, rx) = mpsc::channel(backlog.capacity());
        let id = SessionId::new();
        let close = Arc::new(CloseSignal::default());
        hub.register(Registration {
            session: id,
            user,
            scope,
            queue: tx,
            backlog,
            close: close.clone(),
        });
        Client { id, rx, close }
    }

    fn message_event(
        c: ConversationId,
        seq: i64,
        sender: UserId,
        origin: Option<SessionId>,
    ) -> Event {
        Event::Message {
            message: Message {
                id: MessageId::new(),
                conversation_id: c,
                seq,
                sender_id: sender,
                client_msg_id: None,
                content: format!("m{seq}"),
                content_type: ContentType::Text,
                reply_to: None,
                created_at: Utc::now(),
                edited_at: None,
                deleted_at: None,
                change_seq: 0,
                deleted_by: None,
                attachments: Vec::new(),
            },
            origin,
            reply_preview: None,
        }
    }

    fn membership(c: ConversationId, change: ConversationChange, user: UserId) -> Event {
        Event::Conversation {
            change,
            conversation: ConversationDetails {
                conversation: Conversation {
                    id: c,
                    kind: ConversationKind::Group,
                    title: Some("Team".into()),
                    created_by: user,
                    created_at: Utc::now(),
                    last_seq: 0,
                    last_message_at: None,
                    last_change: 0,
                },
                participants: vec![],
            },
            user_id: Some(user),
            encryption: None,
        }
    }

    fn publish(hub: &Hub, topic: Topic, event: &Event) {
        hub.deliver(topic, envelope_of(topic, event));
    }

    #[test]
    fn an_event_reaches_every_routed_session_with_one_shared_frame() {
        let hub = hub();
        let c = ConversationId::new();
        let topic = Topic::Conversation(c);
        let mut a = connect(&hub, UserId::new(), None, 8);
        let mut b = connect(&hub, UserId::new(), None, 8);
        let mut outsider = connect(&hub, UserId::new(), None, 8);
        hub.route(a.id, topic);
        hub.route(b.id, topic);
        publish(&hub, topic, &message_event(c, 1, UserId::new(), None));
        let (fa, fb) = (a.frames(), b.frames());
        assert_eq!((fa.len(), fb.len()), (1, 1));
        assert_eq!(
            fa[0].as_ptr(),
            fb[0].as_ptr(),
            "one serialisation per fan-out"
        );
        assert!(outsider.frames().is_empty());
    }

    #[test]
    fn a_message_skips_its_origin_session_but_not_the_senders_other_sessions() {
        let hub = hub();
        let (c, sender) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut phone = connect(&hub, sender, None, 8);
        let mut laptop = connect(&hub, sender, None, 8);
        hub.route(phone.id, topic);
        hub.route(laptop.id, topic);
        publish(&hub, topic, &message_event(c, 1, sender, Some(phone.id)));
        assert!(phone.frames().is_empty());
        assert_eq!(laptop.frames().len(), 1);
    }

    #[test]
    fn typing_is_never_sent_to_the_typing_user() {
        let hub = hub();
        let (c, typist, other) = (ConversationId::new(), UserId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut own = connect(&hub, typist, None, 8);
        let mut theirs = connect(&hub, other, None, 8);
        hub.route(own.id, topic);
        hub.route(theirs.id, topic);
        let event = Event::Typing {
            conversation_id: c,
            user_id: typist,
            is_typing: true,
        };
        publish(&hub, topic, &event);
        assert!(own.frames().is_empty());
        assert_eq!(theirs.frames().len(), 1);
    }

    #[test]
    fn a_full_queue_closes_that_session_with_4009_and_spares_the_others() {
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(metrics.clone());
        let c = ConversationId::new();
        let topic = Topic::Conversation(c);
        let mut slow = connect(&hub, UserId::new(), None, 2);
        let mut fast = connect(&hub, UserId::new(), None, 16);
        hub.route(slow.id, topic);
        hub.route(fast.id, topic);
        for seq in 1..=3 {
            publish(&hub, topic, &message_event(c, seq, UserId::new(), None));
            // The fast client reads as it goes.
            assert_eq!(fast.frames().len(), 1);
        }
        assert_eq!(slow.close.code(), Some(CLOSE_SLOW_CONSUMER));
        assert_eq!(fast.close.code(), None);
        // The frame over the limit was queued; the session writes what it has, then closes.
        assert_eq!(slow.frames().len(), 3);
        assert!(metrics
            .render(Default::default())
            .contains("chat_slow_consumers_closed_total 1"));
    }

    /// A session over its limit, routed to a fresh conversation, and a publisher to it.
    fn backlogged(limit: usize, grace: Duration) -> (Hub, Client, impl Fn(&Hub)) {
        let hub = hub();
        let c = ConversationId::new();
        let topic = Topic::Conversation(c);
        let client = connect_with(&hub, UserId::new(), None, limit, grace);
        hub.route(client.id, topic);
        let seq = std::sync::atomic::AtomicI64::new(0);
        let send = move |hub: &Hub| {
            let seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
            publish(hub, topic, &message_event(c, seq, UserId::new(), None));
        };
        (hub, client, send)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_over_the_limit_that_the_session_drains_within_the_grace_closes_nothing() {
        let grace = Duration::from_secs(1);
        let (hub, mut client, send) = backlogged(2, grace);
        // A commit batch lands at once: twice the limit before the session runs.
        for _ in 0..4 {
            send(&hub);
        }
        tokio::time::advance(grace - Duration::from_millis(100)).await;
        send(&hub);
        assert_eq!(
            client.close.code(),
            None,
            "over the limit, within the grace"
        );
        // The session drains it...
        assert_eq!(client.frames().len(), 5);
        client.close.drained();
        // ...so a later burst starts a grace of its own.
        tokio::time::advance(Duration::from_millis(500)).await;
        for _ in 0..3 {
            send(&hub);
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        send(&hub);
        assert_eq!(client.close.code(), None, "the second burst is 500 ms old");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_over_its_limit_for_the_grace_is_closed_at_the_next_event() {
        let grace = Duration::from_secs(1);
        let (hub, client, send) = backlogged(2, grace);
        for _ in 0..3 {
            send(&hub);
        }
        tokio::time::advance(grace).await;
        assert_eq!(client.close.code(), None, "nothing more came yet");
        send(&hub);
        assert_eq!(client.close.code(), Some(CLOSE_SLOW_CONSUMER));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_with_more_than_the_limit_queued_closes_once_events_stopped() {
        let (hub, mut client, send) = backlogged(2, Duration::from_secs(1));
        send(&hub);
        send(&hub);
        assert!(
            !hub.stalled(client.id, 0),
            "within the limit: a slow write alone is not slow"
        );
        assert_eq!(client.close.code(), None);
        send(&hub);
        assert!(
            hub.stalled(client.id, 0),
            "over the limit behind a stalled write"
        );
        assert_eq!(client.close.code(), Some(CLOSE_SLOW_CONSUMER));
        assert_eq!(client.frames().len(), 3, "what was queued is still written");
        assert!(hub
            .metrics
            .render(Default::default())
            .contains("chat_slow_consumers_closed_total 1"));
        assert!(!hub.stalled(SessionId::new(), 9), "an unknown session");
    }

    #[tokio::test(start_paused = true)]
    async fn frames_in_the_sessions_hands_count_behind_a_stalled_write() {
        let (hub, client, send) = backlogged(2, Duration::from_secs(1));
        send(&hub);
        assert!(
            !hub.stalled(client.id, 1),
            "one queued and one in hand: within the limit"
        );
        assert_eq!(client.close.code(), None);
        assert!(
            hub.stalled(client.id, 2),
            "one queued and two in hand (the rest of a fetched page): over the limit"
        );
        assert_eq!(client.close.code(), Some(CLOSE_SLOW_CONSUMER));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_channel_closes_at_once_whatever_the_grace() {
        let (hub, mut client, send) = backlogged(2, Duration::from_secs(3600));
        for _ in 0..2 * QUEUE_HEADROOM {
            send(&hub);
        }
        assert_eq!(client.close.code(), None);
        send(&hub);
        assert_eq!(client.close.code(), Some(CLOSE_SLOW_CONSUMER));
        assert_eq!(client.frames().len(), 2 * QUEUE_HEADROOM);
    }

    #[test]
    fn the_outbound_queue_depth_sums_unread_frames_and_names_the_fullest_queue() {
        let hub = hub();
        let c = ConversationId::new();
        let topic = Topic::Conversation(c);
        let mut reader = connect(&hub, UserId::new(), None, 16);
        let idle = connect(&hub, UserId::new(), None, 16);
        hub.route(reader.id, topic);
        hub.route(idle.id, topic);
        assert_eq!(hub.outbound_queue_depth(), (0, 0));
        for seq in 1..=3 {
            publish(&hub, topic, &message_event(c, seq, UserId::new(), None));
        }
        assert_eq!(hub.outbound_queue_depth(), (6, 3));
        assert_eq!(reader.frames().len(), 3);
        assert_eq!(hub.outbound_queue_depth(), (3, 3));
    }

    #[test]
    fn a_removed_member_is_unrouted_before_the_next_event_and_hears_of_it_once() {
        let hub = hub();
        let (c, leaver, stayer) = (ConversationId::new(), UserId::new(), UserId::new());
        let (ct, ut) = (Topic::Conversation(c), Topic::User(leaver));
        let mut gone = connect(&hub, leaver, None, 8);
        let mut kept = connect(&hub, stayer, None, 8);
        hub.route(gone.id, ct);
        hub.route(gone.id, ut);
        hub.route(kept.id, ct);
        let removal = membership(c, ConversationChange::MemberRemoved, leaver);
        publish(&hub, ct, &removal);
        publish(&hub, ut, &removal);
        publish(&hub, ct, &message_event(c, 5, stayer, None));
        assert!(!hub.is_routed(gone.id, ct));
        let frames = gone.frames();
        assert_eq!(frames.len(), 1, "the removal once, and no later message");
        assert!(frames[0].contains("member_removed"));
        assert_eq!(kept.frames().len(), 2);
    }

    #[test]
    fn an_added_member_is_routed_to_the_conversation_at_once() {
        let hub = hub();
        let (c, joiner) = (ConversationId::new(), UserId::new());
        let (ct, ut) = (Topic::Conversation(c), Topic::User(joiner));
        let mut new = connect(&hub, joiner, None, 8);
        let mut elsewhere = connect(&hub, joiner, Some(ConversationId::new()), 8);
        hub.route(new.id, ut);
        hub.route(elsewhere.id, ut);
        let addition = membership(c, ConversationChange::MemberAdded, joiner);
        publish(&hub, ut, &addition);
        publish(&hub, ct, &addition);
        publish(&hub, ct, &message_event(c, 1, UserId::new(), None));
        assert!(hub.is_routed(new.id, ct));
        assert!(
            !hub.is_routed(elsewhere.id, ct),
            "a session of another conversation stays on its own"
        );
        assert_eq!(new.frames().len(), 2, "the addition once, then the message");
        assert!(elsewhere.frames().is_empty());
    }

    #[test]
    fn a_conversation_session_hears_only_its_conversation_from_the_user_channel() {
        let hub = hub();
        let (mine, other, user) = (ConversationId::new(), ConversationId::new(), UserId::new());
        let ut = Topic::User(user);
        let mut scoped = connect(&hub, user, Some(mine), 8);
        hub.route(scoped.id, ut);
        for c in [mine, other] {
            let unread = Event::Unread {
                conversation_id: c,
                unread_count: 1,
                total: 2,
            };
            publish(&hub, ut, &unread);
        }
        let frames = scoped.frames();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].contains(&mine.to_string()));
    }

    #[test]
    fn unregistering_removes_every_route() {
        let hub = hub();
        let c = ConversationId::new();
        let mut a = connect(&hub, UserId::new(), None, 8);
        hub.route(a.id, Topic::Conversation(c));
        hub.unregister(a.id);
        publish(
            &hub,
            Topic::Conversation(c),
            &message_event(c, 1, UserId::new(), None),
        );
        assert!(a.frames().is_empty());
        assert_eq!(hub.session_count(), 0);
        assert!(
            !hub.route(a.id, Topic::Conversation(c)),
            "an unknown session is not routed"
        );
    }

    #[test]
    fn resubscription_asks_every_session_to_resync() {
        let hub = hub();
        let mut a = connect(&hub, UserId::new(), None, 8);
        assert_eq!(hub.resubscriptions(), 0);
        hub.resubscribed();
        assert!(matches!(a.rx.try_recv(), Ok(Inbound::Resync)));
        assert_eq!(hub.resubscriptions(), 1);
    }

    #[test]
    fn close_all_asks_every_session_to_close_with_the_code() {
        let hub = hub();
        let a = connect(&hub, UserId::new(), None, 8);
        let b = connect(&hub, UserId::new(), None, 8);
        hub.close_all(1001);
        assert_eq!((a.close.code(), b.close.code()), (Some(1001), Some(1001)));
        assert!(!a.close.close(4009), "the first code wins");
    }

    #[test]
    fn a_session_registered_after_close_all_is_asked_to_close_at_once() {
        let hub = hub();
        hub.close_all(1001);
        let late = connect(&hub, UserId::new(), None, 8);
        assert_eq!(late.close.code(), Some(1001));
    }

    fn delivered(c: ConversationId, user: UserId, seq: i64, since_seq: i64) -> Event {
        Event::Delivered {
            conversation_id: c,
            message_id: MessageId::new(),
            seq,
            since_seq,
            user_id: user,
        }
    }

    fn read(c: ConversationId, user: UserId, seq: i64, since_seq: i64) -> Event {
        Event::Read {
            conversation_id: c,
            message_id: MessageId::new(),
            seq,
            since_seq,
            read_by: user,
            read_at: Utc::now(),
        }
    }

    #[test]
    fn a_receipt_reaches_only_the_sessions_of_users_who_sent_a_message_it_covers() {
        let hub = hub();
        let c = ConversationId::new();
        let topic = Topic::Conversation(c);
        let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
        let mut a = connect(&hub, alice, None, 16);
        let mut b = connect(&hub, bob, None, 16);
        let mut k = connect(&hub, carol, None, 16);
        for s in [&a, &b, &k] {
            hub.route(s.id, topic);
            hub.receipt_floor(s.id, c, 0);
        }
        publish(&hub, topic, &message_event(c, 1, alice, Some(a.id)));
        publish(&hub, topic, &message_event(c, 2, carol, Some(k.id)));
        let _ = (a.frames(), b.frames(), k.frames());
        // Bob has 1: only Alice's message is covered.
        publish(&hub, topic, &delivered(c, bob, 1, 0));
        assert_eq!(a.frames().len(), 1, "the sender of seq 1 hears of it");
        assert!(
            b.frames().is_empty(),
            "not the member whose watermark it is"
        );
        assert!(k.frames().is_empty(), "Carol's seq 2 is not in (0, 1]");
        // Bob moves on to 2: covers Carol's only.
        publish(&hub, topic, &delivered(c, bob, 2, 1));
        assert!(a.frames().is_empty(), "nothing of Alice's in (1, 2]");
        assert_eq!(k.frames().len(), 1);
        assert!(b.frames().is_empty());
    }

    #[test]
    fn a_session_that_has_not_told_its_floor_gets_every_receipt() {
        let hub = hub();
        let c = ConversationId::new();
        let topic = Topic::Conversation(c);
        let mut fresh = connect(&hub, UserId::new(), None, 16);
        hub.route(fresh.id, topic);
        publish(&hub, topic, &delivered(c, UserId::new(), 9, 8));
        assert_eq!(fresh.frames().len(), 1);
        // Told that its user may have sent up to 5: a move from 8 concerns it no more.
        hub.receipt_floor(fresh.id, c, 5);
        publish(&hub, topic, &delivered(c, UserId::new(), 10, 8));
        assert!(fresh.frames().is_empty());
        publish(&hub, topic, &delivered(c, UserId::new(), 10, 4));
        assert_eq!(
            fresh.frames().len(),
            1,
            "a move from below 5 may cover its messages"
        );
    }

    #[test]
    fn a_floor_told_late_never_hides_a_message_sent_meanwhile() {
        let hub = hub();
        let (c, me) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut s = connect(&hub, me, None, 16);
        hub.route(s.id, topic);
        publish(&hub, topic, &message_event(c, 7, me, Some(s.id)));
        hub.receipt_floor(s.id, c, 3);
        publish(&hub, topic, &delivered(c, UserId::new(), 7, 6));
        assert_eq!(s.frames().len(), 1, "seq 7 is ours");
    }

    #[test]
    fn a_readers_other_sessions_hear_of_their_own_read_watermark() {
        let hub = hub();
        let (c, reader) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut phone = connect(&hub, reader, None, 16);
        let mut bystander = connect(&hub, UserId::new(), None, 16);
        for s in [&phone, &bystander] {
            hub.route(s.id, topic);
            hub.receipt_floor(s.id, c, 0);
        }
        publish(&hub, topic, &read(c, reader, 4, 0));
        assert_eq!(phone.frames().len(), 1);
        assert!(bystander.frames().is_empty(), "sent nothing it covers");
        publish(&hub, topic, &delivered(c, reader, 5, 4));
        assert!(
            phone.frames().is_empty(),
            "own delivered watermark: not needed"
        );
    }
}
