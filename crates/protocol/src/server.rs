//! The WebSocket frames the server sends (`docs/protocol.md`, "Server -> client"): the server
//! serialises them, clients deserialise them.

use crate::error::ErrorCode;
use crate::rest::{ConversationDto, MessageDto, ReactionDto, UserDto};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The `type` of each server frame, as on the wire.
pub mod types {
    /// [`super::ServerFrame::Hello`]
    pub const HELLO: &str = "hello";
    /// [`super::ServerFrame::Message`]
    pub const MESSAGE: &str = "message";
    /// [`super::ServerFrame::MessageSent`]
    pub const MESSAGE_SENT: &str = "message_sent";
    /// [`super::ServerFrame::Delivered`]
    pub const DELIVERED: &str = "delivered";
    /// [`super::ServerFrame::ReadReceipt`]
    pub const READ_RECEIPT: &str = "read_receipt";
    /// [`super::ServerFrame::Typing`]
    pub const TYPING: &str = "typing";
    /// [`super::ServerFrame::Presence`]
    pub const PRESENCE: &str = "presence";
    /// [`super::ServerFrame::SyncDone`]
    pub const SYNC_DONE: &str = "sync_done";
    /// [`super::ServerFrame::Conversation`]
    pub const CONVERSATION: &str = "conversation";
    /// [`super::ServerFrame::Unread`]
    pub const UNREAD: &str = "unread";
    /// [`super::ServerFrame::AuthOk`]
    pub const AUTH_OK: &str = "auth_ok";
    /// [`super::ServerFrame::Pong`]
    pub const PONG: &str = "pong";
    /// [`super::ServerFrame::Error`]
    pub const ERROR: &str = "error";
    /// [`super::ServerFrame::KeyRequest`]
    pub const KEY_REQUEST: &str = "key_request";
    /// [`super::ServerFrame::KeyShared`]
    pub const KEY_SHARED: &str = "key_shared";
    /// [`super::ServerFrame::MessageUpdated`]
    pub const MESSAGE_UPDATED: &str = "message_updated";
    /// [`super::ServerFrame::MessageDeleted`]
    pub const MESSAGE_DELETED: &str = "message_deleted";
    /// [`super::ServerFrame::Reaction`]
    pub const REACTION: &str = "reaction";
}

/// How every `message` frame starts: clients that read the hot path by hand match it.
pub const MESSAGE_FRAME_PREFIX: &str = r#"{"type":"message","#;

/// One conversation in `hello` and `sync_done`: the receipt watermarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    /// The user's delivered watermark.
    pub delivered_seq: i64,
    /// The user's read watermark.
    pub read_seq: i64,
    /// The lowest delivered watermark among the other members (what the sender's ticks show).
    pub peer_delivered_seq: i64,
    /// The lowest read watermark among the other members.
    pub peer_read_seq: i64,
}

/// A conversation of the `hello` snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSnapshot {
    /// Conversation id.
    pub conversation_id: Uuid,
    /// Seq of its newest message.
    pub last_seq: i64,
    /// The user's unread count there.
    pub unread_count: i64,
    /// Its latest change number (edits, deletions, reactions): the change cursor.
    #[serde(default)]
    pub last_change: i64,
    /// Receipt watermarks.
    #[serde(flatten)]
    pub watermarks: Watermarks,
}

/// A conversation of `sync_done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The seq replayed up to: the cursor of the next `sync` when `has_more`.
    pub last_seq: i64,
    /// Whether another page remains (of messages, or of changes).
    pub has_more: bool,
    /// The change number replayed up to: the change cursor of the next `sync`. Left out
    /// when the `sync` asked for no changes of this conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<i64>,
    /// Receipt watermarks now.
    #[serde(flatten)]
    pub watermarks: Watermarks,
}

/// Someone's presence, as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceStatus {
    /// At least one live session that is not away.
    Online,
    /// Every live session is away.
    Away,
    /// No live session for the grace period.
    Offline,
}

/// What happened to a conversation (`conversation` frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationEvent {
    /// It was created (sent on each member's own channel).
    Created,
    /// Its title changed.
    Renamed,
    /// A member was added.
    MemberAdded,
    /// A member was removed or left.
    MemberRemoved,
    /// End-to-end encryption was turned on (`conversation.encrypted` is `true` from now on).
    EncryptionEnabled,
}

