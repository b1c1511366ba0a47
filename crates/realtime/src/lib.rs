//! The real-time engine of a node: fan-out ([`hub::Hub`]) and who of a topic's sessions gets
//! which event (`routing`), group commit ([`batcher::CommitBatcher`]), receipt coalescing
//! ([`receipts::ReceiptBatcher`]), the event envelope ([`envelope`]), presence and typing
//! timers, and the node's [`Realtime`] bundle that the server's WebSocket sessions and REST
//! handlers share. Domain values become wire frames in [`wire`]; the `[realtime]` settings
//! are [`settings::RealtimeSettings`].
//!
//! The engine runs on the domain's ports only: the server builds the adapters (in process
//! with `adapters-memory`, or Redis with `adapters-redis`) and hands them over as a
//! [`Backend`], with a [`Readiness`] check when the backend has one. It depends on no web
//! framework and no adapter crate.

#![warn(missing_docs)]

pub mod batcher;
pub mod changes;
mod changes_feed;
pub mod client_errors;
pub mod envelope;
pub mod hub;
pub mod links;
pub mod metrics;
pub mod presence_tasks;
mod publisher;
pub mod receipts;
mod routing;
pub mod send;
pub mod session;
pub mod settings;
pub mod typing_tasks;
pub mod wire;

use async_trait::async_trait;
use batcher::{CommitBatcher, Faults};
use client_errors::ClientErrorLog;
use domain::conversation::{ConversationDetails, Participant};
use domain::encryption::EncryptionState;
use domain::ports::{Clock, ConversationStore, ReceiptStore, UserStore, WatermarkUpdate};
use domain::realtime::{
    conversation_change_topics, ConversationChange, Event, EventPublisher, NodeId, PresenceStore,
    PubSub, RealtimeError, Topic, TypingStore,
};
use domain::services::{
    MessageService, PresenceService, PresenceSettings, TypingService, TypingSettings,
};
use domain::{StorageError, UserId};
use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use hub::Hub;
use metrics::{Gauges, Metrics};
use presence_tasks::OfflineGrace;
use publisher::PubSubPublisher;
use receipts::{ReceiptBatcher, ReceiptPorts};
use settings::RealtimeSettings;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// Whether the real-time backend can serve now, for `/readyz`. A backend with nothing to
/// check (the in-process adapters) has none; the server implements it for Redis (a `PING`
/// on its pool). A trait of the engine rather than a method of the domain's ports: only
/// readiness asks it, and one check covers the three ports of a backend that share a
/// connection pool.
#[async_trait]
pub trait Readiness: Send + Sync + 'static {
    /// `Ok` when the backend answers.
    async fn check(&self) -> Result<(), RealtimeError>;
}

/// The adapters of the real-time ports a node runs on.
pub struct Backend {
    /// Cross-node pub/sub, delivering into the node's hub.
    pub pubsub: Arc<dyn PubSub>,
    /// Session counts under node leases.
    pub presence: Arc<dyn PresenceStore>,
    /// Typing leases.
    pub typing: Arc<dyn TypingStore>,
    /// What `/readyz` asks besides storage (Redis in scale-out mode); `None`: always ready.
    pub readiness: Option<Arc<dyn Readiness>>,
}

/// What a node's real-time layer is built from: its figures, its hub, its adapters. The
/// server makes the metrics and the hub first, then the adapters on the hub (the pub/sub
/// adapter delivers into it).
pub struct Parts {
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The node's fan-out (the pub/sub sink).
    pub hub: Arc<Hub>,
    /// The adapters.
    pub backend: Backend,
}

/// The storage a node's real-time layer reads and writes besides the services.
#[derive(Clone)]
pub struct RealtimePorts {
    /// Conversations (details to announce after a change).
    pub conversations: Arc<dyn ConversationStore>,
    /// Receipt watermarks (batched writes).
    pub receipts: Arc<dyn ReceiptStore>,
    /// Accounts (`last_seen_at`).
    pub users: Arc<dyn UserStore>,
}

/// Whether the node is shutting down, for readiness and new upgrades.
#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    stop: watch::Sender<bool>,
}

impl Lifecycle {
    fn new() -> Self {
        Self {
            draining: AtomicBool::new(false),
            stop: watch::Sender::new(false),
        }
    }

    /// From now on `/readyz` answers 503 and upgrades are refused.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stops the background tasks (presence lease, typing sweeper).
    pub fn stop_tasks(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`Self::stop_tasks`] was called.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }
}

