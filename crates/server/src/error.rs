//! The one place where failures become HTTP answers: a status and
//! `{"error":{"code","message"}}` (`protocol::ErrorBody`). The WebSocket layer reuses
//! [`ApiError::code`] for its `error` frames, so both surfaces speak the same codes
//! (`protocol::ErrorCode`).
//!
//! Ids in a path or query that are not UUIDs are answered exactly as ids of nothing would
//! be (see `api::ids`): a malformed conversation id is 403 `not_participant`, like an
//! unknown one, so no answer ever tells which ids exist.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::services::{AuthError, ChatError};
use domain::user::InvalidField;
use domain::StorageError;
use protocol::{ErrorBody, ErrorCode, ErrorDetail};
use realtime::send::RetryAfter;
use std::error::Error as StdError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (400).
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON but not an object (400).
    #[error("request body must be a JSON object")]
    InvalidBody,
    /// No, garbage, expired or foreign bearer token; always the same answer (401).
    #[error("missing or invalid access token")]
    Unauthorized,
    /// Unknown email or wrong password; always the same answer (401).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh token that is unknown, expired, used or revoked (401).
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// Not a member of the conversation, or no such conversation (403).
    #[error("not a participant of this conversation")]
    NotParticipant,
    /// The caller's role does not allow this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// Only the message's sender may do this (403).
    #[error("only the sender may do this to a message")]
    NotSender,
    /// The message is deleted (409).
    #[error("the message is deleted")]
    MessageDeleted,
    /// The message is older than the edit window (409).
    #[error("the message is too old to edit")]
    EditWindowClosed,
    /// A named user does not exist (404).
    #[error("user not found")]
    UserNotFound,
    /// A named message is not in this conversation (404).
    #[error("message not found")]
    MessageNotFound,
    /// The user to remove is not a member (404).
    #[error("user is not a member of this conversation")]
    NotAMember,
    /// No such route (404).
    #[error("no such resource")]
    NotFound,
    /// The route exists but not with this method (405).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The email is registered already (409).
    #[error("email already registered")]
    EmailTaken,
    /// The `temp_id` was used for a different message (409).
    #[error("temp_id was already used for a different message")]
    TempIdConflict,
    /// The user is a member already (409).
    #[error("user is already a member of this conversation")]
    AlreadyMember,
    /// The user already has the most live devices allowed (409).
    #[error("at most {0} devices per user")]
    TooManyDevices(usize),
    /// Plain content in an end-to-end encrypted conversation (409).
    #[error("{0}")]
    EncryptionRequired(&'static str),
    /// Encrypted content or keys in a conversation that is not encrypted (409).
    #[error("this conversation is not end-to-end encrypted")]
    NotEncrypted,
    /// A new key version another upload made first (409).
    #[error("key version {0} exists already: fetch it")]
    KeyVersionExists(i64),
    /// The body is larger than `http.max_body_bytes` (413).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// A well-formed request with an invalid field (422).
    #[error("{field}: {reason}")]
    Validation {
        /// The field at fault, as the client named it (dotted for nested fields).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Only groups support this (422).
    #[error("only group conversations support this")]
    NotAGroup,
    /// The group is at its member limit (422).
    #[error("group member limit of {0} reached")]
    GroupFull(usize),
    /// Too many attempts; retry after this many seconds (429).
    #[error("too many attempts, retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until an attempt may succeed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// An upload refused by the attachment rules (413, 415 or 422).
    #[error(transparent)]
    Attachment(#[from] domain::attachment::AttachmentRefusal),
    /// An attachment that cannot be sent with this message (422).
    #[error("{0}")]
    AttachmentUnavailable(&'static str),
    /// An attachment sent with another message already (409).
    #[error("the attachment was sent with another message")]
    AttachmentAlreadySent,
    /// Confirming what was never uploaded (422).
    #[error("nothing was uploaded for this attachment: PUT its bytes to upload_url first")]
    UploadMissing,
    /// A download range past the end of a file of this many bytes (416).
    #[error("range not satisfiable: the file is {0} bytes")]
    RangeNotSatisfiable(u64),
    /// A backing service failed (503). The cause is logged, never shown.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] StorageError),
    /// The node is saturated with password hashing (503 `unavailable`, with `Retry-After`):
    /// load shed on purpose, so not logged as a failure.
    #[error("server busy, retry in {retry_after_secs} s")]
    Busy {
        /// Seconds to wait before retrying (`Retry-After`).
        retry_after_secs: u64,
    },
}

impl ApiError {
    /// 429 `rate_limited` with `Retry-After`.
    pub fn rate_limited(wait: RetryAfter) -> Self {
        Self::RateLimited {
            retry_after_secs: wait.as_secs_ceil(),
        }
    }

    /// A validation failure of `field`.
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The machine-readable code clients switch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MalformedJson(_) => ErrorCode::MalformedJson,
            Self::InvalidBody => ErrorCode::InvalidBody,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::InvalidCredentials => ErrorCode::InvalidCredentials,
            Self::InvalidRefreshToken => ErrorCode::InvalidRefreshToken,
            Self::NotParticipant => ErrorCode::NotParticipant,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotSender => ErrorCode::NotSender,
            Self::MessageDeleted => ErrorCode::MessageDeleted,
            Self::EditWindowClosed => ErrorCode::EditWindowClosed,
            Self::UserNotFound => ErrorCode::UserNotFound,
            Self::MessageNotFound => ErrorCode::MessageNotFound,
            Self::NotAMember => ErrorCode::NotAMember,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::EmailTaken => ErrorCode::EmailTaken,
            Self::TempIdConflict => ErrorCode::TempIdConflict,
            Self::AlreadyMember => ErrorCode::AlreadyMember,
            Self::TooManyDevices(_) => ErrorCode::TooManyDevices,
            Self::EncryptionRequired(_) => ErrorCode::EncryptionRequired,
            Self::NotEncrypted => ErrorCode::NotEncrypted,
            Self::KeyVersionExists(_) => ErrorCode::KeyVersionExists,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::Validation { .. } => ErrorCode::ValidationFailed,
            Self::NotAGroup => ErrorCode::NotAGroup,
            Self::GroupFull(_) => ErrorCode::GroupFull,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable(_) | Self::Busy { .. } => ErrorCode::Unavailable,
            Self::Attachment(refusal) => attachment_code(refusal),
            Self::AttachmentUnavailable(_) => ErrorCode::AttachmentUnavailable,
            Self::AttachmentAlreadySent => ErrorCode::AttachmentAlreadySent,
            Self::UploadMissing => ErrorCode::UploadMissing,
            Self::RangeNotSatisfiable(_) => ErrorCode::RangeNotSatisfiable,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidBody => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidCredentials | Self::InvalidRefreshToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::NotParticipant | Self::Forbidden(_) | Self::NotSender => StatusCode::FORBIDDEN,
            Self::UserNotFound | Self::MessageNotFound | Self::NotAMember | Self::NotFound => {
                StatusCode::NOT_FOUND
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken
            | Self::TempIdConflict
            | Self::AlreadyMember
            | Self::MessageDeleted
            | Self::EditWindowClosed
            | Self::TooManyDevices(_)
            | Self::EncryptionRequired(_)
            | Self::NotEncrypted
            | Self::KeyVersionExists(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation { .. } | Self::NotAGroup | Self::GroupFull(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Attachment(refusal) => {
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
            }
            Self::AttachmentUnavailable(_) | Self::UploadMissing => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::AttachmentAlreadySent => StatusCode::CONFLICT,
            Self::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    /// The body clients get.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Unavailable(cause) = self {
            tracing::error!(cause = %cause_chain(cause), "backing service failed");
        }
        let mut response = HttpResponse::build(self.status());
        if let Self::RateLimited { retry_after_secs } | Self::Busy { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
        }
        response.json(self.body())
    }
}

/// The code of an attachment refusal (the domain's [`AttachmentRefusal::code`] names).
///
/// [`AttachmentRefusal::code`]: domain::attachment::AttachmentRefusal::code
fn attachment_code(refusal: &domain::attachment::AttachmentRefusal) -> ErrorCode {
    use domain::attachment::AttachmentRefusal as R;
    match refusal {
        R::TooLarge { .. } => ErrorCode::TooLarge,
        R::TypeNotAllowed(_) => ErrorCode::TypeNotAllowed,
        R::ContentMismatch { .. } => ErrorCode::ContentMismatch,
        R::MalformedMimeType => ErrorCode::MalformedMimeType,
        R::MalformedFilename => ErrorCode::MalformedFilename,
        R::Empty => ErrorCode::EmptyFile,
        R::TooManyPixels { .. } => ErrorCode::TooManyPixels,
        R::UnreadableImage => ErrorCode::UnreadableImage,
    }
}

/// `error: cause: cause...`, for the log.
fn cause_chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Wrappers often repeat their cause in their own message; say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

impl From<InvalidField> for ApiError {
    fn from(e: InvalidField) -> Self {
        Self::validation(e.field, e.reason)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        Self::Unavailable(e)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(field) => field.into(),
            AuthError::DuplicateEmail => Self::EmailTaken,
            AuthError::InvalidCredentials => Self::InvalidCredentials,
            AuthError::InvalidRefreshToken => Self::InvalidRefreshToken,
            // A valid token for an account that is gone: the token is worth nothing.
            AuthError::UnknownUser => Self::Unauthorized,
            AuthError::HashingSaturated { retry_after } => Self::Busy {
                retry_after_secs: RetryAfter(retry_after).as_secs_ceil(),
            },
            AuthError::Storage(e) => Self::Unavailable(e),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::Invalid(field) => field.into(),
            ChatError::NotParticipant => Self::NotParticipant,
            ChatError::Forbidden(why) => Self::Forbidden(why),
            ChatError::NotSender => Self::NotSender,
            ChatError::MessageDeleted => Self::MessageDeleted,
            ChatError::EditWindowClosed => Self::EditWindowClosed,
            ChatError::UserNotFound => Self::UserNotFound,
            ChatError::MessageNotFound => Self::MessageNotFound,
            ChatError::NotAMember => Self::NotAMember,
            ChatError::AlreadyMember => Self::AlreadyMember,
            ChatError::TempIdReused => Self::TempIdConflict,
            ChatError::NotAGroup => Self::NotAGroup,
            ChatError::GroupFull(n) => Self::GroupFull(n),
            ChatError::TooManyDevices(n) => Self::TooManyDevices(n),
            ChatError::EncryptionRequired(why) => Self::EncryptionRequired(why),
            ChatError::NotEncrypted => Self::NotEncrypted,
            ChatError::KeyVersionExists(v) => Self::KeyVersionExists(v),
            ChatError::NotFound(_) => Self::NotFound,
            // The cause is logged where the batch was isolated (`realtime::batcher`).
            ChatError::Unstorable(_) => Self::validation(
                "message",
                "the database refused to store this message; sending it again will not help",
            ),
            ChatError::AttachmentRefused(refusal) => Self::Attachment(refusal),
            ChatError::AttachmentUnavailable(why) => Self::AttachmentUnavailable(why),
            ChatError::AttachmentAlreadySent => Self::AttachmentAlreadySent,
            ChatError::UploadMissing => Self::UploadMissing,
            ChatError::RangeNotSatisfiable(size) => Self::RangeNotSatisfiable(size),
            ChatError::BlobsUnavailable(cause) => Self::Unavailable(StorageError::msg(cause)),
            ChatError::Storage(e) => Self::Unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use actix_web::body::to_bytes;

    fn storage_error() -> StorageError {
        StorageError::msg("connection refused by 10.0.0.7")
    }

    #[test]
    fn every_auth_error_maps_to_its_status_and_code() {
        let cases = [
            (
                AuthError::Invalid(InvalidField::new("email", "bad")),
                422,
                "validation_failed",
            ),
            (AuthError::DuplicateEmail, 409, "email_taken"),
            (AuthError::InvalidCredentials, 401, "invalid_credentials"),
            (AuthError::InvalidRefreshToken, 401, "invalid_refresh_token"),
            (AuthError::UnknownUser, 401, "unauthorized"),
            (AuthError::Storage(storage_error()), 503, "unavailable"),
            (
                AuthError::HashingSaturated {
                    retry_after: std::time::Duration::from_millis(1500),
                },
                503,
                "unavailable",
            ),
        ];
        for (domain_error, status, code) in cases {
            let label = format!("{domain_error:?}");
            let api = ApiError::from(domain_error);
            assert_eq!(api.status().as_u16(), status, "{label}");
            assert_eq!(api.code(), code, "{label}");
        }
    }

    #[test]
    fn every_chat_error_maps_to_its_status_and_code() {
        let cases = [
            (
                ChatError::Invalid(InvalidField::new("content", "blank")),
                422,
                "validation_failed",
            ),
            (ChatError::NotParticipant, 403, "not_participant"),
            (ChatError::Forbidden("no"), 403, "forbidden"),
            (ChatError::NotSender, 403, "not_sender"),
            (ChatError::MessageDeleted, 409, "message_deleted"),
            (ChatError::EditWindowClosed, 409, "edit_window_closed"),
            (ChatError::UserNotFound, 404, "user_not_found"),
            (ChatError::MessageNotFound, 404, "message_not_found"),
            (ChatError::NotAMember, 404, "not_a_member"),
            (ChatError::AlreadyMember, 409, "already_member"),
            (ChatError::TempIdReused, 409, "temp_id_conflict"),
            (ChatError::NotAGroup, 422, "not_a_group"),
            (ChatError::GroupFull(3), 422, "group_full"),
            (ChatError::TooManyDevices(10), 409, "too_many_devices"),
            (
                ChatError::EncryptionRequired("this conversation is end-to-end encrypted"),
                409,
                "encryption_required",
            ),
            (ChatError::NotEncrypted, 409, "not_encrypted"),
            (ChatError::KeyVersionExists(2), 409, "key_version_exists"),
            (ChatError::NotFound("device not found"), 404, "not_found"),
            (ChatError::Storage(storage_error()), 503, "unavailable"),
        ];
        for (domain_error, status, code) in cases {
            let label = format!("{domain_error:?}");
            let api = ApiError::from(domain_error);
            assert_eq!(api.status().as_u16(), status, "{label}");
            assert_eq!(api.code(), code, "{label}");
        }
    }

    #[test]
    fn request_shape_errors_map_to_their_status_and_code() {
        let cases = [
            (ApiError::MalformedJson("eof".into()), 400, "malformed_json"),
            (ApiError::InvalidBody, 400, "invalid_body"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 3,
                },
                429,
                "rate_limited",
            ),
        ];
        for (api, status, code) in cases {
            assert_eq!(api.status().as_u16(), status, "{api:?}");
            assert_eq!(api.code(), code, "{api:?}");
        }
    }

    #[test]
    fn a_validation_error_names_the_field() {
        let api = ApiError::from(ChatError::Invalid(InvalidField::new(
            "content",
            "must not be blank",
        )));
        assert_eq!(api.body().error.message, "content: must not be blank");
    }

    #[actix_web::test]
    async fn a_storage_failure_shows_a_plain_message_not_its_cause() {
        let response = ApiError::from(storage_error()).error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: ErrorBody =
            serde_json::from_slice(&to_bytes(response.into_body()).await.unwrap()).unwrap();
        assert_eq!(body.error.code, "unavailable");
        assert!(
            !body.error.message.contains("10.0.0.7"),
            "{}",
            body.error.message
        );
    }

    #[actix_web::test]
    async fn rate_limited_answers_carry_retry_after_in_seconds() {
        let response = ApiError::RateLimited {
            retry_after_secs: 7,
        }
        .error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "7");
    }

    #[actix_web::test]
    async fn saturated_hashing_answers_503_with_retry_after_in_whole_seconds() {
        let response = ApiError::from(AuthError::HashingSaturated {
            retry_after: std::time::Duration::from_millis(1500),
        })
        .error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "2");
    }

    #[test]
    fn the_cause_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("pool timed out")]
        struct Pool(#[source] std::io::Error);
        let err = StorageError::new(Pool(std::io::Error::other("disk on fire")));
        assert_eq!(
            cause_chain(&err),
            "storage unavailable: pool timed out: disk on fire"
        );
    }
}
