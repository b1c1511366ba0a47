//! How an actix `App` is assembled ([`AppContext`]) from the shared [`AppState`], for the
//! real server and for tests alike: the composition of `api`, `ws` and the web client.

use crate::api;
use crate::api::body::BodyLimit;
use crate::api::client_ip::ForwardedFor;
use crate::auth::TokenVerifier;
use crate::config::Settings;
use crate::error::ApiError;
use crate::origin::AllowedOrigins;
pub use crate::state::{AppState, Ports};
use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::web;

/// Everything an `App` needs, built once and cloned into each worker.
#[derive(Clone)]
pub struct AppContext {
    /// The services.
    pub state: web::Data<AppState>,
    /// Access token checks (REST extractor and WebSocket upgrade).
    pub verifier: web::Data<TokenVerifier>,
    /// `http.max_body_bytes`.
    pub body_limit: web::Data<BodyLimit>,
    /// `http.trust_forwarded_for` and `http.trusted_proxies`.
    pub forwarded_for: web::Data<ForwardedFor>,
    /// Cross-origin callers allowed besides the server's own origin.
    pub origins: AllowedOrigins,
    /// Presence, as app data of its own (the presence endpoint takes it alone).
    pub presence: web::Data<domain::services::PresenceService>,
    /// The web client's `Content-Security-Policy` (the blob store's origin for uploads).
    pub csp: web::Data<crate::web::ContentSecurityPolicy>,
}

impl AppContext {
    /// The context of a server with `settings`.
    pub fn new(state: AppState, verifier: TokenVerifier, settings: &Settings) -> Self {
        let forwarded_for = ForwardedFor {
            trusted: settings.http.trust_forwarded_for,
            proxies: settings.http.trusted_proxy_ranges(),
        };
        Self {
            presence: web::Data::new(state.realtime.presence.clone()),
            state: web::Data::new(state),
            verifier: web::Data::new(verifier),
            body_limit: web::Data::new(BodyLimit(settings.http.max_body_bytes)),
            origins: AllowedOrigins::new(&settings.http.allowed_origins, forwarded_for.clone()),
            forwarded_for: web::Data::new(forwarded_for),
            csp: web::Data::new(crate::web::ContentSecurityPolicy::allowing_uploads_to(
                &settings.blobs.upload_origins(),
            )),
        }
    }

    /// Registers the shared data, every route, and the JSON 404 for unknown routes.
    /// Use as `App::new().configure(|cfg| context.configure(cfg))`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.state.clone())
            .app_data(self.verifier.clone())
            .app_data(self.body_limit.clone())
            .app_data(self.forwarded_for.clone())
            .app_data(self.presence.clone())
            .app_data(self.csp.clone())
            .app_data(web::Data::new(self.origins.clone()))
            .app_data(web::Data::new(self.gate()))
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|err, _| ApiError::validation("query", err.to_string()).into()),
            )
            .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::NotFound.into()))
            .configure(api::routes)
            .configure(crate::ws::routes)
            .configure(crate::web::configure)
            .default_service(web::to(api::not_found));
    }

    /// What the WebSocket upgrade checks need of this context.
    pub(crate) fn gate(&self) -> crate::ws::Gate {
        crate::ws::Gate {
            state: self.state.clone(),
            verifier: self.verifier.clone(),
            origins: self.origins.clone(),
            forwarded_for: self.forwarded_for.get_ref().clone(),
        }
    }

    /// CORS for the allowed origins. Same-origin requests need none; other origins get no
    /// CORS headers, so browsers keep their answers from the calling page.
    pub fn cors(&self) -> Cors {
        let origins = self.origins.clone();
        Cors::default()
            .allowed_origin_fn(move |origin, head| {
                origin.to_str().is_ok_and(|origin| {
                    origins.allows(origin, head.headers(), head.peer_addr.map(|a| a.ip()))
                })
            })
            .allowed_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .expose_headers([header::RETRY_AFTER])
            .max_age(3600)
    }
}
