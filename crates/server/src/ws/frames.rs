//! The frames of `docs/protocol.md`: client frames parsed (and every bad one told apart by
//! an error code), server frames serialised. Nothing here touches a socket.

use crate::api::dto::{ConversationDto, MessageDto, UserDto};
use crate::error::ApiError;
use chrono::{DateTime, Utc};
use domain::conversation::ConversationState;
use domain::services::ChatError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use uuid::Uuid;

/// Why a client frame was refused: the `error` frame the client gets. The session stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// Machine-readable code (`docs/protocol.md`, "error").
    pub code: &'static str,
    /// Plain words for people.
    pub message: String,
    /// The offending frame's `temp_id`, if it had one.
    pub reference: Option<String>,
}

impl FrameError {
    /// An error with `code` and `message`, no reference.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reference: None,
        }
    }

    /// The frame is not a JSON object.
    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new("invalid_json", message)
    }

    /// A missing or malformed field.
    pub fn validation(field: &str, reason: impl fmt::Display) -> Self {
        Self::new("validation_failed", format!("{field}: {reason}"))
    }

    /// The conversation is unknown or the user is not a member.
    pub fn not_participant() -> Self {
        Self::new("not_participant", "not a participant of this conversation")
    }

    /// Too many messages or typing events.
    pub fn rate_limited(what: &str) -> Self {
        Self::new("rate_limited", format!("too many {what}, slow down"))
    }

    /// Storage or Redis is down: nothing was done.
    pub fn unavailable() -> Self {
        Self::new(
            "unavailable",
            "service temporarily unavailable; nothing was done, retry",
        )
    }

    /// Attaches the offending `temp_id`.
    pub fn with_reference(mut self, reference: Option<String>) -> Self {
        self.reference = reference;
        self
    }

    /// The `error` frame.
    pub fn to_frame(&self) -> String {
        ServerFrame::Error {
            code: self.code,
            message: &self.message,
            reference: self.reference.as_deref(),
        }
        .to_json()
    }
}

impl From<ChatError> for FrameError {
    /// The same codes as the REST API ([`ApiError::code`]); a storage failure's cause is
    /// logged, never shown.
    fn from(e: ChatError) -> Self {
        if let ChatError::Storage(cause) = &e {
            tracing::error!(cause = %cause, "backing service failed during a WebSocket frame");
            return Self::unavailable();
        }
        let api = ApiError::from(e);
        Self::new(api.code(), api.to_string())
    }
}

/// `online` or `away`, as a client sets its own presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnStatus {
    /// Active.
    Online,
    /// Idle (tab hidden, screen locked...).
    Away,
}

/// `message`: a send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SendFrame {
    /// Target conversation (optional on `/ws/chat/{id}`).
    pub conversation_id: Option<Uuid>,
    /// Text.
    pub content: String,
    /// `text` when absent.
    pub content_type: Option<String>,
    /// Idempotency key.
    pub temp_id: Option<String>,
    /// Message answered.
    pub reply_to: Option<Uuid>,
}

/// `typing`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TypingFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    pub conversation_id: Option<Uuid>,
    /// Start or refresh (`true`), or stop.
    pub is_typing: bool,
}

/// `read` and `delivered`: a watermark up to and including a message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WatermarkFrame {
    /// Conversation (optional on `/ws/chat/{id}`).
    pub conversation_id: Option<Uuid>,
    /// The newest message read or received.
    pub message_id: Uuid,
}

/// `sync`: the client holds everything up to each cursor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SyncFrame {
    /// Conversation id -> last seq the client holds.
    pub cursors: BTreeMap<Uuid, i64>,
}

/// `presence`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PresenceFrame {
    /// The client's own status.
    pub status: OwnStatus,
}

/// `auth`: a fresh access token. Not `Debug`-printed with its token.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct AuthFrame {
    /// The access token.
    pub token: String,
}

impl fmt::Debug for AuthFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFrame").finish_non_exhaustive()
    }
}

