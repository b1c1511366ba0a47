//! What an adapter provides to run the suites, and the sink that records deliveries.

use async_trait::async_trait;
use domain::realtime::{NodeId, Payload, PresenceStore, PubSub, PubSubSink, Topic, TypingStore};
use domain::{ConversationId, UserId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a case waits for something that must arrive before it fails.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// One shared real-time backend, seen from as many nodes as a case needs.
///
/// Every call makes a new node's handle on the **same** state: what one handle publishes or
/// registers, the others see. A node is not a [`NodeId`]: presence cases name their nodes
/// themselves, and one handle may act for several of them.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A new node's pub/sub, delivering what its subscriptions bring to `sink`.
    async fn pubsub(&self, sink: Arc<dyn PubSubSink>) -> Arc<dyn PubSub>;
    /// A new node's handle on the shared presence state.
    async fn presence(&self) -> Arc<dyn PresenceStore>;
    /// A new node's handle on the shared typing leases.
    async fn typing(&self) -> Arc<dyn TypingStore>;
}

/// The backend a case runs on.
pub type SharedBackend = Arc<dyn Backend>;

/// A sink that records every delivery, for cases to inspect.
#[derive(Default)]
pub struct RecordingSink {
    events: Mutex<Vec<(Topic, Payload)>>,
    resubscribed: AtomicUsize,
}

impl RecordingSink {
    /// An empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every delivery so far, in arrival order.
    pub fn events(&self) -> Vec<(Topic, String)> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(t, p)| (*t, p.to_string()))
            .collect()
    }

    /// The payloads delivered on `topic`, in arrival order.
    pub fn payloads_on(&self, topic: Topic) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == topic)
            .map(|(_, p)| p.to_string())
            .collect()
    }

    /// How many times the adapter reported a resubscription.
    pub fn resubscribed_count(&self) -> usize {
        self.resubscribed.load(Ordering::SeqCst)
    }

    /// Waits until `payload` arrived on `topic`; panics after [`PATIENCE`].
    pub async fn wait_for(&self, topic: Topic, payload: &str) {
        let arrived = self
            .wait_until(|events| events.iter().any(|(t, p)| *t == topic && &**p == payload))
            .await;
        assert!(
            arrived,
            "{payload:?} on {topic} did not arrive within {PATIENCE:?}; got {:?}",
            self.events()
        );
    }

    /// Waits until `count` events arrived on `topic`; panics after [`PATIENCE`].
    pub async fn wait_for_count(&self, topic: Topic, count: usize) {
        let arrived = self
            .wait_until(|events| events.iter().filter(|(t, _)| *t == topic).count() >= count)
            .await;
        assert!(
            arrived,
            "{count} events on {topic} did not arrive within {PATIENCE:?}; got {}",
            self.payloads_on(topic).len()
        );
    }

    /// Waits until the adapter reported `count` resubscriptions; panics after `patience`.
    pub async fn wait_for_resubscribed(&self, count: usize, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        while self.resubscribed_count() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "resubscribed() was called {} times, not {count}, within {patience:?}",
                self.resubscribed_count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_until(&self, done: impl Fn(&[(Topic, Payload)]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if done(&self.events.lock().unwrap()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl PubSubSink for RecordingSink {
    fn deliver(&self, topic: Topic, payload: Payload) {
        self.events.lock().unwrap().push((topic, payload));
    }
    fn resubscribed(&self) {
        self.resubscribed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A new node on `backend` with its own recording sink.
pub async fn node(backend: &SharedBackend) -> (Arc<dyn PubSub>, Arc<RecordingSink>) {
    let sink = RecordingSink::new();
    let pubsub = backend.pubsub(sink.clone()).await;
    (pubsub, sink)
}

/// A fresh conversation topic.
pub fn conversation_topic() -> Topic {
    Topic::Conversation(ConversationId::new())
}

/// A fresh user topic.
pub fn user_topic() -> Topic {
    Topic::User(UserId::new())
}

/// A fresh node identity.
pub fn node_id() -> NodeId {
    NodeId(uuid::Uuid::new_v4().to_string())
}

/// A payload from a string.
pub fn payload(text: &str) -> Payload {
    Arc::from(text)
}
