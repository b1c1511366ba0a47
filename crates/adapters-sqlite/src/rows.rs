//! Rows as diesel reads and writes them, and their conversion to and from domain types.
//! A row that does not convert (a malformed UUID, say) is a deserialization error: the
//! file was changed behind the store's back.

use crate::schema::{conversations, messages, participants, refresh_tokens, users};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{Error as DieselError, QueryResult};
use diesel::sqlite::Sqlite;
use domain::conversation::{Conversation, Participant, ParticipantProfile};
use domain::message::{Message, NewMessage};
use domain::user::{DisplayName, EmailAddress, NewUser, User};
use std::str::FromStr;
use uuid::Uuid;

/// A time as stored: microseconds since the Unix epoch, the precision the domain keeps.
pub(crate) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// A stored time.
pub(crate) fn time(micros: i64) -> QueryResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| corrupt(format!("timestamp {micros} is out of range")))
}

fn optional_time(micros: Option<i64>) -> QueryResult<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

/// A stored id.
pub(crate) fn id<T: From<Uuid>>(text: &str) -> QueryResult<T> {
    Uuid::parse_str(text)
        .map(T::from)
        .map_err(|e| corrupt(format!("stored id {text:?} is not a UUID: {e}")))
}

/// A stored enum (kind, role, content type) by its storage name.
pub(crate) fn parsed<T: FromStr>(text: &str) -> QueryResult<T> {
    text.parse()
        .map_err(|_| corrupt(format!("unexpected stored value {text:?}")))
}

/// An error for a row that does not convert.
pub(crate) fn corrupt(message: String) -> DieselError {
    DieselError::DeserializationError(message.into())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(Sqlite))]
pub(crate) struct UserRow {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) avatar_url: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) last_seen_at: Option<i64>,
}

impl UserRow {
    pub(crate) fn into_user(self) -> QueryResult<User> {
        Ok(User {
            id: id(&self.id)?,
            email: EmailAddress::from_trusted(self.email),
            display_name: DisplayName::from_trusted(self.display_name),
            avatar_url: self.avatar_url,
            created_at: time(self.created_at)?,
            last_seen_at: optional_time(self.last_seen_at)?,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users, check_for_backend(Sqlite))]
pub(crate) struct NewUserRow {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) display_name: String,
    pub(crate) password_hash: String,
    pub(crate) created_at: i64,
}

impl From<&NewUser> for NewUserRow {
    fn from(user: &NewUser) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            password_hash: user.password_hash.clone(),
            created_at: micros(user.created_at),
        }
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, check_for_backend(Sqlite))]
pub(crate) struct RefreshTokenRow {
    pub(crate) token_hash: String,
    pub(crate) family_id: String,
    pub(crate) user_id: String,
    pub(crate) created_at: i64,
    pub(crate) expires_at: i64,
    pub(crate) used_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = conversations, check_for_backend(Sqlite))]
pub(crate) struct ConversationRow {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) title: Option<String>,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
    pub(crate) last_seq: i64,
    pub(crate) last_message_at: Option<i64>,
    pub(crate) last_change: i64,
}

impl ConversationRow {
    pub(crate) fn into_conversation(self) -> QueryResult<Conversation> {
        Ok(Conversation {
            id: id(&self.id)?,
            kind: parsed(&self.kind)?,
            title: self.title,
            created_by: id(&self.created_by)?,
            created_at: time(self.created_at)?,
            last_seq: self.last_seq,
            last_message_at: optional_time(self.last_message_at)?,
            last_change: self.last_change,
        })
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = conversations, check_for_backend(Sqlite))]
pub(crate) struct NewConversationRow {
    pub(crate) id: String,
    pub(crate) kind: &'static str,
    pub(crate) title: Option<String>,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
    pub(crate) direct_key: Option<String>,
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = participants, check_for_backend(Sqlite))]
pub(crate) struct ParticipantRow {
    pub(crate) conversation_id: String,
    pub(crate) user_id: String,
    pub(crate) role: String,
    pub(crate) joined_at: i64,
    pub(crate) delivered_seq: i64,
    pub(crate) read_seq: i64,
}

impl ParticipantRow {
    pub(crate) fn into_participant(self) -> QueryResult<Participant> {
        Ok(Participant {
            conversation_id: id(&self.conversation_id)?,
            user_id: id(&self.user_id)?,
            role: parsed(&self.role)?,
            joined_at: time(self.joined_at)?,
            delivered_seq: self.delivered_seq,
            read_seq: self.read_seq,
        })
    }

    pub(crate) fn into_profile(self, user: UserRow) -> QueryResult<ParticipantProfile> {
        let user = user.into_user()?;
        Ok(ParticipantProfile {
            participant: self.into_participant()?,
            display_name: user.display_name.as_str().to_owned(),
            email: user.email.as_str().to_owned(),
            avatar_url: user.avatar_url,
            last_seen_at: user.last_seen_at,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages, check_for_backend(Sqlite))]
pub(crate) struct MessageRow {
    pub(crate) id: String,
    pub(crate) conversation_id: String,
    pub(crate) seq: i64,
    pub(crate) sender_id: String,
    pub(crate) client_msg_id: Option<String>,
    pub(crate) content: String,
    pub(crate) content_type: String,
    pub(crate) reply_to: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) edited_at: Option<i64>,
    pub(crate) deleted_at: Option<i64>,
    pub(crate) change_seq: i64,
    pub(crate) deleted_by: Option<String>,
    /// How many attachments it was sent with (0: none to read).
    pub(crate) attachment_count: i32,
}

impl MessageRow {
    /// Whether its attachments are to be read with it: it has some and is not deleted (a
    /// tombstone shows none).
    pub(crate) fn shows_attachments(&self) -> bool {
        self.attachment_count > 0 && self.deleted_at.is_none()
    }

    /// The row for `new` at position `seq`.
    pub(crate) fn new(new: &NewMessage, seq: i64) -> Self {
        Self {
            id: new.id.to_string(),
            conversation_id: new.conversation_id.to_string(),
            seq,
            sender_id: new.sender_id.to_string(),
            client_msg_id: new.client_msg_id.as_ref().map(|k| k.as_str().to_owned()),
            content: new.content.as_str().to_owned(),
            content_type: new.content_type.as_str().to_owned(),
            reply_to: new.reply_to.map(|id| id.to_string()),
            created_at: micros(new.created_at),
            edited_at: None,
            deleted_at: None,
            change_seq: 0,
            deleted_by: None,
            attachment_count: i32::try_from(new.attachments.len()).unwrap_or(i32::MAX),
        }
    }

    pub(crate) fn into_message(self) -> QueryResult<Message> {
        Ok(Message {
            id: id(&self.id)?,
            conversation_id: id(&self.conversation_id)?,
            seq: self.seq,
            sender_id: id(&self.sender_id)?,
            client_msg_id: self.client_msg_id,
            content: self.content,
            content_type: parsed(&self.content_type)?,
            reply_to: self.reply_to.as_deref().map(id).transpose()?,
            created_at: time(self.created_at)?,
            edited_at: optional_time(self.edited_at)?,
            deleted_at: optional_time(self.deleted_at)?,
            deleted_by: self.deleted_by.as_deref().map(id).transpose()?,
            change_seq: self.change_seq,
            attachments: Vec::new(),
        })
    }
}

/// Converts every row, failing on the first that does not.
pub(crate) fn convert<R, T>(rows: Vec<R>, f: impl Fn(R) -> QueryResult<T>) -> QueryResult<Vec<T>> {
    rows.into_iter().map(f).collect()
}
