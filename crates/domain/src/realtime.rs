//! Ports of the real-time layer: cross-node pub/sub, presence leases and typing leases.
//!
//! Two adapters implement each: in process (`adapters-memory`, single node) and Redis
//! (`adapters-redis`, any number of nodes). Both pass one contract suite per port.

use crate::ids::{ConversationId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A server node's identity: unique per process run (a UUID chosen at start-up).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an event is published: everything about one conversation, or one user's own channel
/// (new conversations, membership changes, read state from other devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Events of a conversation, for every session of every member.
    Conversation(ConversationId),
    /// Events for one user, for every session of that user.
    User(UserId),
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conversation(id) => write!(f, "c:{id}"),
            Self::User(id) => write!(f, "u:{id}"),
        }
    }
}

impl FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("bad topic {s:?}"))?;
        let id = id
            .parse::<uuid::Uuid>()
            .map_err(|e| format!("bad topic {s:?}: {e}"))?;
        match kind {
            "c" => Ok(Self::Conversation(ConversationId::from_uuid(id))),
            "u" => Ok(Self::User(UserId::from_uuid(id))),
            _ => Err(format!("bad topic {s:?}")),
        }
    }
}

/// A published event: the already serialised frame, shared by every recipient on a node
/// (one serialisation per fan-out, not one per recipient).
pub type Payload = Arc<str>;

/// A real-time backing service (Redis) failed. Callers answer `unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("real-time backend unavailable: {0}")]
pub struct RealtimeError(#[source] pub Box<dyn std::error::Error + Send + Sync + 'static>);

impl RealtimeError {
    /// Wraps any driver error.
    pub fn new(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(err))
    }
    /// An error described only by a message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// Receives what the node's subscriptions bring. Called from the adapter's receive task:
/// implementations must not block (hand the payload to bounded per-session queues).
pub trait PubSubSink: Send + Sync + 'static {
    /// An event published on `topic` by any node (this one included).
    fn deliver(&self, topic: Topic, payload: Payload);
    /// The subscription connection was lost and is back, every topic resubscribed. Events
    /// published meanwhile were lost: sessions must fetch their gaps from storage.
    fn resubscribed(&self);
}

/// Cross-node publish/subscribe. At most once: delivery can be lost while the connection is
/// down (then [`PubSubSink::resubscribed`] is called), and events of different publishers can
/// arrive in any order; sessions restore order and fill gaps by `seq` from storage.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    /// Sends `payload` to every node subscribed to `topic`, this node included.
    async fn publish(&self, topic: Topic, payload: Payload) -> Result<(), RealtimeError>;

    /// Publishes each `(topic, payload)` in order, as `publish` would one after the other
    /// (subscribers of a topic get its payloads in this order), in as few round trips as the
    /// backend allows. An error means some may not have been published.
    async fn publish_all(&self, items: Vec<(Topic, Payload)>) -> Result<(), RealtimeError> {
        for (topic, payload) in items {
            self.publish(topic, payload).await?;
        }
        Ok(())
    }

    /// Subscribes this node to `topic`. Reference-counted: n subscribes need n unsubscribes
    /// before the node stops receiving it, and only the first one talks to the backend.
    /// When it returns, events published afterwards on `topic` reach the sink.
    async fn subscribe(&self, topic: Topic) -> Result<(), RealtimeError>;

    /// Drops one reference to `topic`; the node stops receiving it at zero.
    async fn unsubscribe(&self, topic: Topic) -> Result<(), RealtimeError>;
}

/// A user's aggregate status over every live session on every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceStatus {
    /// At least one live session is active.
    Online,
    /// Every live session said it is away.
    Away,
    /// No live session.
    Offline,
}

impl PresenceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Away => "away",
            Self::Offline => "offline",
        }
    }
}

/// Session counts of one user across live nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionCounts {
    /// Live sessions.
    pub sessions: u32,
    /// Of those, sessions that said they are away.
    pub away: u32,
}

impl SessionCounts {
    /// The status these counts give (before any offline grace period).
    pub fn status(self) -> PresenceStatus {
        if self.sessions == 0 {
            PresenceStatus::Offline
        } else if self.away >= self.sessions {
            PresenceStatus::Away
        } else {
            PresenceStatus::Online
        }
    }
}

