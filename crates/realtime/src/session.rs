//! A WebSocket session's state, without I/O: what it follows (a feed per conversation),
//! the live messages it holds after `hello`, the sends awaiting their acknowledgement, the
//! typing leases it started, the presence it already wrote, and the holes it waits to fetch.
//!
//! The socket shell (the server's `ws::session`) feeds it what happened (a delivery, an
//! acknowledged send, a fetched page, the time) and does what it answers: write these frames,
//! mark this message delivered, fetch this range. Every decision about ordering, holding,
//! deduplicating and fetching is made here, and tested here without sockets or storage.

use crate::changes_feed::ChangeFeed;
pub use crate::changes_feed::{ChangeSync, Replayed};
use crate::hub::Delivery;
use crate::wire;
use bytestring::ByteString;
use domain::conversation::ConversationState;
use domain::delivery::OrderedFeed;
use domain::services::MessageView;
use domain::{ConversationId, MessageId, UserId};
use protocol::server::{ConversationSnapshot, SyncState, Watermarks};
use protocol::ServerFrame;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// A seq of a conversation's feed: a message frame to write, or the session's own message,
/// acknowledged with `message_sent` instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A message for the client.
    Message(Box<Outgoing>),
    /// The session's own message: its ack tells the client.
    Acked,
}

/// A message frame to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The `message` frame.
    pub frame: ByteString,
    /// Its seq.
    pub seq: i64,
    /// Its id.
    pub id: MessageId,
    /// Its sender.
    pub sender: UserId,
    /// Fetched from storage: fetching already counted as delivery.
    pub fetched: bool,
    /// A live message: when its send reached the server and when it was published after
    /// its commit (Unix µs, from the envelope header), for the latency metrics.
    pub sent_at: Option<i64>,
    /// See `sent_at`.
    pub committed_at: Option<i64>,
}

impl Outgoing {
    /// A live message whose latency the metrics record once written.
    pub fn measured(&self) -> bool {
        !self.fetched && (self.sent_at.is_some() || self.committed_at.is_some())
    }
}

/// What a feed let through: the frames to write, in order, and then the newest live message
/// of someone else among them, to mark delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// The messages to write, in seq order.
    pub messages: Vec<Outgoing>,
    /// `(seq, id)` of the newest live message of another user among them.
    pub delivered: Option<(i64, MessageId)>,
}

impl Release {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

/// What to do about a hole a live event may have left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// No hole, or one this session does not fetch now (its own sends explain it, the client
    /// is paging a `sync`, or it is already due later).
    Nothing,
    /// Fetch it now (no grace configured).
    FetchNow,
    /// Scheduled: fetched at [`SessionState::gaps_due`] if still open.
    Later,
}

/// How a `sync` of one conversation goes on, after [`SessionState::plan_sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncPlan {
    /// Answered without reading storage (see [`SessionState::plan_sync`]).
    Current(SyncState),
    /// The client lacks messages from before this connection's live stream began, while
    /// live ones were already written: replay `(after, upper]` (at most `limit`) outside the
    /// feed, so nothing comes twice. `position` is the feed's position.
    Before {
        /// Fetch after this seq.
        after: i64,
        /// Up to (and including) this one, the feed's base.
        upper: i64,
        /// At most this many.
        limit: u32,
        /// The feed's position.
        position: i64,
    },
    /// The feed moved to `cursor` (back, or forward past what the client holds): write
    /// `release`, then replay a page after `cursor` through the feed.
    Through {
        /// Fetch after this seq.
        cursor: i64,
        /// What the move let through.
        release: Release,
        /// A later page of a replay begun before (`has_more` then).
        continued: bool,
    },
    /// Not followed (the session just left it).
    NotFollowed,
}

/// Why a frame's conversation is not one the session may act in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a member, or outside the session's `/ws/chat/{id}` scope (`not_participant`).
    NotParticipant,
    /// `conversation_id` is required on `/ws` (`validation_failed`).
    ConversationRequired,
    /// A `sync` cursor below zero (`validation_failed`).
    NegativeCursor,
}

/// What a conversation event (created, member added or removed) does to this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Nothing beyond writing the frame.
    Unchanged,
    /// The user joined `conversation` at `base` and the session follows it now: take a
    /// pub/sub reference, set the receipt floor at `base` (a member who was in it before
    /// may have sent messages up to there), then catch up from storage whatever was
    /// committed before the subscription held.
    Joined {
        /// The conversation.
        conversation: ConversationId,
        /// Its last seq at the join.
        base: i64,
    },
    /// The user left `conversation` (or was removed): no longer followed; drop the
    /// pub/sub reference, and close with 4003 when it was the session's scope.
    Left {
        /// The conversation.
        conversation: ConversationId,
        /// The session was of `/ws/chat/{conversation}`.
        close: bool,
    },
}

/// One conversation as this session follows it.
#[derive(Debug)]
struct Feed {
    order: OrderedFeed<Item>,
    /// The feed started here without writing anything up to it (the `hello` snapshot or
    /// the join): a `sync` below it may rewind while nothing was written since.
    base: i64,
    /// The client is paging through a `sync`: its hole is the client's to fill.
    syncing: bool,
    /// Set while the feed is still exactly as the `hello` snapshot started it (until its
    /// first `sync` that is not answered from it).
    fresh: Option<Fresh>,
}

/// What a feed started from the `hello` snapshot knows without asking storage.
#[derive(Debug)]
struct Fresh {
    /// The snapshot's watermarks (what `hello` said).
    watermarks: Watermarks,
    /// [`crate::hub::Hub::resubscriptions`] just before the snapshot was read.
    resubscriptions: u64,
}

/// The limits a session's state keeps to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Messages a feed keeps waiting behind a hole, and live messages held after `hello`.
    pub max_pending: usize,
    /// How long a live hole our own sends do not explain may stay before it is fetched
    /// (`realtime.gap_grace`; zero: at once).
    pub gap_grace: Duration,
    /// Whether live messages are held after `hello` until the client's first frame.
    pub hold: bool,
}

