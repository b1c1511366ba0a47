//! The WebSocket endpoints: `GET /ws` (every conversation of the user and the user's own
//! channel) and `GET /ws/chat/{conversation_id}` (seed 000's endpoint, one conversation).
//!
//! The upgrade checks ([`Gate::admit`]), in order: draining (503), `Origin` against the
//! allow-list (403), upgrades per client IP (429), then the socket is accepted and closed at
//! once with 4001 for a bad token. [`upgrade`] takes the connection from actix's HTTP/1
//! dispatcher; [`socket`] reads and writes its frames; everything after the handshake is
//! [`session`]'s. Tokens come from `?token=` or `Authorization: Bearer` and are never logged
//! (the access log names the path only).

pub mod frames;
pub mod session;
pub mod socket;
pub mod upgrade;

use crate::api::client_ip::{ClientIp, ForwardedFor};
use crate::api::ids::parse_or_nil;
use crate::auth::{Claims, TokenVerifier};
use crate::error::ApiError;
use crate::origin::AllowedOrigins;
use crate::state::AppState;
use actix_http::body::BoxBody;
use actix_http::{RequestHead, Response};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use domain::ConversationId;
use serde::Deserialize;
use std::net::SocketAddr;

/// Registers `/ws` and `/ws/chat/{conversation_id}` for requests that are not upgrades (an
/// upgrade never reaches the routes: actix hands it to [`upgrade`] with its connection). They
/// get the same checks and then the handshake's refusal (400).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(not_an_upgrade)))
        .service(web::resource("/ws/chat/{conversation_id}").route(web::get().to(not_an_upgrade)));
}

async fn not_an_upgrade(req: HttpRequest, gate: web::Data<Gate>) -> HttpResponse {
    let response = match gate.admit(req.head(), req.peer_addr()) {
        Err(refused) => refused,
        Ok(_) => match actix_http::ws::handshake(req.head()) {
            Err(e) => e.into(),
            // Only an upgrade passes the handshake, and upgrades do not come here.
            Ok(_) => ApiError::NotFound.error_response().into(),
        },
    };
    HttpResponse::from(response)
}

/// The endpoint an upgrade asks for: `Some(scope)`, where `scope` is the conversation of
/// `/ws/chat/{id}`; `None` for a path that has no WebSocket.
pub fn endpoint(path: &str) -> Option<Option<ConversationId>> {
    match path.strip_prefix("/ws") {
        Some("") => Some(None),
        Some(rest) => {
            let id = rest.strip_prefix("/chat/")?;
            // A malformed id is a conversation nobody belongs to: 4003, like an unknown one.
            (!id.is_empty() && !id.contains('/')).then(|| Some(parse_or_nil(id)))
        }
        None => None,
    }
}

/// What the upgrade checks need, shared by [`upgrade`] and the plain routes.
#[derive(Clone)]
pub struct Gate {
    /// The services (sessions get them).
    pub state: web::Data<AppState>,
    /// Checks the upgrade's token.
    pub verifier: web::Data<TokenVerifier>,
    /// Origins allowed besides the server's own.
    pub origins: AllowedOrigins,
    /// Whether the client IP comes from `X-Forwarded-For`.
    pub forwarded_for: ForwardedFor,
}

impl Gate {
    /// The checks before a socket is accepted, in order: draining (503), `Origin` against the
    /// allow-list (403), upgrades per client IP (429). Then the token's claims: `None` for a
    /// missing or bad token, which the session closes with 4001 once accepted.
    pub fn admit(
        &self,
        head: &RequestHead,
        peer: Option<SocketAddr>,
    ) -> Result<Option<Claims>, Response<BoxBody>> {
        let realtime = &self.state.realtime;
        if realtime.lifecycle.is_draining() {
            return Err(HttpResponse::ServiceUnavailable()
                .insert_header((header::RETRY_AFTER, "1"))
                .json(ApiError::Unavailable(domain::StorageError::msg("shutting down")).body())
                .into());
        }
        if let Some(origin) = head.headers().get(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|origin| {
                self.origins
                    .allows(origin, head.headers(), peer.map(|a| a.ip()))
            });
            if !allowed {
                // Any page can make a browser try: the client's doing, sampled like one.
                if realtime.client_errors.admit() {
                    tracing::info!(
                        origin = origin.to_str().unwrap_or("<not text>"),
                        "WebSocket upgrade refused: origin not allowed"
                    );
                }
                return Err(ApiError::Forbidden("this origin may not open WebSockets")
                    .error_response()
                    .into());
            }
        }
        if let Some(ip) = ClientIp::resolve(head.headers(), peer, &self.forwarded_for).0 {
            if let Err(wait) = realtime.throttles.check_upgrade(ip) {
                return Err(ApiError::rate_limited(wait).error_response().into());
            }
        }
        Ok(token(head).and_then(|t| self.verifier.verify(&t).ok()))
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The access token of an upgrade: `?token=` (browsers cannot set headers on a WebSocket),
/// else `Authorization: Bearer`.
fn token(head: &RequestHead) -> Option<String> {
    let from_query = web::Query::<TokenQuery>::from_query(head.uri.query().unwrap_or(""))
        .ok()
        .and_then(|q| q.into_inner().token)
        .filter(|t| !t.is_empty());
    from_query.or_else(|| {
        head.headers()
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoints_are_ws_and_ws_chat_with_one_segment() {
        assert_eq!(endpoint("/ws"), Some(None));
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            endpoint(&format!("/ws/chat/{id}")),
            Some(Some(ConversationId::from_uuid(id)))
        );
        assert_eq!(
            endpoint("/ws/chat/not-a-uuid"),
            Some(Some(parse_or_nil("not-a-uuid")))
        );
        for path in [
            "/",
            "/ws/",
            "/wss",
            "/ws/chat",
            "/ws/chat/",
            "/ws/chat/a/b",
            "/api/ws",
            "/healthz",
        ] {
            assert_eq!(endpoint(path), None, "{path}");
        }
    }
}