/// Why a session could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum OpenSessionError {
    /// The user already has the maximum number of live sessions across all nodes.
    #[error("too many sessions")]
    TooManySessions,
    /// The backend failed.
    #[error(transparent)]
    Unavailable(#[from] RealtimeError),
}

/// Presence: per-(user, node) session counts under per-node leases, so the sessions of a
/// node that dies stop counting once its lease lapses, wherever the user reconnects.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Counts one more session of `user` on `node`, atomically refusing with
    /// [`OpenSessionError::TooManySessions`] (and counting nothing) when the user already has
    /// `max_sessions` on live nodes. Sessions on nodes whose lease lapsed do not count.
    /// Returns the counts after.
    async fn open_session(
        &self,
        user: UserId,
        node: &NodeId,
        max_sessions: u32,
    ) -> Result<SessionCounts, OpenSessionError>;

    /// Counts one session less of `user` on `node` (`away` tells whether it was away).
    /// Returns the counts after over live nodes.
    async fn close_session(
        &self,
        user: UserId,
        node: &NodeId,
        was_away: bool,
    ) -> Result<SessionCounts, RealtimeError>;

    /// One session of `user` on `node` went away (`true`) or came back (`false`).
    /// Returns the counts after over live nodes.
    async fn set_away(
        &self,
        user: UserId,
        node: &NodeId,
        away: bool,
    ) -> Result<SessionCounts, RealtimeError>;

    /// The counts of each user over live nodes, in input order.
    async fn counts(&self, users: &[UserId]) -> Result<Vec<SessionCounts>, RealtimeError>;

    /// Renews `node`'s lease for `ttl`. A node that stops renewing is dead after `ttl`.
    ///
    /// `true` when the lease was still live, so what the node registered is still there;
    /// `false` when there was none (a new node, or one whose lease lapsed, was reaped, or
    /// whose store lost its data, as a Redis restarted without persistence does): the
    /// node then registers its sessions again ([`PresenceStore::restore_node`]).
    async fn renew_lease(&self, node: &NodeId, ttl: Duration) -> Result<bool, RealtimeError>;

    /// Makes `node`'s registered counts exactly `sessions` (each user at most once; a user
    /// not listed has none on `node` after), whatever was registered before, and returns
    /// the users whose counts on `node` changed. For a node whose registration was lost or
    /// may have drifted (a change whose answer never came); the caller makes sure none of
    /// its own changes run meanwhile.
    async fn restore_node(
        &self,
        node: &NodeId,
        sessions: &[(UserId, SessionCounts)],
    ) -> Result<Vec<UserId>, RealtimeError>;

    /// Removes the session counts of every node whose lease lapsed (never `this_node`) and
    /// returns the users who had sessions there, each once. Safe to call from every node at
    /// once: each dead node's users are returned to exactly one caller.
    async fn reap_dead_nodes(&self, this_node: &NodeId) -> Result<Vec<UserId>, RealtimeError>;

    /// Drops everything `node` registered (graceful shutdown).
    async fn remove_node(&self, node: &NodeId) -> Result<(), RealtimeError>;
}

/// Typing: a lease per (user, conversation) with a TTL. Leases that lapse are taken by
/// exactly one node, which announces `is_typing: false`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait TypingStore: Send + Sync + 'static {
    /// Starts or refreshes the lease of `user` in `conversation` until `now + ttl`.
    /// `true` when no live lease existed (the user started typing).
    async fn start_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, RealtimeError>;

    /// Ends the lease; `true` when a live lease existed (someone must announce the stop).
    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<bool, RealtimeError>;

    /// Removes and returns every lease whose deadline is at or before `now`. Concurrent
    /// callers (several nodes) each get a disjoint share: every lapsed lease is returned once.
    async fn take_expired(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(ConversationId, UserId)>, RealtimeError>;
}

/// Identifies one live connection (session) of a user; unique across nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub uuid::Uuid);

impl SessionId {
    /// A new session id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What changed about a conversation, for the `conversation` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationChange {
    /// It was made (direct or group).
    Created,
    /// A group got a new title.
    Renamed,
    /// `user_id` joined.
    MemberAdded,
    /// `user_id` was removed or left.
    MemberRemoved,
    /// End-to-end encryption was turned on (it is never turned off).
    EncryptionEnabled,
}

impl ConversationChange {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Renamed => "renamed",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::EncryptionEnabled => "encryption_enabled",
        }
    }
}

