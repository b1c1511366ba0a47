//! Cross-node pub/sub on Redis: publishing through the pool, receiving on one dedicated
//! connection per node owned by a background task.
//!
//! The task owns the connection and the reference counts. Callers send it commands; it
//! applies every queued command at once, then brings the connection's subscriptions to
//! exactly the topics with a live reference (one SUBSCRIBE and one UNSUBSCRIBE for the whole
//! batch), and answers once Redis confirmed. A topic that loses its last reference stays
//! subscribed for [`PubSubTimings::unsubscribe_linger`] first, so sessions that reconnect
//! (a reconnect storm: every session of the node at once) find their topics still there
//! instead of costing an UNSUBSCRIBE and a SUBSCRIBE each; nothing is delivered for it
//! while it has no reference. When the connection drops it reconnects with backoff,
//! resubscribes everything still referenced, and tells the sink.

use crate::keys::Keys;
use crate::Pool;
use async_trait::async_trait;
use domain::realtime::{Payload, PubSub, PubSubSink, RealtimeError, Topic};
use futures_util::StreamExt;
use redis::aio::{PubSubSink as RedisSink, PubSubStream};
use redis::{self, Msg, RedisError};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

/// Timings of the subscription connection. Defaults suit production; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct PubSubTimings {
    /// How often an idle connection is pinged, so a silently dead one is noticed.
    pub ping_interval: Duration,
    /// How long connecting, a ping or a (un)subscribe confirmation may take before the
    /// connection is considered lost.
    pub response_timeout: Duration,
    /// The first wait between reconnection attempts (the first attempt is immediate).
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts; the wait doubles up to it.
    pub reconnect_max: Duration,
    /// How long a topic stays subscribed after its last reference is gone (zero: it is
    /// unsubscribed at once).
    pub unsubscribe_linger: Duration,
}

impl Default for PubSubTimings {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(5),
            response_timeout: Duration::from_secs(2),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            unsubscribe_linger: Duration::from_secs(10),
        }
    }
}

/// One node's pub/sub. Dropping it closes the subscription connection.
pub struct RedisPubSub {
    pool: Pool,
    keys: Keys,
    commands: mpsc::UnboundedSender<Command>,
}

enum Command {
    Subscribe(Topic, oneshot::Sender<Result<(), RealtimeError>>),
    Unsubscribe(Topic, oneshot::Sender<()>),
}

impl RedisPubSub {
    /// Opens this node's subscription connection to `url` and starts its task (on the
    /// current tokio runtime); publishes go through `pool`. Every channel is named
    /// `{key_prefix}ch:{topic}`. Fails when Redis cannot be reached now.
    pub async fn connect(
        url: &str,
        pool: Pool,
        key_prefix: &str,
        sink: Arc<dyn PubSubSink>,
    ) -> Result<Self, RealtimeError> {
        Self::connect_with(url, pool, key_prefix, sink, PubSubTimings::default()).await
    }

    /// [`RedisPubSub::connect`] with explicit timings.
    pub async fn connect_with(
        url: &str,
        pool: Pool,
        key_prefix: &str,
        sink: Arc<dyn PubSubSink>,
        timings: PubSubTimings,
    ) -> Result<Self, RealtimeError> {
        let client = redis::Client::open(url).map_err(RealtimeError::new)?;
        let keys = Keys::new(key_prefix);
        let (commands, queue) = mpsc::unbounded_channel();
        let mut receiver = Receiver {
            client,
            keys: keys.clone(),
            sink,
            queue,
            references: HashMap::new(),
            released: HashMap::new(),
            timings,
        };
        let connection = receiver.open().await.map_err(RealtimeError::new)?;
        tokio::spawn(receiver.run(connection));
        Ok(Self {
            pool,
            keys,
            commands,
        })
    }

    fn send(&self, command: Command) -> Result<(), RealtimeError> {
        self.commands
            .send(command)
            .map_err(|_| RealtimeError::msg("the pub/sub task has stopped"))
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, topic: Topic, payload: Payload) -> Result<(), RealtimeError> {
        let mut connection = self.pool.connection();
        redis::cmd("PUBLISH")
            .arg(self.keys.channel(topic))
            .arg(payload.as_bytes())
            .exec_async(&mut connection)
            .await
            .map_err(RealtimeError::new)
    }

    /// One pipeline on one connection: one round trip for the lot, in order.
    async fn publish_all(&self, items: Vec<(Topic, Payload)>) -> Result<(), RealtimeError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (topic, payload) in &items {
            pipe.cmd("PUBLISH")
                .arg(self.keys.channel(*topic))
                .arg(payload.as_bytes())
                .ignore();
        }
        let mut connection = self.pool.connection();
        pipe.exec_async(&mut connection)
            .await
            .map_err(RealtimeError::new)
    }

    async fn subscribe(&self, topic: Topic) -> Result<(), RealtimeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Subscribe(topic, reply))?;
        answer
            .await
            .map_err(|_| RealtimeError::msg("the pub/sub task has stopped"))?
    }

    async fn unsubscribe(&self, topic: Topic) -> Result<(), RealtimeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Unsubscribe(topic, reply))?;
        answer
            .await
            .map_err(|_| RealtimeError::msg("the pub/sub task has stopped"))
    }
}

