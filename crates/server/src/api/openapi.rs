//! The OpenAPI document, served at `GET /api/v1/openapi.json`. Every route is listed
//! here; a test checks the document against the router's paths.

use super::{
    attachments, auth, conversations, devices, health, key_backup, keys, messages, presence, users,
};
use actix_web::HttpResponse;
use protocol::error::{ErrorBody, ErrorCode, ErrorDetail};
use protocol::rest as dto;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The REST API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "chat-server",
        description = "Self-hosted real-time chat: the REST API. Errors answer \
            `{\"error\":{\"code\",\"message\"}}`; authenticated calls send \
            `Authorization: Bearer <access_token>`."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout,
        users::me, users::search, users::get,
        conversations::create, conversations::list, conversations::get, conversations::rename,
        conversations::add_member, conversations::remove_member, conversations::leave,
        conversations::unread,
        messages::send, messages::history, messages::mark_read,
        messages::edit, messages::delete, messages::add_reaction, messages::remove_reaction,
        presence::conversation_presence,
        devices::register, devices::list, devices::revoke,
        key_backup::put, key_backup::get, key_backup::delete,
        conversations::enable_encryption, keys::put, keys::list, keys::missing, keys::request,
        attachments::upload_url, attachments::upload, attachments::confirm, attachments::get,
        attachments::file, attachments::thumbnail,
        health::healthz, health::readyz,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode,
        dto::RegisterRequest, dto::LoginRequest, dto::RefreshRequest, dto::AuthResponse,
        dto::UserDto, dto::CreateConversationRequest, dto::RenameConversationRequest,
        dto::AddMemberRequest, dto::ConversationDto, dto::ParticipantDto,
        dto::SendMessageRequest, dto::MessageDto, dto::MarkReadRequest, dto::UnreadCountDto,
        dto::EditMessageRequest, dto::ReactionDto, dto::ReplyPreviewDto, dto::ReactionsDto,
        dto::UnreadDto, dto::ConversationUnreadDto, dto::HealthDto,
        dto::ConversationPresenceDto, dto::ParticipantPresenceDto,
        dto::RegisterDeviceRequest, dto::DeviceDto, dto::KeyBackupDto,
        dto::WrappedKeyDto, dto::PutKeysRequest, dto::PutKeysResponse, dto::StoredKeyDto,
        dto::ConversationKeysDto, dto::MissingKeysDto, dto::KeyRequestRequest, dto::KeyRequestDto,
        dto::AttachmentDto, dto::UploadUrlRequest, dto::UploadUrlResponse,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "users", description = "Users"),
        (name = "conversations", description = "Direct and group conversations"),
        (name = "messages", description = "Messages, their edits, deletions and reactions, and read receipts (REST fallback)"),
        (name = "encryption", description = "End-to-end encryption: devices and their public keys, turning a conversation's encryption on, its wrapped keys, key backups"),
        (name = "attachments", description = "Files and images: announce, upload, confirm, then send with `attachment_ids`; download through signed links"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
