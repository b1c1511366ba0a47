//! The JSON bodies of the REST API (seed 000's field names). Requests stay raw strings and
//! UUIDs: the server's domain validates them. Optional request fields are left out when
//! `None`, which the server reads as absent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

// ---------------------------------------------------------------- requests
// No `Debug` on requests that carry a password or a token: they must never be printed.

/// `POST /auth/register`
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// Unique, case-insensitive.
    #[cfg_attr(feature = "openapi", schema(example = "alice@example.com"))]
    pub email: String,
    /// 8 to 128 characters.
    #[cfg_attr(feature = "openapi", schema(example = "correct horse battery"))]
    pub password: String,
    /// 1 to 64 characters.
    #[cfg_attr(feature = "openapi", schema(example = "Alice"))]
    pub display_name: String,
}

/// `POST /auth/login`
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// `POST /auth/refresh` and `POST /auth/logout`
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token of the last register, login or refresh.
    pub refresh_token: String,
}

/// `POST /conversations`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateConversationRequest {
    /// `direct` or `group`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "direct"))]
    pub kind: String,
    /// The other members; for `direct`, exactly one other user. The caller may be listed.
    #[serde(default)]
    pub participant_ids: Vec<Uuid>,
    /// The group's title (required for groups, ignored for direct conversations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// End-to-end encrypted from the start (it can also be turned on later with
    /// `POST /conversations/{id}/encryption`, never off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// `PATCH /conversations/{id}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameConversationRequest {
    /// The new title, 1 to 100 characters.
    pub title: String,
}

/// `POST /conversations/{id}/members`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AddMemberRequest {
    /// The user to add.
    pub user_id: Uuid,
}

/// `POST /devices`: a device of the caller and its ECDH P-256 public key (end-to-end
/// encryption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterDeviceRequest {
    /// base64url without padding of the 65-byte uncompressed point (`0x04 || x || y`).
    pub public_key: String,
    /// What its user calls it, 1 to 64 characters.
    pub name: String,
}

/// `PUT /users/me/key_backup` and its `GET`: the caller's conversation keys, encrypted on
/// the client under a key derived from a passphrase. The server cannot read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyBackupDto {
    /// Format version: 1.
    pub version: u32,
    /// Key derivation: `"PBKDF2-SHA256"`.
    pub kdf: String,
    /// PBKDF2 iterations, 310000 to 100000000.
    pub iterations: u32,
    /// base64url without padding, 16 to 64 bytes.
    pub salt: String,
    /// AES-GCM IV, base64url without padding, 12 bytes.
    pub iv: String,
    /// Ciphertext with its tag, base64url without padding, 17 bytes to 1 MiB.
    pub ct: String,
}

/// `POST /conversations/{id}/messages`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendMessageRequest {
    /// The text, not blank, at most `limits.max_content_chars` characters.
    pub content: String,
    /// `text` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The client's idempotency key, 1 to 64 characters: a retry with the same key gets the
    /// original message (200) instead of a new one (201).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_id: Option<String>,
    /// The message this one answers, in the same conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Uuid>,
    /// Confirmed attachments of the sender in this conversation, at most
    /// `limits.max_attachments_per_message`; each can be sent once. With any, `content` may
    /// be empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_ids: Vec<Uuid>,
}

/// `PATCH /conversations/{id}/messages/{message_id}`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EditMessageRequest {
    /// The new text, not blank, at most `limits.max_content_chars` characters.
    pub content: String,
}

/// `POST /conversations/{id}/read`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkReadRequest {
    /// Everything up to and including this message is read.
    pub last_read_message_id: Uuid,
}

// --------------------------------------------------------------- responses

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserDto {
    /// Account id.
    pub id: Uuid,
    /// Lower-cased email.
    pub email: String,
    /// Name shown to others.
    pub display_name: String,
    /// Picture, if any.
    pub avatar_url: Option<String>,
}

