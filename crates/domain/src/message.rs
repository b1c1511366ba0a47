//! Messages, their validated parts, and the status a sender sees.

use crate::conversation::Participant;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::user::{refuse_nul, InvalidField};
use chrono::{DateTime, Utc};
use std::str::FromStr;

/// Message text: not blank, at most the configured number of characters, no U+0000 (which
/// PostgreSQL cannot store). Other control characters (newlines, tabs) are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    /// Validates content against `max_chars`. Content is kept as sent (not trimmed):
    /// leading spaces and newlines can be meaningful in a message.
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, InvalidField> {
        if raw.trim().is_empty() {
            return Err(InvalidField::new("content", "must not be blank"));
        }
        if raw.chars().count() > max_chars {
            return Err(InvalidField::new(
                "content",
                format!("must be at most {max_chars} characters"),
            ));
        }
        refuse_nul("content", raw)?;
        Ok(Self(raw.to_owned()))
    }

    /// Content taken as it is, unchecked: for what was validated before (read back from
    /// storage), and for tests that must hand storage what validation would refuse, to
    /// prove what happens when the database refuses a message.
    pub fn from_trusted(content: String) -> Self {
        Self(content)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The sender's idempotency key for a message (seed 000's `temp_id`): 1 to 64 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    /// Longest key accepted.
    pub const MAX_CHARS: usize = 64;

    /// Validates a key.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let n = raw.chars().count();
        if n == 0 || n > Self::MAX_CHARS {
            return Err(InvalidField::new(
                "temp_id",
                format!("must be 1 to {} characters", Self::MAX_CHARS),
            ));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidField::new(
                "temp_id",
                "must not contain spaces or control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a message's content is. Only `text` is accepted from clients for now;
/// `image`, `file`, `system` and `encrypted` come with the wider features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// Plain text, always rendered as text.
    Text,
}

impl ContentType {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
        }
    }
}

impl FromStr for ContentType {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            _ => Err(InvalidField::new("content_type", "must be \"text\"")),
        }
    }
}

/// A persisted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Message id (UUIDv7).
    pub id: MessageId,
    /// Conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Position in the conversation: 1, 2, 3... with no gap.
    pub seq: i64,
    /// Author.
    pub sender_id: UserId,
    /// The sender's idempotency key, if one was given.
    pub client_msg_id: Option<String>,
    /// Text.
    pub content: String,
    /// Kind of content.
    pub content_type: ContentType,
    /// The message this one answers.
    pub reply_to: Option<MessageId>,
    /// When it was persisted.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted (a tombstone stays).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who deleted it (the sender, or a group's owner or admin); `None` unless deleted.
    pub deleted_by: Option<UserId>,
    /// The conversation's change number of the latest edit, deletion or reaction of this
    /// message (see [`crate::conversation::Conversation::last_change`]); 0 when it never
    /// changed.
    pub change_seq: i64,
}

/// A message to persist. Storage assigns `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Id to give the message if it is new.
    pub id: MessageId,
    /// Conversation to append to.
    pub conversation_id: ConversationId,
    /// Author (already checked to be a participant).
    pub sender_id: UserId,
    /// Idempotency key: the same (sender, key) always yields the same single message.
    pub client_msg_id: Option<ClientMsgId>,
    /// Text.
    pub content: MessageContent,
    /// Kind of content.
    pub content_type: ContentType,
    /// Replied-to message (already checked to be in the same conversation).
    pub reply_to: Option<MessageId>,
    /// The preview of the replied-to message as it was read when the send was checked
    /// (`None` unless `reply_to`): what the live frame and the send's answer carry.
    pub reply_preview: Option<ReplyPreview>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl NewMessage {
    /// Whether `existing` (found under the same sender and key) is a replay of this send,
    /// rather than a reuse of the key for something else.
    pub fn is_replayed_by(&self, existing: &Message) -> bool {
        existing.conversation_id == self.conversation_id
            && existing.content == self.content.as_str()
            && existing.content_type == self.content_type
    }

    /// The message this send becomes when committed with `seq` (never edited or deleted yet).
    pub fn stored_as(&self, seq: i64) -> Message {
        Message {
            id: self.id,
            conversation_id: self.conversation_id,
            seq,
            sender_id: self.sender_id,
            client_msg_id: self.client_msg_id.as_ref().map(|k| k.as_str().to_owned()),
            content: self.content.as_str().to_owned(),
            content_type: self.content_type,
            reply_to: self.reply_to,
            created_at: self.created_at,
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            change_seq: 0,
        }
    }
}