/// Why serving a connection ended.
enum End {
    /// Every handle is gone: stop.
    Closed,
    /// The connection failed: reconnect.
    Lost(RedisError),
}

/// The background task's state: the connection's owner.
struct Receiver {
    client: redis::Client,
    keys: Keys,
    sink: Arc<dyn PubSubSink>,
    queue: mpsc::UnboundedReceiver<Command>,
    /// Live references per topic; a topic is here exactly while its count is above zero.
    references: HashMap<Topic, usize>,
    /// Topics without references, still subscribed while they linger: when each lost its
    /// last reference.
    released: HashMap<Topic, Instant>,
    timings: PubSubTimings,
}

/// A connection with the topics it has confirmed.
struct Connection {
    sink: RedisSink,
    stream: PubSubStream,
    subscribed: HashSet<Topic>,
}

impl Receiver {
    async fn run(mut self, mut connection: Connection) {
        loop {
            match self.serve(&mut connection).await {
                End::Closed => return,
                End::Lost(error) => {
                    tracing::warn!(%error, "redis pub/sub connection lost; reconnecting");
                }
            }
            connection = match self.reconnect().await {
                Some(connection) => connection,
                None => return,
            };
            tracing::info!(
                topics = connection.subscribed.len(),
                "redis pub/sub connection back, every topic resubscribed"
            );
            self.sink.resubscribed();
        }
    }

