//! The errors the services return. The server maps each variant to one HTTP status and one
//! WebSocket `error` code, in one place.

use crate::error::StorageError;
use crate::ports::HashingError;
use crate::user::InvalidField;

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A field is malformed (422).
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// Registration with an email that is taken (409).
    #[error("email already registered")]
    DuplicateEmail,
    /// Unknown email or wrong password: deliberately one answer for both (401).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A refresh token that is unknown, expired, used or revoked (401).
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// The account behind a valid token no longer exists (401).
    #[error("unknown user")]
    UnknownUser,
    /// Password hashing is saturated: nothing was done; retry after this long (503 with
    /// `Retry-After`).
    #[error("password hashing is saturated")]
    HashingSaturated {
        /// A sensible wait before trying again.
        retry_after: std::time::Duration,
    },
    /// A backing service failed (503).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<crate::message::ContentRefusal> for ChatError {
    fn from(refusal: crate::message::ContentRefusal) -> Self {
        match refusal {
            crate::message::ContentRefusal::EncryptionRequired(why) => {
                Self::EncryptionRequired(why)
            }
            crate::message::ContentRefusal::NotEncrypted => Self::NotEncrypted,
        }
    }
}

impl From<HashingError> for AuthError {
    fn from(e: HashingError) -> Self {
        match e {
            HashingError::Saturated { retry_after } => Self::HashingSaturated { retry_after },
            HashingError::Failed(e) => Self::Storage(e),
        }
    }
}

/// Why a conversation or message operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// A field is malformed (422).
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The caller is not a member of the conversation, or it does not exist: one answer for
    /// both, so ids are never revealed (403).
    #[error("not a participant of this conversation")]
    NotParticipant,
    /// The caller's role does not allow this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// A named user does not exist (404).
    #[error("user not found")]
    UserNotFound,
    /// A named message is not in this conversation (404).
    #[error("message not found")]
    MessageNotFound,
    /// The user to remove is not a member (404).
    #[error("user is not a member of this conversation")]
    NotAMember,
    /// The user to add is a member already (409).
    #[error("user is already a member of this conversation")]
    AlreadyMember,
    /// Only the sender may do this to a message (403 `not_sender`); a group's owners and
    /// admins may also delete anyone's.
    #[error("only the sender may do this")]
    NotSender,
    /// The message is deleted: it can be neither edited nor reacted to (409).
    #[error("the message is deleted")]
    MessageDeleted,
    /// The message is older than the edit window (`limits.edit_window_secs`) (409).
    #[error("the message is too old to edit")]
    EditWindowClosed,
    /// The `temp_id` was used for different content or another conversation (409).
    #[error("temp_id was already used for a different message")]
    TempIdReused,
    /// Only groups can be renamed, left, or have members added and removed (422).
    #[error("only group conversations support this")]
    NotAGroup,
    /// The group would exceed the member limit (422).
    #[error("group member limit of {0} reached")]
    GroupFull(usize),
    /// The user already has the most live devices allowed (409 `too_many_devices`).
    #[error("at most {0} devices per user")]
    TooManyDevices(usize),
    /// A `text` message or edit in an end-to-end encrypted conversation, or an edit there
    /// of a message from before encryption was turned on (409 `encryption_required`).
    #[error("{0}")]
    EncryptionRequired(&'static str),
    /// An `encrypted` message, a key upload or a key request in a conversation that is not
    /// end-to-end encrypted (409 `not_encrypted`).
    #[error("this conversation is not end-to-end encrypted")]
    NotEncrypted,
    /// A new key version that another upload made first (409 `key_version_exists`): fetch
    /// that one instead.
    #[error("key version {0} exists already: fetch it")]
    KeyVersionExists(i64),
    /// A named thing the caller may not see or that does not exist: a device, a key
    /// backup (404 `not_found`).
    #[error("{0}")]
    NotFound(&'static str),
    /// An upload refused (413, 415 or 422: see [`crate::attachment::AttachmentRefusal`]).
    #[error(transparent)]
    AttachmentRefused(#[from] crate::attachment::AttachmentRefusal),
    /// An attachment that cannot be sent with this message (422 `attachment_unavailable`):
    /// unknown, not the sender's, of another conversation, or not confirmed.
    #[error("{0}")]
    AttachmentUnavailable(&'static str),
    /// An attachment sent with another message already (409 `attachment_already_sent`).
    #[error("the attachment was sent with another message")]
    AttachmentAlreadySent,
    /// An attachment's bytes are not (yet) in the blob store (422 `upload_missing`).
    #[error("nothing was uploaded for this attachment")]
    UploadMissing,
    /// A download's range starts past the end of a file of this many bytes (416).
    #[error("range not satisfiable")]
    RangeNotSatisfiable(u64),
    /// The blob store failed (503).
    #[error("the file store is unavailable: {0}")]
    BlobsUnavailable(String),
    /// The database refused this message although it passed validation (a constraint or
    /// data error no check caught), while it took the others of its batch: retrying the
    /// same message cannot help (422). Nothing was written for it.
    #[error("the message could not be stored: {0}")]
    Unstorable(#[source] StorageError),
    /// A backing service failed (503); nothing was changed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}
