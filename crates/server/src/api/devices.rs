//! `/devices` and `/users/{id}/devices`: the caller's devices and their ECDH public keys,
//! for end-to-end encrypted conversations (issue 13). The server keeps public keys only.

use super::body::JsonBody;
use super::ids::parse_or_nil;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use domain::{DeviceId, UserId};
use protocol::rest::{DeviceDto, RegisterDeviceRequest};
use protocol::ErrorBody;
use realtime::wire;

/// Registers a device of the caller with its public key (at most 10 live devices).
#[utoipa::path(
    post, operation_id = "registerDevice", path = "/api/v1/devices", tag = "encryption",
    request_body = RegisterDeviceRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The device, with its fingerprint", body = DeviceDto),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`too_many_devices`: 10 live devices already", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `public_key` is not base64url of a 65-byte point starting 0x04, or `name` is blank or longer than 64 characters", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn register(
    user: AuthUser,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RegisterDeviceRequest>,
) -> Result<HttpResponse, ApiError> {
    let device = state
        .encryption
        .register_device(user.0, &body.public_key, &body.name)
        .await?;
    Ok(HttpResponse::Created().json(wire::device(&device)))
}

/// A user's live devices, oldest first: the caller's own, or those of a user who shares a
/// conversation with the caller.
#[utoipa::path(
    get, operation_id = "listUserDevices", path = "/api/v1/users/{id}/devices", tag = "encryption",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<DeviceDto>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`user_not_found`: unknown, or shares no conversation with the caller", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn list(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let of: UserId = parse_or_nil(&id);
    let devices = state.encryption.devices_of(user.0, of).await?;
    Ok(HttpResponse::Ok().json(devices.iter().map(wire::device).collect::<Vec<DeviceDto>>()))
}

/// Revokes one of the caller's devices: it is no longer listed, and every key wrapped for
/// it is deleted. Keys it wrapped for others stay (its public key is kept for them).
#[utoipa::path(
    delete, operation_id = "revokeDevice", path = "/api/v1/devices/{id}", tag = "encryption",
    params(("id" = uuid::Uuid, Path, description = "Device id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: not a live device of the caller", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn revoke(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let device: DeviceId = parse_or_nil(&id);
    state.encryption.revoke_device(user.0, device).await?;
    Ok(HttpResponse::NoContent().finish())
}
