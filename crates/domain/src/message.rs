//! Messages, their validated parts, and the status a sender sees.

use crate::conversation::Participant;
use crate::ids::{AttachmentId, ConversationId, MessageId, UserId};
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

/// What a message's content is: `text`, or `encrypted` (an end-to-end encrypted envelope,
/// see [`parse_envelope`]). `image`, `file` and `system` come with the wider features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// Plain text, always rendered as text.
    Text,
    /// An end-to-end encrypted envelope the server cannot read (issue 13).
    Encrypted,
}

impl ContentType {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Encrypted => "encrypted",
        }
    }
}

impl FromStr for ContentType {
    type Err = InvalidField;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "encrypted" => Ok(Self::Encrypted),
            _ => Err(InvalidField::new(
                "content_type",
                "must be \"text\" or \"encrypted\"",
            )),
        }
    }
}

/// What server-made previews (a reply's `reply_preview`) say of an `encrypted` message: the
/// server cannot read it, and never shows a cut of the envelope.
pub const ENCRYPTED_PREVIEW: &str = "Encrypted message";

/// Bytes of an envelope's `iv`.
pub const ENVELOPE_IV_BYTES: usize = 12;

/// Fewest bytes of an envelope's `ct` (the AES-GCM tag alone).
pub const ENVELOPE_MIN_CT_BYTES: usize = 16;

/// Validates the content of an `encrypted` message for shape and size only: at most
/// `max_bytes` bytes, a JSON object with exactly the keys `v`, `kid`, `iv` and `ct`; `v` is
/// 1, `kid` an integer from 1 (fitting i64), `iv` strict base64url of 12 bytes, `ct` strict
/// base64url of at least 16 bytes (ciphertext and tag). The content is kept as sent and is
/// never looked into beyond this (see `docs/security.md`).
pub fn parse_envelope(raw: &str, max_bytes: usize) -> Result<MessageContent, InvalidField> {
    use crate::encryption::decode_base64url;
    if raw.len() > max_bytes {
        return Err(InvalidField::new(
            "content",
            format!("an encrypted message must be at most {max_bytes} bytes"),
        ));
    }
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|_| InvalidField::new("content", "an encrypted message must be JSON"))?;
    let Some(object) = value.as_object() else {
        return Err(InvalidField::new(
            "content",
            "an encrypted message must be a JSON object",
        ));
    };
    const KEYS: [&str; 4] = ["v", "kid", "iv", "ct"];
    if object.len() != KEYS.len() || KEYS.iter().any(|k| !object.contains_key(*k)) {
        return Err(InvalidField::new(
            "content",
            "an encrypted message must have exactly the keys v, kid, iv and ct",
        ));
    }
    if object.get("v").and_then(serde_json::Value::as_u64) != Some(1) {
        return Err(InvalidField::new("content.v", "must be 1"));
    }
    if object
        .get("kid")
        .and_then(serde_json::Value::as_i64)
        .is_none_or(|kid| kid < 1)
    {
        return Err(InvalidField::new(
            "content.kid",
            "must be an integer of at least 1",
        ));
    }
    let base64 = |key: &'static str| {
        object
            .get(key)
            .and_then(serde_json::Value::as_str)
            .and_then(decode_base64url)
            .ok_or_else(|| InvalidField::new(key_field(key), "must be base64url without padding"))
    };
    if base64("iv")?.len() != ENVELOPE_IV_BYTES {
        return Err(InvalidField::new(
            "content.iv",
            format!("must encode exactly {ENVELOPE_IV_BYTES} bytes"),
        ));
    }
    if base64("ct")?.len() < ENVELOPE_MIN_CT_BYTES {
        return Err(InvalidField::new(
            "content.ct",
            format!("must encode at least {ENVELOPE_MIN_CT_BYTES} bytes"),
        ));
    }
    Ok(MessageContent::from_trusted(raw.to_owned()))
}

