//! The JSON shapes of the REST API (seed 000's field names) and their conversion from
//! domain values. Requests stay raw strings and UUIDs: the domain validates them.

use chrono::{DateTime, Utc};
use domain::auth::AuthSession;
use domain::conversation::{ConversationDetails, ConversationSummary, ParticipantProfile};
use domain::message::{AppendOutcome, MessageStatus};
use domain::services::{MessageService, MessageView};
use domain::user::User;
use domain::UserId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

// ---------------------------------------------------------------- requests
// No `Debug` on requests that carry a password or a token: they must never be printed.

/// `POST /auth/register`
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Unique, case-insensitive.
    #[schema(example = "alice@example.com")]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery")]
    pub password: String,
    /// 1 to 64 characters.
    #[schema(example = "Alice")]
    pub display_name: String,
}

/// `POST /auth/login`
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// `POST /auth/refresh` and `POST /auth/logout`
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the last register, login or refresh.
    pub refresh_token: String,
}

/// `POST /conversations`
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateConversationRequest {
    /// `direct` or `group`.
    #[serde(rename = "type")]
    #[schema(example = "direct")]
    pub kind: String,
    /// The other members; for `direct`, exactly one other user. The caller may be listed.
    #[serde(default)]
    pub participant_ids: Vec<Uuid>,
    /// The group's title (required for groups, ignored for direct conversations).
    pub title: Option<String>,
}

/// `PATCH /conversations/{id}`
#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameConversationRequest {
    /// The new title, 1 to 100 characters.
    pub title: String,
}

/// `POST /conversations/{id}/members`
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddMemberRequest {
    /// The user to add.
    pub user_id: Uuid,
}

/// `POST /conversations/{id}/messages`
#[derive(Debug, Deserialize, ToSchema)]
pub struct SendMessageRequest {
    /// The text, not blank, at most `limits.max_content_chars` characters.
    pub content: String,
    /// `text` (the default).
    pub content_type: Option<String>,
    /// The client's idempotency key, 1 to 64 characters: a retry with the same key gets the
    /// original message (200) instead of a new one (201).
    pub temp_id: Option<String>,
    /// The message this one answers, in the same conversation.
    pub reply_to: Option<Uuid>,
}

/// `POST /conversations/{id}/read`
#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkReadRequest {
    /// Everything up to and including this message is read.
    pub last_read_message_id: Uuid,
}

// --------------------------------------------------------------- responses

/// A user as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl From<&User> for UserDto {
    fn from(user: &User) -> Self {
        Self {
            id: user.id.as_uuid(),
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            avatar_url: user.avatar_url.clone(),
        }
    }
}

/// What register, login and refresh answer.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthResponse {
    /// Short-lived JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Single-use token for `POST /auth/refresh`.
    pub refresh_token: String,
    /// Always `bearer`.
    #[schema(example = "bearer")]
    pub token_type: String,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    /// The account.
    pub user: UserDto,
}

impl From<&AuthSession> for AuthResponse {
    fn from(session: &AuthSession) -> Self {
        Self {
            access_token: session.access.token.clone(),
            refresh_token: session.refresh.expose().to_owned(),
            token_type: "bearer".to_owned(),
            expires_in: session.access.expires_in,
            user: UserDto::from(&session.user),
        }
    }
}

/// A message, with its status as the sender sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// `sent`, `delivered` (every other member has it) or `read` (every other member read it).
    #[schema(example = "sent")]
    pub status: String,
}

impl From<&MessageView> for MessageDto {
    fn from(view: &MessageView) -> Self {
        let m = &view.message;
        Self {
            id: m.id.as_uuid(),
            conversation_id: m.conversation_id.as_uuid(),
            seq: m.seq,
            sender_id: m.sender_id.as_uuid(),
            content: m.content.clone(),
            content_type: m.content_type.as_str().to_owned(),
            reply_to: m.reply_to.map(|id| id.as_uuid()),
            temp_id: m.client_msg_id.clone(),
            created_at: m.created_at,
            edited_at: m.edited_at,
            deleted_at: m.deleted_at,
            status: view.status.as_str().to_owned(),
        }
    }
}

impl MessageDto {
    /// A message just appended: a new one is `sent` (nobody else has it yet).
    pub fn sent(outcome: &AppendOutcome) -> Self {
        Self::from(&MessageView {
            message: outcome.message().clone(),
            status: MessageStatus::Sent,
        })
    }
}

/// A member of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    #[schema(example = "member")]
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

impl From<&ParticipantProfile> for ParticipantDto {
    fn from(p: &ParticipantProfile) -> Self {
        Self {
            user_id: p.participant.user_id.as_uuid(),
            display_name: p.display_name.clone(),
            email: p.email.clone(),
            avatar_url: p.avatar_url.clone(),
            role: p.participant.role.as_str().to_owned(),
            joined_at: p.participant.joined_at,
            delivered_seq: p.participant.delivered_seq.max(p.participant.read_seq),
            read_seq: p.participant.read_seq,
            last_seen: p.last_seen_at,
        }
    }
}

/// A conversation as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationDto {
    /// Conversation id.
    pub id: Uuid,
    /// `direct` or `group`.
    #[serde(rename = "type")]
    #[schema(example = "group")]
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
    /// (`GET /conversations`) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<MessageDto>, nullable)]
    pub last_message: Option<Option<MessageDto>>,
    /// Current members, oldest first.
    pub participants: Vec<ParticipantDto>,
}

impl ConversationDto {
    /// The conversation as `me` sees it, without its last message.
    pub fn new(details: &ConversationDetails, me: UserId) -> Self {
        let c = &details.conversation;
        Self {
            id: c.id.as_uuid(),
            kind: c.kind.as_str().to_owned(),
            title: c.title.clone(),
            created_by: c.created_by.as_uuid(),
            created_at: c.created_at,
            last_seq: c.last_seq,
            last_message_at: c.last_message_at,
            unread_count: details.unread_count(me),
            last_message: None,
            participants: details
                .participants
                .iter()
                .map(ParticipantDto::from)
                .collect(),
        }
    }

    /// A list entry: the conversation with its newest message and that message's status.
    pub fn summary(summary: &ConversationSummary, me: UserId) -> Self {
        let last = summary.last_message.clone().map(|m| {
            MessageService::views(&summary.details, vec![m])
                .first()
                .map(MessageDto::from)
        });
        Self {
            last_message: Some(last.flatten()),
            ..Self::new(&summary.details, me)
        }
    }
}

/// `POST /conversations/{id}/read`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnreadCountDto {
    /// Messages still unread in this conversation.
    pub unread_count: i64,
}

/// One conversation's unread count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationUnreadDto {
    /// The conversation.
    pub conversation_id: Uuid,
    /// Messages unread there.
    pub unread_count: i64,
}

/// `GET /unread`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnreadDto {
    /// Sum over every conversation.
    pub total: i64,
    /// Per conversation.
    pub conversations: Vec<ConversationUnreadDto>,
}

/// `GET /healthz` and `GET /readyz`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthDto {
    /// `ok`, or `unavailable` when a dependency fails.
    pub status: String,
}
