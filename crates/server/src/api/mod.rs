//! The REST API under `/api/v1`, plus `/healthz` and `/readyz`. Every handler is
//! parse -> one domain call -> serialize; errors go through [`crate::error::ApiError`].

pub mod attachments;
pub mod auth;
pub mod body;
pub mod client_ip;
pub mod conversations;
pub mod devices;
pub mod health;
pub mod ids;
pub mod key_backup;
pub mod keys;
pub mod messages;
pub mod openapi;
pub mod presence;
pub mod users;

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse, Resource, ResponseError};
use std::str::FromStr;

/// Registers every REST route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .wrap(from_fn(count_unavailable))
            .service(resource("/auth/register").route(web::post().to(auth::register)))
            .service(resource("/auth/login").route(web::post().to(auth::login)))
            .service(resource("/auth/refresh").route(web::post().to(auth::refresh)))
            .service(resource("/auth/logout").route(web::post().to(auth::logout)))
            // `me` and `search` before `{id}`: routes match in registration order.
            .service(resource("/users/me").route(web::get().to(users::me)))
            .service(resource("/users/search").route(web::get().to(users::search)))
            .service(resource("/users/{id}").route(web::get().to(users::get)))
            .service(
                resource("/users/me/key_backup")
                    .app_data(web::Data::new(key_backup::KEY_BACKUP_BODY_LIMIT))
                    .route(web::put().to(key_backup::put))
                    .route(web::get().to(key_backup::get))
                    .route(web::delete().to(key_backup::delete)),
            )
            .service(resource("/users/{id}/devices").route(web::get().to(devices::list)))
            .service(resource("/devices").route(web::post().to(devices::register)))
            .service(resource("/devices/{id}").route(web::delete().to(devices::revoke)))
            .service(
                resource("/conversations")
                    .route(web::post().to(conversations::create))
                    .route(web::get().to(conversations::list)),
            )
            .service(
                resource("/conversations/{id}")
                    .route(web::get().to(conversations::get))
                    .route(web::patch().to(conversations::rename)),
            )
            .service(
                resource("/conversations/{id}/members")
                    .route(web::post().to(conversations::add_member)),
            )
            .service(
                resource("/conversations/{id}/members/{user_id}")
                    .route(web::delete().to(conversations::remove_member)),
            )
            .service(
                resource("/conversations/{id}/encryption")
                    .route(web::post().to(conversations::enable_encryption)),
            )
            // `missing` and `requests` before `{version}`: routes match in registration order.
            .service(resource("/conversations/{id}/keys").route(web::get().to(keys::list)))
            .service(
                resource("/conversations/{id}/keys/missing").route(web::get().to(keys::missing)),
            )
            .service(
                resource("/conversations/{id}/keys/requests").route(web::post().to(keys::request)),
            )
            .service(resource("/conversations/{id}/keys/{version}").route(web::put().to(keys::put)))
            .service(
                resource("/conversations/{id}/leave").route(web::post().to(conversations::leave)),
            )
            .service(
                resource("/conversations/{id}/messages")
                    .route(web::post().to(messages::send))
                    .route(web::get().to(messages::history)),
            )
            .service(
                resource("/conversations/{id}/messages/{message_id}")
                    .route(web::patch().to(messages::edit))
                    .route(web::delete().to(messages::delete)),
            )
            .service(
                resource("/conversations/{id}/messages/{message_id}/reactions/{emoji}")
                    .route(web::put().to(messages::add_reaction))
                    .route(web::delete().to(messages::remove_reaction)),
            )
            .service(
                resource("/conversations/{id}/read").route(web::post().to(messages::mark_read)),
            )
            .service(
                resource("/conversations/{id}/presence")
                    .route(web::get().to(presence::conversation_presence)),
            )
            .service(resource("/unread").route(web::get().to(conversations::unread)))
            .service(
                resource("/attachments/upload-url").route(web::post().to(attachments::upload_url)),
            )
            .service(resource("/attachments/{id}").route(web::get().to(attachments::get)))
            .service(
                resource("/attachments/{id}/confirm").route(web::post().to(attachments::confirm)),
            )
            .service(
                resource("/attachments/{id}/content").route(web::put().to(attachments::upload)),
            )
            .service(resource("/attachments/{id}/file").route(web::get().to(attachments::file)))
            .service(
                resource("/attachments/{id}/thumbnail")
                    .route(web::get().to(attachments::thumbnail)),
            )
            .service(resource("/openapi.json").route(web::get().to(openapi::document))),
    )
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(health::metrics)));
}

/// Middleware: a request answered 503 `unavailable` (a backing service failed) counts as a
/// storage error in the node's metrics.
async fn count_unavailable(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let response = next.call(req).await?;
    let unavailable = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .is_some_and(|e| matches!(e, ApiError::Unavailable(_)));
    if unavailable {
        if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
            state.realtime.metrics.storage_error();
        }
    }
    Ok(response)
}

/// A resource that answers a wrong method with the JSON 405 rather than an empty body.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Unknown routes: 404 `not_found`.
pub async fn not_found() -> HttpResponse {
    ApiError::NotFound.error_response()
}

/// Known route, wrong method: 405 `method_not_allowed`.
async fn method_not_allowed() -> HttpResponse {
    ApiError::MethodNotAllowed.error_response()
}

/// A number from the query string; absent or empty is `None`, anything else unparsable is
/// 422 naming `field`.
pub fn query_number<T: FromStr>(raw: Option<&str>, field: &str) -> Result<Option<T>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| ApiError::validation(field, "must be a whole number")),
    }
}

#[cfg(test)]
mod tests;
