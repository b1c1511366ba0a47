//! Conversations, their participants and their roles.

use crate::ids::{ConversationId, UserId};
use crate::message::Message;
use crate::user::{InvalidField, User};
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

/// Direct (exactly two users) or group (titled, with roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// Two users; at most one per pair of users.
    Direct,
    /// A titled conversation with owner, admins and members.
    Group,
}

impl ConversationKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }
}

impl FromStr for ConversationKind {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "direct" => Ok(Self::Direct),
            "group" => Ok(Self::Group),
            _ => Err(InvalidField::new("type", "must be \"direct\" or \"group\"")),
        }
    }
}

impl fmt::Display for ConversationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A participant's role. Direct conversations have two `Member`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Made the group; may do everything; at most one.
    Owner,
    /// May add and remove members and rename the group.
    Admin,
    /// May send, read and leave.
    Member,
}

impl Role {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Whether this role may add, remove and rename.
    pub fn can_manage(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

impl FromStr for Role {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            _ => Err(InvalidField::new(
                "role",
                "must be \"owner\", \"admin\" or \"member\"",
            )),
        }
    }
}

/// A group title: 1 to 100 characters after trimming, no control characters (a title is one
/// line; U+0000 in particular cannot be stored by PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTitle(String);

impl GroupTitle {
    /// Longest title accepted, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Validates and trims a title.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let title = raw.trim();
        if title.is_empty() {
            return Err(InvalidField::new("title", "must not be blank"));
        }
        if title.chars().count() > Self::MAX_CHARS {
            return Err(InvalidField::new(
                "title",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if title.chars().any(char::is_control) {
            return Err(InvalidField::new(
                "title",
                "must not contain control characters",
            ));
        }
        Ok(Self(title.to_owned()))
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key that makes a direct conversation unique per unordered pair of users:
/// `direct_key(a, b) == direct_key(b, a)`. Storage puts a unique index on it, so two
/// concurrent creations of A->B and B->A end in one conversation.
pub fn direct_key(a: UserId, b: UserId) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}:{hi}")
}

/// A conversation's own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Conversation id.
    pub id: ConversationId,
    /// Direct or group.
    pub kind: ConversationKind,
    /// Group title; `None` for direct conversations.
    pub title: Option<String>,
    /// Who made it.
    pub created_by: UserId,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Seq of the newest message; 0 when there is none.
    pub last_seq: i64,
    /// When the newest message was sent.
    pub last_message_at: Option<DateTime<Utc>>,
    /// The conversation's change counter: each edit, deletion or reaction of one of its
    /// messages takes the next number and stamps it on the message (`change_seq`). A client
    /// that has seen changes up to `n` recovers the rest with the messages whose
    /// `change_seq > n`, as it recovers messages with `seq`. 0 when nothing changed.
    pub last_change: i64,
}

impl Conversation {
    /// When anything last happened here: the newest message, or creation.
    pub fn last_activity_at(&self) -> DateTime<Utc> {
        self.last_message_at.unwrap_or(self.created_at)
    }
}

/// A member of a conversation with its receipt watermarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The member.
    pub user_id: UserId,
    /// Role in the conversation.
    pub role: Role,
    /// When the member joined.
    pub joined_at: DateTime<Utc>,
    /// Every message with `seq <= delivered_seq` reached this member. Only moves forward.
    pub delivered_seq: i64,
    /// Every message with `seq <= read_seq` was read by this member. Only moves forward,
    /// and never passes `delivered_seq`'s meaning: read implies delivered.
    pub read_seq: i64,
}

/// A participant with the profile fields clients show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantProfile {
    /// Membership and watermarks.
    pub participant: Participant,
    /// The member's display name.
    pub display_name: String,
    /// The member's email.
    pub email: String,
    /// The member's picture.
    pub avatar_url: Option<String>,
    /// When the member was last seen online.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A conversation with all its participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationDetails {
    /// The conversation row.
    pub conversation: Conversation,
    /// Current members, oldest first.
    pub participants: Vec<ParticipantProfile>,
}

impl ConversationDetails {
    /// The membership of `user`, if a member.
    pub fn participant(&self, user: UserId) -> Option<&Participant> {
        self.participants
            .iter()
            .map(|p| &p.participant)
            .find(|p| p.user_id == user)
    }

    /// Messages `user` has not read: `last_seq - read_seq` (no COUNT).
    pub fn unread_count(&self, user: UserId) -> i64 {
        self.participant(user)
            .map(|p| (self.conversation.last_seq - p.read_seq).max(0))
            .unwrap_or(0)
    }

    /// Where `user` stands here, if a member: what a session's snapshot says of it.
    pub fn state_of(&self, user: UserId) -> Option<ConversationState> {
        let own = self.participant(user)?;
        let others = self
            .participants
            .iter()
            .map(|p| &p.participant)
            .filter(|p| p.user_id != user);
        Some(ConversationState {
            conversation_id: self.conversation.id,
            last_seq: self.conversation.last_seq,
            delivered_seq: own.delivered_seq.max(own.read_seq),
            read_seq: own.read_seq,
            peer_delivered_seq: others
                .clone()
                .map(|p| p.delivered_seq.max(p.read_seq))
                .min()
                .unwrap_or(0),
            peer_read_seq: others.map(|p| p.read_seq).min().unwrap_or(0),
            last_change: self.conversation.last_change,
        })
    }
}

