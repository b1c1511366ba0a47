//! `/conversations/{id}/messages` and `/conversations/{id}/read`: the REST fallback of the
//! WebSocket protocol. A send takes the same path as a WebSocket `message` frame (validation,
//! rate limit, the node's group-commit batcher, the broadcast), so it has the same idempotency;
//! reads and fetches announce the receipts they move. Edits, deletions and reactions take
//! the same path as the `edit`, `delete` and `react` frames (`realtime::changes`): the
//! change rate limit, the domain's rules, then the live event to every member.

use super::body::JsonBody;
use super::ids::parse_or_nil;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use domain::message::AppendOutcome;
use domain::realtime::{Event, Topic};
use domain::services::{HistoryPage, MessageService, SendCommand};
use domain::{AttachmentId, ConversationId, MessageId, UserId};
use protocol::rest::{
    EditMessageRequest, MarkReadRequest, MessageDto, ReactionsDto, SendMessageRequest,
    UnreadCountDto,
};
use protocol::ErrorBody;
use realtime::changes::ChangeRefused;
use realtime::send::{SendRefused, Via};
use realtime::wire;
use serde::Deserialize;
use utoipa::IntoParams;

/// History page size when `limit` is not given (seed 000).
const DEFAULT_HISTORY_LIMIT: u32 = 50;

/// Sends a message. A retry with the same `temp_id` and content answers the original
/// message (200) and writes nothing.
#[utoipa::path(
    post, operation_id = "sendMessage", path = "/api/v1/conversations/{id}/messages", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = SendMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Persisted", body = MessageDto),
        (status = 200, description = "A replay of `temp_id`: the original message", body = MessageDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 404, description = "`message_not_found`: `reply_to` is not in this conversation", body = ErrorBody),
        (status = 409, description = "`temp_id_conflict`: `temp_id` used for another message; `encryption_required`: a `text` message in an end-to-end encrypted conversation; `not_encrypted`: an `encrypted` one in a plain conversation", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: blank or too-long content, a malformed or too large envelope, bad temp_id", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many messages (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "`unavailable`: storage or pub/sub down; nothing was done, retry with the same temp_id", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn send(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    JsonBody(body): JsonBody<SendMessageRequest>,
) -> Result<HttpResponse, ApiError> {
    let conversation_id: ConversationId = parse_or_nil(&id);
    let realtime = &state.realtime;
    let cmd = SendCommand {
        sender: user.0,
        conversation_id,
        content: body.content,
        content_type: body.content_type,
        temp_id: body.temp_id,
        reply_to: body.reply_to.map(MessageId::from_uuid),
        // Read with the membership check.
        encrypted: None,
        attachment_ids: body
            .attachment_ids
            .iter()
            .copied()
            .map(AttachmentId::from_uuid)
            .collect(),
    };
    let mut queued =
        realtime
            .queue_send(cmd, Via::Rest)
            .await
            .map_err(|refused| match refused {
                SendRefused::RateLimited(wait) => ApiError::rate_limited(wait),
                SendRefused::Chat(e) => e.into(),
            })?;
    let outcome = queued.outcome().await?;
    // The sender's typing lease ends before the answer, whichever session typed.
    if let Some(typing) = realtime.sent(&queued, &outcome, Via::Rest) {
        typing.run().await;
    }
    // A reply carries the preview of its original, as its live frame does.
    let reply_preview = queued.reply_preview.as_ref().map(wire::reply_preview);
    if let AppendOutcome::Created(message) = &outcome {
        tracing::info!(conversation_id = %conversation_id, seq = message.seq, "message sent");
        let dto = MessageDto {
            reply_preview,
            ..wire::appended(&outcome)
        };
        return Ok(HttpResponse::Created().json(state.signed(dto, user.0)));
    }
    // A replay: the original may have been delivered or read since, so show its status now.
    let details = state.conversations.get(user.0, conversation_id).await?;
    let dto = MessageService::views(&details, vec![outcome.message().clone()])
        .first()
        .map_or_else(|| wire::appended(&outcome), wire::message);
    let dto = MessageDto {
        reply_preview,
        ..dto
    };
    let response = HttpResponse::Ok().json(state.signed(dto, user.0));
    Ok(response)
}

