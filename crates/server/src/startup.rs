//! [`Application`]: storage opened and migrated, listener bound, HTTP server ready to run.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use server::{config::Settings, startup::Application};
//! let app = Application::build(Settings::for_tests("/tmp/chat-test")).await?;
//! let base = format!("http://127.0.0.1:{}", app.port());
//! tokio::spawn(app.run_until_stopped());
//! # let _ = base; Ok(()) }
//! ```

use crate::app::{AppContext, AppState, Ports};
use crate::auth::jwt::MIN_SECRET_BYTES;
use crate::auth::password::InvalidArgon2Params;
use crate::auth::{signing_key, Argon2Hasher, JwtIssuer, TokenVerifier};
use crate::backend;
use crate::config::{ConfigError, DatabaseTarget, Secret, Settings};
use crate::storage;
use crate::telemetry;
use crate::ws::upgrade;
use actix_http::HttpService;
use actix_service::map_config;
use actix_web::dev::{AppConfig, Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::App;
use domain::ports::{Storage, SystemClock};
use domain::realtime::RealtimeError;
use domain::StorageError;
use realtime::presence_tasks::{spawn_presence_tasks, PresenceTasks};
use realtime::typing_tasks::{spawn_typing_sweeper, sweep_interval};
use realtime::{Parts, Realtime};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often idle login-throttle buckets are forgotten.
const LIMITER_CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// Why the server could not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Postgres mode without `auth.jwt_secret`.
    #[error(
        "auth.jwt_secret (CHAT_AUTH__JWT_SECRET) is required with PostgreSQL: \
         every node must sign tokens with the same key"
    )]
    MissingJwtSecret,
    /// A configured secret too short to be safe.
    #[error("auth.jwt_secret must be at least {MIN_SECRET_BYTES} bytes")]
    WeakJwtSecret,
    /// The generated secret could not be read or written.
    #[error("cannot read or create the JWT secret in {path}: {source}")]
    SecretFile {
        /// The data directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// The argon2 cost settings are out of range.
    #[error(transparent)]
    Argon2(#[from] InvalidArgon2Params),
    /// The store could not be opened or migrated.
    #[error("cannot open storage: {0}")]
    Storage(#[source] StorageError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The I/O failure.
        #[source]
        source: io::Error,
    },
    /// Logging could not be set up.
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    /// Redis (`redis.url`) could not be reached, or is not supported by this constructor.
    #[error("cannot use redis: {0}")]
    Redis(#[source] RealtimeError),
    /// The blob store (`blobs.url`) could not be opened.
    #[error("cannot open the blob store: {0}")]
    Blobs(#[source] adapters_blobs::OpenError),
}

/// A built server: bound, not yet serving.
pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    context: AppContext,
    shutdown: Shutdown,
}

/// Asks a running [`Application`] for a graceful shutdown, as SIGTERM does. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    requested: watch::Sender<bool>,
}

impl Shutdown {
    fn new() -> Self {
        Self {
            requested: watch::Sender::new(false),
        }
    }

    /// Starts the graceful shutdown: `/readyz` 503 at once, every socket closed with 1001
    /// after its in-flight sends are answered, the commit batcher drained, this node's
    /// presence removed, then the HTTP server stopped.
    pub fn trigger(&self) {
        self.requested.send_replace(true);
    }

    async fn requested(&self) {
        let mut requested = self.requested.subscribe();
        let _ = requested.wait_for(|r| *r).await;
    }
}

impl Application {
    /// Opens (and migrates) the configured store, then builds the server on it.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let target = settings.database_target()?;
        let secret = jwt_secret(&settings, &target)?;
        tracing::info!(
            storage = %storage::describe(&target),
            settings = ?settings,
            "starting chat-server"
        );
        let storage = storage::open(&target, &settings.database)
            .await
            .map_err(StartupError::Storage)?;
        let parts = match &settings.redis.url {
            Some(url) => backend::redis(url.expose(), &settings.redis)
                .await
                .map_err(StartupError::Redis)?,
            None => backend::in_process(),
        };
        Self::assemble(settings, storage, secret, parts)
    }

    /// Builds the server on a store opened by the caller (a test's own database, say), with
    /// in-process pub/sub, presence and typing. `auth.jwt_secret` must be set; `redis.url`
    /// must not (connecting to Redis needs [`Application::build`]).
    pub fn build_with_storage(
        settings: Settings,
        storage: Arc<dyn Storage>,
    ) -> Result<Self, StartupError> {
        let secret = settings
            .auth
            .jwt_secret
            .clone()
            .ok_or(StartupError::MissingJwtSecret)?;
        if settings.redis.url.is_some() {
            return Err(StartupError::Redis(RealtimeError::msg(
                "build_with_storage runs in process only; use Application::build with redis.url",
            )));
        }
        Self::assemble(settings, storage, secret, backend::in_process())
    }

    fn assemble(
        settings: Settings,
        storage: Arc<dyn Storage>,
        secret: Secret,
        parts: Parts,
    ) -> Result<Self, StartupError> {
        if secret.expose().len() < MIN_SECRET_BYTES {
            return Err(StartupError::WeakJwtSecret);
        }
        let auth = &settings.auth;
        let hasher = Argon2Hasher::new(
            auth.argon2_memory_kib,
            auth.argon2_iterations,
            auth.argon2_parallelism,
            auth.hash_slots(),
            auth.hash_wait_timeout,
        )?;
        let key = secret.expose().as_bytes();
        let issuer = JwtIssuer::new(key, &auth.issuer, &auth.audience, auth.access_ttl.as_secs());
        let verifier = TokenVerifier::new(key, &auth.issuer, &auth.audience)
            .with_iat_leeway(auth.iat_leeway.as_secs());
        let blobs = adapters_blobs::open(&blob_config(&settings), &settings.data.dir)
            .map_err(StartupError::Blobs)?;
        let state = AppState::with_realtime(
            Ports::from_storage(storage, blobs),
            Arc::new(hasher),
            Arc::new(issuer),
            Arc::new(SystemClock),
            &settings,
            parts,
            key,
        );
        let context = AppContext::new(state, verifier, &settings);

        let addr = settings.http.addr;
        // Bound here, before serving, so port 0 resolves now and `port()` can tell.
        let listener = bind(addr, settings.http.backlog)
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        let server = serve(&context, &settings, listener, local_addr)
            .map_err(|source| StartupError::Bind { addr, source })?;
        tracing::info!(%local_addr, node = %context.state.realtime.node, "listening");
        Ok(Self {
            local_addr,
            server,
            context,
            shutdown: Shutdown::new(),
        })
    }

    /// The port the server listens on (the one picked when `http.addr` had port 0).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle to stop the server at once (`handle.stop(true)` drains in-flight requests,
    /// but WebSockets only end when their clients go).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// A handle for a graceful shutdown (what SIGTERM and SIGINT do).
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The node's real-time layer (for tests that look at it).
    pub fn realtime(&self) -> &Realtime {
        &self.context.state.realtime
    }

    /// Serves until the server is stopped: SIGTERM or SIGINT, [`Shutdown::trigger`], or
    /// [`ServerHandle::stop`]. Renews this node's presence lease before the first session.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let realtime = self.context.state.realtime.clone();
        let presence =
            spawn_presence_tasks(realtime.presence.clone(), realtime.lifecycle.stopped())
                .await
                .map_err(|e| io::Error::other(format!("presence backend unavailable: {e}")))?;
        let _ = realtime.grace.set(presence.grace().clone());
        let typing_ttl = realtime.settings.typing_ttl;
        let sweeper = spawn_typing_sweeper(
            realtime.typing.clone(),
            sweep_interval(typing_ttl),
            realtime.lifecycle.stopped(),
        );
        let limiter = self.context.state.login_limiter.clone();
        let registrations = self.context.state.registration_limiter.clone();
        let uploads = self.context.state.upload_limiter.clone();
        let throttles = realtime.throttles.clone();
        let cleanup = tokio::spawn(async move {
            let mut every = tokio::time::interval(LIMITER_CLEANUP_EVERY);
            loop {
                every.tick().await;
                limiter.forget_idle();
                registrations.forget_idle();
                uploads.forget_idle();
                throttles.forget_idle();
            }
        });
        let expiry = spawn_attachment_sweeper(
            self.context.state.attachments.clone(),
            self.context.state.attachments_sweep_interval,
        );
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        let stopper = tokio::spawn(async move {
            tokio::select! {
                () = shutdown.requested() => {}
                () = termination_signal() => {}
            }
            graceful_shutdown(&realtime, presence).await;
            handle.stop(true).await;
        });
        let served = self.server.await;
        cleanup.abort();
        sweeper.abort();
        expiry.abort();
        if !stopper.is_finished() {
            stopper.abort();
        }
        served
    }
}