/// The topics a conversation change is announced on: `created` on every member's own
/// channel (nobody follows the new conversation yet); a member added or removed on the
/// conversation (the other members) and on that member's own channel (`user`: their
/// sessions, wherever they are routed); a rename, and encryption turned on, on the
/// conversation. `details` is the
/// conversation after the change, so a removed member is no longer among its participants.
pub fn conversation_change_topics(
    change: ConversationChange,
    details: &crate::conversation::ConversationDetails,
    user: Option<UserId>,
) -> Vec<Topic> {
    let id = details.conversation.id;
    match change {
        ConversationChange::Created => details
            .participants
            .iter()
            .map(|p| Topic::User(p.participant.user_id))
            .collect(),
        ConversationChange::Renamed | ConversationChange::EncryptionEnabled => {
            vec![Topic::Conversation(id)]
        }
        ConversationChange::MemberAdded | ConversationChange::MemberRemoved => {
            let mut topics = vec![Topic::Conversation(id)];
            topics.extend(user.map(Topic::User));
            topics
        }
    }
}

/// Something every interested session must hear about. The server turns each into one
/// serialised frame (see `docs/protocol.md`) and publishes it once per topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A committed message. `origin` is the sending session, which gets `message_sent`
    /// instead of the message itself.
    Message {
        /// The message.
        message: crate::message::Message,
        /// The session that sent it, if it came over a WebSocket.
        origin: Option<SessionId>,
        /// For a reply, the preview of the message it answers (read when the send was
        /// checked); `None` otherwise.
        reply_preview: Option<crate::message::ReplyPreview>,
    },
    /// `user_id` has everything up to `seq`.
    Delivered {
        /// Conversation.
        conversation_id: ConversationId,
        /// The message at `seq`.
        message_id: crate::ids::MessageId,
        /// New delivered watermark.
        seq: i64,
        /// A lower bound of where the watermark was before (0 when unknown): the move covers
        /// the messages in `(since_seq, seq]`, so only their senders need to hear of it.
        since_seq: i64,
        /// Whose watermark.
        user_id: UserId,
    },
    /// `read_by` has read everything up to `seq`.
    Read {
        /// Conversation.
        conversation_id: ConversationId,
        /// The message at `seq`.
        message_id: crate::ids::MessageId,
        /// New read watermark.
        seq: i64,
        /// A lower bound of where the watermark was before (0 when unknown), as for
        /// `Delivered`.
        since_seq: i64,
        /// Whose watermark.
        read_by: UserId,
        /// When.
        read_at: DateTime<Utc>,
    },
    /// `user_id` started or stopped typing.
    Typing {
        /// Conversation.
        conversation_id: ConversationId,
        /// Who.
        user_id: UserId,
        /// Started (or still) typing, or stopped.
        is_typing: bool,
    },
    /// `user_id`'s aggregate presence changed.
    Presence {
        /// Who.
        user_id: UserId,
        /// New status.
        status: PresenceStatus,
        /// Last seen online (set when going offline).
        last_seen: Option<DateTime<Utc>>,
    },
    /// A conversation was created or its membership or title changed.
    Conversation {
        /// What changed.
        change: ConversationChange,
        /// The conversation after the change.
        conversation: crate::conversation::ConversationDetails,
        /// The member added or removed, for those changes.
        user_id: Option<UserId>,
        /// Its end-to-end encryption after the change (`None`: not encrypted).
        encryption: Option<crate::encryption::EncryptionState>,
    },
    /// A member's device lacks the conversation's current key: the other members' clients
    /// wrap it for that device (every session of every member).
    KeyRequest(crate::services::KeyRequest),
    /// Keys of a version were stored for devices (every session of every member).
    KeyShared {
        /// The conversation.
        conversation_id: ConversationId,
        /// The version stored.
        key_version: i64,
        /// Whether it is a new version.
        rotated: bool,
        /// Who uploaded it.
        from_user_id: UserId,
        /// From which of their devices.
        from_device_id: crate::ids::DeviceId,
        /// The devices it was wrapped for.
        device_ids: Vec<crate::ids::DeviceId>,
    },
    /// A message was edited: as it is now (its reactions without a viewer's `me`).
    MessageUpdated {
        /// The message with its status, reactions and reply preview.
        view: crate::services::MessageView,
    },
    /// A message was deleted: its tombstone (with `deleted_at`, `deleted_by`, `change_seq`).
    MessageDeleted {
        /// The tombstone.
        message: crate::message::Message,
    },
    /// `user_id` added or removed a reaction.
    Reaction {
        /// The message as it is after it, with the change number the reaction took, its
        /// reactions (`me` is not sent: one frame serves everyone) and reply preview.
        view: crate::services::MessageView,
        /// Who.
        user_id: UserId,
        /// Which emoji.
        emoji: String,
        /// Added, or removed.
        added: bool,
    },
    /// A user's read state changed (sent on the user's own topic, for their other devices).
    Unread {
        /// Conversation.
        conversation_id: ConversationId,
        /// Unread in it now.
        unread_count: i64,
        /// Unread in all the user's conversations.
        total: i64,
    },
}

