//! What every request handler and WebSocket session shares ([`AppState`]: the domain
//! services, the guards and the node's real-time layer) and the storage ports it is built on
//! ([`Ports`]). Below `api`, `ws` and `app`: it imports none of them.

use crate::auth::{LoginRateLimiter, RegistrationRateLimiter, UploadRateLimiter};
use crate::config::Settings;
use domain::ports::{
    AccessTokenIssuer, AttachmentStore, BlobStore, Clock, ConversationStore, EncryptionStore,
    MessageStore, PasswordHasher, ReceiptStore, RefreshTokenStore, Storage, StoreHealth, UserStore,
};
use domain::services::{
    AccountService, AccountSettings, AttachmentService, ConversationService, EncryptionService,
    LifecycleService, MessageService,
};
use domain::UserId;
use protocol::rest::MessageDto;
use realtime::batcher::Faults;
use realtime::links::AttachmentLinks;
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
    /// End-to-end encryption: devices, wrapped keys, backups.
    pub encryption: Arc<dyn EncryptionStore>,
    /// Attachments' records.
    pub attachments: Arc<dyn AttachmentStore>,
    /// Attachments' bytes.
    pub blobs: Arc<dyn BlobStore>,
    /// Readiness.
    pub health: Arc<dyn StoreHealth>,
}

impl Ports {
    /// Every port served by one storage adapter, the bytes of attachments by `blobs`.
    pub fn from_storage(storage: Arc<dyn Storage>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            users: storage.clone(),
            tokens: storage.clone(),
            conversations: storage.clone(),
            messages: storage.clone(),
            receipts: storage.clone(),
            encryption: storage.clone(),
            attachments: storage.clone(),
            blobs,
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
    /// Edits, deletions and reactions.
    pub lifecycle: LifecycleService,
    /// End-to-end encryption: devices, keys, backups.
    pub encryption: EncryptionService,
    /// Attachments: upload, confirm, download, expiry.
    pub attachments: AttachmentService,
    /// Signs and checks attachment links.
    pub links: AttachmentLinks,
    /// `upload-url` throttling per user, shared by every worker.
    pub upload_limiter: UploadRateLimiter,
    /// How often expired attachments are looked for.
    pub attachments_sweep_interval: std::time::Duration,
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
    /// The handlers' unit tests build their state so; a node uses [`Self::with_realtime`].
    #[cfg(test)]
    pub fn new(
        ports: Ports,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn AccessTokenIssuer>,
        clock: Arc<dyn Clock>,
        settings: &Settings,
    ) -> Self {
        let parts = crate::backend::in_process();
        Self::with_realtime(
            ports,
            hasher,
            issuer,
            clock,
            settings,
            parts,
            b"unit-test-links",
        )
    }

    /// The state on the real-time adapters of `parts` (Redis in scale-out mode), attachment
    /// links signed with a key derived from `links_secret` (the JWT secret every node shares).
    pub fn with_realtime(
        ports: Ports,
        hasher: Arc<dyn PasswordHasher>,
        issuer: Arc<dyn AccessTokenIssuer>,
        clock: Arc<dyn Clock>,
        settings: &Settings,
        parts: Parts,
        links_secret: &[u8],
    ) -> Self {
        let mut limits = domain::Limits::from(&settings.limits);
        limits.max_attachments_per_message = settings.attachments.max_per_message;
        let attachments = AttachmentService::new(
            ports.attachments.clone(),
            ports.blobs.clone(),
            ports.conversations.clone(),
            ports.encryption.clone(),
            Arc::new(media::MediaProcessor),
            clock.clone(),
            settings.attachments.service(),
        );
        let refresh_ttl = chrono::Duration::seconds(
            i64::try_from(settings.auth.refresh_ttl.as_secs()).unwrap_or(i64::MAX / 1_000),
        );
        // Settings::load refuses zero; a hand-built zero falls back to one attempt.
        let per_minute = settings.auth.login_attempts_per_minute;
        let burst = settings.auth.login_burst;
        let lifecycle = LifecycleService::new(
            ports.messages.clone(),
            ports.conversations.clone(),
            ports.encryption.clone(),
            clock.clone(),
            limits,
        )
        .with_attachments(attachments.clone());
        let messages = MessageService::new(
            ports.messages,
            ports.conversations.clone(),
            ports.receipts.clone(),
            ports.encryption.clone(),
            ports.attachments.clone(),
            clock.clone(),
            limits,
        );
        let encryption =
            EncryptionService::new(ports.encryption, ports.conversations.clone(), clock.clone());
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
            lifecycle,
            encryption,
            attachments,
            links: AttachmentLinks::new(links_secret, settings.attachments.url_ttl),
            attachments_sweep_interval: settings.attachments.sweep_interval,
            upload_limiter: UploadRateLimiter::new(
                settings.attachments.uploads_per_minute,
                settings.attachments.upload_burst,
            ),
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

impl AppState {
    /// `dto` with its attachment links signed for `reader`.
    pub fn signed(&self, mut dto: MessageDto, reader: UserId) -> MessageDto {
        self.links
            .sign_message(&mut dto, reader, chrono::Utc::now());
        dto
    }

    /// The message of `view` as `reader` gets it: links signed for them.
    pub fn message_dto(&self, view: &domain::services::MessageView, reader: UserId) -> MessageDto {
        self.signed(realtime::wire::message(view), reader)
    }
}
