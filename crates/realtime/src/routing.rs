//! Who of the sessions routed to a topic gets an event: pure functions of the event's
//! envelope [`Header`], the topic and the session, with no lock and no queue. The hub
//! (`hub.rs`) keeps which sessions follow which topic and applies these rules to every
//! route of the topic an event arrives on.
//!
//! - A message is not echoed to the session it was sent from (that one gets `message_sent`);
//!   the sender's other sessions get it.
//! - Typing and presence never go to the sessions of the user they are about.
//! - A membership change on the conversation's topic skips the member it is about: they hear
//!   of it once, on their own topic.
//! - Receipts (`delivered`, `read_receipt`) go only to sessions whose user sent a message the
//!   watermark move covers ([`OwnSeqs`]); a reader's own sessions also get their `read`.
//! - `unread` goes to every session of the user; key requests and shares to every session
//!   of every member.
//! - A session of one conversation (`/ws/chat/{id}`) hears of its user's channel only about
//!   that conversation, and of presence.

use crate::envelope::{Header, Kind};
use domain::realtime::{SessionId, Topic};
use domain::{ConversationId, UserId};

/// A session as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recipient {
    /// The session.
    pub(crate) session: SessionId,
    /// Its user.
    pub(crate) user: UserId,
    /// The conversation of `/ws/chat/{id}`; `None` on `/ws`.
    pub(crate) scope: Option<ConversationId>,
}

/// Whether a session gets an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It does.
    Deliver,
    /// It does not.
    Skip,
    /// A receipt about a watermark move over `(since, seq]`: only if the session's user sent
    /// a message in that range, as far as its route knows ([`OwnSeqs::covers`]).
    IfOwnIn {
        /// Where the watermark was (a lower bound).
        since: i64,
        /// Where it moved to.
        seq: i64,
    },
}

impl From<bool> for Verdict {
    fn from(deliver: bool) -> Self {
        if deliver {
            Self::Deliver
        } else {
            Self::Skip
        }
    }
}

/// Whether `recipient`, routed to `topic`, gets the event with `header`.
pub(crate) fn verdict(recipient: &Recipient, topic: Topic, header: &Header) -> Verdict {
    if let (Some(scope), Topic::User(_)) = (recipient.scope, topic) {
        // A session of one conversation hears of the user's channel only about that one.
        if header.kind != Kind::Presence && header.conversation != Some(scope) {
            return Verdict::Skip;
        }
    }
    match header.kind {
        Kind::Message => (header.origin != Some(recipient.session.0)).into(),
        Kind::Typing | Kind::Presence => (header.user != Some(recipient.user)).into(),
        // The joining or leaving member hears of it on their own topic, once.
        Kind::Conversation => (!matches!(topic, Topic::Conversation(_))
            || (header.joined != Some(recipient.user) && header.left != Some(recipient.user)))
        .into(),
        // Receipts go to the senders they concern; a reader's own sessions also hear of
        // their read watermark (read state across devices).
        Kind::Delivered => receipt(header),
        Kind::Read if header.user == Some(recipient.user) => Verdict::Deliver,
        Kind::Read => receipt(header),
        Kind::Unread => Verdict::Deliver,
        // Edits, deletions and reactions reach every session of every member, the one that
        // made the change included (its copy tells it the change number).
        Kind::Change => Verdict::Deliver,
        // Key requests and shares reach every session of every member.
        Kind::Key => Verdict::Deliver,
    }
}

/// A receipt goes to the sessions it may concern; one that does not say where the watermark
/// was goes to every session.
fn receipt(header: &Header) -> Verdict {
    match header.since {
        None => Verdict::Deliver,
        Some(since) => Verdict::IfOwnIn {
            since,
            seq: header.seq.unwrap_or(i64::MAX),
        },
    }
}

/// Whether a session of `scope` starts following `conversation` when its user joins it: a
/// `/ws` session does, a `/ws/chat/{id}` session only for its own conversation.
pub(crate) fn follows_on_join(scope: Option<ConversationId>, conversation: ConversationId) -> bool {
    scope.is_none_or(|s| s == conversation)
}

/// The seqs a route's user sent in its conversation, as far as this route knows.
///
/// Receipts (`delivered`, `read_receipt`) matter to the senders of the messages a watermark
/// move covers, `(since, seq]`; sending every member's receipts to every member would multiply
/// a group's frames by its size. So each route remembers the seqs its user sent lately in the
/// conversation, and a receipt goes through when one of them is in the range.
#[derive(Debug, Default)]
pub(crate) struct OwnSeqs {
    /// Until the session has told its floor (after its `hello` snapshot) it gets every receipt.
    known: bool,
    /// Seqs at or below this may be the user's (told by the session, or forgotten from
    /// `recent`): a receipt whose range starts below it goes through.
    floor: i64,
    /// The latest seqs the user sent here (0 = empty slot).
    recent: [i64; OWN_SEQS_KEPT],
}

