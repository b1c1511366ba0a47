//! What every request handler shares ([`AppState`]: the domain services) and how an actix
//! `App` is assembled from it ([`AppContext`]), for the real server and for tests alike.

use crate::api;
use crate::api::body::BodyLimit;
use crate::api::client_ip::ForwardedFor;
use crate::auth::{LoginRateLimiter, RegistrationRateLimiter, TokenVerifier};
use crate::config::Settings;
use crate::error::ApiError;
use crate::origin::AllowedOrigins;
use actix_cors::Cors;
use actix_web::http::{header, Method};
use actix_web::web;
use domain::ports::{
    AccessTokenIssuer, Clock, ConversationStore, MessageStore, PasswordHasher, ReceiptStore,
    RefreshTokenStore, Storage, StoreHealth, UserStore,
};
use domain::services::{AccountService, AccountSettings, ConversationService, MessageService};
use realtime::batcher::Faults;
use realtime::{Parts, Realtime, RealtimePorts};
use std::sync::Arc;

/// The storage ports, one `Arc` each (usually clones of one adapter).
#[derive(Clone)]
pub struct Ports {
    /// Accounts.
    pub users: Arc<dyn UserStore>,
    /// Refresh tokens.
    pub tokens: Arc<dyn RefreshTokenStore>,
    /// Conversations and membership.
    pub conversations: Arc<dyn ConversationStore>,
    /// Messages.
    pub messages: Arc<dyn MessageStore>,
    /// Receipt watermarks.
    pub receipts: Arc<dyn ReceiptStore>,
    /// Readiness.
    pub health: Arc<dyn StoreHealth>,
}

impl Ports {
    /// Every port served by one storage adapter.
    pub fn from_storage(storage: Arc<dyn Storage>) -> Self {
        Self {
            users: storage.clone(),
            tokens: storage.clone(),
            conversations: storage.clone(),
            messages: storage.clone(),
            receipts: storage.clone(),
            health: storage,
        }
    }
}

/// The domain services and shared guards every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// Register, login, tokens, users.
    pub accounts: AccountService,
    /// Conversations and membership.
    pub conversations: ConversationService,
    /// Messages and receipts.
    pub messages: MessageService,
    /// Login throttling, shared by every worker.
    pub login_limiter: LoginRateLimiter,
    /// Registration throttling per client IP, shared by every worker.
    pub registration_limiter: RegistrationRateLimiter,
    /// Storage readiness.
    pub health: Arc<dyn StoreHealth>,
    /// The node's real-time layer: fan-out, group commit, receipts, presence, typing.
    pub realtime: Arc<Realtime>,
}

impl AppState {
    /// Wires the services to `ports` with the limits and lifetimes of `settings`, on the
    /// in-process real-time adapters. Starts the real-time tasks on the current runtime.
    pub fn new(
        ports: Ports,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn AccessTokenIssuer>,
        clock: Arc<dyn Clock>,
        settings: &Settings,
    ) -> Self {
        let parts = crate::backend::in_process();
        Self::with_realtime(ports, hasher, issuer, clock, settings, parts)
    }

    /// [`AppState::new`] on the real-time adapters of `parts` (Redis in scale-out mode).
    pub fn with_realtime(
        ports: Ports,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn AccessTokenIssuer>,
        clock: Arc<dyn Clock>,
        settings: &Settings,
        parts: Parts,
    ) -> Self {
        let limits = domain::Limits::from(&settings.limits);
        let refresh_ttl = chrono::Duration::seconds(
            i64::try_from(settings.auth.refresh_ttl.as_secs()).unwrap_or(i64::MAX / 1_000),
        );
        // Settings::load refuses zero; a hand-built zero falls back to one attempt.
        let per_minute = settings.auth.login_attempts_per_minute;
        let burst = settings.auth.login_burst;
        let messages = MessageService::new(
            ports.messages,
            ports.conversations.clone(),
            ports.receipts.clone(),
            clock.clone(),
            limits,
        );
        let realtime = Arc::new(Realtime::start(
            parts,
            messages.clone(),
            RealtimePorts {
                conversations: ports.conversations.clone(),
                receipts: ports.receipts,
                users: ports.users.clone(),
            },
            clock.clone(),
            &settings.realtime,
            Faults {
                stall_after_commit: settings.testing.stall_after_commit,
            },
        ));
        Self {
            accounts: AccountService::new(
                ports.users.clone(),
                ports.tokens,
                hasher,
                issuer,
                clock.clone(),
                AccountSettings { refresh_ttl },
            ),
            conversations: ConversationService::new(
                ports.conversations.clone(),
                ports.users,
                clock.clone(),
                limits,
            ),
            messages,
            login_limiter: LoginRateLimiter::new(per_minute, burst),
            registration_limiter: RegistrationRateLimiter::new(
                settings.auth.registrations_per_minute,
                settings.auth.registration_burst,
            ),
            health: ports.health,
            realtime,
        }
    }
}

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
            .app_data(web::Data::new(self.origins.clone()))
            .app_data(web::Data::new(crate::ws::Gate::new(self)))
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