/// The state of one session. See the module documentation.
#[derive(Debug)]
pub struct SessionState {
    user: UserId,
    scope: Option<ConversationId>,
    limits: Limits,
    feeds: HashMap<ConversationId, Feed>,
    /// The change cursor of each conversation followed (edits, deletions, reactions).
    changes: HashMap<ConversationId, ChangeFeed>,
    /// Sends of this session awaiting their commit, per conversation. A hole no larger than
    /// that is most likely this session's own messages (the peer's next one can overtake our
    /// ack): its fetch waits for the acks, which fill it without a storage read and without
    /// echoing our own messages back to us.
    sending: HashMap<ConversationId, u32>,
    /// The `temp_id`s of those sends: a fetch that finds one of them committed (its ack not
    /// yet here) passes it silently, as its ack will, instead of echoing it back.
    unacked: HashSet<(ConversationId, String)>,
    /// Conversations where this session started a typing lease that it has not ended yet:
    /// its send there, or its close, ends the lease. A session that never typed costs the
    /// typing store nothing when it sends or closes.
    typing_in: Vec<ConversationId>,
    /// Live messages held after `hello` until the client's first frame (or the hold time).
    held: Option<Vec<Delivery>>,
    /// Conversations whose held messages did not all fit: fetched when the hold ends.
    overflowed: HashSet<ConversationId>,
    /// The last presence frame written per user, so copies from other topics are skipped.
    presence_seen: HashMap<UserId, ByteString>,
    /// Conversations with a hole seen live that our own sends do not explain, fetched at
    /// `gaps_due` if still open.
    gaps: Vec<ConversationId>,
    gaps_due: Option<Instant>,
    /// The user said they are away (`presence` frame).
    away: bool,
    /// Followed conversations that are end-to-end encrypted: learnt from the `hello`
    /// snapshot, a join's conversation event and `encryption_enabled`, never unlearnt while
    /// followed. Sends are checked against it without a storage read.
    encrypted: HashSet<ConversationId>,
}

impl SessionState {
    /// The state of a new session of `user` (on `/ws/chat/{scope}` when `scope` is set).
    pub fn new(user: UserId, scope: Option<ConversationId>, limits: Limits) -> Self {
        Self {
            user,
            scope,
            limits,
            feeds: HashMap::new(),
            changes: HashMap::new(),
            sending: HashMap::new(),
            unacked: HashSet::new(),
            typing_in: Vec::new(),
            held: None,
            overflowed: HashSet::new(),
            presence_seen: HashMap::new(),
            gaps: Vec::new(),
            gaps_due: None,
            away: false,
            encrypted: HashSet::new(),
        }
    }

    /// `c` is end-to-end encrypted (the `hello` snapshot said so). Never undone while `c`
    /// is followed.
    pub fn encryption_on(&mut self, c: ConversationId) {
        if self.feeds.contains_key(&c) {
            self.encrypted.insert(c);
        }
    }

    /// Whether the followed conversation `c` is end-to-end encrypted, as far as this
    /// session heard: what its sends there are checked against.
    pub fn encrypted(&self, c: ConversationId) -> bool {
        self.encrypted.contains(&c)
    }

    /// Whether the user said they are away.
    pub fn away(&self) -> bool {
        self.away
    }

    /// The user's away status was stored.
    pub fn set_away(&mut self, away: bool) {
        self.away = away;
    }

    /// The session's user.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The conversation of `/ws/chat/{id}`.
    pub fn scope(&self) -> Option<ConversationId> {
        self.scope
    }

    // ------------------------------------------------------------------ following

    /// Follows a conversation of the `hello` snapshot from its `last_seq`; `resubscriptions`
    /// as the hub counted them just before the snapshot was read. Answers the snapshot's
    /// entry and the receipt floor: messages of this user not yet read by everyone are at
    /// most `last_seq`, so receipts above it are not this session's concern.
    pub fn follow_snapshot(
        &mut self,
        state: &ConversationState,
        resubscriptions: u64,
    ) -> (ConversationSnapshot, i64) {
        let last_seq = state.last_seq;
        let entry = wire::snapshot(state);
        self.changes.insert(
            state.conversation_id,
            ChangeFeed::new(state.last_change, self.limits.max_pending),
        );
        self.feeds.insert(
            state.conversation_id,
            Feed {
                order: OrderedFeed::new(last_seq, self.limits.max_pending),
                base: last_seq,
                syncing: false,
                fresh: Some(Fresh {
                    watermarks: entry.watermarks,
                    resubscriptions,
                }),
            },
        );
        let floor = if state.peer_read_seq < last_seq {
            last_seq
        } else {
            0
        };
        (entry, floor)
    }

    /// Live messages are held from now until [`Self::release_hold`] (if holding is on).
    pub fn hello_sent(&mut self) {
        if self.limits.hold {
            self.held = Some(Vec::new());
        }
    }

    /// Whether the session follows `c` (its user is a member of it).
    pub fn follows(&self, c: ConversationId) -> bool {
        self.feeds.contains_key(&c)
    }

    /// The conversations followed.
    pub fn followed(&self) -> Vec<ConversationId> {
        self.feeds.keys().copied().collect()
    }

    /// Whether a conversation event saying the user joined `c` starts a feed here: one not
    /// followed yet, within the session's scope.
    pub fn joins(&self, c: ConversationId) -> bool {
        !self.feeds.contains_key(&c) && self.scope.is_none_or(|s| s == c)
    }

    /// Follows `c` from the join at `base` on (`change_base`: its change number then).
    pub fn follow_joined(&mut self, c: ConversationId, base: i64, change_base: i64) {
        self.changes
            .insert(c, ChangeFeed::new(change_base, self.limits.max_pending));
        self.feeds.insert(
            c,
            Feed {
                order: OrderedFeed::new(base, self.limits.max_pending),
                base,
                syncing: false,
                fresh: None,
            },
        );
    }

    /// Stops following `c`.
    pub fn leave(&mut self, c: ConversationId) {
        self.feeds.remove(&c);
        self.changes.remove(&c);
        self.encrypted.remove(&c);
    }

    /// A conversation event (its frame goes to the client as it is): whether it starts or
    /// ends the following of a conversation.
    pub fn conversation_event(&mut self, header: &crate::envelope::Header) -> Membership {
        let Some(c) = header.conversation else {
            return Membership::Unchanged;
        };
        if header.joined == Some(self.user) && self.joins(c) {
            let base = header.seq.unwrap_or(0);
            self.follow_joined(c, base, header.change.unwrap_or(0));
            if header.encrypted {
                self.encryption_on(c);
            }
            Membership::Joined {
                conversation: c,
                base,
            }
        } else if header.left == Some(self.user) {
            self.leave(c);
            Membership::Left {
                conversation: c,
                close: self.scope == Some(c),
            }
        } else {
            // `encryption_enabled`, or any later event of an encrypted conversation.
            if header.encrypted {
                self.encryption_on(c);
            }
            Membership::Unchanged
        }
    }