/// Per-user and per-IP throttles of the real-time layer.
pub struct Throttles {
    /// Sends per user (WebSocket and REST).
    pub messages: DefaultKeyedRateLimiter<UserId>,
    /// Edits, deletions and reactions per user (WebSocket and REST).
    pub changes: DefaultKeyedRateLimiter<UserId>,
    /// WebSocket upgrades per client IP.
    pub upgrades: DefaultKeyedRateLimiter<IpAddr>,
    /// The clock sessions' own limiters share. Creating a clock probes the CPU (CPUID),
    /// which traps to the hypervisor on a virtual machine: a clock per session limiter was
    /// ~5% of the server's CPU in a reconnect storm.
    clock: DefaultClock,
}

impl Throttles {
    fn new(settings: &RealtimeSettings) -> Self {
        let quota =
            |rate: NonZeroU32, burst: NonZeroU32| Quota::per_second(rate).allow_burst(burst);
        let clock = DefaultClock::default();
        Self {
            messages: DefaultKeyedRateLimiter::keyed(quota(
                settings.messages_per_second,
                settings.message_burst,
            )),
            changes: DefaultKeyedRateLimiter::keyed(quota(
                settings.changes_per_second,
                settings.change_burst,
            )),
            upgrades: DefaultKeyedRateLimiter::keyed(quota(
                settings.upgrades_per_second,
                settings.upgrade_burst,
            )),
            clock,
        }
    }

    /// Charges one message to `user`'s send limit; `Err`: how long until the next is allowed.
    pub fn check_message(&self, user: UserId) -> Result<(), send::RetryAfter> {
        Self::check(&self.messages, &user)
    }

    /// Charges one edit, deletion or reaction to `user`'s limit; `Err`: how long to wait.
    pub fn check_change(&self, user: UserId) -> Result<(), send::RetryAfter> {
        Self::check(&self.changes, &user)
    }

    /// Charges one WebSocket upgrade to `ip`'s limit; `Err`: how long until the next.
    pub fn check_upgrade(&self, ip: IpAddr) -> Result<(), send::RetryAfter> {
        Self::check(&self.upgrades, &ip)
    }

    fn check<K: Clone + Eq + std::hash::Hash>(
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), send::RetryAfter> {
        use governor::clock::Clock;
        limiter
            .check_key(key)
            .map_err(|not_until| send::RetryAfter(not_until.wait_time_from(limiter.clock().now())))
    }

    /// A limiter of its own (one session's typing events) on the shared clock.
    pub fn direct(&self, quota: Quota) -> DefaultDirectRateLimiter {
        RateLimiter::direct_with_clock(quota, self.clock.clone())
    }

    /// Forgets buckets that are full again, so the maps stay small.
    pub fn forget_idle(&self) {
        self.messages.retain_recent();
        self.messages.shrink_to_fit();
        self.changes.retain_recent();
        self.changes.shrink_to_fit();
        self.upgrades.retain_recent();
        self.upgrades.shrink_to_fit();
    }
}

/// Everything of the real-time layer a session or a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    /// This process.
    pub node: NodeId,
    /// `[realtime]`.
    pub settings: RealtimeSettings,
    /// Local fan-out.
    pub hub: Arc<Hub>,
    /// Cross-node pub/sub (sessions hold its subscriptions).
    pub pubsub: Arc<dyn PubSub>,
    /// Publishes domain events.
    pub(crate) events: Arc<dyn EventPublisher>,
    /// Group commit of every send.
    pub batcher: CommitBatcher,
    /// Coalesced receipt watermarks.
    pub receipts: ReceiptBatcher,
    /// Presence of users.
    pub presence: PresenceService,
    /// Typing leases.
    pub typing: TypingService,
    /// Offline checks after the grace period (set once the presence tasks run).
    pub grace: Arc<OnceLock<OfflineGrace>>,
    /// The node's figures.
    pub metrics: Arc<Metrics>,
    /// Rate limits.
    pub throttles: Arc<Throttles>,
    /// The sampled log of clients' protocol errors.
    pub client_errors: Arc<ClientErrorLog>,
    /// Shutdown state.
    pub lifecycle: Arc<Lifecycle>,
    /// Storage the layer reads besides the services.
    pub ports: RealtimePorts,
    messages: MessageService,
    readiness: Option<Arc<dyn Readiness>>,
}