fn key_field(key: &'static str) -> &'static str {
    match key {
        "iv" => "content.iv",
        _ => "content.ct",
    }
}

/// Validates a message's content as its type requires: text against `max_chars`
/// ([`MessageContent::parse`]), an envelope against `max_encrypted_bytes`
/// ([`parse_envelope`]).
pub fn parse_content(
    raw: &str,
    content_type: ContentType,
    max_chars: usize,
    max_encrypted_bytes: usize,
) -> Result<MessageContent, InvalidField> {
    match content_type {
        ContentType::Text => MessageContent::parse(raw, max_chars),
        ContentType::Encrypted => parse_envelope(raw, max_encrypted_bytes),
    }
}

/// Why a content type does not fit a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRefusal {
    /// The conversation is end-to-end encrypted and this is not an envelope
    /// (`encryption_required`).
    EncryptionRequired(&'static str),
    /// An envelope in a conversation that is not encrypted (`not_encrypted`).
    NotEncrypted,
}

/// Whether a new message of `content_type` may be sent where encryption is `encrypted`:
/// only `encrypted` in an encrypted conversation, never `encrypted` in a plain one.
pub fn check_send(encrypted: bool, content_type: ContentType) -> Result<(), ContentRefusal> {
    match (encrypted, content_type) {
        (true, ContentType::Encrypted) | (false, ContentType::Text) => Ok(()),
        (true, ContentType::Text) => Err(ContentRefusal::EncryptionRequired(
            "this conversation is end-to-end encrypted: send content_type \"encrypted\"",
        )),
        (false, ContentType::Encrypted) => Err(ContentRefusal::NotEncrypted),
    }
}

/// The content type an edit's new content must have, for a message of `original` where
/// encryption is `encrypted`: in an encrypted conversation only `encrypted` messages are
/// edited, with a new envelope (a `text` message from before encryption was turned on
/// stays as it is); in a plain one, as the message is.
pub fn check_edit(encrypted: bool, original: ContentType) -> Result<ContentType, ContentRefusal> {
    match (encrypted, original) {
        (true, ContentType::Encrypted) => Ok(ContentType::Encrypted),
        (true, ContentType::Text) => Err(ContentRefusal::EncryptionRequired(
            "this conversation is end-to-end encrypted: its plain messages cannot be edited",
        )),
        (false, original) => Ok(original),
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
    /// The attachments it carries, in the order sent (each with `message_id` this
    /// message's); empty when none, and once deleted. Storage reads them with the message.
    pub attachments: Vec<crate::attachment::Attachment>,
}

impl Message {
    /// The ids of its attachments, in order.
    pub fn attachment_ids(&self) -> Vec<AttachmentId> {
        self.attachments.iter().map(|a| a.id).collect()
    }
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
    /// Attachments to send with it, in order, as read when the send was checked (confirmed
    /// uploads of the sender in this conversation). Storage binds them to the message in
    /// the same transaction, only those not sent yet, or refuses the send with
    /// [`AppendRejection::AttachmentUnavailable`]. What the live frame carries.
    pub attachments: Vec<crate::attachment::Attachment>,
}

impl NewMessage {
    /// Whether `existing` (found under the same sender and key) is a replay of this send,
    /// rather than a reuse of the key for something else.
    pub fn is_replayed_by(&self, existing: &Message) -> bool {
        existing.conversation_id == self.conversation_id
            && existing.content == self.content.as_str()
            && existing.content_type == self.content_type
            && existing.attachment_ids() == self.attachment_ids()
    }

    /// The ids of [`Self::attachments`], in order.
    pub fn attachment_ids(&self) -> Vec<AttachmentId> {
        self.attachments.iter().map(|a| a.id).collect()
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
            attachments: self
                .attachments
                .iter()
                .map(|a| crate::attachment::Attachment {
                    message_id: Some(self.id),
                    ..a.clone()
                })
                .collect(),
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
    /// One of `attachment_ids` is not (or no longer) a confirmed, unsent attachment the
    /// sender uploaded to this conversation: another send took it first, or it expired.
    /// Nothing is written for this message.
    #[error("an attachment is not available to send")]
    AttachmentUnavailable,
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

    /// An envelope with `iv` of `iv` bytes and `ct` of `ct` bytes (base64url of zeros).
    fn envelope(kid: &str, iv: usize, ct: usize) -> String {
        format!(
            r#"{{"v":1,"kid":{kid},"iv":"{}","ct":"{}"}}"#,
            b64(iv),
            b64(ct)
        )
    }

    fn b64(bytes: usize) -> String {
        // Zeros: every 3 bytes are "AAAA", a last 1 or 2 are "AA" or "AAA".
        let mut out = "AAAA".repeat(bytes / 3);
        match bytes % 3 {
            1 => out.push_str("AA"),
            2 => out.push_str("AAA"),
            _ => {}
        }
        out
    }

    fn refused_field(raw: &str) -> &'static str {
        parse_envelope(raw, 24_576).unwrap_err().field
    }

    #[test]
    fn a_well_formed_envelope_is_kept_as_sent() {
        let raw = envelope("3", 12, 16);
        assert_eq!(parse_envelope(&raw, 24_576).unwrap().as_str(), raw);
        let long = envelope("9223372036854775807", 12, 300);
        assert!(parse_envelope(&long, 24_576).is_ok());
        // Key order and spacing are the client's: only the shape is checked.
        let reordered = format!(
            r#"{{ "ct":"{}", "iv":"{}", "kid":1, "v":1 }}"#,
            b64(20),
            b64(12)
        );
        assert!(parse_envelope(&reordered, 24_576).is_ok());
    }

    #[test]
    fn each_malformation_of_an_envelope_is_refused_by_name() {
        let iv = b64(12);
        let ct = b64(16);
        for (raw, field) in [
            ("not json".to_owned(), "content"),
            ("[1,2]".to_owned(), "content"),
            ("\"text\"".to_owned(), "content"),
            (format!(r#"{{"v":1,"kid":1,"iv":"{iv}"}}"#), "content"),
            (
                format!(r#"{{"v":1,"kid":1,"iv":"{iv}","ct":"{ct}","x":0}}"#),
                "content",
            ),
            (
                format!(r#"{{"v":1,"kid":1,"iv":"{iv}","tag":"{ct}"}}"#),
                "content",
            ),
            (
                format!(r#"{{"v":2,"kid":1,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.v",
            ),
            (
                format!(r#"{{"v":"1","kid":1,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.v",
            ),
            (
                format!(r#"{{"v":1.0,"kid":1,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.v",
            ),
            (
                format!(r#"{{"v":1,"kid":0,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.kid",
            ),
            (
                format!(r#"{{"v":1,"kid":-1,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.kid",
            ),
            (
                format!(r#"{{"v":1,"kid":1.5,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.kid",
            ),
            (
                format!(r#"{{"v":1,"kid":"1","iv":"{iv}","ct":"{ct}"}}"#),
                "content.kid",
            ),
            (
                format!(r#"{{"v":1,"kid":9223372036854775808,"iv":"{iv}","ct":"{ct}"}}"#),
                "content.kid",
            ),
            (envelope("1", 11, 16), "content.iv"),
            (envelope("1", 13, 16), "content.iv"),
            (
                format!(r#"{{"v":1,"kid":1,"iv":"{iv}=","ct":"{ct}"}}"#),
                "content.iv",
            ),
            (
                format!(r#"{{"v":1,"kid":1,"iv":"{iv}","ct":"{ct}=="}}"#),
                "content.ct",
            ),
            (
                format!(r#"{{"v":1,"kid":1,"iv":1,"ct":"{ct}"}}"#),
                "content.iv",
            ),
            (
                format!(r#"{{"v":1,"kid":1,"iv":"{iv}","ct":"a+b/"}}"#),
                "content.ct",
            ),
            (envelope("1", 12, 15), "content.ct"),
        ] {
            assert_eq!(refused_field(&raw), field, "{raw}");
        }
    }

    #[test]
    fn an_envelope_over_the_byte_limit_is_refused() {
        let raw = envelope("1", 12, 90);
        assert!(parse_envelope(&raw, raw.len()).is_ok());
        let err = parse_envelope(&raw, raw.len() - 1).unwrap_err();
        assert_eq!(err.field, "content");
        assert!(err.reason.contains("bytes"), "{}", err.reason);
        // Text keeps its own limit, in characters; an envelope is not held to it.
        assert!(parse_content(&raw, ContentType::Encrypted, 10, 24_576).is_ok());
        assert!(parse_content(&raw, ContentType::Text, 10, 24_576).is_err());
        assert!(parse_content("hello", ContentType::Encrypted, 10, 24_576).is_err());
    }

    #[test]
    fn content_types_are_text_and_encrypted() {
        assert_eq!(
            "encrypted".parse::<ContentType>().unwrap(),
            ContentType::Encrypted
        );
        assert_eq!(ContentType::Encrypted.as_str(), "encrypted");
        assert_eq!("text".parse::<ContentType>().unwrap(), ContentType::Text);
        assert_eq!(
            "image".parse::<ContentType>().unwrap_err().field,
            "content_type"
        );
    }

    #[test]
    fn an_encrypted_conversation_takes_envelopes_only_and_a_plain_one_text_only() {
        assert_eq!(check_send(true, ContentType::Encrypted), Ok(()));
        assert_eq!(check_send(false, ContentType::Text), Ok(()));
        assert!(matches!(
            check_send(true, ContentType::Text),
            Err(ContentRefusal::EncryptionRequired(_))
        ));
        assert_eq!(
            check_send(false, ContentType::Encrypted),
            Err(ContentRefusal::NotEncrypted)
        );
    }

    #[test]
    fn edits_in_an_encrypted_conversation_are_of_envelopes_into_envelopes() {
        assert_eq!(
            check_edit(true, ContentType::Encrypted),
            Ok(ContentType::Encrypted)
        );
        assert!(matches!(
            check_edit(true, ContentType::Text),
            Err(ContentRefusal::EncryptionRequired(_))
        ));
        assert_eq!(check_edit(false, ContentType::Text), Ok(ContentType::Text));
    }

    #[test]
    fn a_preview_of_an_encrypted_message_never_cuts_the_envelope() {
        let mut original = Message {
            id: MessageId::new(),
            conversation_id: ConversationId::new(),
            seq: 1,
            sender_id: UserId::new(),
            client_msg_id: None,
            content: envelope("1", 12, 200),
            content_type: ContentType::Encrypted,
            reply_to: None,
            created_at: Utc::now(),
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            change_seq: 0,
            attachments: Vec::new(),
        };
        let preview = ReplyPreview::of(&original);
        assert_eq!(preview.excerpt, ENCRYPTED_PREVIEW);
        assert_eq!(preview.content_type, ContentType::Encrypted);
        original.content_type = ContentType::Text;
        original.content = "x".repeat(150);
        let preview = ReplyPreview::of(&original);
        assert_eq!(preview.excerpt, "x".repeat(100));
        assert_eq!(preview.content_type, ContentType::Text);
        original.content_type = ContentType::Encrypted;
        original.deleted_at = Some(Utc::now());
        assert_eq!(ReplyPreview::of(&original).excerpt, "");
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
    /// Its first [`ReplyPreview::EXCERPT_CHARS`] characters; empty when deleted;
    /// [`ENCRYPTED_PREVIEW`] when it is `encrypted`.
    pub excerpt: String,
    /// Its content type.
    pub content_type: ContentType,
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
            } else if original.content_type == ContentType::Encrypted {
                ENCRYPTED_PREVIEW.to_owned()
            } else {
                original.content.chars().take(Self::EXCERPT_CHARS).collect()
            },
            content_type: original.content_type,
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