    /// The conversation a frame names: the session's own on `/ws/chat/{id}` (where it may be
    /// omitted, and no other may be named); on `/ws` it must be named.
    pub fn conversation_of(
        &self,
        named: Option<ConversationId>,
    ) -> Result<ConversationId, Refusal> {
        match (self.scope, named) {
            (Some(scope), None) => Ok(scope),
            (Some(scope), Some(c)) if c == scope => Ok(c),
            (Some(_), Some(_)) => Err(Refusal::NotParticipant),
            (None, Some(c)) => Ok(c),
            (None, None) => Err(Refusal::ConversationRequired),
        }
    }

    /// [`Self::conversation_of`], and the session must follow it (its user a member).
    pub fn followed_of(&self, named: Option<ConversationId>) -> Result<ConversationId, Refusal> {
        let c = self.conversation_of(named)?;
        if self.follows(c) {
            Ok(c)
        } else {
            Err(Refusal::NotParticipant)
        }
    }

    /// The conversations and cursors of a `sync` frame, checked all first: none negative,
    /// each followed here and within the scope. One bad entry refuses the whole frame.
    pub fn sync_targets(
        &self,
        cursors: impl IntoIterator<Item = (ConversationId, i64)>,
    ) -> Result<Vec<(ConversationId, i64)>, Refusal> {
        let mut wanted = Vec::new();
        for (c, cursor) in cursors {
            if cursor < 0 {
                return Err(Refusal::NegativeCursor);
            }
            if !self.follows(c) || self.scope.is_some_and(|s| s != c) {
                return Err(Refusal::NotParticipant);
            }
            wanted.push((c, cursor));
        }
        Ok(wanted)
    }

    // ------------------------------------------------------------------ live events

    /// A live message: held (or dropped from a full hold, to be fetched when it ends) while
    /// the hold lasts, else handed back to offer.
    pub fn hold(&mut self, delivery: Delivery) -> Option<Delivery> {
        let Some(held) = &mut self.held else {
            return Some(delivery);
        };
        if held.len() < self.limits.max_pending {
            held.push(delivery);
        } else if let Some(c) = delivery.header.conversation {
            self.overflowed.insert(c);
        }
        None
    }

    /// Whether live messages are held.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Ends the hold: the live messages held, to offer in order, and the conversations whose
    /// held messages did not all fit, to catch up. `None`: no hold.
    pub fn release_hold(&mut self) -> Option<(Vec<Delivery>, Vec<ConversationId>)> {
        let held = self.held.take()?;
        Some((held, self.overflowed.drain().collect()))
    }

    /// Whether a presence frame of `user` is new here: a user's presence is published on
    /// each conversation they are in, so a session sharing several with them hears it once.
    pub fn presence_is_new(&mut self, user: UserId, frame: &ByteString) -> bool {
        if self.presence_seen.get(&user) == Some(frame) {
            return false;
        }
        self.presence_seen.insert(user, frame.clone());
        true
    }

    /// A live message into its feed: what the feed lets through. `None`: not a message of
    /// a conversation followed here.
    pub fn offer_live(&mut self, delivery: &Delivery) -> Option<(ConversationId, Release)> {
        let header = &delivery.header;
        let (Some(c), Some(seq), Some(id), Some(sender)) = (
            header.conversation,
            header.seq,
            header.message_id,
            header.user,
        ) else {
            return None;
        };
        let feed = self.feeds.get_mut(&c)?;
        let items = feed.order.offer(
            seq,
            Item::Message(Box::new(Outgoing {
                frame: delivery.frame.clone(),
                seq,
                id,
                sender,
                fetched: false,
                sent_at: header.sent_at,
                committed_at: header.committed_at,
            })),
        );
        Some((c, self.release(items)))
    }

    fn release(&self, items: Vec<Item>) -> Release {
        let mut release = Release::default();
        for item in items {
            if let Item::Message(message) = item {
                if message.sender != self.user && !message.fetched {
                    release.delivered = Some((message.seq, message.id));
                }
                release.messages.push(*message);
            }
        }
        release
    }

    // ------------------------------------------------------------------ changes

    /// A live change (edit, deletion, reaction): what its conversation's change feed lets
    /// through, in change order. `None`: not a change of a conversation followed here.
    pub fn offer_change(
        &mut self,
        delivery: &Delivery,
    ) -> Option<(ConversationId, Vec<ByteString>)> {
        let header = &delivery.header;
        let (Some(c), Some(change)) = (header.conversation, header.change) else {
            return None;
        };
        let feed = self.changes.get_mut(&c)?;
        Some((c, feed.offer(change, delivery.frame.clone())))
    }

    /// A live change may have left a hole in `c`'s change feed: fetched now (no grace), or
    /// once the grace passed if it is still open then.
    pub fn change_gap_seen(&mut self, c: ConversationId, now: Instant) -> Gap {
        if self.change_hole(c).is_none() {
            return Gap::Nothing;
        }
        let grace = self.limits.gap_grace;
        if grace.is_zero() {
            return Gap::FetchNow;
        }
        self.schedule_gap(c, now + grace);
        Gap::Later
    }

    /// Where a fetch for the hole of `c`'s change feed starts, if live changes wait.
    pub fn change_hole(&self, c: ConversationId) -> Option<i64> {
        self.changes.get(&c)?.hole()
    }

    /// The change number `c`'s client holds everything up to, as far as this session knows.
    pub fn change_position(&self, c: ConversationId) -> Option<i64> {
        self.changes.get(&c).map(ChangeFeed::position)
    }

    /// A page of changes read after the change position of `c` (`(change, frame)` in change
    /// order): what to write. `None`: `c` is not followed.
    pub fn changes_fetched(
        &mut self,
        c: ConversationId,
        page: Vec<(i64, ByteString)>,
    ) -> Option<Vec<ByteString>> {
        Some(self.changes.get_mut(&c)?.fetched(page))
    }

