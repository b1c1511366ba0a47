//! Client frames parsed, every bad one told apart by an error code ([`FrameError`], the
//! `error` frame of `docs/protocol.md`). The frame types are the `protocol` crate's; this is
//! where the server reads them. Nothing here touches a socket.

use crate::error::ApiError;
use domain::services::ChatError;
use protocol::client::{types, ClientFrame};
use protocol::{ErrorCode, ServerFrame};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// Why a client frame was refused: the `error` frame the client gets. The session stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameError {
    /// Machine-readable code (`docs/protocol.md`, "error").
    pub(crate) code: ErrorCode,
    /// Plain words for people.
    pub(crate) message: String,
    /// The offending frame's `temp_id`, if it had one.
    pub(crate) reference: Option<String>,
}

impl FrameError {
    /// An error with `code` and `message`, no reference.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reference: None,
        }
    }

    /// The frame is not a JSON object.
    pub(crate) fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidJson, message)
    }

    /// A missing or malformed field.
    pub(crate) fn validation(field: &str, reason: impl fmt::Display) -> Self {
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {reason}"))
    }

    /// The conversation is unknown or the user is not a member.
    pub(crate) fn not_participant() -> Self {
        Self::new(
            ErrorCode::NotParticipant,
            "not a participant of this conversation",
        )
    }

    /// Too many messages or typing events.
    pub(crate) fn rate_limited(what: &str) -> Self {
        Self::new(
            ErrorCode::RateLimited,
            format!("too many {what}, slow down"),
        )
    }

    /// Storage or Redis is down: nothing was done.
    pub(crate) fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "service temporarily unavailable; nothing was done, retry",
        )
    }

    /// Attaches the offending `temp_id`.
    pub(crate) fn with_reference(mut self, reference: Option<String>) -> Self {
        self.reference = reference;
        self
    }

    /// The `error` frame.
    pub(crate) fn to_frame(&self) -> String {
        realtime::wire::encode(&ServerFrame::Error {
            code: self.code,
            message: self.message.clone(),
            reference: self.reference.clone(),
        })
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

/// Parses a text frame. Errors carry the frame's `temp_id` as their reference.
pub(crate) fn parse(text: &str) -> Result<ClientFrame, FrameError> {
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
        .or_else(|| map.get("request_id"))
        .and_then(Value::as_str)
        .map(|s| s.chars().take(64).collect::<String>());
    let kind = match map.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(_) => {
            return Err(
                FrameError::new(ErrorCode::UnknownType, "type must be a string")
                    .with_reference(reference),
            )
        }
        None => {
            return Err(FrameError::new(ErrorCode::UnknownType, "type is missing")
                .with_reference(reference))
        }
    };
    let value = Value::Object(map);
    let frame = match kind.as_str() {
        types::MESSAGE => fields(value).map(ClientFrame::Message),
        types::TYPING => fields(value).map(ClientFrame::Typing),
        types::READ => fields(value).map(ClientFrame::Read),
        types::DELIVERED => fields(value).map(ClientFrame::Delivered),
        types::SYNC => fields(value).map(ClientFrame::Sync),
        types::PRESENCE => fields(value).map(ClientFrame::Presence),
        types::AUTH => fields(value).map(ClientFrame::Auth),
        types::PING => Ok(ClientFrame::Ping),
        types::EDIT => fields(value).map(ClientFrame::Edit),
        types::DELETE => fields(value).map(ClientFrame::Delete),
        types::REACT => fields(value).map(ClientFrame::React),
        other => Err(FrameError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown type {:?}",
                other.chars().take(32).collect::<String>()
            ),
        )),
    };
    frame.map_err(|e| e.with_reference(reference))
}

/// The fields of a frame, or `validation_failed` naming the field at fault.
fn fields<T: DeserializeOwned>(value: Value) -> Result<T, FrameError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            // A missing field: serde names it in the message.
            FrameError::new(ErrorCode::ValidationFailed, inner)
        } else {
            FrameError::validation(&path, inner)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use protocol::client::{OwnStatus, PresenceFrame, SendFrame, TypingFrame, WatermarkFrame};
    use serde_json::json;

    const C: &str = "0193a5b2-7c1e-7000-8000-00000000c001";
    const M: &str = "0193a5b3-0000-7000-8000-000000000042";

    fn parse(value: Value) -> Result<ClientFrame, FrameError> {
        super::parse(&value.to_string())
    }

    fn code(value: Value) -> &'static str {
        parse(value).unwrap_err().code.as_str()
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
                attachment_ids: Vec::new(),
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
        let err = super::parse(
            r#"{"type":"message","conversation_id":"c","content":"cut \ud83d","temp_id":"t-9"}"#,
        )
        .unwrap_err();
        assert_eq!(err.code, "validation_failed");
        assert!(err.message.starts_with("content: "), "{}", err.message);
        assert_eq!(err.reference.as_deref(), Some("t-9"));
        let broken = super::parse(r#"{"type":"message","content":"\u12"}"#).unwrap_err();
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
        assert_eq!(super::parse("{not json").unwrap_err().code, "invalid_json");
        assert_eq!(super::parse("[1,2]").unwrap_err().code, "invalid_json");
        assert_eq!(super::parse("\"ping\"").unwrap_err().code, "invalid_json");
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
}