/// `GET /conversations/{id}/messages` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages older than this one, newest first (the newest page when absent).
    #[param(value_type = Option<uuid::Uuid>)]
    before: Option<String>,
    /// Messages with a greater seq, oldest first (for sync). Not with `before`.
    #[param(value_type = Option<i64>)]
    after_seq: Option<String>,
    /// The page around this message, newest first: it, up to about half of `limit` older
    /// messages and the rest newer ones (where a client jumps to a quoted message). Not
    /// with `before` nor `after_seq`.
    #[param(value_type = Option<uuid::Uuid>)]
    around: Option<String>,
    /// Page size, 1 to `limits.max_page_size` (default 50).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// A page of history: `?before=<message_id>` newest first (seed 000), `?after_seq=N`
/// oldest first, or `?around=<message_id>` newest first. Each message carries its
/// aggregate status, its reactions (`me` the caller's) and, for a reply, the original's
/// preview as it is now; fetching counts as delivery to the caller.
#[utoipa::path(
    get, operation_id = "listMessages", path = "/api/v1/conversations/{id}/messages", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), HistoryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<MessageDto>),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 404, description = "`message_not_found`: `before` or `around` is not in this conversation (or not a UUID)", body = ErrorBody),
        (status = 422, description = "`validation_failed`: bad `limit` or `after_seq`, or more than one cursor", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn history(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let conversation_id: ConversationId = parse_or_nil(&id);
    let limit =
        super::query_number(query.limit.as_deref(), "limit")?.unwrap_or(DEFAULT_HISTORY_LIMIT);
    let after_seq = super::query_number::<i64>(query.after_seq.as_deref(), "after_seq")?;
    let before = query
        .before
        .as_deref()
        .map(str::trim)
        .filter(|raw| !raw.is_empty())
        .map(parse_or_nil::<MessageId>);
    let around = query
        .around
        .as_deref()
        .map(str::trim)
        .filter(|raw| !raw.is_empty())
        .map(parse_or_nil::<MessageId>);
    if let Some(around) = around {
        if before.is_some() || after_seq.is_some() {
            return Err(ApiError::validation(
                "around",
                "cannot be combined with before or after_seq",
            ));
        }
        let page = state
            .messages
            .history_around(user.0, conversation_id, around, limit)
            .await?;
        announce_delivered(&state, user.0, conversation_id, &page).await;
        let dtos: Vec<MessageDto> = page
            .messages
            .iter()
            .map(|v| state.message_dto(v, user.0))
            .collect();
        return Ok(HttpResponse::Ok().json(dtos));
    }
    let page = match (before, after_seq) {
        (Some(_), Some(_)) => {
            return Err(ApiError::validation(
                "after_seq",
                "cannot be combined with before",
            ))
        }
        (_, Some(after_seq)) => {
            state
                .messages
                .history_after(user.0, conversation_id, after_seq, limit)
                .await?
        }
        (before, None) => {
            state
                .messages
                .history_before(user.0, conversation_id, before, limit)
                .await?
        }
    };
    announce_delivered(&state, user.0, conversation_id, &page).await;
    let dtos: Vec<MessageDto> = page
        .messages
        .iter()
        .map(|v| state.message_dto(v, user.0))
        .collect();
    Ok(HttpResponse::Ok().json(dtos))
}

/// Fetching moved the reader's delivered watermark: tell the conversation (the senders'
/// ticks), at the message the watermark now points at.
async fn announce_delivered(
    state: &AppState,
    me: UserId,
    conversation_id: ConversationId,
    page: &HistoryPage,
) {
    let Some(now) = &page.delivered else { return };
    let seq = now.delivered_seq.max(now.read_seq);
    let Some(view) = page.messages.iter().find(|v| v.message.seq == seq) else {
        return;
    };
    let event = Event::Delivered {
        conversation_id,
        message_id: view.message.id,
        seq,
        since_seq: 0,
        user_id: me,
    };
    state
        .realtime
        .announce(Topic::Conversation(conversation_id), event)
        .await;
}

/// Marks everything up to and including a message read. The watermark never moves back.
#[utoipa::path(
    post, operation_id = "markRead", path = "/api/v1/conversations/{id}/read", tag = "messages",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = MarkReadRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = UnreadCountDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 404, description = "`message_not_found`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn mark_read(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    JsonBody(body): JsonBody<MarkReadRequest>,
) -> Result<HttpResponse, ApiError> {
    let conversation_id: ConversationId = parse_or_nil(&id);
    let outcome = state
        .messages
        .mark_read(
            user.0,
            conversation_id,
            MessageId::from_uuid(body.last_read_message_id),
        )
        .await?;
    // The watermark never moves back: announce where it is now (the reader's other sessions
    // and the senders' ticks), and the reader's unread counts.
    let read = Event::Read {
        conversation_id,
        message_id: outcome.message.id,
        seq: outcome.message.seq,
        since_seq: 0,
        read_by: user.0,
        read_at: chrono::Utc::now(),
    };
    if outcome.watermarks.read_seq == outcome.message.seq {
        state
            .realtime
            .announce(Topic::Conversation(conversation_id), read)
            .await;
    }
    if let Ok((total, _)) = state.conversations.unread(user.0).await {
        let unread = Event::Unread {
            conversation_id,
            unread_count: outcome.unread_count,
            total,
        };
        state.realtime.announce(Topic::User(user.0), unread).await;
    }
    Ok(HttpResponse::Ok().json(UnreadCountDto {
        unread_count: outcome.unread_count,
    }))
}