/// What appending one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// A new message was committed with the next seq.
    Created(Message),
    /// The (sender, key) was already used for the same content in the same conversation:
    /// this is the original message; nothing was written and no seq was used.
    Replayed(Message),
}

impl AppendOutcome {
    /// The message, new or original.
    pub fn message(&self) -> &Message {
        match self {
            Self::Created(m) | Self::Replayed(m) => m,
        }
    }
}

/// Why one message of a batch was not appended (the others are unaffected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendRejection {
    /// The sender already used this key for different content or another conversation.
    #[error("temp_id was already used for a different message")]
    KeyReused,
    /// The conversation does not exist (it may have been deleted meanwhile).
    #[error("conversation not found")]
    ConversationNotFound,
}

/// A message's delivery status as its sender sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageStatus {
    /// Persisted.
    Sent,
    /// Every other participant has it.
    Delivered,
    /// Every other participant has read it.
    Read,
}

impl MessageStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
        }
    }

    /// The aggregate status of message `seq` sent by `sender` over every other participant:
    /// `read` once all have read it, `delivered` once all have it, else `sent`.
    /// With no other participant (everyone else left) it stays `sent`.
    pub fn aggregate(seq: i64, sender: UserId, participants: &[Participant]) -> Self {
        let mut others = participants
            .iter()
            .filter(|p| p.user_id != sender)
            .peekable();
        if others.peek().is_none() {
            return Self::Sent;
        }
        let (mut all_read, mut all_delivered) = (true, true);
        for p in others {
            all_read &= p.read_seq >= seq;
            all_delivered &= p.delivered_seq.max(p.read_seq) >= seq;
        }
        if all_read {
            Self::Read
        } else if all_delivered {
            Self::Delivered
        } else {
            Self::Sent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Role;

    fn member(user_id: UserId, delivered_seq: i64, read_seq: i64) -> Participant {
        Participant {
            conversation_id: ConversationId::new(),
            user_id,
            role: Role::Member,
            joined_at: Utc::now(),
            delivered_seq,
            read_seq,
        }
    }

    #[test]
    fn blank_and_over_long_content_is_refused() {
        assert!(MessageContent::parse("  \n\t", 10).is_err());
        assert!(MessageContent::parse("ééééééééééé", 10).is_err());
        assert_eq!(
            MessageContent::parse("éééééééééé", 10).unwrap().as_str(),
            "éééééééééé"
        );
    }

    #[test]
    fn content_with_a_nul_is_refused_and_other_control_characters_kept() {
        let err = MessageContent::parse("a\u{0}b", 10).unwrap_err();
        assert_eq!(err.field, "content");
        assert_eq!(
            MessageContent::parse("a\tb\nc\u{1}", 10).unwrap().as_str(),
            "a\tb\nc\u{1}"
        );
    }

    #[test]
    fn temp_ids_are_one_to_sixty_four_printable_characters() {
        assert!(ClientMsgId::parse("").is_err());
        assert!(ClientMsgId::parse(&"a".repeat(65)).is_err());
        assert!(ClientMsgId::parse("a b").is_err());
        assert!(ClientMsgId::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn status_is_read_only_when_every_other_member_read_it() {
        let sender = UserId::new();
        let (b, c) = (UserId::new(), UserId::new());
        let members = [member(sender, 5, 5), member(b, 5, 5), member(c, 5, 4)];
        assert_eq!(
            MessageStatus::aggregate(5, sender, &members),
            MessageStatus::Delivered
        );
        assert_eq!(
            MessageStatus::aggregate(4, sender, &members),
            MessageStatus::Read
        );
        let members = [member(sender, 5, 5), member(b, 4, 3)];
        assert_eq!(
            MessageStatus::aggregate(5, sender, &members),
            MessageStatus::Sent
        );
    }

    #[test]
    fn a_message_with_no_one_else_left_stays_sent() {
        let sender = UserId::new();
        assert_eq!(
            MessageStatus::aggregate(1, sender, &[member(sender, 1, 1)]),
            MessageStatus::Sent
        );
    }
}

/// A reaction: one emoji, validated, never free text. Up to [`Emoji::MAX_CHARS`] characters,
/// all of them emoji code points or the joiners and modifiers that build one (ZWJ sequences,
/// skin tones, flags, keycaps), at least one of them a pictograph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Emoji(String);

impl Emoji {
    /// Longest accepted sequence, in characters (a family ZWJ sequence is 7 to 11).
    pub const MAX_CHARS: usize = 16;

    /// Validates `raw` as one emoji.
    pub fn parse(raw: &str) -> Result<Self, InvalidField> {
        let invalid = || InvalidField::new("emoji", "must be one emoji");
        let chars: Vec<char> = raw.chars().collect();
        if chars.is_empty() || chars.len() > Self::MAX_CHARS {
            return Err(invalid());
        }
        let mut pictographs = 0;
        for (i, &c) in chars.iter().enumerate() {
            if is_pictograph(c) {
                pictographs += 1;
            } else if is_emoji_modifier(c) {
                // Joiners and modifiers only after something they modify.
                if i == 0 {
                    return Err(invalid());
                }
            } else if matches!(c, '0'..='9' | '#' | '*') {
                // A keycap base: only as the start of "<base> FE0F? 20E3".
                let rest = &chars[i + 1..];
                let keycap = matches!(rest, ['\u{20E3}', ..] | ['\u{FE0F}', '\u{20E3}', ..]);
                if i != 0 || !keycap {
                    return Err(invalid());
                }
                pictographs += 1;
            } else {
                return Err(invalid());
            }
        }
        if pictographs == 0 {
            return Err(invalid());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The emoji.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Code points that are emoji by themselves (pictographs, symbols, regional indicators).
fn is_pictograph(c: char) -> bool {
    matches!(u32::from(c),
        0x1F000..=0x1FAFF
        | 0x2600..=0x27BF
        | 0x2300..=0x23FF
        | 0x2B00..=0x2BFF
        | 0x2190..=0x21FF
        | 0x25A0..=0x25FF
        | 0x2934 | 0x2935 | 0x3030 | 0x303D | 0x3297 | 0x3299
        | 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x24C2)
}

/// Code points that only join or modify an emoji: ZWJ, variation selectors, keycap, tags.
fn is_emoji_modifier(c: char) -> bool {
    matches!(
        u32::from(c),
        0x200D | 0xFE0E | 0xFE0F | 0x20E3 | 0xE0020..=0xE007F
    )
}

/// One emoji's reactions on a message, as a viewer sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionCount {
    /// The emoji.
    pub emoji: String,
    /// How many members reacted with it.
    pub count: u32,
    /// Who, earliest first, at most the bound the reader asked for.
    pub user_ids: Vec<UserId>,
    /// Whether the viewer is one of them.
    pub me: bool,
}

/// The message a reply answers, as a reader sees it now: enough to render the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyPreview {
    /// The original.
    pub message_id: MessageId,
    /// Its sender.
    pub sender_id: UserId,
    /// Its first [`ReplyPreview::EXCERPT_CHARS`] characters; empty when deleted.
    pub excerpt: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

impl ReplyPreview {
    /// Characters of the original a preview carries.
    pub const EXCERPT_CHARS: usize = 100;

    /// The preview of `original` as it is now.
    pub fn of(original: &Message) -> Self {
        let deleted = original.deleted_at.is_some();
        Self {
            message_id: original.id,
            sender_id: original.sender_id,
            excerpt: if deleted {
                String::new()
            } else {
                original.content.chars().take(Self::EXCERPT_CHARS).collect()
            },
            deleted,
        }
    }
}

/// What a deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted now: the tombstone, with its change number.
    Deleted(Message),
    /// It was deleted before: the tombstone as it is; nothing changed.
    AlreadyDeleted(Message),
}

/// What adding or removing a reaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionOutcome {
    /// The message, with its change number (a new one when `changed`).
    pub message: Message,
    /// Whether anything changed (adding a reaction that was there, or removing one that was
    /// not, changes nothing).
    pub changed: bool,
}

#[cfg(test)]
mod emoji_tests {
    #![allow(clippy::unwrap_used)]
    use super::Emoji;

    #[test]
    fn one_emoji_of_any_construction_is_accepted() {
        for ok in [
            "\u{1F44D}",                                                       // thumbs up
            "\u{2764}\u{FE0F}",                                                // red heart
            "\u{1F602}",                                                       // tears of joy
            "\u{1F44D}\u{1F3FD}",                                              // with a skin tone
            "\u{1F469}\u{200D}\u{1F469}\u{200D}\u{1F467}",                     // family (ZWJ)
            "\u{1F1EB}\u{1F1F7}",                                              // a flag
            "1\u{FE0F}\u{20E3}",                                               // keycap one
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}", // tag flag
        ] {
            assert_eq!(Emoji::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn text_blanks_and_lone_modifiers_are_refused() {
        for bad in [
            "",
            " ",
            "a",
            "lol",
            "1",
            "\u{1F44D} ",
            "<b>",
            "\u{200D}",
            "\u{FE0F}\u{1F44D}",
            "\u{1F44D}x",
            &"\u{1F44D}".repeat(17),
        ] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