    /// How a `sync`'s change cursor for `c` is answered (see [`ChangeFeed::plan_sync`]).
    pub fn plan_change_sync(&mut self, c: ConversationId, cursor: i64) -> Option<ChangeSync> {
        Some(self.changes.get_mut(&c)?.plan_sync(cursor))
    }

    /// Whether live changes of `c` were dropped while a replay paged: catch up from storage.
    pub fn changes_overflowed(&mut self, c: ConversationId) -> bool {
        self.changes
            .get_mut(&c)
            .is_some_and(ChangeFeed::take_overflowed)
    }

    /// The page a [`ChangeSync::Replay`] of `c` read after `after` (see
    /// [`ChangeFeed::replayed`]).
    pub fn changes_replayed(
        &mut self,
        c: ConversationId,
        after: i64,
        page: Vec<(i64, ByteString)>,
        full: bool,
    ) -> Option<Replayed> {
        Some(self.changes.get_mut(&c)?.replayed(after, page, full))
    }

    // ------------------------------------------------------------------ own sends

    /// A send to `c` was queued for its commit.
    pub fn send_queued(&mut self, c: ConversationId, temp_id: Option<&str>) {
        *self.sending.entry(c).or_default() += 1;
        if let Some(t) = temp_id {
            self.unacked.insert((c, t.to_owned()));
        }
    }