/// A parsed client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl ClientFrame {
    /// Parses a text frame. Errors carry the frame's `temp_id` as their reference.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            match crate::api::body::lone_surrogate_field(text.as_bytes()) {
                // Valid JSON syntax, but a string no Unicode text can hold: a bad field.
                Some(field) => {
                    let readable = crate::api::body::replace_lone_surrogates(text.as_bytes());
                    let reference = serde_json::from_slice::<Value>(&readable)
                        .ok()
                        .and_then(|v| v.get("temp_id").and_then(Value::as_str).map(str::to_owned));
                    FrameError::validation(&field, crate::api::body::LONE_SURROGATE)
                        .with_reference(reference)
                }
                None => FrameError::invalid_json(format!("the frame is not valid JSON: {e}")),
            }
        })?;
        let Value::Object(map) = value else {
            return Err(FrameError::invalid_json("the frame must be a JSON object"));
        };
        let reference = map
            .get("temp_id")
            .and_then(Value::as_str)
            .map(|s| s.chars().take(64).collect::<String>());
        let kind = match map.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(_) => {
                return Err(FrameError::new("unknown_type", "type must be a string")
                    .with_reference(reference))
            }
            None => {
                return Err(
                    FrameError::new("unknown_type", "type is missing").with_reference(reference)
                )
            }
        };
        let value = Value::Object(map);
        let frame = match kind.as_str() {
            "message" => fields(value).map(Self::Message),
            "typing" => fields(value).map(Self::Typing),
            "read" => fields(value).map(Self::Read),
            "delivered" => fields(value).map(Self::Delivered),
            "sync" => fields(value).map(Self::Sync),
            "presence" => fields(value).map(Self::Presence),
            "auth" => fields(value).map(Self::Auth),
            "ping" => Ok(Self::Ping),
            other => Err(FrameError::new(
                "unknown_type",
                format!(
                    "unknown type {:?}",
                    other.chars().take(32).collect::<String>()
                ),
            )),
        };
        frame.map_err(|e| e.with_reference(reference))
    }
}

/// The fields of a frame, or `validation_failed` naming the field at fault.
fn fields<T: DeserializeOwned>(value: Value) -> Result<T, FrameError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            // A missing field: serde names it in the message.
            FrameError::new("validation_failed", inner)
        } else {
            FrameError::validation(&path, inner)
        }
    })
}

/// One conversation in `hello` and `sync_done`: where it is and the receipt watermarks.
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

impl From<&ConversationState> for Watermarks {
    fn from(state: &ConversationState) -> Self {
        Self {
            delivered_seq: state.delivered_seq,
            read_seq: state.read_seq,
            peer_delivered_seq: state.peer_delivered_seq,
            peer_read_seq: state.peer_read_seq,
        }
    }
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
    /// Receipt watermarks.
    #[serde(flatten)]
    pub watermarks: Watermarks,
}

impl From<&ConversationState> for ConversationSnapshot {
    fn from(state: &ConversationState) -> Self {
        Self {
            conversation_id: state.conversation_id.as_uuid(),
            last_seq: state.last_seq,
            unread_count: state.unread_count(),
            watermarks: Watermarks::from(state),
        }
    }
}

/// A conversation of `sync_done`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The seq replayed up to: the cursor of the next `sync` when `has_more`.
    pub last_seq: i64,
    /// Whether another page remains.
    pub has_more: bool,
    /// Receipt watermarks now.
    #[serde(flatten)]
    pub watermarks: Watermarks,
}