/// A refused change as its REST answer: 429 with `Retry-After` for the change rate limit,
/// else the domain's error.
fn refused(refused: ChangeRefused) -> ApiError {
    match refused {
        ChangeRefused::RateLimited(wait) => ApiError::rate_limited(wait),
        ChangeRefused::Chat(e) => e.into(),
    }
}

/// The conversation and message ids of a `/conversations/{id}/messages/{message_id}` path;
/// a malformed one reads as the id of nothing (403 for the conversation, 404 for the
/// message, as an unknown one).
fn message_path(conversation: &str, message: &str) -> (ConversationId, MessageId) {
    (parse_or_nil(conversation), parse_or_nil(message))
}

/// Edits the caller's own message (within `limits.edit_window_secs` of its sending). Every
/// member gets `message_updated`. The same content again changes nothing: the message as
/// it is, the same `change_seq`, nothing announced.
#[utoipa::path(
    patch, operation_id = "editMessage", path = "/api/v1/conversations/{id}/messages/{message_id}", tag = "messages",
    params(
        ("id" = uuid::Uuid, Path, description = "Conversation id"),
        ("message_id" = uuid::Uuid, Path, description = "Message id"),
    ),
    request_body = EditMessageRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message as the caller now reads it", body = MessageDto),
        (status = 403, description = "`not_participant`, or `not_sender`: someone else's message", body = ErrorBody),
        (status = 404, description = "`message_not_found`: not a message of this conversation", body = ErrorBody),
        (status = 409, description = "`message_deleted`, `edit_window_closed`, or `encryption_required` (a `text` message from before encryption, in an encrypted conversation)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: blank or too-long content; in an encrypted conversation, a malformed envelope", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many edits, deletions and reactions (`Retry-After`)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn edit(
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    JsonBody(body): JsonBody<EditMessageRequest>,
) -> Result<HttpResponse, ApiError> {
    let (conversation_id, message_id) = message_path(&path.0, &path.1);
    let view = state
        .realtime
        .edit(
            &state.lifecycle,
            user.0,
            conversation_id,
            message_id,
            &body.content,
        )
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(state.message_dto(&view, user.0)))
}