    /// A send to `c` was answered (committed or not).
    pub fn send_answered(&mut self, c: ConversationId, temp_id: Option<&str>) {
        if let Some(t) = temp_id {
            self.unacked.remove(&(c, t.to_owned()));
        }
        if let Some(pending) = self.sending.get_mut(&c) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                self.sending.remove(&c);
            }
        }
    }

    /// The session's own message `seq` of `c` was acknowledged: its feed moves past it
    /// silently.
    pub fn own_committed(&mut self, c: ConversationId, seq: i64) -> Release {
        let Some(feed) = self.feeds.get_mut(&c) else {
            return Release::default();
        };
        let items = feed.order.offer(seq, Item::Acked);
        self.release(items)
    }

    // ------------------------------------------------------------------ typing

    /// The session's typing event in `c` was stored: a start holds a lease until a send
    /// or the close ends it.
    pub fn typed(&mut self, c: ConversationId, is_typing: bool) {
        self.typing_in.retain(|t| *t != c);
        if is_typing {
            self.typing_in.push(c);
        }
    }

    /// A new message of the session in `c` ends its lease there: whether it held one.
    pub fn typing_ended_by_send(&mut self, c: ConversationId) -> bool {
        match self.typing_in.iter().position(|t| *t == c) {
            Some(i) => {
                self.typing_in.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The leases the close ends.
    pub fn typing_leases(&self) -> &[ConversationId] {
        &self.typing_in
    }

    // ------------------------------------------------------------------ holes

    /// A live event may have left a hole in `c`'s feed: one our own unacknowledged sends do
    /// not explain is fetched once the grace passed, if it is still open then (at once with
    /// no grace).
    pub fn gap_seen(&mut self, c: ConversationId, now: Instant) -> Gap {
        let grace = self.limits.gap_grace;
        if grace.is_zero() {
            return Gap::FetchNow;
        }
        let Some(feed) = self.feeds.get(&c) else {
            return Gap::Nothing;
        };
        let Some((after, up_to)) = feed.order.missing() else {
            return Gap::Nothing;
        };
        if feed.syncing || self.own_sends_explain(c, after, up_to) || self.gaps.contains(&c) {
            return Gap::Nothing;
        }
        self.schedule_gap(c, now + grace);
        Gap::Later
    }

    /// `c`'s holes (of messages and of changes: the shell fills both) are fetched at `due`,
    /// or with the holes already scheduled, whichever comes first.
    fn schedule_gap(&mut self, c: ConversationId, due: Instant) {
        if !self.gaps.contains(&c) {
            self.gaps.push(c);
        }
        self.gaps_due.get_or_insert(due);
    }

    /// When the holes seen live are due to be fetched.
    pub fn gaps_due(&self) -> Option<Instant> {
        self.gaps_due
    }

    /// The conversations whose holes are due (they are fetched if still open).
    pub fn take_due_gaps(&mut self) -> Vec<ConversationId> {
        self.gaps_due = None;
        std::mem::take(&mut self.gaps)
    }

    /// Whether the hole `(after, up_to]` of `c` is (most likely) this session's own sends
    /// awaiting their ack: it is no larger than they are, and their acks fill it. A larger
    /// one holds someone else's message.
    fn own_sends_explain(&self, c: ConversationId, after: i64, up_to: i64) -> bool {
        up_to - after <= i64::from(self.sending.get(&c).copied().unwrap_or(0))
    }

    /// The next range of `c` to fetch for its hole: `(after, limit)`, at most `page_size`.
    /// `None`: no hole, the client is paging a `sync`, or our own sends explain it.
    pub fn hole_to_fetch(&self, c: ConversationId, page_size: u32) -> Option<(i64, u32)> {
        let feed = self.feeds.get(&c)?;
        if feed.syncing {
            return None;
        }
        let (after, up_to) = feed.order.missing()?;
        if self.own_sends_explain(c, after, up_to) {
            return None;
        }
        let limit = u32::try_from((up_to - after).clamp(1, i64::from(page_size))).unwrap_or(1);
        Some((after, limit))
    }

    /// Whether `c` is followed, not paging a `sync`, and without a hole: fetched holes done,
    /// what storage has past the position may come next.
    pub fn hole_filled(&self, c: ConversationId) -> bool {
        self.feeds
            .get(&c)
            .is_some_and(|f| !f.syncing && f.order.missing().is_none())
    }

    /// Where a catch-up of `c` fetches from (the feed's position); `None` when it is not
    /// followed or the client is paging a `sync`.
    pub fn catch_up_from(&self, c: ConversationId) -> Option<i64> {
        let feed = self.feeds.get(&c)?;
        (!feed.syncing).then(|| feed.order.delivered_up_to())
    }

    /// The feed's position in `c` (what it let through up to).
    pub fn position(&self, c: ConversationId) -> Option<i64> {
        self.feeds.get(&c).map(|f| f.order.delivered_up_to())
    }

    /// A page fetched from storage into `c`'s feed (for a hole, a catch-up or a `sync`): what
    /// it lets through. A message of this session whose ack has not come yet passes
    /// silently, as its ack will. `None`: `c` is not followed.
    pub fn fetched(&mut self, c: ConversationId, page: &[MessageView]) -> Option<Release> {
        let items: Vec<(i64, Item)> = page
            .iter()
            .map(|view| {
                let m = &view.message;
                let ours = m.sender_id == self.user
                    && m.client_msg_id
                        .as_ref()
                        .is_some_and(|t| self.unacked.contains(&(c, t.clone())));
                let item = if ours {
                    Item::Acked
                } else {
                    fetched_item(view)
                };
                (m.seq, item)
            })
            .collect();
        let feed = self.feeds.get_mut(&c)?;
        let ready = feed.order.fill(items);
        Some(self.release(ready))
    }

    // ------------------------------------------------------------------ sync

    /// How a `sync` of `c` from `cursor` goes on; `resubscriptions` as the hub counts them
    /// now. Checks nothing about membership (the frame's validation did).
    ///
    /// It is answered without reading storage ([`SyncPlan::Current`]) when the cursor is
    /// current: where the `hello` snapshot started the feed (`base`, the snapshot's
    /// `last_seq`), nothing written past it, nothing waiting in the feed for a hole, no
    /// `sync` paged it since, no held live message of it dropped, and pub/sub lost no events
    /// since the snapshot. Then storage has nothing after the cursor that this session will
    /// not also get live: it subscribed before it read the snapshot, so every later commit is
    /// published to it (and comes through the feed in seq order, after this `sync_done`,
    /// exactly as if a fetch had found it first). The watermarks are the snapshot's: every
    /// receipt committed since is published after its commit and reaches this session live
    /// whenever it concerns this user; watermarks only move forward and clients keep the
    /// highest they were told (`docs/protocol.md`).
    ///
    /// Otherwise the sync reads storage and moves the feed: the snapshot answers no more.
    pub fn plan_sync(&mut self, c: ConversationId, cursor: i64, resubscriptions: u64) -> SyncPlan {
        let overflowed = self.overflowed.contains(&c);
        let Some(feed) = self.feeds.get_mut(&c) else {
            return SyncPlan::NotFollowed;
        };
        let position = feed.order.delivered_up_to();
        if let Some(fresh) = &feed.fresh {
            let current = cursor == feed.base
                && position == feed.base
                && !feed.order.has_pending()
                && !feed.syncing
                && !overflowed
                && resubscriptions == fresh.resubscriptions;
            if current {
                return SyncPlan::Current(SyncState {
                    last_seq: cursor,
                    has_more: false,
                    last_change: None,
                    watermarks: fresh.watermarks,
                });
            }
        }
        feed.fresh = None;
        let continued = feed.syncing;
        if cursor < feed.base && position != feed.base {
            let upper = feed.base;
            return SyncPlan::Before {
                after: cursor,
                upper,
                limit: u32::try_from(upper - cursor).unwrap_or(u32::MAX),
                position,
            };
        }
        // What this connection wrote past the base is the client's (in flight, if not yet
        // read): a cursor among it continues from the feed's position.
        let cursor = if cursor >= feed.base && cursor < position {
            position
        } else {
            cursor
        };
        // Nothing written past the cursor: move the feed there and replay through it, so
        // live messages wait behind the replay.
        let items = feed.order.reposition(cursor);
        feed.base = cursor;
        let release = self.release(items);
        SyncPlan::Through {
            cursor,
            release,
            continued,
        }
    }

    /// The page of a [`SyncPlan::Through`] replay came (`has_more`: the client pages on):
    /// what it lets through. `None`: `c` is no longer followed.
    pub fn sync_page(
        &mut self,
        c: ConversationId,
        page: &[MessageView],
        has_more: bool,
    ) -> Option<Release> {
        let items: Vec<(i64, Item)> = page
            .iter()
            .map(|v| (v.message.seq, fetched_item(v)))
            .collect();
        let feed = self.feeds.get_mut(&c)?;
        feed.syncing = has_more;
        let ready = feed.order.fill(items);
        Some(self.release(ready))
    }
}

/// The frame of a changed message read from storage, for its reader: `message_deleted`
/// for a tombstone, else `message_updated` with the message as it is now.
pub fn change_frame(view: &MessageView) -> String {
    let frame = if view.message.deleted_at.is_some() {
        wire::message_deleted(&view.message)
    } else {
        wire::message_updated(view, true)
    };
    wire::encode(&frame)
}

/// The `message` frame of a stored message, with its status as storage knows it.
pub fn message_frame(view: &MessageView) -> String {
    wire::encode(&ServerFrame::Message {
        message: wire::message(view),
    })
}

fn fetched_item(view: &MessageView) -> Item {
    let m = &view.message;
    Item::Message(Box::new(Outgoing {
        frame: ByteString::from(message_frame(view)),
        seq: m.seq,
        id: m.id,
        sender: m.sender_id,
        fetched: true,
        sent_at: None,
        committed_at: None,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::envelope::{Header, Kind};
    use domain::message::{ContentType, Message, MessageStatus};
    use std::sync::Arc;

    const PAGE: u32 = 50;

    fn limits(grace_ms: u64, hold: bool) -> Limits {
        Limits {
            max_pending: 4,
            gap_grace: Duration::from_millis(grace_ms),
            hold,
        }
    }

    fn state(last_seq: i64, c: ConversationId) -> ConversationState {
        ConversationState {
            conversation_id: c,
            last_seq,
            delivered_seq: last_seq,
            read_seq: last_seq,
            peer_delivered_seq: last_seq,
            peer_read_seq: last_seq,
            last_change: 0,
        }
    }

    /// A session of `me` following `c` from seq `last_seq`.
    fn session(me: UserId, c: ConversationId, last_seq: i64, limits: Limits) -> SessionState {
        let mut s = SessionState::new(me, None, limits);
        s.follow_snapshot(&state(last_seq, c), 0);
        s.hello_sent();
        s
    }

    fn live(c: ConversationId, seq: i64, sender: UserId) -> Delivery {
        let mut header = Header::new(Kind::Message, Some(c));
        header.seq = Some(seq);
        header.message_id = Some(MessageId::new());
        header.user = Some(sender);
        header.sent_at = Some(1);
        Delivery {
            header: Arc::new(header),
            frame: ByteString::from(format!("live {seq}")),
        }
    }

    fn stored(c: ConversationId, seq: i64, sender: UserId, temp_id: Option<&str>) -> MessageView {
        MessageView {
            message: Message {
                id: MessageId::new(),
                conversation_id: c,
                seq,
                sender_id: sender,
                client_msg_id: temp_id.map(str::to_owned),
                content: format!("stored {seq}"),
                content_type: ContentType::Text,
                reply_to: None,
                created_at: chrono::Utc::now(),
                edited_at: None,
                deleted_at: None,
                change_seq: 0,
                deleted_by: None,
                attachments: Vec::new(),
            },
            status: MessageStatus::Sent,
            reactions: Vec::new(),
            reply: None,
        }
    }

    fn seqs(release: &Release) -> Vec<i64> {
        release.messages.iter().map(|m| m.seq).collect()
    }

    fn offer(s: &mut SessionState, d: &Delivery) -> Release {
        s.offer_live(d).map(|(_, r)| r).unwrap_or_default()
    }

    #[test]
    fn live_messages_come_out_in_seq_order_exactly_once() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 10, limits(0, false));
        let (m11, m12, m13) = (live(c, 11, peer), live(c, 12, peer), live(c, 13, me));
        assert!(offer(&mut s, &m12).is_empty(), "12 waits for 11");
        let out = offer(&mut s, &m11);
        assert_eq!(seqs(&out), [11, 12]);
        assert_eq!(out.delivered.map(|(seq, _)| seq), Some(12));
        assert!(out.messages.iter().all(Outgoing::measured));
        assert!(
            offer(&mut s, &m11).is_empty(),
            "a copy is not written twice"
        );
        // The user's message from another session is written, but is not "delivered" news.
        let out = offer(&mut s, &m13);
        assert_eq!((seqs(&out), out.delivered), (vec![13], None));
        assert_eq!(s.position(c), Some(13));
    }

    #[test]
    fn a_conversation_not_followed_or_a_frame_without_seq_is_not_offered() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 0, limits(0, false));
        assert!(s
            .offer_live(&live(ConversationId::new(), 1, peer))
            .is_none());
        let mut no_seq = live(c, 1, peer);
        Arc::make_mut(&mut no_seq.header).seq = None;
        assert!(s.offer_live(&no_seq).is_none());
        s.leave(c);
        assert!(s.offer_live(&live(c, 1, peer)).is_none());
        assert!(!s.follows(c));
    }

    #[test]
    fn the_hold_keeps_live_messages_until_released_and_notes_what_did_not_fit() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 0, limits(0, true));
        assert!(s.holding());
        for seq in 1..=5 {
            assert!(s.hold(live(c, seq, peer)).is_none());
        }
        let (held, overflowed) = s.release_hold().unwrap();
        assert_eq!(held.len(), 4, "max_pending held");
        assert_eq!(
            overflowed,
            [c],
            "the fifth was dropped: caught up from storage"
        );
        assert!(!s.holding());
        assert!(s.release_hold().is_none());
        assert!(s.hold(live(c, 6, peer)).is_some(), "no hold: passes");
    }

    #[test]
    fn without_a_hold_nothing_is_held() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 0, limits(0, false));
        assert!(!s.holding());
        assert!(s.hold(live(c, 1, peer)).is_some());
    }

    #[test]
    fn a_presence_frame_already_written_for_a_user_is_skipped() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 0, limits(0, false));
        let online = ByteString::from_static("online");
        assert!(s.presence_is_new(peer, &online));
        assert!(
            !s.presence_is_new(peer, &online),
            "the copy from another topic"
        );
        assert!(s.presence_is_new(peer, &ByteString::from_static("away")));
        assert!(
            s.presence_is_new(peer, &online),
            "back online is news again"
        );
        assert!(s.presence_is_new(UserId::new(), &online));
    }

    #[test]
    fn a_hole_our_own_sends_explain_waits_for_their_acks() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 10, limits(100, false));
        let now = Instant::now();
        s.send_queued(c, Some("a"));
        // Our 11 is in flight; the peer's 12 overtook its ack.
        offer(&mut s, &live(c, 12, peer));
        assert_eq!(s.gap_seen(c, now), Gap::Nothing);
        assert_eq!(s.hole_to_fetch(c, PAGE), None);
        assert_eq!(s.gaps_due(), None);
        // The ack fills the hole without a fetch.
        s.send_answered(c, Some("a"));
        assert_eq!(seqs(&s.own_committed(c, 11)), [12]);
        assert_eq!(s.gap_seen(c, now), Gap::Nothing, "no hole left");
    }

    #[test]
    fn a_hole_of_someone_else_is_fetched_after_the_grace_once() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 10, limits(100, false));
        let now = Instant::now();
        s.send_queued(c, None);
        offer(&mut s, &live(c, 13, peer));
        assert_eq!(
            s.gap_seen(c, now),
            Gap::Later,
            "two missing, one send of ours"
        );
        assert_eq!(s.gaps_due(), Some(now + Duration::from_millis(100)));
        assert_eq!(s.gap_seen(c, now), Gap::Nothing, "already scheduled");
        assert_eq!(s.take_due_gaps(), [c]);
        assert_eq!(s.gaps_due(), None);
        assert_eq!(s.hole_to_fetch(c, PAGE), Some((10, 2)));
        assert_eq!(s.hole_to_fetch(c, 1), Some((10, 1)), "at most a page");
        assert!(!s.hole_filled(c));
    }

    #[test]
    fn without_a_grace_a_hole_is_fetched_at_once() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut s = session(me, c, 0, limits(0, false));
        assert_eq!(s.gap_seen(c, Instant::now()), Gap::FetchNow);
    }

    #[test]
    fn a_fetched_page_fills_the_hole_and_passes_our_unacked_send_silently() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 10, limits(100, false));
        s.send_queued(c, Some("mine"));
        offer(&mut s, &live(c, 14, peer));
        let page = [
            stored(c, 11, peer, None),
            stored(c, 12, me, Some("mine")),
            stored(c, 13, me, Some("from another session")),
        ];
        let out = s.fetched(c, &page).unwrap();
        assert_eq!(seqs(&out), [11, 13, 14]);
        assert_eq!(
            out.delivered.map(|(seq, _)| seq),
            Some(14),
            "fetching counted 11 already; 14 came live"
        );
        assert!(!out.messages[0].measured(), "fetched: no live latency");
        assert!(s.hole_filled(c));
        assert_eq!(s.catch_up_from(c), Some(14));
        assert!(s.fetched(ConversationId::new(), &page).is_none());
    }

    #[test]
    fn sync_at_the_snapshot_cursor_is_answered_without_storage() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut s = session(me, c, 7, limits(0, false));
        match s.plan_sync(c, 7, 0) {
            SyncPlan::Current(state) => {
                assert_eq!((state.last_seq, state.has_more), (7, false));
            }
            other => panic!("{other:?}"),
        }
        // Still fresh: asked again, the same answer.
        assert!(matches!(s.plan_sync(c, 7, 0), SyncPlan::Current(_)));
        assert_eq!(
            s.plan_sync(ConversationId::new(), 0, 0),
            SyncPlan::NotFollowed
        );
    }

    #[test]
    fn sync_after_pubsub_lost_events_reads_storage_and_stays_unfresh() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut s = session(me, c, 7, limits(0, false));
        match s.plan_sync(c, 7, 1) {
            SyncPlan::Through {
                cursor, continued, ..
            } => assert_eq!((cursor, continued), (7, false)),
            other => panic!("{other:?}"),
        }
        assert!(
            !matches!(s.plan_sync(c, 7, 0), SyncPlan::Current(_)),
            "a sync that read storage ends the snapshot's answers"
        );
    }

    #[test]
    fn sync_after_a_dropped_held_message_reads_storage() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = SessionState::new(me, None, limits(0, true));
        s.follow_snapshot(&state(0, c), 0);
        s.hello_sent();
        for seq in 1..=5 {
            s.hold(live(c, seq, peer));
        }
        assert!(matches!(s.plan_sync(c, 0, 0), SyncPlan::Through { .. }));
    }

    #[test]
    fn sync_below_a_base_with_live_messages_written_replays_outside_the_feed() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 10, limits(0, false));
        offer(&mut s, &live(c, 11, peer));
        assert_eq!(
            s.plan_sync(c, 4, 0),
            SyncPlan::Before {
                after: 4,
                upper: 10,
                limit: 6,
                position: 11
            }
        );
    }

    #[test]
    fn sync_moves_the_feed_and_pages_through_it() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = session(me, c, 10, limits(0, false));
        // A cursor among what this connection wrote continues from the position.
        offer(&mut s, &live(c, 11, peer));
        offer(&mut s, &live(c, 12, peer));
        assert!(matches!(
            s.plan_sync(c, 11, 0),
            SyncPlan::Through { cursor: 12, .. }
        ));
        // Back to 2: a replay of more than a page; live messages wait behind it.
        let SyncPlan::Through { cursor, .. } = s.plan_sync(c, 2, 0) else {
            panic!("a replay")
        };
        assert_eq!(cursor, 2);
        let page: Vec<_> = (3..=4).map(|seq| stored(c, seq, peer, None)).collect();
        let out = s.sync_page(c, &page, true).unwrap();
        assert_eq!((seqs(&out), out.delivered), (vec![3, 4], None));
        assert_eq!(
            s.hole_to_fetch(c, PAGE),
            None,
            "paging: the client fills holes"
        );
        assert_eq!(s.catch_up_from(c), None);
        offer(&mut s, &live(c, 13, peer));
        assert_eq!(
            s.gap_seen(c, Instant::now()),
            Gap::FetchNow,
            "no grace: the caller's fill finds it syncing"
        );
        match s.plan_sync(c, 4, 0) {
            SyncPlan::Through { continued, .. } => assert!(continued, "the next page"),
            other => panic!("{other:?}"),
        }
        let out = s.sync_page(c, &[stored(c, 5, peer, None)], false).unwrap();
        assert_eq!(seqs(&out), [5]);
        assert_eq!(s.catch_up_from(c), Some(5));
    }

    #[test]
    fn typing_leases_end_with_a_send_or_a_stop() {
        let (me, c, d) = (UserId::new(), ConversationId::new(), ConversationId::new());
        let mut s = session(me, c, 0, limits(0, false));
        assert!(!s.typing_ended_by_send(c), "never typed: nothing to end");
        s.typed(c, true);
        s.typed(c, true);
        s.typed(d, true);
        assert_eq!(s.typing_leases().len(), 2, "one lease per conversation");
        assert!(s.typing_ended_by_send(c));
        assert!(!s.typing_ended_by_send(c));
        s.typed(d, false);
        assert!(s.typing_leases().is_empty());
    }

    #[test]
    fn the_snapshot_sets_the_receipt_floor_and_joins_follow_from_their_seq() {
        let (me, c, j) = (UserId::new(), ConversationId::new(), ConversationId::new());
        let mut s = SessionState::new(me, None, limits(0, false));
        let mut unread_by_peer = state(9, c);
        unread_by_peer.peer_read_seq = 5;
        let (entry, floor) = s.follow_snapshot(&unread_by_peer, 0);
        assert_eq!((entry.last_seq, floor), (9, 9));
        let (_, floor) = s.follow_snapshot(&state(9, c), 0);
        assert_eq!(floor, 0, "everything read: no receipt concerns us");
        assert!(s.joins(j));
        s.follow_joined(j, 3, 0);
        assert!(!s.joins(j));
        assert_eq!(s.position(j), Some(3));
        let scoped = SessionState::new(me, Some(c), limits(0, false));
        assert!(!scoped.joins(j), "outside the session's scope");
    }

    #[test]
    fn a_frame_names_a_followed_conversation_within_the_scope() {
        let (me, c, other) = (UserId::new(), ConversationId::new(), ConversationId::new());
        let all = session(me, c, 0, limits(0, false));
        assert_eq!(all.followed_of(Some(c)), Ok(c));
        assert_eq!(all.followed_of(Some(other)), Err(Refusal::NotParticipant));
        assert_eq!(
            all.conversation_of(Some(other)),
            Ok(other),
            "a send checks membership itself"
        );
        assert_eq!(
            all.conversation_of(None),
            Err(Refusal::ConversationRequired)
        );
        let mut scoped = SessionState::new(me, Some(c), limits(0, false));
        scoped.follow_snapshot(&state(0, c), 0);
        assert_eq!(
            scoped.followed_of(None),
            Ok(c),
            "may be omitted on /ws/chat/{{id}}"
        );
        assert_eq!(
            scoped.conversation_of(Some(other)),
            Err(Refusal::NotParticipant)
        );
    }

    #[test]
    fn one_bad_sync_entry_refuses_the_whole_frame() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let s = session(me, c, 5, limits(0, false));
        assert_eq!(s.sync_targets([(c, 2)]), Ok(vec![(c, 2)]));
        assert_eq!(
            s.sync_targets([(c, 2), (c, -1)]),
            Err(Refusal::NegativeCursor)
        );
        assert_eq!(
            s.sync_targets([(c, 2), (ConversationId::new(), 0)]),
            Err(Refusal::NotParticipant)
        );
    }

    #[test]
    fn a_session_learns_encryption_from_its_snapshot_a_join_and_the_event_and_keeps_it() {
        let (me, peer) = (UserId::new(), UserId::new());
        let (opened, joined, plain) = (
            ConversationId::new(),
            ConversationId::new(),
            ConversationId::new(),
        );
        let mut s = SessionState::new(me, None, limits(0, false));
        s.follow_snapshot(&state(0, opened), 0);
        s.follow_snapshot(&state(0, plain), 0);
        s.encryption_on(opened);
        s.encryption_on(ConversationId::new()); // not followed: nothing to learn
        assert!(s.encrypted(opened) && !s.encrypted(plain));

        let mut join = Header::new(Kind::Conversation, Some(joined));
        join.joined = Some(me);
        join.encrypted = true;
        assert!(matches!(
            s.conversation_event(&join),
            Membership::Joined { .. }
        ));
        assert!(s.encrypted(joined));

        let mut enabled = Header::new(Kind::Conversation, Some(plain));
        enabled.encrypted = true;
        assert_eq!(s.conversation_event(&enabled), Membership::Unchanged);
        assert!(s.encrypted(plain));
        // A later event without the flag (none is published so) does not turn it off.
        let mut renamed = Header::new(Kind::Conversation, Some(plain));
        renamed.user = Some(peer);
        s.conversation_event(&renamed);
        assert!(s.encrypted(plain));

        let mut left = Header::new(Kind::Conversation, Some(plain));
        left.left = Some(me);
        s.conversation_event(&left);
        assert!(!s.encrypted(plain), "forgotten with the conversation");
    }

    #[test]
    fn joining_starts_a_feed_and_leaving_ends_it_closing_a_scoped_session() {
        let (me, peer, c) = (UserId::new(), UserId::new(), ConversationId::new());
        let mut s = SessionState::new(me, None, limits(0, false));
        let event = |joined: Option<UserId>, left: Option<UserId>| {
            let mut h = Header::new(Kind::Conversation, Some(c));
            h.seq = Some(4);
            h.joined = joined;
            h.left = left;
            h
        };
        assert_eq!(
            s.conversation_event(&event(Some(peer), None)),
            Membership::Unchanged
        );
        assert_eq!(
            s.conversation_event(&event(Some(me), None)),
            Membership::Joined {
                conversation: c,
                base: 4
            }
        );
        assert_eq!(s.position(c), Some(4));
        assert_eq!(
            s.conversation_event(&event(Some(me), None)),
            Membership::Unchanged,
            "already followed"
        );
        assert_eq!(
            s.conversation_event(&event(None, Some(me))),
            Membership::Left {
                conversation: c,
                close: false
            }
        );
        assert!(!s.follows(c));
        let mut scoped = SessionState::new(me, Some(c), limits(0, false));
        scoped.follow_snapshot(&state(0, c), 0);
        assert_eq!(
            scoped.conversation_event(&event(None, Some(me))),
            Membership::Left {
                conversation: c,
                close: true
            }
        );
    }

    fn change(c: ConversationId, number: i64) -> Delivery {
        let mut header = Header::new(Kind::Change, Some(c));
        header.change = Some(number);
        header.message_id = Some(MessageId::new());
        Delivery {
            header: Arc::new(header),
            frame: ByteString::from(format!("change {number}")),
        }
    }

    #[test]
    fn live_changes_start_at_the_snapshots_cursor_and_a_hole_is_fetched_after_the_grace() {
        let (me, c) = (UserId::new(), ConversationId::new());
        let mut s = SessionState::new(me, None, limits(100, false));
        let mut snapshot = state(3, c);
        snapshot.last_change = 7;
        s.follow_snapshot(&snapshot, 0);
        assert_eq!(s.change_position(c), Some(7));
        let (_, out) = s.offer_change(&change(c, 7)).unwrap();
        assert!(out.is_empty(), "the snapshot had it");
        let (_, out) = s.offer_change(&change(c, 8)).unwrap();
        assert_eq!(out.len(), 1);
        let now = Instant::now();
        assert_eq!(s.change_gap_seen(c, now), Gap::Nothing);
        let (_, out) = s.offer_change(&change(c, 10)).unwrap();
        assert!(out.is_empty(), "behind the hole at 9");
        assert_eq!(s.change_gap_seen(c, now), Gap::Later);
        assert_eq!(s.change_gap_seen(c, now), Gap::Later, "scheduled once");
        assert_eq!(s.take_due_gaps(), vec![c]);
        assert_eq!(s.change_hole(c), Some(8));
        // Storage has the message of 9 changed again at 10.
        let written = s
            .changes_fetched(c, vec![(10, ByteString::from("stored 10"))])
            .unwrap();
        assert_eq!(written, vec![ByteString::from("stored 10")]);
        assert_eq!(s.change_hole(c), None);
        // Not a change of a conversation followed here.
        assert!(s.offer_change(&change(ConversationId::new(), 1)).is_none());
        // A join starts the feed at the conversation's change number then.
        let joined = ConversationId::new();
        s.follow_joined(joined, 4, 12);
        assert_eq!(s.change_position(joined), Some(12));
        s.leave(joined);
        assert_eq!(s.change_position(joined), None);
    }

    #[test]
    fn away_is_remembered() {
        let mut s = SessionState::new(UserId::new(), None, limits(0, false));
        assert!(!s.away());
        s.set_away(true);
        assert!(s.away());
    }
}
