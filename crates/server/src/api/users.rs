//! `/users`: the caller, search, and other users by id.

use super::ids::parse_or_nil;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpResponse};
use domain::UserId;
use protocol::rest::UserDto;
use protocol::ErrorBody;
use realtime::wire;
use serde::Deserialize;
use utoipa::IntoParams;

/// Results of a search when `limit` is not given (seed 000's example).
const DEFAULT_SEARCH_LIMIT: u32 = 10;

/// The caller's account.
#[utoipa::path(
    get, operation_id = "getMe", path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserDto),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn me(user: AuthUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let me = state.accounts.me(user.0).await?;
    Ok(HttpResponse::Ok().json(wire::user(&me)))
}

/// `GET /users/search` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Matches display names containing it or emails starting with it, case-insensitively.
    q: Option<String>,
    /// At most this many results, 1 to 50 (default 10).
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

/// Users to start a conversation with; never the caller; a blank query finds nobody.
#[utoipa::path(
    get, operation_id = "searchUsers", path = "/api/v1/users/search", tag = "users",
    params(SearchQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Vec<UserDto>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: `limit` is not a number", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn search(
    user: AuthUser,
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit =
        super::query_number(query.limit.as_deref(), "limit")?.unwrap_or(DEFAULT_SEARCH_LIMIT);
    let found = state
        .accounts
        .search(user.0, query.q.as_deref().unwrap_or_default(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(found.iter().map(wire::user).collect::<Vec<_>>()))
}

/// Another user.
#[utoipa::path(
    get, operation_id = "getUser", path = "/api/v1/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = UserDto),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`user_not_found` (also for an id that is not a UUID)", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all, fields(user_id = %user.0))]
pub async fn get(
    user: AuthUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: UserId = parse_or_nil(&id);
    let found = state
        .accounts
        .user(id)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    Ok(HttpResponse::Ok().json(wire::user(&found)))
}
