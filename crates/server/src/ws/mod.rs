//! The WebSocket endpoints: `GET /ws` (every conversation of the user and the user's own
//! channel) and `GET /ws/chat/{conversation_id}` (seed 000's endpoint, one conversation).
//!
//! The upgrade checks, in order: `Origin` against the allow-list (403), upgrades per client IP
//! (429), then the socket is accepted and closed at once with 4001 for a bad token. Everything
//! after the upgrade is [`session`]'s. Tokens come from `?token=` or `Authorization: Bearer`
//! and are never logged (the access log names the path only).

pub mod frames;
pub mod session;

use crate::api::client_ip::ClientIp;
use crate::api::ids::parse_or_nil;
use crate::app::AppState;
use crate::auth::TokenVerifier;
use crate::error::ApiError;
use crate::origin::AllowedOrigins;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use domain::ConversationId;
use serde::Deserialize;
use session::Opening;

/// Registers `/ws` and `/ws/chat/{conversation_id}`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(all)))
        .service(web::resource("/ws/chat/{conversation_id}").route(web::get().to(chat)));
}

/// `GET /ws`.
pub async fn all(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    verifier: web::Data<TokenVerifier>,
    origins: web::Data<AllowedOrigins>,
    ip: ClientIp,
) -> HttpResponse {
    upgrade(&req, body, &state, &verifier, &origins, ip, None)
}

/// `GET /ws/chat/{conversation_id}`.
pub async fn chat(
    req: HttpRequest,
    body: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
    verifier: web::Data<TokenVerifier>,
    origins: web::Data<AllowedOrigins>,
    ip: ClientIp,
) -> HttpResponse {
    // A malformed id is a conversation nobody belongs to: 4003, like an unknown one.
    let conversation: ConversationId = parse_or_nil(&path);
    upgrade(
        &req,
        body,
        &state,
        &verifier,
        &origins,
        ip,
        Some(conversation),
    )
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn upgrade(
    req: &HttpRequest,
    body: web::Payload,
    state: &web::Data<AppState>,
    verifier: &TokenVerifier,
    origins: &AllowedOrigins,
    ip: ClientIp,
    scope: Option<ConversationId>,
) -> HttpResponse {
    let realtime = &state.realtime;
    if realtime.lifecycle.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(ApiError::Unavailable(domain::StorageError::msg("shutting down")).body());
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| origins.allows(origin, host));
        if !allowed {
            tracing::warn!("WebSocket upgrade refused: origin not allowed");
            return ApiError::Forbidden("this origin may not open WebSockets").error_response();
        }
    }
    if let Some(ip) = ip.0 {
        let limiter = &realtime.throttles.upgrades;
        if let Err(not_until) = limiter.check_key(&ip) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(limiter.clock().now());
            let retry_after_secs = crate::auth::RetryAfter(wait).as_secs_ceil();
            return ApiError::RateLimited { retry_after_secs }.error_response();
        }
    }
    let claims = token(req).and_then(|t| verifier.verify(&t).ok());
    let (response, ws, stream) = match actix_ws::handle(req, body) {
        Ok(parts) => parts,
        Err(e) => return e.error_response(),
    };
    let max = realtime.settings.max_frame_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    let opening = Opening {
        claims,
        scope,
        state: state.clone(),
        verifier: verifier.clone(),
    };
    // Sessions hold the request's payload, which lives on this worker's thread.
    actix_web::rt::spawn(session::run(opening, ws, stream));
    response
}

/// The access token of an upgrade: `?token=` (browsers cannot set headers on a WebSocket),
/// else `Authorization: Bearer`.
fn token(req: &HttpRequest) -> Option<String> {
    let from_query = web::Query::<TokenQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().token)
        .filter(|t| !t.is_empty());
    from_query.or_else(|| {
        req.headers()
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_owned())
    })
}