/// Every frame the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// First frame of every connection.
    Hello {
        /// The authenticated user.
        user: &'a UserDto,
        /// This connection.
        session_id: Uuid,
        /// The server's clock.
        server_time: DateTime<Utc>,
        /// Ping interval; silence for two closes the session.
        heartbeat_interval_ms: u64,
        /// Every conversation of the user (the one of `/ws/chat/{id}`).
        conversations: &'a [ConversationSnapshot],
    },
    /// A message, live or replayed.
    Message {
        /// The message.
        message: &'a MessageDto,
    },
    /// The acknowledgement of a send, after commit.
    MessageSent {
        /// Conversation.
        conversation_id: Uuid,
        /// The message id.
        message_id: Uuid,
        /// The client's key.
        temp_id: Option<&'a str>,
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
        status: &'a str,
        /// Last seen online.
        last_seen: Option<DateTime<Utc>>,
    },
    /// The replay of a `sync` is complete.
    SyncDone {
        /// Per conversation of the `sync`.
        conversations: &'a BTreeMap<Uuid, SyncState>,
    },
    /// A conversation was created, renamed, or a member added or removed.
    Conversation {
        /// `created`, `renamed`, `member_added`, `member_removed`.
        event: &'a str,
        /// The member added or removed.
        user_id: Option<Uuid>,
        /// The conversation, REST shape.
        conversation: &'a ConversationDto,
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
    /// Heartbeat answer.
    Pong,
    /// A refused frame.
    Error {
        /// Machine-readable code.
        code: &'a str,
        /// Plain words.
        message: &'a str,
        /// The offending `temp_id`.
        #[serde(rename = "ref")]
        reference: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Every field serialises (string keys, no non-finite floats): failure is impossible,
        // but a frame is never worth a panic.
        serde_json::to_string(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a server frame did not serialise");
            r#"{"type":"error","code":"unavailable","message":"internal error","ref":null}"#
                .to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    const C: &str = "0193a5b2-7c1e-7000-8000-00000000c001";
    const M: &str = "0193a5b3-0000-7000-8000-000000000042";

    fn parse(value: Value) -> Result<ClientFrame, FrameError> {
        ClientFrame::parse(&value.to_string())
    }

    fn code(value: Value) -> &'static str {
        parse(value).unwrap_err().code
    }

    #[test]
    fn a_message_frame_parses_with_its_optional_fields() {
        let frame = parse(
            json!({"type":"message","conversation_id":C,"content":"Hello!",
            "content_type":"text","temp_id":"t-1","reply_to":M}),
        )
        .unwrap();
        assert_eq!(
            frame,
            ClientFrame::Message(SendFrame {
                conversation_id: Some(C.parse().unwrap()),
                content: "Hello!".into(),
                content_type: Some("text".into()),
                temp_id: Some("t-1".into()),
                reply_to: Some(M.parse().unwrap()),
            })
        );
        let minimal = parse(json!({"type":"message","content":"hi"})).unwrap();
        assert!(matches!(
            minimal,
            ClientFrame::Message(SendFrame {
                conversation_id: None,
                temp_id: None,
                ..
            })
        ));
    }

    #[test]
    fn a_lone_surrogate_in_a_send_is_a_validation_error_with_the_frames_reference() {
        let err = ClientFrame::parse(
            r#"{"type":"message","conversation_id":"c","content":"cut \ud83d","temp_id":"t-9"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "validation_failed");
        assert!(err.message.starts_with("content: "), "{}", err.message);
        assert_eq!(err.reference.as_deref(), Some("t-9"));
        let broken = ClientFrame::parse(r#"{"type":"message","content":"\u12"}"#).unwrap_err();
        assert_eq!(broken.code, "invalid_json");
    }

    #[test]
    fn every_other_client_frame_parses() {
        assert_eq!(
            parse(json!({"type":"typing","conversation_id":C,"is_typing":true})).unwrap(),
            ClientFrame::Typing(TypingFrame {
                conversation_id: Some(C.parse().unwrap()),
                is_typing: true
            })
        );
        let watermark = WatermarkFrame {
            conversation_id: Some(C.parse().unwrap()),
            message_id: M.parse().unwrap(),
        };
        assert_eq!(
            parse(json!({"type":"read","conversation_id":C,"message_id":M})).unwrap(),
            ClientFrame::Read(watermark.clone())
        );
        assert_eq!(
            parse(json!({"type":"delivered","conversation_id":C,"message_id":M})).unwrap(),
            ClientFrame::Delivered(watermark)
        );
        let ClientFrame::Sync(sync) = parse(json!({"type":"sync","cursors":{C:41}})).unwrap()
        else {
            panic!("not a sync");
        };
        assert_eq!(sync.cursors.get(&C.parse().unwrap()), Some(&41));
        assert_eq!(
            parse(json!({"type":"presence","status":"away"})).unwrap(),
            ClientFrame::Presence(PresenceFrame {
                status: OwnStatus::Away
            })
        );
        assert!(
            matches!(parse(json!({"type":"auth","token":"abc"})).unwrap(), ClientFrame::Auth(a) if a.token == "abc")
        );
        assert_eq!(parse(json!({"type":"ping"})).unwrap(), ClientFrame::Ping);
    }

    #[test]
    fn unknown_fields_are_ignored_so_extensions_stay_additive() {
        assert_eq!(
            parse(json!({"type":"ping","future":"field"})).unwrap(),
            ClientFrame::Ping
        );
    }

    #[test]
    fn text_that_is_not_a_json_object_is_invalid_json() {
        assert_eq!(
            ClientFrame::parse("{not json").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(
            ClientFrame::parse("[1,2]").unwrap_err().code,
            "invalid_json"
        );
        assert_eq!(
            ClientFrame::parse("\"ping\"").unwrap_err().code,
            "invalid_json"
        );
    }

    #[test]
    fn a_missing_or_unknown_type_is_unknown_type() {
        assert_eq!(code(json!({"content":"hi"})), "unknown_type");
        assert_eq!(code(json!({"type":7})), "unknown_type");
        assert_eq!(code(json!({"type":"explode"})), "unknown_type");
    }

    #[test]
    fn missing_or_malformed_fields_are_validation_failed_naming_the_field() {
        let missing = parse(json!({"type":"message","conversation_id":C})).unwrap_err();
        assert_eq!(missing.code, "validation_failed");
        assert!(missing.message.contains("content"), "{}", missing.message);
        let malformed =
            parse(json!({"type":"read","conversation_id":"nope","message_id":M})).unwrap_err();
        assert_eq!(malformed.code, "validation_failed");
        assert!(
            malformed.message.starts_with("conversation_id"),
            "{}",
            malformed.message
        );
        assert_eq!(
            code(json!({"type":"typing","conversation_id":C,"is_typing":"yes"})),
            "validation_failed"
        );
        assert_eq!(
            code(json!({"type":"presence","status":"busy"})),
            "validation_failed"
        );
        assert_eq!(
            code(json!({"type":"sync","cursors":{"x":1}})),
            "validation_failed"
        );
        assert_eq!(code(json!({"type":"auth"})), "validation_failed");
    }

    #[test]
    fn an_error_carries_the_offending_temp_id() {
        let err = parse(json!({"type":"message","temp_id":"t-9","content":5})).unwrap_err();
        assert_eq!(err.reference.as_deref(), Some("t-9"));
        let frame: Value = serde_json::from_str(&err.to_frame()).unwrap();
        assert_eq!(frame["type"], "error");
        assert_eq!(frame["code"], "validation_failed");
        assert_eq!(frame["ref"], "t-9");
    }

    #[test]
    fn an_auth_frame_never_prints_its_token() {
        let frame = parse(json!({"type":"auth","token":"secret-token-value"})).unwrap();
        assert!(!format!("{frame:?}").contains("secret-token-value"));
    }

    #[test]
    fn chat_errors_map_to_the_protocol_codes() {
        use domain::user::InvalidField;
        let cases = [
            (
                ChatError::Invalid(InvalidField::new("content", "blank")),
                "validation_failed",
            ),
            (ChatError::NotParticipant, "not_participant"),
            (ChatError::MessageNotFound, "message_not_found"),
            (ChatError::TempIdReused, "temp_id_conflict"),
            (
                ChatError::Storage(domain::StorageError::msg("10.0.0.7 refused")),
                "unavailable",
            ),
        ];
        for (error, code) in cases {
            let frame = FrameError::from(error);
            assert_eq!(frame.code, code);
            assert!(!frame.message.contains("10.0.0.7"));
        }
    }

    #[test]
    fn server_frames_serialise_with_their_type_and_seed_names() {
        let id = Uuid::nil();
        let at: DateTime<Utc> = "2026-11-21T12:00:01.250Z".parse().unwrap();
        let cases = [
            (ServerFrame::Pong.to_json(), json!({"type":"pong"})),
            (
                ServerFrame::MessageSent {
                    conversation_id: id,
                    message_id: id,
                    temp_id: Some("t"),
                    seq: 3,
                    created_at: at,
                }
                .to_json(),
                json!({"type":"message_sent","conversation_id":id,"message_id":id,"temp_id":"t","seq":3,"created_at":at}),
            ),
            (
                ServerFrame::Delivered {
                    conversation_id: id,
                    message_id: id,
                    seq: 4,
                    user_id: id,
                }
                .to_json(),
                json!({"type":"delivered","conversation_id":id,"message_id":id,"seq":4,"user_id":id}),
            ),
            (
                ServerFrame::ReadReceipt {
                    conversation_id: id,
                    message_id: id,
                    seq: 4,
                    read_by: id,
                    read_at: at,
                }
                .to_json(),
                json!({"type":"read_receipt","conversation_id":id,"message_id":id,"seq":4,"read_by":id,"read_at":at}),
            ),
            (
                ServerFrame::Typing {
                    conversation_id: id,
                    user_id: id,
                    is_typing: false,
                }
                .to_json(),
                json!({"type":"typing","conversation_id":id,"user_id":id,"is_typing":false}),
            ),
            (
                ServerFrame::Presence {
                    user_id: id,
                    status: "offline",
                    last_seen: Some(at),
                }
                .to_json(),
                json!({"type":"presence","user_id":id,"status":"offline","last_seen":at}),
            ),
            (
                ServerFrame::Unread {
                    conversation_id: id,
                    unread_count: 0,
                    total: 3,
                }
                .to_json(),
                json!({"type":"unread","conversation_id":id,"unread_count":0,"total":3}),
            ),
            (
                ServerFrame::AuthOk { expires_at: at }.to_json(),
                json!({"type":"auth_ok","expires_at":at}),
            ),
        ];
        for (text, want) in cases {
            let got: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn sync_done_flattens_the_watermarks_into_each_conversation() {
        let mut conversations = BTreeMap::new();
        conversations.insert(
            Uuid::nil(),
            SyncState {
                last_seq: 42,
                has_more: true,
                watermarks: Watermarks {
                    delivered_seq: 42,
                    read_seq: 41,
                    peer_delivered_seq: 40,
                    peer_read_seq: 39,
                },
            },
        );
        let got: Value = serde_json::from_str(
            &ServerFrame::SyncDone {
                conversations: &conversations,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"type":"sync_done","conversations":{Uuid::nil().to_string():{
                "last_seq":42,"has_more":true,"delivered_seq":42,"read_seq":41,
                "peer_delivered_seq":40,"peer_read_seq":39}}})
        );
    }
}
