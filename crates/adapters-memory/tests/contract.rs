//! The in-process adapters pass every real-time contract suite. Nodes are handles on one
//! shared bus, presence and typing state.

use adapters_memory::{MemoryBus, MemoryPresence, MemoryPubSub, MemoryTyping};
use async_trait::async_trait;
use domain::realtime::{PresenceStore, PubSub, PubSubSink, TypingStore};
use realtime_contract::Backend;
use std::sync::Arc;

struct MemoryBackend {
    bus: Arc<MemoryBus>,
    presence: MemoryPresence,
    typing: MemoryTyping,
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn pubsub(&self, sink: Arc<dyn PubSubSink>) -> Arc<dyn PubSub> {
        Arc::new(MemoryPubSub::on_bus(self.bus.clone(), sink))
    }
    async fn presence(&self) -> Arc<dyn PresenceStore> {
        Arc::new(self.presence.clone())
    }
    async fn typing(&self) -> Arc<dyn TypingStore> {
        Arc::new(self.typing.clone())
    }
}

async fn fresh_backend() -> MemoryBackend {
    MemoryBackend {
        bus: MemoryBus::new(),
        presence: MemoryPresence::new(),
        typing: MemoryTyping::new(),
    }
}

realtime_contract::realtime_contract_tests!(fresh_backend);