/// A live device and its public key, for members to wrap keys for and to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDto {
    /// Device id.
    pub id: Uuid,
    /// Its owner.
    pub user_id: Uuid,
    /// base64url without padding of the 65-byte uncompressed P-256 point.
    pub public_key: String,
    /// What its user calls it.
    pub name: String,
    /// SHA-256 of the 65 raw bytes, lower-case hex, 16 groups of 4 digits separated by
    /// spaces: what users compare to verify the device.
    pub fingerprint: String,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// What register, login and refresh answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthResponse {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Single-use token for `POST /auth/refresh`.
    pub refresh_token: String,
    /// Always `bearer`.
    #[cfg_attr(feature = "openapi", schema(example = "bearer"))]
    pub token_type: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// The account.
    pub user: UserDto,
}

/// A message, with its status as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MessageDto {
    /// Message id (UUIDv7).
    pub id: Uuid,
    /// Its conversation.
    pub conversation_id: Uuid,
    /// Position in the conversation: 1, 2, 3... with no gap.
    pub seq: i64,
    /// Author.
    pub sender_id: Uuid,
    /// Text.
    pub content: String,
    /// `text`.
    pub content_type: String,
    /// The message answered, if any.
    pub reply_to: Option<Uuid>,
    /// The sender's idempotency key, if one was given.
    pub temp_id: Option<String>,
    /// When it was persisted.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    pub edited_at: Option<DateTime<Utc>>,
    /// When it was deleted (then `content` is `""`: a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// `sent`, `delivered` (every other member has it) or `read` (every other member read it).
    #[cfg_attr(feature = "openapi", schema(example = "sent"))]
    pub status: String,
    /// Who deleted it (the sender, or a group's owner or admin).
    #[serde(default)]
    pub deleted_by: Option<Uuid>,
    /// The conversation's change number of its latest edit, deletion or reaction; 0 when it
    /// never changed. Of two copies of a message, the higher one is the newer.
    #[serde(default)]
    pub change_seq: i64,
    /// Its reactions, each emoji once, in the order they were first used.
    #[serde(default)]
    pub reactions: Vec<ReactionDto>,
    /// A preview of the message answered (`reply_to`), as it is now.
    #[serde(default)]
    pub reply_preview: Option<ReplyPreviewDto>,
    /// Its files, in the order sent; empty when none (and once deleted).
    #[serde(default)]
    pub attachments: Vec<AttachmentDto>,
}

/// An attachment as a member sees it. `url` and `thumbnail_url` are short-lived links
/// signed for the reader (no access token in them); fetch the message again, or
/// `GET /attachments/{id}`, for fresh ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AttachmentDto {
    /// Attachment id.
    pub id: Uuid,
    /// The sanitised filename.
    pub filename: String,
    /// The type its bytes have (`application/octet-stream` in an encrypted conversation is
    /// whatever the client declared: the server never looks at ciphertext).
    #[cfg_attr(feature = "openapi", schema(example = "image/png"))]
    pub mime_type: String,
    /// Bytes.
    pub size: u64,
    /// Pixels across (images).
    pub width: Option<u32>,
    /// Pixels down (images).
    pub height: Option<u32>,
    /// The thumbnail (images of plain conversations), a signed link.
    pub thumbnail_url: Option<String>,
    /// The file, a signed link; `null` in a shared live frame only until the receiving
    /// session signs it for its reader.
    pub url: Option<String>,
}

/// `POST /attachments/upload-url`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadUrlRequest {
    /// The conversation the file is for (the caller must be a member).
    pub conversation_id: Uuid,
    /// The file's name (sanitised: the last path component, no control characters).
    pub filename: String,
    /// Its declared type; in a plain conversation one of `attachments.allowed_types`, and
    /// the bytes must be of it.
    #[cfg_attr(feature = "openapi", schema(example = "image/png"))]
    pub mime_type: String,
    /// Its size in bytes, at most `attachments.max_size_bytes`.
    pub size: u64,
}