/// Own seqs a route keeps exactly; older ones only raise its floor.
const OWN_SEQS_KEPT: usize = 4;

impl OwnSeqs {
    /// The user sent `seq`.
    pub(crate) fn record(&mut self, seq: i64) {
        if self.recent.contains(&seq) {
            return;
        }
        let (slot, oldest) = self
            .recent
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|(_, s)| *s)
            .unwrap_or((0, 0));
        if oldest == 0 {
            self.recent[slot] = seq;
        } else if seq > oldest {
            self.floor = self.floor.max(oldest);
            self.recent[slot] = seq;
        } else {
            self.floor = self.floor.max(seq);
        }
    }

    /// The session told its floor: the user may have sent messages up to `floor`.
    pub(crate) fn tell_floor(&mut self, floor: i64) {
        self.floor = self.floor.max(floor);
        self.known = true;
    }

    /// Whether a watermark move over `(since, seq]` may cover one of the user's messages.
    pub(crate) fn covers(&self, since: i64, seq: i64) -> bool {
        !self.known || self.floor > since || self.recent.iter().any(|s| *s > since && *s <= seq)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn session(user: UserId, scope: Option<ConversationId>) -> Recipient {
        Recipient {
            session: SessionId::new(),
            user,
            scope,
        }
    }

    fn header(kind: Kind, conversation: ConversationId) -> Header {
        Header::new(kind, Some(conversation))
    }

    #[test]
    fn a_message_skips_its_origin_session_and_reaches_every_other() {
        let (c, sender) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let phone = session(sender, None);
        let laptop = session(sender, None);
        let other = session(UserId::new(), None);
        let mut message = header(Kind::Message, c);
        message.user = Some(sender);
        message.seq = Some(1);
        message.origin = Some(phone.session.0);
        assert_eq!(verdict(&phone, topic, &message), Verdict::Skip);
        assert_eq!(verdict(&laptop, topic, &message), Verdict::Deliver);
        assert_eq!(verdict(&other, topic, &message), Verdict::Deliver);
        // Sent over REST: no origin session, every session of the sender gets it.
        message.origin = None;
        assert_eq!(verdict(&phone, topic, &message), Verdict::Deliver);
    }

    #[test]
    fn key_requests_and_shares_reach_every_session_of_every_member() {
        let (c, asker) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let key = header(Kind::Key, c);
        for recipient in [
            session(asker, None),
            session(UserId::new(), None),
            session(UserId::new(), Some(c)),
        ] {
            assert_eq!(verdict(&recipient, topic, &key), Verdict::Deliver);
        }
    }

    #[test]
    fn typing_never_reaches_the_typing_users_sessions() {
        let (c, typist) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut typing = header(Kind::Typing, c);
        typing.user = Some(typist);
        assert_eq!(
            verdict(&session(typist, None), topic, &typing),
            Verdict::Skip
        );
        assert_eq!(
            verdict(&session(typist, Some(c)), topic, &typing),
            Verdict::Skip
        );
        assert_eq!(
            verdict(&session(UserId::new(), None), topic, &typing),
            Verdict::Deliver
        );
    }

    #[test]
    fn presence_never_reaches_the_user_it_is_about_and_passes_every_scope() {
        let (c, user, watcher) = (ConversationId::new(), UserId::new(), UserId::new());
        let mut presence = Header::new(Kind::Presence, None);
        presence.user = Some(user);
        for topic in [Topic::Conversation(c), Topic::User(watcher)] {
            assert_eq!(
                verdict(&session(user, None), topic, &presence),
                Verdict::Skip
            );
            assert_eq!(
                verdict(&session(watcher, None), topic, &presence),
                Verdict::Deliver
            );
        }
        // A session of another conversation still hears presence from its user's channel.
        let scoped = session(watcher, Some(ConversationId::new()));
        assert_eq!(
            verdict(&scoped, Topic::User(watcher), &presence),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_scoped_session_hears_only_its_conversation_from_the_user_channel() {
        let (mine, other, user) = (ConversationId::new(), ConversationId::new(), UserId::new());
        let scoped = session(user, Some(mine));
        let ut = Topic::User(user);
        for kind in [Kind::Unread, Kind::Conversation, Kind::Read, Kind::Message] {
            assert_eq!(
                verdict(&scoped, ut, &header(kind, other)),
                Verdict::Skip,
                "{kind:?} about another conversation"
            );
        }
        assert_eq!(
            verdict(&scoped, ut, &header(Kind::Unread, mine)),
            Verdict::Deliver
        );
        assert_eq!(
            verdict(&scoped, ut, &Header::new(Kind::Unread, None)),
            Verdict::Skip,
            "an event about no conversation is not its conversation's"
        );
        // The scope filters the user's channel only: its conversation's topic is its own.
        let mut typing = header(Kind::Typing, mine);
        typing.user = Some(UserId::new());
        assert_eq!(
            verdict(&scoped, Topic::Conversation(mine), &typing),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_membership_change_skips_its_member_on_the_conversation_topic_only() {
        let (c, member, other) = (ConversationId::new(), UserId::new(), UserId::new());
        let (ct, ut) = (Topic::Conversation(c), Topic::User(member));
        for (joined, left) in [(Some(member), None), (None, Some(member))] {
            let mut change = header(Kind::Conversation, c);
            change.joined = joined;
            change.left = left;
            assert_eq!(verdict(&session(member, None), ct, &change), Verdict::Skip);
            assert_eq!(
                verdict(&session(other, None), ct, &change),
                Verdict::Deliver
            );
            assert_eq!(
                verdict(&session(member, None), ut, &change),
                Verdict::Deliver,
                "once, on their own topic"
            );
            assert_eq!(
                verdict(&session(member, Some(c)), ut, &change),
                Verdict::Deliver
            );
        }
        // A rename is about nobody in particular: everyone on the topic.
        let rename = header(Kind::Conversation, c);
        assert_eq!(
            verdict(&session(member, None), ct, &rename),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_delivered_receipt_goes_only_where_it_may_cover_a_message() {
        let (c, reader) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut delivered = header(Kind::Delivered, c);
        delivered.user = Some(reader);
        delivered.seq = Some(7);
        delivered.since = Some(4);
        let covered = Verdict::IfOwnIn { since: 4, seq: 7 };
        assert_eq!(
            verdict(&session(UserId::new(), None), topic, &delivered),
            covered
        );
        assert_eq!(
            verdict(&session(reader, None), topic, &delivered),
            covered,
            "one's own delivered watermark is not news to one's other sessions"
        );
        // A receipt that does not say where the watermark was may concern anyone.
        delivered.since = None;
        assert_eq!(
            verdict(&session(UserId::new(), None), topic, &delivered),
            Verdict::Deliver
        );
        delivered.since = Some(4);
        delivered.seq = None;
        assert_eq!(
            verdict(&session(UserId::new(), None), topic, &delivered),
            Verdict::IfOwnIn {
                since: 4,
                seq: i64::MAX
            }
        );
    }

    #[test]
    fn a_read_receipt_reaches_the_readers_own_sessions_and_the_senders_it_covers() {
        let (c, reader) = (ConversationId::new(), UserId::new());
        let topic = Topic::Conversation(c);
        let mut read = header(Kind::Read, c);
        read.user = Some(reader);
        read.seq = Some(3);
        read.since = Some(0);
        assert_eq!(
            verdict(&session(reader, None), topic, &read),
            Verdict::Deliver
        );
        assert_eq!(
            verdict(&session(UserId::new(), None), topic, &read),
            Verdict::IfOwnIn { since: 0, seq: 3 }
        );
    }

    #[test]
    fn unread_counts_reach_every_session_of_the_user() {
        let (c, user) = (ConversationId::new(), UserId::new());
        let unread = header(Kind::Unread, c);
        let ut = Topic::User(user);
        assert_eq!(verdict(&session(user, None), ut, &unread), Verdict::Deliver);
        assert_eq!(
            verdict(&session(user, Some(c)), ut, &unread),
            Verdict::Deliver
        );
    }

    #[test]
    fn a_joining_user_follows_the_conversation_from_every_session_in_scope() {
        let (c, other) = (ConversationId::new(), ConversationId::new());
        assert!(follows_on_join(None, c));
        assert!(follows_on_join(Some(c), c));
        assert!(!follows_on_join(Some(other), c));
    }

    #[test]
    fn a_route_keeps_its_latest_own_seqs_exactly_and_the_older_ones_as_a_floor() {
        let mut own = OwnSeqs {
            known: true,
            ..OwnSeqs::default()
        };
        for seq in 1..=6 {
            own.record(seq);
        }
        own.record(5);
        assert!(own.covers(4, 5), "5 is kept");
        assert!(!own.covers(6, 10), "nothing sent after 6");
        assert!(!own.covers(2, 2), "an empty range");
        assert!(
            own.covers(1, 1),
            "1 and 2 were forgotten: at or below the floor, kept safe"
        );
        own.record(1);
        assert_eq!(
            own.floor, 2,
            "an old seq arriving late only raises nothing above it"
        );
        assert!(OwnSeqs::default().covers(100, 101), "unknown: everything");
    }

    #[test]
    fn a_told_floor_makes_the_route_known_and_only_ever_rises() {
        let mut own = OwnSeqs::default();
        own.tell_floor(5);
        assert!(!own.covers(8, 10), "known now: nothing of ours above 5");
        assert!(own.covers(4, 10), "a move from below 5 may cover ours");
        own.tell_floor(2);
        assert!(
            own.covers(4, 10),
            "a lower floor told later changes nothing"
        );
    }
}