    /// Delivers messages and applies commands until the connection fails or every handle
    /// is dropped.
    async fn serve(&mut self, connection: &mut Connection) -> End {
        let mut ping = tokio::time::interval(self.timings.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let linger = self.timings.unsubscribe_linger;
        let mut sweep = tokio::time::interval((linger / 2).max(Duration::from_millis(10)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sweep.tick().await;
        loop {
            tokio::select! {
                message = connection.stream.next() => match message {
                    Some(message) => self.deliver(&message),
                    None => return End::Lost(closed("the connection closed")),
                },
                command = self.queue.recv() => match command {
                    Some(first) => {
                        if let Err(error) = self.apply(first, connection).await {
                            return End::Lost(error);
                        }
                    }
                    None => return End::Closed,
                },
                _ = ping.tick() => {
                    let pong = connection.sink.ping::<redis::Value>();
                    if let Err(error) = self.bounded(pong).await {
                        return End::Lost(error);
                    }
                }
                _ = sweep.tick(), if !self.released.is_empty() => {
                    if let Err(error) = self.unsubscribe_lingered(connection).await {
                        return End::Lost(error);
                    }
                }
            }
        }
    }

    fn deliver(&self, message: &Msg) {
        let Some(topic) = self.keys.topic(message.get_channel_name()) else {
            return;
        };
        // After the last unsubscribe a message can still be in flight: it is not delivered.
        if !self.references.contains_key(&topic) {
            return;
        }
        match std::str::from_utf8(message.get_payload_bytes()) {
            Ok(text) => self.sink.deliver(topic, Arc::from(text)),
            Err(_) => tracing::warn!(%topic, "dropped a pub/sub payload that is not UTF-8"),
        }
    }

    /// Applies `first` and every other queued command, then reconciles the connection for
    /// the topics they touched (never a scan of every topic: a node holds tens of
    /// thousands, and a reconnect storm sends thousands of batches).
    async fn apply(
        &mut self,
        first: Command,
        connection: &mut Connection,
    ) -> Result<(), RedisError> {
        let mut subscribers = Vec::new();
        let mut unsubscribers = Vec::new();
        let mut touched = HashSet::new();
        let mut next = Some(first);
        while let Some(command) = next.take().or_else(|| self.queue.try_recv().ok()) {
            match command {
                Command::Subscribe(topic, reply) => {
                    *self.references.entry(topic).or_default() += 1;
                    self.released.remove(&topic);
                    touched.insert(topic);
                    subscribers.push((topic, reply));
                }
                Command::Unsubscribe(topic, reply) => {
                    self.release(topic);
                    touched.insert(topic);
                    unsubscribers.push(reply);
                }
            }
        }

        let outcome = self.reconcile(connection, &touched).await;
        for reply in unsubscribers {
            // Unsubscribing cannot fail for the caller: the reference is gone either way, and
            // a new connection subscribes only what is still referenced.
            let _ = reply.send(());
        }
        let mut abandoned = HashSet::new();
        for (topic, reply) in subscribers {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err(error) => Err(RealtimeError::msg(format!(
                    "redis subscribe failed: {error}"
                ))),
            };
            // A failed subscribe holds no reference; neither does one whose caller gave up
            // waiting (it will never unsubscribe).
            if reply.send(answer).is_err() || outcome.is_err() {
                self.release(topic);
                abandoned.insert(topic);
            }
        }
        outcome?;
        if !abandoned.is_empty() {
            self.reconcile(connection, &abandoned).await?;
        }
        Ok(())
    }

    fn release(&mut self, topic: Topic) {
        if let Some(count) = self.references.get_mut(&topic) {
            *count -= 1;
            if *count == 0 {
                self.references.remove(&topic);
                if !self.timings.unsubscribe_linger.is_zero() {
                    self.released.insert(topic, Instant::now());
                }
            }
        }
    }

    /// Of `touched`, subscribes what is referenced but not subscribed and unsubscribes what
    /// is subscribed without a reference and not lingering, each confirmed by Redis before
    /// this returns.
    async fn reconcile(
        &mut self,
        connection: &mut Connection,
        touched: &HashSet<Topic>,
    ) -> Result<(), RedisError> {
        let mut wanted = Vec::new();
        let mut unwanted = Vec::new();
        for topic in touched {
            let referenced = self.references.contains_key(topic);
            let subscribed = connection.subscribed.contains(topic);
            if referenced && !subscribed {
                wanted.push(*topic);
            } else if !referenced && subscribed && !self.released.contains_key(topic) {
                unwanted.push(*topic);
            }
        }
        self.change(connection, wanted, unwanted).await
    }

    /// Unsubscribes the topics whose linger is over.
    async fn unsubscribe_lingered(
        &mut self,
        connection: &mut Connection,
    ) -> Result<(), RedisError> {
        let linger = self.timings.unsubscribe_linger;
        let now = Instant::now();
        let over: Vec<Topic> = self
            .released
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= linger)
            .map(|(topic, _)| *topic)
            .collect();
        for topic in &over {
            self.released.remove(topic);
        }
        let unwanted = over
            .into_iter()
            .filter(|t| connection.subscribed.contains(t))
            .collect();
        self.change(connection, Vec::new(), unwanted).await
    }

    /// One SUBSCRIBE for `wanted`, one UNSUBSCRIBE for `unwanted` (each when not empty).
    async fn change(
        &mut self,
        connection: &mut Connection,
        wanted: Vec<Topic>,
        unwanted: Vec<Topic>,
    ) -> Result<(), RedisError> {
        if !wanted.is_empty() {
            let channels = self.channels(&wanted);
            self.bounded(connection.sink.subscribe(channels)).await?;
            connection.subscribed.extend(wanted);
        }
        if !unwanted.is_empty() {
            let channels = self.channels(&unwanted);
            self.bounded(connection.sink.unsubscribe(channels)).await?;
            for topic in &unwanted {
                connection.subscribed.remove(topic);
            }
        }
        Ok(())
    }

    /// Reconnects with backoff, refusing subscribes meanwhile. `None` once every handle is
    /// dropped.
    async fn reconnect(&mut self) -> Option<Connection> {
        let mut wait = self.timings.reconnect_min;
        loop {
            match self.open().await {
                Ok(connection) => return Some(connection),
                Err(error) => tracing::warn!(%error, ?wait, "redis pub/sub reconnection failed"),
            }
            let pause = tokio::time::sleep(jittered(wait));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    command = self.queue.recv() => match command {
                        Some(command) => self.refuse(command),
                        None => return None,
                    },
                }
            }
            wait = (wait * 2).min(self.timings.reconnect_max);
        }
    }

    /// While disconnected: a subscribe fails at once (the caller answers `unavailable`),
    /// an unsubscribe just drops its reference.
    fn refuse(&mut self, command: Command) {
        match command {
            Command::Subscribe(_, reply) => {
                let _ = reply.send(Err(RealtimeError::msg(
                    "the redis pub/sub connection is down; reconnecting",
                )));
            }
            Command::Unsubscribe(topic, reply) => {
                self.release(topic);
                let _ = reply.send(());
            }
        }
    }

    /// A new connection subscribed to every referenced topic (none lingers on it).
    async fn open(&mut self) -> Result<Connection, RedisError> {
        self.released.clear();
        let pubsub = self.bounded(self.client.get_async_pubsub()).await?;
        let (mut sink, stream) = pubsub.split();
        let topics: Vec<Topic> = self.references.keys().copied().collect();
        if !topics.is_empty() {
            self.bounded(sink.subscribe(self.channels(&topics))).await?;
        }
        Ok(Connection {
            sink,
            stream,
            subscribed: topics.into_iter().collect(),
        })
    }

    fn channels(&self, topics: &[Topic]) -> Vec<String> {
        topics.iter().map(|t| self.keys.channel(*t)).collect()
    }

    /// `operation`, failing as a lost connection after the response timeout.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        timeout(self.timings.response_timeout, operation)
            .await
            .unwrap_or_else(|_| Err(closed("redis did not answer in time")))
    }
}

fn closed(why: &'static str) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, why))
}

/// `wait` plus up to a quarter more, so nodes cut off together do not reconnect in lockstep.
fn jittered(wait: Duration) -> Duration {
    let spread = u64::try_from(wait.as_millis() / 4).unwrap_or(0).max(1);
    let random = (uuid::Uuid::new_v4().as_u128() % u128::from(spread)) as u64;
    wait + Duration::from_millis(random)
}
