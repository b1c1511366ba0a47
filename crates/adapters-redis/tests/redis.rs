//! Redis-specific behaviour beyond the contracts: the dedicated subscription connection
//! survives being killed, a node subscribes only what its sessions need, and every key and
//! channel carries the prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use adapters_redis::redis;
use adapters_redis::{PubSubTimings, RedisPresence, RedisPubSub, RedisTyping};
use chrono::Utc;
use common::{fresh_prefix, pool, quick_timings, redis_url};
use domain::realtime::{NodeId, PresenceStore, PubSub, Topic, TypingStore};
use domain::{ConversationId, UserId};
use realtime_contract::RecordingSink;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

/// `CLIENT KILL TYPE pubsub` cuts every subscriber on the server: tests that look at
/// subscriptions hold this for reading, the killing test for writing.
static KILLS: RwLock<()> = RwLock::const_new(());

async fn node(prefix: &str) -> (RedisPubSub, Arc<RecordingSink>) {
    let sink = RecordingSink::new();
    let pubsub = RedisPubSub::connect_with(
        &redis_url(),
        pool().await,
        prefix,
        sink.clone(),
        quick_timings(),
    )
    .await
    .unwrap();
    (pubsub, sink)
}

async fn command<T: redis::FromRedisValue>(cmd: &mut redis::Cmd) -> T {
    let pool = pool().await;
    let mut connection = pool.connection();
    cmd.query_async(&mut connection).await.unwrap()
}

/// The channels anyone subscribed under `prefix`.
async fn channels(prefix: &str) -> BTreeSet<String> {
    command(
        redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{prefix}*")),
    )
    .await
}

/// How many connections subscribe `channel`.
async fn subscribers(channel: &str) -> u32 {
    let pairs: Vec<(String, u32)> = command(redis::cmd("PUBSUB").arg("NUMSUB").arg(channel)).await;
    pairs[0].1
}

