//! `/conversations`: create, list, show, rename, members, leave; and `/unread`.

use super::body::JsonBody;
use super::ids::parse_or_nil;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use domain::conversation::ConversationKind;
use domain::realtime::ConversationChange;
use domain::{ConversationId, UserId};
use protocol::rest::{
    AddMemberRequest, ConversationDto, ConversationUnreadDto, CreateConversationRequest,
    RenameConversationRequest, UnreadDto,
};
use protocol::ErrorBody;
use realtime::wire;
use serde::Deserialize;
use utoipa::IntoParams;

/// Creates a conversation. A direct conversation with someone the caller already has one
/// with answers that one (200) instead of a new one (201).
#[utoipa::path(
    post, operation_id = "createConversation", path = "/api/v1/conversations", tag = "conversations",
    request_body = CreateConversationRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ConversationDto),
        (status = 200, description = "The existing direct conversation of the pair", body = ConversationDto),
        (status = 404, description = "`user_not_found`: a participant does not exist", body = ErrorBody),
        (status = 422, description = "`validation_failed` or `group_full`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn create(
    user: AuthUser,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<CreateConversationRequest>,
) -> Result<HttpResponse, ApiError> {
    let kind: ConversationKind = body.kind.parse()?;
    let participants: Vec<UserId> = body
        .participant_ids
        .iter()
        .copied()
        .map(UserId::from_uuid)
        .collect();
    let (details, created) = state
        .conversations
        .create(user.0, kind, &participants, body.title.as_deref())
        .await?;
    let id = details.conversation.id;
    // Encrypted from the start: turned on before anyone hears of the conversation, so its
    // `created` event already says so. The existing direct conversation of the pair is
    // turned on too (its members hear `encryption_enabled`).
    let encryption = if body.encrypted {
        let outcome = state.encryption.enable(user.0, id).await?;
        if outcome.turned_on && !created {
            state
                .realtime
                .announce_conversation(
                    ConversationChange::EncryptionEnabled,
                    details.clone(),
                    None,
                    Some(outcome.state),
                )
                .await;
        }
        Some(outcome.state)
    } else {
        state.encryption.state_of(id).await?
    };
    let dto = wire::conversation(&details, user.0, encryption.as_ref());
    Ok(if created {
        tracing::info!(conversation_id = %dto.id, kind = %kind, encrypted = dto.encrypted, "conversation created");
        // Every member's sessions start following it (and hear of it) at once.
        state
            .realtime
            .announce_conversation(ConversationChange::Created, details, None, encryption)
            .await;
        HttpResponse::Created().json(dto)
    } else {
        HttpResponse::Ok().json(dto)
    })
}

/// Turns end-to-end encryption on: any member of a direct conversation, an owner or admin
/// of a group. There is no turning it off; turning it on again changes nothing.
#[utoipa::path(
    post, operation_id = "enableEncryption", path = "/api/v1/conversations/{id}/encryption", tag = "encryption",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation, `encrypted: true` (also when it already was)", body = ConversationDto),
        (status = 403, description = "`not_participant`, or `forbidden`: a plain member of a group", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn enable_encryption(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let outcome = state.encryption.enable(user.0, id).await?;
    let details = state.conversations.get(user.0, id).await?;
    let dto = wire::conversation(&details, user.0, Some(&outcome.state));
    if outcome.turned_on {
        tracing::info!(conversation_id = %id, "end-to-end encryption turned on");
        state
            .realtime
            .announce_conversation(
                ConversationChange::EncryptionEnabled,
                details,
                None,
                Some(outcome.state),
            )
            .await;
    }
    Ok(HttpResponse::Ok().json(dto))
}

/// `GET /conversations` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only `direct` or only `group` conversations.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// Page number from 1 (50 a page).
    #[param(value_type = Option<u32>)]
    page: Option<String>,
}

/// The caller's conversations, newest activity first, 50 a page, each with its newest
/// message and the caller's unread count.
#[utoipa::path(
    get, operation_id = "listConversations", path = "/api/v1/conversations", tag = "conversations",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<ConversationDto>),
        (status = 422, description = "`validation_failed`: bad `type` or `page`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn list(
    user: AuthUser,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let kind = match query.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<ConversationKind>()?),
    };
    let page = super::query_number(query.page.as_deref(), "page")?.unwrap_or(1);
    let summaries = state.conversations.list(user.0, kind, page).await?;
    // The encryption of the whole page in one store call.
    let ids: Vec<ConversationId> = summaries
        .iter()
        .map(|s| s.details.conversation.id)
        .collect();
    let encryption = state.encryption.states_of(&ids).await?;
    let dtos: Vec<ConversationDto> = summaries
        .iter()
        .map(|s| {
            let mut dto =
                wire::conversation_entry(s, user.0, encryption.get(&s.details.conversation.id));
            dto.last_message = dto.last_message.map(|m| m.map(|m| state.signed(m, user.0)));
            dto
        })
        .collect();
    Ok(HttpResponse::Ok().json(dtos))
}