/// Every frame the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame of every connection.
    Hello {
        /// The authenticated user.
        user: UserDto,
        /// This connection.
        session_id: Uuid,
        /// The server's clock.
        server_time: DateTime<Utc>,
        /// Ping interval; silence for two closes the session.
        heartbeat_interval_ms: u64,
        /// Every conversation of the user (the one of `/ws/chat/{id}`).
        conversations: Vec<ConversationSnapshot>,
    },
    /// A message, live or replayed.
    Message {
        /// The message.
        message: MessageDto,
    },
    /// The acknowledgement of a send, after commit.
    MessageSent {
        /// Conversation.
        conversation_id: Uuid,
        /// The message id.
        message_id: Uuid,
        /// The client's key.
        temp_id: Option<String>,
        /// Its seq.
        seq: i64,
        /// When it was persisted.
        created_at: DateTime<Utc>,
    },
    /// A member's delivered watermark moved.
    Delivered {
        /// Conversation.
        conversation_id: Uuid,
        /// The message at `seq`.
        message_id: Uuid,
        /// New watermark.
        seq: i64,
        /// Whose.
        user_id: Uuid,
    },
    /// A member's read watermark moved.
    ReadReceipt {
        /// Conversation.
        conversation_id: Uuid,
        /// The message at `seq`.
        message_id: Uuid,
        /// New watermark.
        seq: i64,
        /// Whose.
        read_by: Uuid,
        /// When.
        read_at: DateTime<Utc>,
    },
    /// Someone else is (not) typing.
    Typing {
        /// Conversation.
        conversation_id: Uuid,
        /// Who.
        user_id: Uuid,
        /// Started or stopped.
        is_typing: bool,
    },
    /// Someone's presence changed.
    Presence {
        /// Who.
        user_id: Uuid,
        /// `online`, `away` or `offline`.
        status: PresenceStatus,
        /// Last seen online.
        last_seen: Option<DateTime<Utc>>,
    },
    /// The replay of a `sync` is complete.
    SyncDone {
        /// Per conversation of the `sync`.
        conversations: BTreeMap<Uuid, SyncState>,
    },
    /// A conversation was created, renamed, or a member added or removed.
    Conversation {
        /// `created`, `renamed`, `member_added`, `member_removed`, `encryption_enabled`.
        event: ConversationEvent,
        /// The member added or removed.
        user_id: Option<Uuid>,
        /// The conversation, REST shape.
        conversation: ConversationDto,
    },
    /// The user's unread counts changed.
    Unread {
        /// Conversation.
        conversation_id: Uuid,
        /// Unread there.
        unread_count: i64,
        /// Unread everywhere.
        total: i64,
    },
    /// An `auth` frame renewed the session.
    AuthOk {
        /// The new expiry.
        expires_at: DateTime<Utc>,
    },
    /// A message was edited, or (replayed by a `sync`) changed otherwise: as it is now.
    MessageUpdated {
        /// Conversation.
        conversation_id: Uuid,
        /// The message, with its new content and `edited_at`.
        message: MessageDto,
        /// The change number.
        change_seq: i64,
    },
    /// A message was deleted: its tombstone.
    MessageDeleted {
        /// Conversation.
        conversation_id: Uuid,
        /// The message.
        message_id: Uuid,
        /// Its seq.
        seq: i64,
        /// When.
        deleted_at: DateTime<Utc>,
        /// By whom.
        deleted_by: Uuid,
        /// The change number.
        change_seq: i64,
    },
    /// A member added or removed a reaction.
    Reaction {
        /// Conversation.
        conversation_id: Uuid,
        /// The message.
        message_id: Uuid,
        /// Who.
        user_id: Uuid,
        /// Which emoji.
        emoji: String,
        /// Added (`true`) or removed.
        added: bool,
        /// The message's reactions after it (without `me`).
        reactions: Vec<ReactionDto>,
        /// The whole message as it is now (its `reactions` the same), so that every change
        /// frame carries the message's whole state: of two copies, the higher `change_seq`
        /// is the newer.
        message: MessageDto,
        /// The change number.
        change_seq: i64,
    },
    /// Heartbeat answer.
    Pong,
    /// A member's device lacks the conversation's key: the other members' clients that hold
    /// it wrap it for that device (`PUT /conversations/{id}/keys/{key_version}`). Sent to
    /// every session of every member.
    KeyRequest {
        /// Conversation.
        conversation_id: Uuid,
        /// Who asks.
        user_id: Uuid,
        /// Their device without the key.
        device_id: Uuid,
        /// The version asked for (the current one).
        key_version: i64,
    },
    /// Keys were stored for devices: each device in `device_ids` fetches its keys
    /// (`GET /conversations/{id}/keys?device_id=`). When `rotated`, `key_version` is new and
    /// every member's client sends with it from now on. Sent to every session of every
    /// member.
    KeyShared {
        /// Conversation.
        conversation_id: Uuid,
        /// The version stored.
        key_version: i64,
        /// Whether it is a new version.
        rotated: bool,
        /// Who uploaded it.
        from_user_id: Uuid,
        /// From which of their devices.
        from_device_id: Uuid,
        /// The devices it was wrapped for.
        device_ids: Vec<Uuid>,
    },
    /// A refused frame.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Plain words.
        message: String,
        /// The offending `temp_id`.
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

impl ServerFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hello { .. } => types::HELLO,
            Self::Message { .. } => types::MESSAGE,
            Self::MessageSent { .. } => types::MESSAGE_SENT,
            Self::Delivered { .. } => types::DELIVERED,
            Self::ReadReceipt { .. } => types::READ_RECEIPT,
            Self::Typing { .. } => types::TYPING,
            Self::Presence { .. } => types::PRESENCE,
            Self::SyncDone { .. } => types::SYNC_DONE,
            Self::Conversation { .. } => types::CONVERSATION,
            Self::Unread { .. } => types::UNREAD,
            Self::AuthOk { .. } => types::AUTH_OK,
            Self::MessageUpdated { .. } => types::MESSAGE_UPDATED,
            Self::MessageDeleted { .. } => types::MESSAGE_DELETED,
            Self::Reaction { .. } => types::REACTION,
            Self::KeyRequest { .. } => types::KEY_REQUEST,
            Self::KeyShared { .. } => types::KEY_SHARED,
            Self::Pong => types::PONG,
            Self::Error { .. } => types::ERROR,
        }
    }
}