fn channel(prefix: &str, topic: Topic) -> String {
    format!("{prefix}ch:{topic}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_connection_resubscribes_every_live_topic_and_delivers_again() {
    let _exclusive = KILLS.write().await;
    let prefix = fresh_prefix();
    let (receiver, sink) = node(&prefix).await;
    let (publisher, _) = node(&prefix).await;
    let (kept, twice, dropped) = (
        Topic::Conversation(ConversationId::new()),
        Topic::User(UserId::new()),
        Topic::Conversation(ConversationId::new()),
    );
    receiver.subscribe(kept).await.unwrap();
    receiver.subscribe(twice).await.unwrap();
    receiver.subscribe(twice).await.unwrap();
    receiver.subscribe(dropped).await.unwrap();
    receiver.unsubscribe(dropped).await.unwrap();
    publisher.publish(kept, Arc::from("before")).await.unwrap();
    sink.wait_for(kept, "before").await;

    let killed: u32 = command(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub")).await;
    // Only connections with a subscription count as `pubsub`: the receiver's, at least.
    assert!(killed >= 1, "no subscription connection was killed");
    sink.wait_for_resubscribed(1, Duration::from_secs(5)).await;

    assert_eq!(
        channels(&prefix).await,
        BTreeSet::from([channel(&prefix, kept), channel(&prefix, twice)])
    );
    publisher.publish(kept, Arc::from("after")).await.unwrap();
    publisher.publish(twice, Arc::from("after")).await.unwrap();
    sink.wait_for(kept, "after").await;
    sink.wait_for(twice, "after").await;
    assert_eq!(sink.payloads_on(kept), vec!["before", "after"]);
    assert_eq!(sink.payloads_on(twice), vec!["after"]);
    assert_eq!(sink.resubscribed_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_subscribes_each_channel_once_and_only_while_a_session_needs_it() {
    let _shared = KILLS.read().await;
    let prefix = fresh_prefix();
    let (a, _) = node(&prefix).await;
    let (b, _) = node(&prefix).await;
    let (t1, t2) = (
        Topic::Conversation(ConversationId::new()),
        Topic::Conversation(ConversationId::new()),
    );
    let (c1, c2) = (channel(&prefix, t1), channel(&prefix, t2));
    assert_eq!(channels(&prefix).await, BTreeSet::new());

    a.subscribe(t1).await.unwrap();
    a.subscribe(t1).await.unwrap();
    a.subscribe(t2).await.unwrap();
    assert_eq!(
        channels(&prefix).await,
        BTreeSet::from([c1.clone(), c2.clone()])
    );
    assert_eq!(subscribers(&c1).await, 1, "two references, one SUBSCRIBE");

    b.subscribe(t1).await.unwrap();
    assert_eq!(subscribers(&c1).await, 2, "one subscription per node");

    a.unsubscribe(t1).await.unwrap();
    a.unsubscribe(t2).await.unwrap();
    assert_eq!(channels(&prefix).await, BTreeSet::from([c1.clone()]));
    assert_eq!(subscribers(&c1).await, 2);

    a.unsubscribe(t1).await.unwrap();
    assert_eq!(subscribers(&c1).await, 1);
    b.unsubscribe(t1).await.unwrap();
    assert_eq!(channels(&prefix).await, BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_channel_lingers_subscribed_delivering_nothing_then_goes() {
    let _shared = KILLS.read().await;
    let prefix = fresh_prefix();
    let sink = RecordingSink::new();
    let linger = Duration::from_millis(400);
    let a = RedisPubSub::connect_with(
        &redis_url(),
        pool().await,
        &prefix,
        sink.clone(),
        PubSubTimings {
            unsubscribe_linger: linger,
            ..quick_timings()
        },
    )
    .await
    .unwrap();
    let topic = Topic::Conversation(ConversationId::new());
    let probe = Topic::Conversation(ConversationId::new());
    let c = channel(&prefix, topic);
    // Messages reach the node in publish order: once a later one on `probe` is here, the
    // earlier one on `topic` has been handled.
    let handled = |payload: &'static str| {
        let sink = sink.clone();
        async move {
            let started = std::time::Instant::now();
            while !sink.payloads_on(probe).iter().any(|p| p == payload) {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{payload} never came"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    a.subscribe(probe).await.unwrap();

    a.subscribe(topic).await.unwrap();
    a.unsubscribe(topic).await.unwrap();
    assert_eq!(
        subscribers(&c).await,
        1,
        "still subscribed while it lingers"
    );
    a.publish(topic, Arc::from("nobody here")).await.unwrap();
    a.publish(probe, Arc::from("probe 1")).await.unwrap();
    handled("probe 1").await;
    // Taken again within the linger: the same subscription serves it.
    a.subscribe(topic).await.unwrap();
    a.publish(topic, Arc::from("welcome back")).await.unwrap();
    a.publish(probe, Arc::from("probe 2")).await.unwrap();
    handled("probe 2").await;
    assert_eq!(sink.payloads_on(topic), vec!["welcome back".to_owned()]);

    a.unsubscribe(topic).await.unwrap();
    let started = std::time::Instant::now();
    while subscribers(&c).await == 1 {
        assert!(started.elapsed() < linger * 10, "never unsubscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= linger / 2, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_and_channel_is_under_the_prefix_and_nothing_outside_names_our_ids() {
    let _shared = KILLS.read().await;
    let prefix = fresh_prefix();
    let pool = pool().await;
    let presence = RedisPresence::new(pool.clone(), &prefix);
    let typing = RedisTyping::new(pool.clone(), &prefix);
    let (pubsub, _) = node(&prefix).await;
    let node_id = NodeId(format!("node-{}", uuid::Uuid::new_v4()));
    let (user, conversation) = (UserId::new(), ConversationId::new());

    presence
        .renew_lease(&node_id, Duration::from_secs(60))
        .await
        .unwrap();
    presence.open_session(user, &node_id, 10).await.unwrap();
    presence.set_away(user, &node_id, true).await.unwrap();
    typing
        .start_typing(conversation, user, Utc::now(), Duration::from_secs(60))
        .await
        .unwrap();
    let topic = Topic::Conversation(conversation);
    pubsub.subscribe(topic).await.unwrap();
    pubsub.publish(topic, Arc::from("x")).await.unwrap();

    let ours: BTreeSet<String> = scan(&format!("{prefix}*")).await;
    let expected: BTreeSet<String> = [
        format!("node:{node_id}"),
        "nodes".to_string(),
        format!("node-users:{node_id}"),
        format!("presence:{user}"),
        "typing".to_string(),
    ]
    .into_iter()
    .map(|k| format!("{prefix}{k}"))
    .collect();
    assert_eq!(ours, expected);
    assert_eq!(
        channels(&prefix).await,
        BTreeSet::from([channel(&prefix, topic)])
    );

    let ids = [
        node_id.0.clone(),
        user.to_string(),
        conversation.to_string(),
    ];
    let leaked: Vec<String> = scan("*")
        .await
        .into_iter()
        .filter(|k| !k.starts_with(&prefix) && ids.iter().any(|id| k.contains(id.as_str())))
        .collect();
    assert_eq!(leaked, Vec::<String>::new());

    presence.remove_node(&node_id).await.unwrap();
    typing.stop_typing(conversation, user).await.unwrap();
    assert_eq!(
        scan(&format!("{prefix}*")).await,
        BTreeSet::new(),
        "nothing left behind"
    );
}

async fn scan(pattern: &str) -> BTreeSet<String> {
    let pool = pool().await;
    let mut connection = pool.connection();
    let mut cursor = 0u64;
    let mut keys = BTreeSet::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_at_once_not_a_hang() {
    let unreachable = "redis://127.0.0.1:1";
    let started = std::time::Instant::now();
    assert!(adapters_redis::pool(unreachable, 2).await.is_err());
    let publish_pool = pool().await;
    let connected = RedisPubSub::connect(
        unreachable,
        publish_pool,
        &fresh_prefix(),
        RecordingSink::new(),
    )
    .await;
    assert!(connected.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_pool_connection_killed_by_the_server_is_made_again_on_its_next_use() {
    let pool = adapters_redis::pool(&redis_url(), 1).await.unwrap();
    let id: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut pool.connection())
        .await
        .unwrap();
    let killed: u32 = command(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id)).await;
    assert_eq!(killed, 1);
    // The command that finds the connection dropped may fail; one soon after does not.
    let started = std::time::Instant::now();
    let new_id = loop {
        let answer: Result<u64, _> = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut pool.connection())
            .await;
        match answer {
            Ok(new_id) => break new_id,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "never back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert_ne!(new_id, id, "a new connection");
}
