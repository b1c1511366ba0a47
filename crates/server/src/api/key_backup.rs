//! `/users/me/key_backup`: the caller's passphrase-protected key backup (end-to-end
//! encryption, issue 13), encrypted on the client; the server stores it verbatim.

use super::body::{BodyLimit, JsonBody};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use domain::encryption::KeyBackup;
use protocol::rest::KeyBackupDto;
use protocol::ErrorBody;

/// The body limit of `PUT /users/me/key_backup` alone (`http.max_body_bytes` elsewhere): a
/// 1 MiB ciphertext in base64url is 1.33 MiB of JSON. The handler authenticates before it
/// reads a byte of the body, so only authenticated callers may send that much.
pub const KEY_BACKUP_BODY_LIMIT: BodyLimit = BodyLimit(1536 * 1024);

fn dto(backup: &KeyBackup) -> KeyBackupDto {
    KeyBackupDto {
        version: backup.version,
        kdf: backup.kdf.clone(),
        iterations: backup.iterations,
        salt: backup.salt.clone(),
        iv: backup.iv.clone(),
        ct: backup.ct.clone(),
    }
}

/// Stores the caller's key backup, replacing theirs.
#[utoipa::path(
    put, operation_id = "putKeyBackup", path = "/api/v1/users/me/key_backup", tag = "encryption",
    request_body = KeyBackupDto,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: a body over 1.5 MiB", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a version other than 1, another kdf, fewer than 310000 iterations, or a salt, iv or ct of the wrong encoding or size", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn put(
    user: AuthUser,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<KeyBackupDto>,
) -> Result<HttpResponse, ApiError> {
    let backup = KeyBackup::parse(
        body.version,
        &body.kdf,
        body.iterations,
        &body.salt,
        &body.iv,
        &body.ct,
    )
    .map_err(ApiError::from)?;
    state.encryption.put_backup(user.0, &backup).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's key backup, as stored.
#[utoipa::path(
    get, operation_id = "getKeyBackup", path = "/api/v1/users/me/key_backup", tag = "encryption",
    security(("bearer" = [])),
    responses(
        (status = 200, body = KeyBackupDto),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no backup", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn get(user: AuthUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let backup = state.encryption.backup(user.0).await?;
    Ok(HttpResponse::Ok().json(dto(&backup)))
}

/// Deletes the caller's key backup (also when there is none).
#[utoipa::path(
    delete, operation_id = "deleteKeyBackup", path = "/api/v1/users/me/key_backup", tag = "encryption",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, or there was none"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn delete(user: AuthUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.encryption.delete_backup(user.0).await?;
    Ok(HttpResponse::NoContent().finish())
}