impl Realtime {
    /// Starts the node's real-time layer (its batcher and receipt tasks) on `parts`, with
    /// `faults` injected into the batcher (`[testing]`; none in production).
    pub fn start(
        parts: Parts,
        messages: MessageService,
        ports: RealtimePorts,
        clock: Arc<dyn Clock>,
        settings: &RealtimeSettings,
        faults: Faults,
    ) -> Self {
        let node = NodeId(uuid::Uuid::new_v4().to_string());
        let Parts {
            metrics,
            hub,
            backend,
        } = parts;
        let events: Arc<dyn EventPublisher> = Arc::new(PubSubPublisher::new(
            backend.pubsub.clone(),
            metrics.clone(),
        ));
        let batcher = CommitBatcher::start_with_faults(
            messages.clone(),
            events.clone(),
            settings.commit_max_batch.get(),
            metrics.clone(),
            faults,
        );
        let receipts = ReceiptBatcher::start(
            ReceiptPorts {
                receipts: Arc::new(CountedReceipts {
                    inner: ports.receipts.clone(),
                    metrics: metrics.clone(),
                }),
                conversations: ports.conversations.clone(),
                publisher: events.clone(),
            },
            settings.receipt_max_batch.get(),
            settings.receipt_linger,
            metrics.clone(),
        );
        let presence = PresenceService::new(
            backend.presence,
            events.clone(),
            ports.conversations.clone(),
            ports.users.clone(),
            clock.clone(),
            PresenceSettings {
                node: node.clone(),
                max_sessions_per_user: settings.max_sessions_per_user.get(),
                offline_grace: settings.presence_grace,
                lease_ttl: settings.presence_lease_ttl,
            },
        );
        let typing = TypingService::new(
            backend.typing,
            events.clone(),
            clock,
            TypingSettings {
                lease_ttl: settings.typing_ttl,
                forward_throttle: settings.typing_forward_throttle,
            },
        );
        Self {
            node,
            settings: settings.clone(),
            hub,
            pubsub: backend.pubsub,
            events,
            batcher,
            receipts,
            presence,
            typing,
            grace: Arc::new(OnceLock::new()),
            metrics,
            throttles: Arc::new(Throttles::new(settings)),
            client_errors: Arc::new(ClientErrorLog::new(settings.protocol_error_logs_per_minute)),
            lifecycle: Arc::new(Lifecycle::new()),
            ports,
            messages,
            readiness: backend.readiness,
        }
    }

    /// Publishes `event` on `topic`; a failure is logged, not returned: the change it
    /// announces is committed, and clients catch up from storage.
    pub async fn announce(&self, topic: Topic, event: Event) {
        if let Err(e) = self.events.publish(topic, event).await {
            tracing::warn!(error = %e, %topic, "an event could not be published");
        }
    }

    /// Announces a conversation change on the topics
    /// [`domain::realtime::conversation_change_topics`] selects: `created` on every member's
    /// own channel, a member added or removed on the conversation and on that member's
    /// channel, a rename on the conversation.
    pub async fn announce_conversation(
        &self,
        change: ConversationChange,
        details: ConversationDetails,
        user: Option<UserId>,
        encryption: Option<EncryptionState>,
    ) {
        let topics = conversation_change_topics(change, &details, user);
        let event = Event::Conversation {
            change,
            conversation: details,
            user_id: user,
            encryption,
        };
        for topic in topics {
            self.announce(topic, event.clone()).await;
        }
    }

    /// Charges one key request to `user`'s limit of edits, deletions and reactions (a key
    /// request makes every member's clients work); `Err`: how long to wait.
    pub fn charge_key_request(&self, user: UserId) -> Result<(), send::RetryAfter> {
        self.throttles.check_change(user)
    }

    /// Announces a key request or share on the conversation's topic: every session of every
    /// member hears it, on every node.
    pub async fn announce_key(&self, conversation: domain::ConversationId, event: Event) {
        self.announce(Topic::Conversation(conversation), event)
            .await;
    }

    /// The conversation as it is now (after a change), for announcing it.
    pub async fn current(&self, id: domain::ConversationId) -> Option<ConversationDetails> {
        match self.ports.conversations.conversation(id).await {
            Ok(details) => details,
            Err(e) => {
                self.metrics.storage_error();
                tracing::warn!(error = %e, "cannot read a changed conversation to announce it");
                None
            }
        }
    }

    /// Whether the real-time backend answers (its [`Readiness`] check; always in process).
    pub async fn ready(&self) -> Result<(), RealtimeError> {
        match &self.readiness {
            Some(readiness) => readiness.check().await,
            None => Ok(()),
        }
    }

    /// The Prometheus exposition of the node's figures.
    pub fn render_metrics(&self) -> String {
        let (outbound_queue_depth, outbound_queue_depth_max) = self.hub.outbound_queue_depth();
        self.metrics.render(Gauges {
            commit_queue_depth: self.batcher.queue_depth(),
            receipt_queue_depth: self.receipts.queue_depth(),
            outbound_queue_depth,
            outbound_queue_depth_max,
        })
    }
}

/// The receipt store as the receipt batcher sees it: a failed flush is counted as a storage
/// error (the batcher logs it and retries).
struct CountedReceipts {
    inner: Arc<dyn ReceiptStore>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl ReceiptStore for CountedReceipts {
    async fn advance_watermarks(
        &self,
        updates: &[WatermarkUpdate],
    ) -> Result<Vec<Option<Participant>>, StorageError> {
        let result = self.inner.advance_watermarks(updates).await;
        if result.is_err() {
            self.metrics.storage_error();
        }
        result
    }
}