/// What `POST /attachments/upload-url` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadUrlResponse {
    /// The new attachment's id.
    pub attachment_id: Uuid,
    /// Where to `PUT` the bytes (no Authorization header): the object store's presigned
    /// URL in scale-out mode, the server's own signed endpoint in embedded mode.
    pub upload_url: String,
    /// `PUT`.
    pub upload_method: String,
    /// When `upload_url` stops working.
    pub expires_at: DateTime<Utc>,
}

/// One emoji's reactions to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReactionDto {
    /// The emoji.
    #[cfg_attr(feature = "openapi", schema(example = "👍"))]
    pub emoji: String,
    /// How many members reacted with it.
    pub count: u32,
    /// Who, earliest first, at most 10.
    pub user_ids: Vec<Uuid>,
    /// Whether the reader is one of them. Left out of live frames (one frame serves every
    /// member): a client keeps its own, and takes it from `reaction` frames whose
    /// `user_id` is its user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub me: Option<bool>,
}

/// `PUT` and `DELETE /conversations/{id}/messages/{message_id}/reactions/{emoji}`: the
/// message's reactions afterwards, as the caller sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReactionsDto {
    /// The message.
    pub message_id: Uuid,
    /// Its change number now (unchanged when the call changed nothing).
    pub change_seq: i64,
    /// Its reactions, `me` included.
    pub reactions: Vec<ReactionDto>,
}

/// The message a reply answers, enough to render the quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplyPreviewDto {
    /// The original's id.
    pub id: Uuid,
    /// Its sender.
    pub sender_id: Uuid,
    /// Its first 100 characters (`""` when deleted; `"Encrypted message"` when it is
    /// `encrypted`: the server cannot read it, the client shows its own decryption).
    pub content: String,
    /// The original's content type (`text`, `encrypted`).
    #[serde(default = "text_content_type")]
    pub content_type: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParticipantDto {
    /// The member.
    pub user_id: Uuid,
    /// Their name.
    pub display_name: String,
    /// Their email.
    pub email: String,
    /// Their picture.
    pub avatar_url: Option<String>,
    /// `owner`, `admin` or `member`.
    #[cfg_attr(feature = "openapi", schema(example = "member"))]
    pub role: String,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
    /// Every message up to this seq reached them.
    pub delivered_seq: i64,
    /// Every message up to this seq was read by them.
    pub read_seq: i64,
    /// When they were last seen online.
    pub last_seen: Option<DateTime<Utc>>,
}

/// A conversation as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationDto {
    /// Conversation id.
    pub id: Uuid,
    /// `direct` or `group`.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(example = "group"))]
    pub kind: String,
    /// Group title; null for direct conversations.
    pub title: Option<String>,
    /// Who made it.
    pub created_by: Uuid,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Seq of the newest message; 0 when there is none.
    pub last_seq: i64,
    /// When the newest message was sent.
    pub last_message_at: Option<DateTime<Utc>>,
    /// Messages the caller has not read.
    pub unread_count: i64,
    /// The newest message (null when there is none). Present in list entries
    /// (`GET /conversations`) only. Its content and deletion are current (an edited
    /// message shows its new content, a deleted one its tombstone); its `reactions` are
    /// always `[]` here (read them from the conversation's history) and its
    /// `reply_preview` null.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<MessageDto>, nullable))]
    pub last_message: Option<Option<MessageDto>>,
    /// Current members, oldest first.
    pub participants: Vec<ParticipantDto>,
    /// End-to-end encrypted: every message is `content_type: "encrypted"`. Never turns
    /// back to `false`.
    #[serde(default)]
    pub encrypted: bool,
    /// The newest conversation key version stored (0 while none was made, or when not
    /// encrypted).
    #[serde(default)]
    pub key_version: i64,
    /// A member was removed since the newest key was made: a member's client makes a new
    /// version (rotation).
    #[serde(default)]
    pub rotation_needed: bool,
}

fn text_content_type() -> String {
    "text".to_owned()
}