/// How long the HTTP server waits for open connections once told to stop.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for signals; stop the server another way");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        if tokio::signal::ctrl_c().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The graceful shutdown of a node, before its HTTP server stops: readiness 503 at once,
/// every session closed with 1001 once its in-flight sends are answered, the commit batcher
/// and the receipt flusher drained, the node's presence removed.
async fn graceful_shutdown(realtime: &Realtime, presence: PresenceTasks) {
    realtime.lifecycle.begin_draining();
    realtime.hub.close_all(crate::ws::session::CLOSE_GOING_AWAY);
    let grace = realtime.settings.close_grace;
    let deadline = tokio::time::Instant::now() + grace * 2 + Duration::from_secs(1);
    while realtime.hub.session_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    realtime.batcher.drain().await;
    realtime.receipts.drain(grace).await;
    realtime.lifecycle.stop_tasks();
    let presence_grace = realtime.settings.presence_grace;
    if tokio::time::timeout(presence_grace + grace, presence.stopped())
        .await
        .is_err()
    {
        tracing::warn!("presence cleanup did not finish in time");
    }
    tracing::info!("real-time layer stopped; stopping the HTTP server");
}

/// Deletes, every `interval`, the attachments never sent in time and those of deleted
/// messages (blobs, then records), in batches until none is left.
fn spawn_attachment_sweeper(
    attachments: domain::services::AttachmentService,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    const BATCH: u32 = 100;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            loop {
                match attachments.sweep(BATCH).await {
                    Ok(0) => break,
                    Ok(n) => {
                        tracing::info!(deleted = n, "expired attachments deleted");
                        if n < u64::from(BATCH) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "attachment sweep failed; retrying later");
                        break;
                    }
                }
            }
        }
    })
}

