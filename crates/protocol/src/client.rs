//! The WebSocket frames a client sends (`docs/protocol.md`, "Client -> server").
//!
//! [`ClientFrame`] serialises to the frame's JSON (`type` first, then the fields in the order
//! below; optional fields left out when `None`). It also deserialises, for clients and tests;
//! the server parses frames itself (`server::ws::frames::parse`), field by field into the
//! structs of this module, so that a bad frame gets its error code.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// The `type` of each client frame, as on the wire.
pub mod types {
    /// [`super::ClientFrame::Message`]
    pub const MESSAGE: &str = "message";
    /// [`super::ClientFrame::Typing`]
    pub const TYPING: &str = "typing";
    /// [`super::ClientFrame::Read`]
    pub const READ: &str = "read";
    /// [`super::ClientFrame::Delivered`]
    pub const DELIVERED: &str = "delivered";
    /// [`super::ClientFrame::Sync`]
    pub const SYNC: &str = "sync";
    /// [`super::ClientFrame::Presence`]
    pub const PRESENCE: &str = "presence";
    /// [`super::ClientFrame::Auth`]
    pub const AUTH: &str = "auth";
    /// [`super::ClientFrame::Ping`]
    pub const PING: &str = "ping";
    /// [`super::ClientFrame::Edit`]
    pub const EDIT: &str = "edit";
    /// [`super::ClientFrame::Delete`]
    pub const DELETE: &str = "delete";
    /// [`super::ClientFrame::React`]
    pub const REACT: &str = "react";
}

/// `online` or `away`, as a client sets its own presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnStatus {
    /// Active.
    Online,
    /// Idle (tab hidden, screen locked...).
    Away,
}

/// `message`: a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendFrame {
    /// Target conversation (optional on `/ws/chat/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// Text.
    pub content: String,
    /// `text` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<String>,
    /// Message answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Uuid>,
    /// Confirmed attachments of the sender to send with it (issue 14); with any, `content`
    /// may be empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_ids: Vec<Uuid>,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// Start or refresh (`true`), or stop.
    pub is_typing: bool,
}

/// `read` and `delivered`: a watermark up to and including a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatermarkFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// The newest message read or received.
    pub message_id: Uuid,
}

/// `sync`: the client holds everything up to each cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncFrame {
    /// Conversation id -> last seq the client holds.
    pub cursors: BTreeMap<Uuid, i64>,
    /// Conversation id -> last change number the client holds (edits, deletions and
    /// reactions; `last_change` of `hello` and `sync_done`). A conversation left out gets
    /// no changes replayed (seed 000's clients send none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changes: BTreeMap<Uuid, i64>,
}

/// `edit`: new content for one of the user's own messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// The message.
    pub message_id: Uuid,
    /// The new text.
    pub content: String,
    /// The client's name for this request, echoed as `ref` in an `error` frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `delete`: erase a message (own, or anyone's for a group's owner or admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// The message.
    pub message_id: Uuid,
    /// The client's name for this request, echoed as `ref` in an `error` frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `react`: add (or with `add: false` remove) the user's reaction `emoji` to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Uuid>,
    /// The message.
    pub message_id: Uuid,
    /// One emoji.
    pub emoji: String,
    /// `true` (the default) adds, `false` removes.
    #[serde(default = "yes")]
    pub add: bool,
    /// The client's name for this request, echoed as `ref` in an `error` frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn yes() -> bool {
    true
}

/// `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceFrame {
    /// The client's own status.
    pub status: OwnStatus,
}

/// `auth`: a fresh access token. Not `Debug`-printed with its token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFrame {
    /// The access token.
    pub token: String,
}

impl fmt::Debug for AuthFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFrame").finish_non_exhaustive()
    }
}