/// One conversation key wrapped for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WrappedKeyDto {
    /// The device that can unwrap it (a live device of a current member).
    pub device_id: Uuid,
    /// The wrapped key, base64url without padding.
    pub wrapped_key: String,
}

/// `PUT /conversations/{id}/keys/{version}`: version `version` of the conversation key,
/// wrapped by the caller's device `from_device_id` for each device of `wrapped`.
/// `version` is the current key version (sharing it with devices that lack it) or the next
/// one (a new key: the first, or a rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutKeysRequest {
    /// The caller's live device that wrapped the keys.
    pub from_device_id: Uuid,
    /// `true`: this upload makes version `version`, the next one (the first key, or a
    /// rotation); if another upload made it first, 409 `key_version_exists` and nothing is
    /// stored (fetch that key). `false` (the default): it shares the current version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_version: bool,
    /// 1 to 500 wraps, each for a distinct device.
    pub wrapped: Vec<WrappedKeyDto>,
}

/// What `PUT /conversations/{id}/keys/{version}` stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PutKeysResponse {
    /// The conversation's key version afterwards.
    pub key_version: i64,
    /// Whether this upload made a new version.
    pub rotated: bool,
}

/// One stored key version as the device it is wrapped for reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredKeyDto {
    /// The key version.
    pub version: i64,
    /// The wrapped key, base64url.
    pub wrapped_key: String,
    /// The device that wrapped it.
    pub from_device_id: Uuid,
    /// That device's owner.
    pub from_user_id: Uuid,
    /// That device's public key (also when it was revoked since): what unwraps it.
    pub from_public_key: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// `GET /conversations/{id}/keys?device_id=`: every key version wrapped for one of the
/// caller's devices, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationKeysDto {
    /// The conversation's newest key version.
    pub key_version: i64,
    /// A member was removed since that version was made.
    pub rotation_needed: bool,
    /// The versions wrapped for the device.
    pub keys: Vec<StoredKeyDto>,
}

/// `GET /conversations/{id}/keys/missing`: live devices of current members that lack the
/// current key version, for a member's client to wrap it for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MissingKeysDto {
    /// The conversation's newest key version.
    pub key_version: i64,
    /// A member was removed since that version was made.
    pub rotation_needed: bool,
    /// The devices, oldest first.
    pub devices: Vec<DeviceDto>,
}

/// `POST /conversations/{id}/keys/requests`: one of the caller's devices lacks the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyRequestRequest {
    /// The caller's live device without the key.
    pub device_id: Uuid,
}

/// What a key request announced (202), as the `key_request` frame carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyRequestDto {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Who asks.
    pub user_id: Uuid,
    /// Their device without the key.
    pub device_id: Uuid,
    /// The conversation's current key version.
    pub key_version: i64,
}

/// `POST /conversations/{id}/read`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnreadCountDto {
    /// Messages still unread in this conversation.
    pub unread_count: i64,
}

/// One conversation's unread count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationUnreadDto {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Messages unread there.
    pub unread_count: i64,
}

/// `GET /unread`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnreadDto {
    /// Sum over every conversation.
    pub total: i64,
    /// Per conversation.
    pub conversations: Vec<ConversationUnreadDto>,
}

/// `GET /healthz` and `GET /readyz`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthDto {
    /// `ok`, or `unavailable` when a dependency fails.
    pub status: String,
}

/// The presence of a conversation's members (`GET /conversations/{id}/presence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConversationPresenceDto {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Every member, oldest member first (the caller included).
    pub participants: Vec<ParticipantPresenceDto>,
}

/// One member's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParticipantPresenceDto {
    /// The member.
    pub user_id: Uuid,
    /// `online`, `away` (every live session is away) or `offline`.
    #[cfg_attr(feature = "openapi", schema(example = "online"))]
    pub status: String,
    /// When the member was last announced offline; null if never.
    pub last_seen: Option<DateTime<Utc>>,
}

/// A field that is present, even as `null`, is `Some` (`Some(None)` for `null`); an absent
/// one is `None` through `#[serde(default)]`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