/// Publishes domain events to every node (serialising each once). Implemented by the
/// real-time engine (the `realtime` crate) on top of [`PubSub`].
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes `event` on `topic`.
    async fn publish(&self, topic: Topic, event: Event) -> Result<(), RealtimeError>;

    /// Publishes each `(topic, event)` in order, in as few round trips as the backend allows
    /// (the commit batcher publishes a whole batch at once).
    async fn publish_all(&self, events: Vec<(Topic, Event)>) -> Result<(), RealtimeError> {
        for (topic, event) in events {
            self.publish(topic, event).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{
        Conversation, ConversationDetails, ConversationKind, Participant, ParticipantProfile, Role,
    };

    fn group(members: &[UserId]) -> ConversationDetails {
        let id = ConversationId::new();
        let now = Utc::now();
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Group,
                title: Some("Team".to_owned()),
                created_by: members[0],
                created_at: now,
                last_seq: 0,
                last_message_at: None,
                last_change: 0,
            },
            participants: members
                .iter()
                .map(|user_id| ParticipantProfile {
                    participant: Participant {
                        conversation_id: id,
                        user_id: *user_id,
                        role: Role::Member,
                        joined_at: now,
                        delivered_seq: 0,
                        read_seq: 0,
                    },
                    display_name: "Member".to_owned(),
                    email: "member@example.com".to_owned(),
                    avatar_url: None,
                    last_seen_at: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_new_conversation_is_announced_on_every_members_own_channel_only() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let details = group(&[a, b, c]);
        assert_eq!(
            conversation_change_topics(ConversationChange::Created, &details, None),
            [Topic::User(a), Topic::User(b), Topic::User(c)]
        );
    }

    #[test]
    fn a_rename_and_encryption_turned_on_are_announced_on_the_conversation_only() {
        let (a, b) = (UserId::new(), UserId::new());
        let details = group(&[a, b]);
        let id = details.conversation.id;
        for change in [
            ConversationChange::Renamed,
            ConversationChange::EncryptionEnabled,
        ] {
            assert_eq!(
                conversation_change_topics(change, &details, None),
                [Topic::Conversation(id)]
            );
        }
        assert_eq!(
            ConversationChange::EncryptionEnabled.as_str(),
            "encryption_enabled"
        );
    }

    #[test]
    fn an_added_member_hears_on_their_own_channel_and_the_others_on_the_conversation() {
        let (a, b, joiner) = (UserId::new(), UserId::new(), UserId::new());
        let details = group(&[a, b, joiner]);
        let id = details.conversation.id;
        assert_eq!(
            conversation_change_topics(ConversationChange::MemberAdded, &details, Some(joiner)),
            [Topic::Conversation(id), Topic::User(joiner)]
        );
    }

    #[test]
    fn a_removed_member_hears_on_their_own_channel_though_no_longer_a_participant() {
        let (a, b, leaver) = (UserId::new(), UserId::new(), UserId::new());
        let details = group(&[a, b]);
        let id = details.conversation.id;
        assert_eq!(
            conversation_change_topics(ConversationChange::MemberRemoved, &details, Some(leaver)),
            [Topic::Conversation(id), Topic::User(leaver)]
        );
    }

    #[test]
    fn a_membership_change_without_its_member_goes_to_the_conversation_alone() {
        let details = group(&[UserId::new()]);
        let id = details.conversation.id;
        for change in [
            ConversationChange::MemberAdded,
            ConversationChange::MemberRemoved,
        ] {
            assert_eq!(
                conversation_change_topics(change, &details, None),
                [Topic::Conversation(id)]
            );
        }
    }
}