/// Where one member stands in a conversation: its newest seq, the member's own receipt
/// watermarks and the lowest of the other members'. What a session opens with (`hello`)
/// and what `sync_done` reports; [`ConversationDetails::state_of`] derives it from a
/// conversation read whole, [`crate::ports::ConversationStore::session_snapshot`] reads it
/// for every conversation of a user at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationState {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Seq of its newest message; 0 when there is none.
    pub last_seq: i64,
    /// The member's delivered watermark; read implies delivered, so at least `read_seq`.
    pub delivered_seq: i64,
    /// The member's read watermark.
    pub read_seq: i64,
    /// The lowest delivered watermark among the other members (each at least that member's
    /// read watermark): what a sender's "delivered" ticks show. 0 when nobody else is left.
    pub peer_delivered_seq: i64,
    /// The lowest read watermark among the other members; 0 when nobody else is left.
    pub peer_read_seq: i64,
    /// The conversation's change counter ([`Conversation::last_change`]).
    pub last_change: i64,
}

impl ConversationState {
    /// Messages the member has not read: `last_seq - read_seq` (as
    /// [`ConversationDetails::unread_count`]).
    pub fn unread_count(&self) -> i64 {
        (self.last_seq - self.read_seq).max(0)
    }
}

/// What a WebSocket session of a user opens with, read at one moment: the account and the
/// state of every conversation it is a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// The account.
    pub user: User,
    /// One entry per conversation of the user, in any order.
    pub conversations: Vec<ConversationState>,
    /// Those of them that are end-to-end encrypted, in any order (read in the same
    /// statement): a session checks its sends' content type against it without a read.
    pub encrypted: Vec<ConversationId>,
}

/// A conversation as shown in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// The conversation and its members.
    pub details: ConversationDetails,
    /// The newest message, if any.
    pub last_message: Option<Message>,
}

/// A direct conversation to create (or find, if the pair already has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDirectConversation {
    /// Id to use if a new one is created.
    pub id: ConversationId,
    /// Who asks.
    pub created_by: UserId,
    /// The other user.
    pub other: UserId,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A group to create: the creator becomes owner, the others members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroupConversation {
    /// Group id.
    pub id: ConversationId,
    /// Owner.
    pub created_by: UserId,
    /// Title.
    pub title: GroupTitle,
    /// Members besides the owner, without duplicates.
    pub members: Vec<UserId>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_key_ignores_who_asked_first() {
        let (a, b) = (UserId::new(), UserId::new());
        assert_eq!(direct_key(a, b), direct_key(b, a));
        assert_ne!(direct_key(a, b), direct_key(a, UserId::new()));
    }

    fn member(
        conversation: ConversationId,
        user: UserId,
        delivered: i64,
        read: i64,
    ) -> ParticipantProfile {
        ParticipantProfile {
            participant: Participant {
                conversation_id: conversation,
                user_id: user,
                role: Role::Member,
                joined_at: DateTime::<Utc>::UNIX_EPOCH,
                delivered_seq: delivered,
                read_seq: read,
            },
            display_name: "M".into(),
            email: "m@example.com".into(),
            avatar_url: None,
            last_seen_at: None,
        }
    }

    fn details(last_seq: i64, members: Vec<ParticipantProfile>) -> ConversationDetails {
        let id = members
            .first()
            .map_or_else(ConversationId::new, |m| m.participant.conversation_id);
        ConversationDetails {
            conversation: Conversation {
                id,
                kind: ConversationKind::Group,
                title: Some("T".into()),
                created_by: UserId::new(),
                created_at: DateTime::<Utc>::UNIX_EPOCH,
                last_seq,
                last_message_at: None,
                last_change: 0,
            },
            participants: members,
        }
    }

    #[test]
    fn a_members_state_has_its_own_watermarks_and_the_lowest_of_the_others() {
        let c = ConversationId::new();
        let (me, b, d) = (UserId::new(), UserId::new(), UserId::new());
        // d's read watermark is past its delivered one: read implies delivered.
        let group = details(
            9,
            vec![member(c, me, 9, 6), member(c, b, 8, 8), member(c, d, 4, 7)],
        );
        let state = group.state_of(me).unwrap();
        assert_eq!(
            state,
            ConversationState {
                conversation_id: c,
                last_seq: 9,
                delivered_seq: 9,
                read_seq: 6,
                peer_delivered_seq: 7,
                peer_read_seq: 7,
                last_change: 0,
            }
        );
        assert_eq!(state.unread_count(), group.unread_count(me));
        assert_eq!(state.unread_count(), 3);
        assert_eq!(group.state_of(UserId::new()), None, "not a member");
    }

    #[test]
    fn alone_in_a_conversation_the_peer_watermarks_are_zero() {
        let c = ConversationId::new();
        let me = UserId::new();
        let solo = details(2, vec![member(c, me, 1, 2)]);
        let state = solo.state_of(me).unwrap();
        assert_eq!((state.delivered_seq, state.read_seq), (2, 2));
        assert_eq!((state.peer_delivered_seq, state.peer_read_seq), (0, 0));
        assert_eq!(state.unread_count(), 0);
    }

    #[test]
    fn group_titles_are_trimmed_and_bounded() {
        assert_eq!(GroupTitle::parse(" Team ").unwrap().as_str(), "Team");
        assert!(GroupTitle::parse(" ").is_err());
        assert!(GroupTitle::parse(&"t".repeat(101)).is_err());
    }

    #[test]
    fn group_titles_with_a_nul_or_another_control_character_are_refused() {
        for bad in ["Te\u{0}am", "\u{0}", "Te\nam", "Team\u{1b}[31m"] {
            let err = GroupTitle::parse(bad).unwrap_err();
            assert_eq!(err.field, "title", "{bad:?}");
        }
    }
}