/// Every frame a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message.
    Message(SendFrame),
    /// Typing lease start, refresh or stop.
    Typing(TypingFrame),
    /// Read up to a message.
    Read(WatermarkFrame),
    /// Received up to a message.
    Delivered(WatermarkFrame),
    /// Recover after cursors.
    Sync(SyncFrame),
    /// Own presence.
    Presence(PresenceFrame),
    /// Renew the token.
    Auth(AuthFrame),
    /// Heartbeat.
    Ping,
    /// Edit an own message.
    Edit(EditFrame),
    /// Delete a message.
    Delete(DeleteFrame),
    /// Add or remove a reaction.
    React(ReactFrame),
}

impl ClientFrame {
    /// The frame's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Message(_) => types::MESSAGE,
            Self::Typing(_) => types::TYPING,
            Self::Read(_) => types::READ,
            Self::Delivered(_) => types::DELIVERED,
            Self::Sync(_) => types::SYNC,
            Self::Presence(_) => types::PRESENCE,
            Self::Auth(_) => types::AUTH,
            Self::Ping => types::PING,
            Self::Edit(_) => types::EDIT,
            Self::Delete(_) => types::DELETE,
            Self::React(_) => types::REACT,
        }
    }

    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Uuid keys, strings, integers and booleans: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A text `message` to `conversation`, `text` content type, with its idempotency key.
    pub fn message(
        conversation: Uuid,
        content: impl Into<String>,
        temp_id: impl Into<String>,
    ) -> Self {
        Self::Message(SendFrame {
            conversation_id: Some(conversation),
            content: content.into(),
            content_type: Some("text".to_owned()),
            temp_id: Some(temp_id.into()),
            reply_to: None,
            attachment_ids: Vec::new(),
        })
    }

    /// `typing` in `conversation`.
    pub fn typing(conversation: Uuid, is_typing: bool) -> Self {
        Self::Typing(TypingFrame {
            conversation_id: Some(conversation),
            is_typing,
        })
    }

    /// `read` up to `message` of `conversation`.
    pub fn read(conversation: Uuid, message: Uuid) -> Self {
        Self::Read(WatermarkFrame {
            conversation_id: Some(conversation),
            message_id: message,
        })
    }

    /// `delivered` up to `message` of `conversation`.
    pub fn delivered(conversation: Uuid, message: Uuid) -> Self {
        Self::Delivered(WatermarkFrame {
            conversation_id: Some(conversation),
            message_id: message,
        })
    }

    /// `sync` after each conversation's cursor.
    pub fn sync(cursors: impl IntoIterator<Item = (Uuid, i64)>) -> Self {
        Self::Sync(SyncFrame {
            cursors: cursors.into_iter().collect(),
            changes: BTreeMap::new(),
        })
    }

    /// `sync` after each conversation's `(seq, change)` cursors.
    pub fn sync_with_changes(cursors: impl IntoIterator<Item = (Uuid, i64, i64)>) -> Self {
        let mut frame = SyncFrame {
            cursors: BTreeMap::new(),
            changes: BTreeMap::new(),
        };
        for (c, seq, change) in cursors {
            frame.cursors.insert(c, seq);
            frame.changes.insert(c, change);
        }
        Self::Sync(frame)
    }

    /// `edit` of `message` in `conversation`.
    pub fn edit(conversation: Uuid, message: Uuid, content: impl Into<String>) -> Self {
        Self::Edit(EditFrame {
            conversation_id: Some(conversation),
            message_id: message,
            content: content.into(),
            request_id: None,
        })
    }

    /// `delete` of `message` in `conversation`.
    pub fn delete(conversation: Uuid, message: Uuid) -> Self {
        Self::Delete(DeleteFrame {
            conversation_id: Some(conversation),
            message_id: message,
            request_id: None,
        })
    }

    /// `react` to `message` in `conversation`: add (`add`) or remove `emoji`.
    pub fn react(conversation: Uuid, message: Uuid, emoji: impl Into<String>, add: bool) -> Self {
        Self::React(ReactFrame {
            conversation_id: Some(conversation),
            message_id: message,
            emoji: emoji.into(),
            add,
            request_id: None,
        })
    }
}
