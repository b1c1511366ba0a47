//! Errors on the wire: the REST error body and the codes both surfaces speak (a REST body's
//! `error.code`, a WebSocket `error` frame's `code`).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every machine-readable error code, with the exact string clients switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// REST: the body is not JSON (400).
    MalformedJson,
    /// REST: the body is JSON but not an object (400).
    InvalidBody,
    /// WebSocket: the frame is not a JSON object (or is a binary frame).
    InvalidJson,
    /// WebSocket: `type` missing or not one of the client frames.
    UnknownType,
    /// No, garbage, expired or foreign token (REST 401; an `auth` frame's bad token).
    Unauthorized,
    /// Unknown email or wrong password (401).
    InvalidCredentials,
    /// A refresh token that is unknown, expired, used or revoked (401).
    InvalidRefreshToken,
    /// Not a member of the conversation, or no such conversation (REST 403).
    NotParticipant,
    /// The caller's role does not allow this (403), or an `Origin` refused at the upgrade.
    Forbidden,
    /// Only the message's sender may do this (403): edit it, or delete it outside a group
    /// where the caller is an owner or admin.
    NotSender,
    /// A named user does not exist (404).
    UserNotFound,
    /// A named message is not in the conversation (REST 404).
    MessageNotFound,
    /// The user to remove is not a member (404).
    NotAMember,
    /// No such route (404).
    NotFound,
    /// The route exists but not with this method (405).
    MethodNotAllowed,
    /// The email is registered already (409).
    EmailTaken,
    /// The `temp_id` was used for a different message (REST 409).
    TempIdConflict,
    /// The user is a member already (409).
    AlreadyMember,
    /// The message is deleted: it cannot be edited or reacted to (409).
    MessageDeleted,
    /// The message is older than the edit window (409).
    EditWindowClosed,
    /// The user already has the most devices allowed (10) (409).
    TooManyDevices,
    /// A `text` message or edit in an end-to-end encrypted conversation (409).
    EncryptionRequired,
    /// An `encrypted` message, a key upload or a key request in a conversation that is not
    /// end-to-end encrypted (409).
    NotEncrypted,
    /// A new key version that another upload made first (409): fetch that one.
    KeyVersionExists,
    /// The body is larger than the limit (413).
    PayloadTooLarge,
    /// A missing or malformed field, or a value the rules refuse (REST 422).
    ValidationFailed,
    /// Only groups support this (422).
    NotAGroup,
    /// The group is at its member limit (422).
    GroupFull,
    /// Too many attempts, messages or typing events (REST 429, with `Retry-After`).
    RateLimited,
    /// A backing service failed or the node is saturated: nothing was done, retry (REST 503).
    Unavailable,
    /// An attachment larger than `attachments.max_size_bytes` (413).
    TooLarge,
    /// An attachment type not in `attachments.allowed_types` (415).
    TypeNotAllowed,
    /// An attachment's bytes are not of its declared type: a renamed `.exe` as `image/png` (415).
    ContentMismatch,
    /// An attachment's `mime_type` is not `type/subtype` (422).
    MalformedMimeType,
    /// An attachment's filename is empty or too long (422).
    MalformedFilename,
    /// An attachment of no bytes (422).
    EmptyFile,
    /// An image with more pixels than `attachments.max_image_pixels` (422).
    TooManyPixels,
    /// An image whose header cannot be read (422).
    UnreadableImage,
    /// Confirming an attachment whose bytes were not uploaded (422).
    UploadMissing,
    /// An attachment that cannot be sent: not the sender's, of another conversation, or not confirmed (422).
    AttachmentUnavailable,
    /// An attachment sent with another message already (409).
    AttachmentAlreadySent,
    /// A download `Range` past the end of the file (416).
    RangeNotSatisfiable,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [Self; 42] = [
        Self::MalformedJson,
        Self::InvalidBody,
        Self::InvalidJson,
        Self::UnknownType,
        Self::Unauthorized,
        Self::InvalidCredentials,
        Self::InvalidRefreshToken,
        Self::NotParticipant,
        Self::Forbidden,
        Self::NotSender,
        Self::UserNotFound,
        Self::MessageNotFound,
        Self::NotAMember,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::EmailTaken,
        Self::TempIdConflict,
        Self::AlreadyMember,
        Self::MessageDeleted,
        Self::EditWindowClosed,
        Self::TooManyDevices,
        Self::EncryptionRequired,
        Self::NotEncrypted,
        Self::KeyVersionExists,
        Self::PayloadTooLarge,
        Self::ValidationFailed,
        Self::NotAGroup,
        Self::GroupFull,
        Self::RateLimited,
        Self::Unavailable,
        Self::TooLarge,
        Self::TypeNotAllowed,
        Self::ContentMismatch,
        Self::MalformedMimeType,
        Self::MalformedFilename,
        Self::EmptyFile,
        Self::TooManyPixels,
        Self::UnreadableImage,
        Self::UploadMissing,
        Self::AttachmentUnavailable,
        Self::AttachmentAlreadySent,
        Self::RangeNotSatisfiable,
    ];

    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::InvalidBody => "invalid_body",
            Self::InvalidJson => "invalid_json",
            Self::UnknownType => "unknown_type",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::NotParticipant => "not_participant",
            Self::Forbidden => "forbidden",
            Self::NotSender => "not_sender",
            Self::UserNotFound => "user_not_found",
            Self::MessageNotFound => "message_not_found",
            Self::NotAMember => "not_a_member",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::TempIdConflict => "temp_id_conflict",
            Self::AlreadyMember => "already_member",
            Self::MessageDeleted => "message_deleted",
            Self::EditWindowClosed => "edit_window_closed",
            Self::TooManyDevices => "too_many_devices",
            Self::EncryptionRequired => "encryption_required",
            Self::NotEncrypted => "not_encrypted",
            Self::KeyVersionExists => "key_version_exists",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ValidationFailed => "validation_failed",
            Self::NotAGroup => "not_a_group",
            Self::GroupFull => "group_full",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::TooLarge => "too_large",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::ContentMismatch => "content_mismatch",
            Self::MalformedMimeType => "malformed_mime_type",
            Self::MalformedFilename => "malformed_filename",
            Self::EmptyFile => "empty_file",
            Self::TooManyPixels => "too_many_pixels",
            Self::UnreadableImage => "unreadable_image",
            Self::UploadMissing => "upload_missing",
            Self::AttachmentUnavailable => "attachment_unavailable",
            Self::AttachmentAlreadySent => "attachment_already_sent",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes compare with their wire strings (`code == "rate_limited"`).
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// `{"error":{"code","message"}}`: every REST error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The code to switch on and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable: `not_participant`, `validation_failed`...
    pub code: ErrorCode,
    /// Plain words; may change.
    pub message: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn every_code_serialises_as_its_wire_string_and_back() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
            assert_eq!(code, code.as_str());
        }
    }

    #[test]
    fn the_error_body_round_trips_byte_for_byte() {
        let text = r#"{"error":{"code":"not_participant","message":"not a participant of this conversation"}}"#;
        let body: ErrorBody = serde_json::from_str(text).unwrap();
        assert_eq!(body.error.code, ErrorCode::NotParticipant);
        assert_eq!(serde_json::to_string(&body).unwrap(), text);
    }
}
