//! `/conversations/{id}/keys`: an end-to-end encrypted conversation's keys (issue 13), each
//! version wrapped per device by a member's client. The server stores and serves the wraps
//! and announces uploads (`key_shared`) and requests (`key_request`) to every member; it
//! cannot unwrap any of them.

use super::body::JsonBody;
use super::ids::parse_or_nil;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use domain::encryption::{KeyIntent, StoredKey};
use domain::realtime::Event;
use domain::{ConversationId, DeviceId};
use protocol::rest::{
    ConversationKeysDto, DeviceDto, KeyRequestDto, KeyRequestRequest, MissingKeysDto,
    PutKeysRequest, PutKeysResponse, StoredKeyDto,
};
use protocol::ErrorBody;
use realtime::wire;
use serde::Deserialize;
use utoipa::IntoParams;

/// Stores version `version` of the conversation key wrapped by one of the caller's devices
/// for devices of current members: the current version (sharing it with devices that lack
/// it) or, with `new_version`, the next one (a new key: the first, or a rotation; only one
/// upload makes it, a racing one is told `key_version_exists`). Every session of every member
/// hears `key_shared`.
#[utoipa::path(
    put, operation_id = "putConversationKeys", path = "/api/v1/conversations/{id}/keys/{version}", tag = "encryption",
    params(
        ("id" = uuid::Uuid, Path, description = "Conversation id"),
        ("version" = i64, Path, description = "Key version: the current one or the next"),
    ),
    request_body = PutKeysRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stored (wraps already stored for a device are kept)", body = PutKeysResponse),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 409, description = "`not_encrypted`: the conversation is not end-to-end encrypted; `key_version_exists`: `new_version` for a version another upload made first (nothing stored: fetch that key)", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a share of a version that is not the current one, a new version that is not the next one, a device that is not a live device of a current member, a device twice, 0 or more than 500 wraps, a malformed `wrapped_key`, or `from_device_id` not one of the caller's live devices; nothing is stored", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn put(
    user: AuthUser,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    JsonBody(body): JsonBody<PutKeysRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, version) = path.into_inner();
    let id: ConversationId = parse_or_nil(&id);
    let version: i64 = super::query_number(Some(&version), "version")?
        .ok_or_else(|| ApiError::validation("version", "must be an integer"))?;
    let from = DeviceId::from_uuid(body.from_device_id);
    let intent = if body.new_version {
        KeyIntent::New
    } else {
        KeyIntent::Share
    };
    let wraps: Vec<(DeviceId, String)> = body
        .wrapped
        .into_iter()
        .map(|w| (DeviceId::from_uuid(w.device_id), w.wrapped_key))
        .collect();
    let stored = state
        .encryption
        .put_keys(user.0, id, version, intent, from, &wraps)
        .await?;
    tracing::info!(
        conversation_id = %id,
        key_version = stored.key_version,
        rotated = stored.rotated,
        devices = stored.device_ids.len(),
        "conversation keys stored"
    );
    let answer = PutKeysResponse {
        key_version: stored.key_version,
        rotated: stored.rotated,
    };
    state
        .realtime
        .announce_key(
            id,
            Event::KeyShared {
                conversation_id: id,
                key_version: version,
                rotated: stored.rotated,
                from_user_id: user.0,
                from_device_id: from,
                device_ids: stored.device_ids,
            },
        )
        .await;
    Ok(HttpResponse::Ok().json(answer))
}

/// `GET /conversations/{id}/keys` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysQuery {
    /// One of the caller's live devices.
    #[param(value_type = uuid::Uuid)]
    device_id: Option<String>,
}

/// Every key version wrapped for one of the caller's live devices, oldest first, each with
/// the public key of the device that wrapped it (also when that device was revoked since).
#[utoipa::path(
    get, operation_id = "getConversationKeys", path = "/api/v1/conversations/{id}/keys", tag = "encryption",
    params(("id" = uuid::Uuid, Path, description = "Conversation id"), KeysQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConversationKeysDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 409, description = "`not_encrypted`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `device_id` missing or not one of the caller's live devices", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn list(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<KeysQuery>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let device = match query.device_id.as_deref().map(str::trim) {
        None | Some("") => return Err(ApiError::validation("device_id", "is required")),
        Some(raw) => match uuid::Uuid::parse_str(raw) {
            Ok(uuid) => DeviceId::from_uuid(uuid),
            Err(_) => {
                return Err(ApiError::validation(
                    "device_id",
                    "must be one of your live devices",
                ))
            }
        },
    };
    let (encryption, keys) = state.encryption.keys_for(user.0, id, device).await?;
    Ok(HttpResponse::Ok().json(ConversationKeysDto {
        key_version: encryption.key_version,
        rotation_needed: encryption.rotation_needed,
        keys: keys.iter().map(stored_key).collect(),
    }))
}

fn stored_key(k: &StoredKey) -> StoredKeyDto {
    StoredKeyDto {
        version: k.version,
        wrapped_key: k.wrapped_key.clone(),
        from_device_id: k.from_device_id.as_uuid(),
        from_user_id: k.from_user_id.as_uuid(),
        from_public_key: k.from_public_key.as_str().to_owned(),
        created_at: k.created_at,
    }
}

/// The live devices of current members that lack the current key version (every live
/// device of every member while no key was made), oldest first: what a member's client
/// wraps the key for next.
#[utoipa::path(
    get, operation_id = "getMissingKeys", path = "/api/v1/conversations/{id}/keys/missing", tag = "encryption",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = MissingKeysDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 409, description = "`not_encrypted`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn missing(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    let missing = state.encryption.missing_keys(user.0, id).await?;
    Ok(HttpResponse::Ok().json(MissingKeysDto {
        key_version: missing.key_version,
        rotation_needed: missing.rotation_needed,
        devices: missing
            .devices
            .iter()
            .map(wire::device)
            .collect::<Vec<DeviceDto>>(),
    }))
}

/// One of the caller's live devices lacks the current key: every session of every member
/// hears `key_request`, and a client holding the key wraps it for that device. Limited
/// per user like edits, deletions and reactions.
#[utoipa::path(
    post, operation_id = "requestConversationKey", path = "/api/v1/conversations/{id}/keys/requests", tag = "encryption",
    params(("id" = uuid::Uuid, Path, description = "Conversation id")),
    request_body = KeyRequestRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Announced", body = KeyRequestDto),
        (status = 403, description = "`not_participant`", body = ErrorBody),
        (status = 409, description = "`not_encrypted`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `device_id` is not one of the caller's live devices", body = ErrorBody),
        (status = 429, description = "`rate_limited` (`Retry-After`)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn request(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    JsonBody(body): JsonBody<KeyRequestRequest>,
) -> Result<HttpResponse, ApiError> {
    let id: ConversationId = parse_or_nil(&id);
    state
        .realtime
        .charge_key_request(user.0)
        .map_err(ApiError::rate_limited)?;
    let request = state
        .encryption
        .request_key(user.0, id, DeviceId::from_uuid(body.device_id))
        .await?;
    let dto = KeyRequestDto {
        conversation_id: request.conversation_id.as_uuid(),
        user_id: request.user_id.as_uuid(),
        device_id: request.device_id.as_uuid(),
        key_version: request.key_version,
    };
    state
        .realtime
        .announce_key(id, Event::KeyRequest(request))
        .await;
    Ok(HttpResponse::Accepted().json(dto))
}
