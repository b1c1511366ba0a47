//! Row structs as diesel reads and writes them, and their conversion to domain types.
//! They never leave the crate: the domain only sees its own types.

use crate::schema::{attachments, conversations, messages, participants, refresh_tokens, users};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::attachment::Attachment;
use domain::conversation::{Conversation, Participant, ParticipantProfile};
use domain::message::Message;
use domain::user::{DisplayName, EmailAddress, User, UserCredentials};
use domain::{AttachmentId, ConversationId, MessageId, StorageError, UserId};
use uuid::Uuid;

/// A `users` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub avatar_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl UserRow {
    /// The account with its password hash, for a login check.
    pub fn into_credentials(mut self) -> UserCredentials {
        let password_hash = std::mem::take(&mut self.password_hash);
        UserCredentials {
            user: self.into(),
            password_hash,
        }
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: UserId::from_uuid(row.id),
            email: EmailAddress::from_trusted(row.email),
            display_name: DisplayName::from_trusted(row.display_name),
            avatar_url: row.avatar_url,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
        }
    }
}

/// A `refresh_tokens` row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub(crate) struct NewRefreshTokenRow<'a> {
    pub token_hash: &'a str,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A `conversations` row (without `direct_key`, which only the database needs).
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = conversations, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ConversationRow {
    pub id: Uuid,
    pub kind: String,
    pub title: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_seq: i64,
    pub last_message_at: Option<DateTime<Utc>>,
    pub last_change: i64,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StorageError;
    fn try_from(row: ConversationRow) -> Result<Self, StorageError> {
        Ok(Self {
            id: ConversationId::from_uuid(row.id),
            kind: row.kind.parse().map_err(corrupt("conversations.kind"))?,
            title: row.title,
            created_by: UserId::from_uuid(row.created_by),
            created_at: row.created_at,
            last_seq: row.last_seq,
            last_message_at: row.last_message_at,
            last_change: row.last_change,
        })
    }
}

/// A `participants` row.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, Insertable)]
#[diesel(table_name = participants, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ParticipantRow {
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub joined_at: DateTime<Utc>,
    pub delivered_seq: i64,
    pub read_seq: i64,
}

impl TryFrom<ParticipantRow> for Participant {
    type Error = StorageError;
    fn try_from(row: ParticipantRow) -> Result<Self, StorageError> {
        Ok(Self {
            conversation_id: ConversationId::from_uuid(row.conversation_id),
            user_id: UserId::from_uuid(row.user_id),
            role: row.role.parse().map_err(corrupt("participants.role"))?,
            joined_at: row.joined_at,
            delivered_seq: row.delivered_seq,
            read_seq: row.read_seq,
        })
    }
}

/// A member with the profile fields of its account.
pub(crate) fn profile(
    (participant, user): (ParticipantRow, UserRow),
) -> Result<ParticipantProfile, StorageError> {
    Ok(ParticipantProfile {
        participant: participant.try_into()?,
        display_name: user.display_name,
        email: user.email,
        avatar_url: user.avatar_url,
        last_seen_at: user.last_seen_at,
    })
}

/// A `messages` row.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MessageRow {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub client_msg_id: Option<String>,
    pub content: String,
    pub content_type: String,
    pub reply_to: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub change_seq: i64,
    pub deleted_by: Option<Uuid>,
    /// How many attachments it was sent with (0: none to read).
    pub attachment_count: i32,
}

impl MessageRow {
    /// Whether its attachments are to be read with it: it has some and is not deleted (a
    /// tombstone shows none).
    pub fn shows_attachments(&self) -> bool {
        self.attachment_count > 0 && self.deleted_at.is_none()
    }
}

impl TryFrom<MessageRow> for Message {
    type Error = StorageError;
    fn try_from(row: MessageRow) -> Result<Self, StorageError> {
        Ok(Self {
            id: MessageId::from_uuid(row.id),
            conversation_id: ConversationId::from_uuid(row.conversation_id),
            seq: row.seq,
            sender_id: UserId::from_uuid(row.sender_id),
            client_msg_id: row.client_msg_id,
            content: row.content,
            content_type: row
                .content_type
                .parse()
                .map_err(corrupt("messages.content_type"))?,
            reply_to: row.reply_to.map(MessageId::from_uuid),
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
            deleted_by: row.deleted_by.map(UserId::from_uuid),
            change_seq: row.change_seq,
            attachments: Vec::new(),
        })
    }
}

/// An `attachments` row.
#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, Insertable)]
#[diesel(table_name = attachments, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AttachmentRow {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub uploader_id: Uuid,
    pub filename: String,
    pub mime_type: String,
    pub size: i64,
    pub encrypted: bool,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub has_thumbnail: bool,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub message_id: Option<Uuid>,
    pub position: Option<i32>,
}

impl TryFrom<AttachmentRow> for Attachment {
    type Error = StorageError;
    fn try_from(row: AttachmentRow) -> Result<Self, StorageError> {
        let pixels = |n: Option<i32>, column| {
            n.map(|n| u32::try_from(n).map_err(corrupt(column)))
                .transpose()
        };
        Ok(Self {
            id: AttachmentId::from_uuid(row.id),
            conversation_id: ConversationId::from_uuid(row.conversation_id),
            uploader_id: UserId::from_uuid(row.uploader_id),
            filename: row.filename,
            mime_type: row.mime_type,
            size: u64::try_from(row.size).map_err(corrupt("attachments.size"))?,
            encrypted: row.encrypted,
            width: pixels(row.width, "attachments.width")?,
            height: pixels(row.height, "attachments.height")?,
            has_thumbnail: row.has_thumbnail,
            created_at: row.created_at,
            confirmed_at: row.confirmed_at,
            message_id: row.message_id.map(MessageId::from_uuid),
        })
    }
}

/// A value the schema's CHECK constraints should have kept out: the database was written
/// by something else (or a newer version), so refuse rather than guess.
fn corrupt<E: std::fmt::Display>(column: &'static str) -> impl FnOnce(E) -> StorageError {
    move |err| StorageError::msg(format!("unexpected value in {column}: {err}"))
}
