//! In-process pub/sub: a topic index of subscribed nodes, delivery by direct sink calls.

use crate::lock;
use async_trait::async_trait;
use domain::realtime::{Payload, PubSub, PubSubSink, RealtimeError, Topic};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What connects the nodes of one process: for each topic, the nodes subscribed to it and
/// how many references each holds. One per server; tests share one among several nodes.
#[derive(Default)]
pub struct MemoryBus {
    topics: Mutex<HashMap<Topic, Vec<Subscriber>>>,
    next_node: AtomicU64,
}

struct Subscriber {
    node: u64,
    sink: Arc<dyn PubSubSink>,
    references: usize,
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// One node's pub/sub on a [`MemoryBus`]. Dropping it drops every subscription it holds.
pub struct MemoryPubSub {
    bus: Arc<MemoryBus>,
    node: u64,
    sink: Arc<dyn PubSubSink>,
}

impl MemoryPubSub {
    /// A node alone on its own bus: the single-node (embedded) mode.
    pub fn new(sink: Arc<dyn PubSubSink>) -> Self {
        Self::on_bus(MemoryBus::new(), sink)
    }

    /// A node on a shared `bus`, receiving what other nodes on it publish.
    pub fn on_bus(bus: Arc<MemoryBus>, sink: Arc<dyn PubSubSink>) -> Self {
        let node = bus.next_node.fetch_add(1, Ordering::Relaxed);
        Self { bus, node, sink }
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    async fn publish(&self, topic: Topic, payload: Payload) -> Result<(), RealtimeError> {
        // Collect under the lock, deliver outside it: a sink never runs while the bus is locked.
        let sinks: Vec<Arc<dyn PubSubSink>> = lock(&self.bus.topics)
            .get(&topic)
            .map(|subscribers| subscribers.iter().map(|s| s.sink.clone()).collect())
            .unwrap_or_default();
        for sink in sinks {
            sink.deliver(topic, payload.clone());
        }
        Ok(())
    }

    async fn subscribe(&self, topic: Topic) -> Result<(), RealtimeError> {
        let mut topics = lock(&self.bus.topics);
        let subscribers = topics.entry(topic).or_default();
        match subscribers.iter_mut().find(|s| s.node == self.node) {
            Some(mine) => mine.references += 1,
            None => subscribers.push(Subscriber {
                node: self.node,
                sink: self.sink.clone(),
                references: 1,
            }),
        }
        Ok(())
    }

    async fn unsubscribe(&self, topic: Topic) -> Result<(), RealtimeError> {
        let mut topics = lock(&self.bus.topics);
        if let Some(subscribers) = topics.get_mut(&topic) {
            if let Some(i) = subscribers.iter().position(|s| s.node == self.node) {
                subscribers[i].references -= 1;
                if subscribers[i].references == 0 {
                    subscribers.swap_remove(i);
                }
            }
            if subscribers.is_empty() {
                topics.remove(&topic);
            }
        }
        Ok(())
    }
}

impl Drop for MemoryPubSub {
    fn drop(&mut self) {
        lock(&self.bus.topics).retain(|_, subscribers| {
            subscribers.retain(|s| s.node != self.node);
            !subscribers.is_empty()
        });
    }
}