/// One conversation of the caller's, with its participants.
#[utoipa::path(
    get, operation_id = "getConversation", path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConversationDto),
        (status = 403, description = "`not_participant`: not a member, or no such conversation", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn get(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let details = state.conversations.get(user.0, id).await?;
    let encryption = state.encryption.state_of(id).await?;
    Ok(HttpResponse::Ok().json(wire::conversation(&details, user.0, encryption.as_ref())))
}

/// Renames a group (owner and admins).
#[utoipa::path(
    patch, operation_id = "renameConversation", path = "/api/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = RenameConversationRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConversationDto),
        (status = 403, description = "`not_participant` or `forbidden`", body = ErrorBody),
        (status = 422, description = "`validation_failed` or `not_a_group`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn rename(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    JsonBody(body): JsonBody<RenameConversationRequest>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let details = state.conversations.rename(user.0, id, &body.title).await?;
    let encryption = state.encryption.state_of(id).await?;
    let dto = wire::conversation(&details, user.0, encryption.as_ref());
    state
        .realtime
        .announce_conversation(ConversationChange::Renamed, details, None, encryption)
        .await;
    Ok(HttpResponse::Ok().json(dto))
}

/// Adds a member to a group (owner and admins).
#[utoipa::path(
    post, operation_id = "addMember", path = "/api/v1/conversations/{id}/members", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = AddMemberRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation with its new member", body = ConversationDto),
        (status = 403, description = "`not_participant` or `forbidden`", body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`already_member`", body = ErrorBody),
        (status = 422, description = "`not_a_group` or `group_full`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn add_member(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    JsonBody(body): JsonBody<AddMemberRequest>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let added = UserId::from_uuid(body.user_id);
    let details = state.conversations.add_member(user.0, id, added).await?;
    let encryption = state.encryption.state_of(id).await?;
    let dto = wire::conversation(&details, user.0, encryption.as_ref());
    // The joining member's sessions learn from it whether to send envelopes.
    state
        .realtime
        .announce_conversation(
            ConversationChange::MemberAdded,
            details,
            Some(added),
            encryption,
        )
        .await;
    Ok(HttpResponse::Ok().json(dto))
}

/// Removes a member from a group: the owner removes anyone, an admin members only.
/// Removing oneself is leaving.
#[utoipa::path(
    delete, operation_id = "removeMember", path = "/api/v1/conversations/{id}/members/{user_id}", tag = "conversations",
    params(
        ("id" = uuid::Uuid, Path, description = "Conversation id"),
        ("user_id" = uuid::Uuid, Path, description = "Member to remove"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "`not_participant` or `forbidden`", body = ErrorBody),
        (status = 404, description = "`not_a_member`", body = ErrorBody),
        (status = 422, description = "`not_a_group`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn remove_member(
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, member) = path.into_inner();
    let (id, member): (ConversationId, UserId) = (parse_or_nil(&id), parse_or_nil(&member));
    state
        .conversations
        .remove_member(user.0, id, member)
        .await?;
    announce_removal(&state, id, member).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Leaves a group. An owner who leaves hands ownership on.
#[utoipa::path(
    post, operation_id = "leaveConversation", path = "/api/v1/conversations/{id}/leave", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Left"),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 422, description = "`not_a_group`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn leave(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    state.conversations.leave(user.0, id).await?;
    announce_removal(&state, id, user.0).await;
    Ok(HttpResponse::NoContent().finish())
}

/// `member` is out of `id`: its sessions stop following the conversation before any later
/// event of it (the removal is published before the request is answered). Its conversation
/// says `rotation_needed` when a key had been made.
async fn announce_removal(state: &AppState, id: ConversationId, member: UserId) {
    let encryption = match state.encryption.state_of(id).await {
        Ok(encryption) => encryption,
        Err(e) => {
            tracing::warn!(conversation_id = %id, error = %e, "a removal could not be announced");
            return;
        }
    };
    match state.realtime.current(id).await {
        Some(details) => {
            state
                .realtime
                .announce_conversation(
                    ConversationChange::MemberRemoved,
                    details,
                    Some(member),
                    encryption,
                )
                .await;
        }
        None => tracing::warn!(conversation_id = %id, "a removal could not be announced"),
    }
}

/// The caller's unread counts, per conversation and in total.
#[utoipa::path(
    get, operation_id = "getUnread", path = "/api/v1/unread", tag = "conversations",
    security(("bearer" = [])),
    responses((status = 200, body = UnreadDto))
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn unread(user: AuthUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (total, counts) = state.conversations.unread(user.0).await?;
    Ok(HttpResponse::Ok().json(UnreadDto {
        total,
        conversations: counts
            .into_iter()
            .map(|(id, unread_count)| ConversationUnreadDto {
                conversation_id: id.as_uuid(),
                unread_count,
            })
            .collect(),
    }))
}
