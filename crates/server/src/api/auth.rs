//! `/auth`: register, login, refresh, logout.

use super::body::JsonBody;
use super::client_ip::ClientIp;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use protocol::rest::{AuthResponse, LoginRequest, RefreshRequest, RegisterRequest};
use protocol::ErrorBody;
use realtime::wire;

/// Makes an account and logs it in. Throttled per client IP.
#[utoipa::path(
    post, operation_id = "register", path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account made and logged in", body = AuthResponse),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: bad email, short password, blank name", body = ErrorBody),
        (status = 429, description = "`rate_limited`, with `Retry-After`", body = ErrorBody),
        (status = 503, description = "`unavailable`; with `Retry-After` when password hashing is saturated", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn register(
    ClientIp(ip): ClientIp,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    // Before any validation or hashing: a refused attempt costs the server nothing.
    state
        .registration_limiter
        .check(ip)
        .map_err(ApiError::rate_limited)?;
    let session = state
        .accounts
        .register(&body.email, &body.password, &body.display_name)
        .await?;
    tracing::info!(user_id = %session.user.id, "account registered");
    Ok(HttpResponse::Created().json(wire::auth(&session)))
}

/// Checks a password and logs in. Throttled per client IP and per account.
#[utoipa::path(
    post, operation_id = "login", path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = AuthResponse),
        (status = 401, description = "`invalid_credentials`, whatever the cause", body = ErrorBody),
        (status = 429, description = "`rate_limited`, with `Retry-After`", body = ErrorBody),
        (status = 503, description = "`unavailable`; with `Retry-After` when password hashing is saturated", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn login(
    ClientIp(ip): ClientIp,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    state
        .login_limiter
        .check(ip, &body.email)
        .map_err(ApiError::rate_limited)?;
    let session = state.accounts.login(&body.email, &body.password).await?;
    tracing::info!(user_id = %session.user.id, "logged in");
    Ok(HttpResponse::Ok().json(wire::auth(&session)))
}

/// Exchanges a refresh token for a new pair. Each refresh token works once; presenting a
/// used one revokes every token of its login.
#[utoipa::path(
    post, operation_id = "refreshToken", path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = AuthResponse),
        (status = 401, description = "`invalid_refresh_token`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn refresh(
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let session = state.accounts.refresh(&body.refresh_token).await?;
    Ok(HttpResponse::Ok().json(wire::auth(&session)))
}

/// Ends the login the refresh token belongs to. Access tokens already issued stay valid
/// until they expire.
#[utoipa::path(
    post, operation_id = "logout", path = "/api/v1/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out (also when the token was unknown)"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn logout(
    user: AuthUser,
    state: web::Data<AppState>,
    JsonBody(body): JsonBody<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    state.accounts.logout(&body.refresh_token).await?;
    Ok(HttpResponse::NoContent().finish())
}