/// What `adapters-blobs` opens, from `[blobs]`.
fn blob_config(settings: &Settings) -> adapters_blobs::BlobConfig {
    let b = &settings.blobs;
    adapters_blobs::BlobConfig {
        url: b.url.clone(),
        endpoint: b.endpoint.clone(),
        region: b.region.clone(),
        access_key_id: b.access_key_id.clone(),
        secret_access_key: b.secret_access_key.as_ref().map(|s| s.expose().to_owned()),
        allow_http: b.allow_http,
    }
}

/// The configured secret; in embedded mode without one, the generated one.
fn jwt_secret(settings: &Settings, target: &DatabaseTarget) -> Result<Secret, StartupError> {
    match (&settings.auth.jwt_secret, target) {
        (Some(secret), _) => Ok(secret.clone()),
        (None, DatabaseTarget::Postgres(_)) => Err(StartupError::MissingJwtSecret),
        (None, DatabaseTarget::Sqlite(_)) => signing_key::load_or_create(&settings.data.dir)
            .map_err(|source| StartupError::SecretFile {
                path: settings.data.dir.clone(),
                source,
            }),
    }
}

/// The HTTP server: actix-web's app for requests, and the WebSocket upgrade service for
/// `Upgrade: websocket` requests, which takes the connection out of the HTTP dispatcher
/// ([`upgrade`]). What actix-web's `HttpServer` would do otherwise, with the upgrade hook it
/// does not offer.
fn serve(
    context: &AppContext,
    settings: &Settings,
    listener: TcpListener,
    local_addr: SocketAddr,
) -> io::Result<Server> {
    let mut builder = Server::build()
        // Signals are ours: sockets must get 1001 and sends finish before the server stops.
        .disable_signals()
        .shutdown_timeout(SERVER_STOP_TIMEOUT.as_secs())
        .max_concurrent_connections(settings.http.max_connections_per_worker.max(1));
    if settings.http.workers > 0 {
        builder = builder.workers(settings.http.workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let context = context.clone();
    builder
        .listen("chat-http", listener, move || {
            let app_context = context.clone();
            let app = App::new()
                .wrap(app_context.cors())
                .wrap(from_fn(telemetry::log_request))
                .configure(move |cfg| app_context.configure(cfg));
            let shutdown = shutdown.clone();
            HttpService::build()
                // Idle keep-alive connections close when the server stops.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                // After a WebSocket's close handshake the client waits for the server to close
                // the TCP connection (RFC 6455); so do HTTP clients refused with unread input:
                // no linger. The cost: a client still uploading a body the server refused
                // unread (413) may see a reset.
                .client_disconnect_timeout(Duration::ZERO)
                // Real-time frames are small and must leave at once: with Nagle's algorithm a
                // frame written while the previous one is unacknowledged waited for the
                // client's delayed ACK (40 ms), which was the p95 of send -> ack.
                .tcp_nodelay(true)
                .local_addr(local_addr)
                .upgrade(upgrade::service(context.gate()))
                // The app's config names the host for URL generation, which nothing uses.
                .finish(map_config(app, |()| AppConfig::default()))
                .tcp()
        })
        .map(|builder| builder.run())
}

/// Binds the listener with the configured backlog (the standard library's `bind` always
/// asks for 128, which a reconnect storm of thousands of clients overflows).
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {

    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn postgres_without_a_jwt_secret_refuses_to_start() {
        let mut settings = Settings::default();
        settings.database.url = Some(Secret::new("postgres://db/chat"));
        let target = settings.database_target().unwrap();
        let err = jwt_secret(&settings, &target).unwrap_err();
        assert!(matches!(err, StartupError::MissingJwtSecret));
        assert!(err.to_string().contains("CHAT_AUTH__JWT_SECRET"));
    }

    #[test]
    fn embedded_mode_without_a_jwt_secret_generates_one_in_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data: crate::config::DataSettings {
                dir: dir.path().to_owned(),
            },
            ..Settings::default()
        };
        let target = settings.database_target().unwrap();
        let first = jwt_secret(&settings, &target).unwrap();
        assert_eq!(jwt_secret(&settings, &target).unwrap(), first);
        assert!(dir.path().join(signing_key::SECRET_FILE).is_file());
    }

    #[test]
    fn a_configured_secret_wins_over_the_generated_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::for_tests(dir.path());
        settings.auth.jwt_secret = Some(Secret::new("x".repeat(40)));
        let target = settings.database_target().unwrap();
        assert_eq!(
            jwt_secret(&settings, &target).unwrap().expose(),
            "x".repeat(40)
        );
        assert!(!dir.path().join(signing_key::SECRET_FILE).exists());
    }

    #[test]
    fn the_listener_gets_the_configured_backlog() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 1234).unwrap();
        let port = listener.local_addr().unwrap().port();
        // `ss` shows a listening socket's backlog as its Send-Q.
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let send_q: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(send_q.get(2).copied(), Some("1234"), "ss said: {text}");
    }
}