/// Deletes a message: the caller's own, or anyone's in a group where the caller is an owner
/// or admin. Its content and reactions are erased; the tombstone stays in history with
/// `deleted_at` and `deleted_by`. Every member gets `message_deleted`. Deleting it again
/// answers the tombstone and changes nothing.
#[utoipa::path(
    delete, operation_id = "deleteMessage", path = "/api/v1/conversations/{id}/messages/{message_id}", tag = "messages",
    params(
        ("id" = uuid::Uuid, Path, description = "Conversation id"),
        ("message_id" = uuid::Uuid, Path, description = "Message id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tombstone (`content` \"\", `deleted_at`, `deleted_by`)", body = MessageDto),
        (status = 403, description = "`not_participant`, or `not_sender`: someone else's message, and not an owner or admin of a group", body = ErrorBody),
        (status = 404, description = "`message_not_found`: not a message of this conversation", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many edits, deletions and reactions (`Retry-After`)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn delete(
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (conversation_id, message_id) = message_path(&path.0, &path.1);
    let tombstone = state
        .realtime
        .delete(&state.lifecycle, user.0, conversation_id, message_id)
        .await
        .map_err(refused)?;
    let view = state.lifecycle.view(user.0, tombstone).await?;
    Ok(HttpResponse::Ok().json(state.message_dto(&view, user.0)))
}

/// Adds the caller's reaction `emoji` (percent-encoded in the path) to a message. Every
/// member gets `reaction`. Adding it again changes nothing.
#[utoipa::path(
    put, operation_id = "addReaction", path = "/api/v1/conversations/{id}/messages/{message_id}/reactions/{emoji}", tag = "messages",
    params(
        ("id" = uuid::Uuid, Path, description = "Conversation id"),
        ("message_id" = uuid::Uuid, Path, description = "Message id"),
        ("emoji" = String, Path, description = "One emoji, percent-encoded (`%F0%9F%91%8D` for a thumbs up)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message's reactions afterwards, `me` the caller's", body = ReactionsDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 404, description = "`message_not_found`: not a message of this conversation", body = ErrorBody),
        (status = 409, description = "`message_deleted`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: not one emoji", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many edits, deletions and reactions (`Retry-After`)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn add_reaction(
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    react(&user, &state, &path, true).await
}

/// Removes the caller's reaction `emoji` (percent-encoded in the path) from a message.
/// Every member gets `reaction`. Removing one that is not there changes nothing.
#[utoipa::path(
    delete, operation_id = "removeReaction", path = "/api/v1/conversations/{id}/messages/{message_id}/reactions/{emoji}", tag = "messages",
    params(
        ("id" = uuid::Uuid, Path, description = "Conversation id"),
        ("message_id" = uuid::Uuid, Path, description = "Message id"),
        ("emoji" = String, Path, description = "One emoji, percent-encoded"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The message's reactions afterwards, `me` the caller's", body = ReactionsDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 404, description = "`message_not_found`: not a message of this conversation", body = ErrorBody),
        (status = 409, description = "`message_deleted`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: not one emoji", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many edits, deletions and reactions (`Retry-After`)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn remove_reaction(
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    react(&user, &state, &path, false).await
}

/// Both reaction routes: `add` or remove the path's emoji (percent-decoded by the router).
async fn react(
    user: &AuthUser,
    state: &AppState,
    (conversation, message, emoji): &(String, String, String),
    add: bool,
) -> Result<HttpResponse, ApiError> {
    let (conversation_id, message_id) = message_path(conversation, message);
    let change = state
        .realtime
        .react(
            &state.lifecycle,
            user.0,
            conversation_id,
            message_id,
            emoji,
            add,
        )
        .await
        .map_err(refused)?;
    Ok(HttpResponse::Ok().json(ReactionsDto {
        message_id: change.message.id.as_uuid(),
        change_seq: change.message.change_seq,
        reactions: change
            .reactions
            .iter()
            .map(|r| wire::reaction(r, true))
            .collect(),
    }))
}
