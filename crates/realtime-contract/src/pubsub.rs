//! Contract of `PubSub`: reference-counted subscriptions, delivery to every subscribed node
//! (the publisher's own included), publish order per publisher, and nothing unsubscribed.

use crate::harness::{conversation_topic, node, payload, user_topic, SharedBackend};
use domain::realtime::Topic;
use std::sync::Arc;

/// Publishes a unique marker on `marker` through `publisher` and waits until every sink in
/// `sinks` has it: anything the publisher sent before would have arrived by then.
async fn flush(
    publisher: &Arc<dyn domain::realtime::PubSub>,
    marker: Topic,
    sinks: &[&crate::RecordingSink],
) -> String {
    let text = format!("marker-{}", uuid::Uuid::new_v4());
    publisher.publish(marker, payload(&text)).await.unwrap();
    for sink in sinks {
        sink.wait_for(marker, &text).await;
    }
    text
}

/// Nodes A and B subscribe, A publishes: both get it once; C, not subscribed, gets nothing.
pub async fn an_event_reaches_every_subscribed_node_the_publisher_included_and_no_other(
    backend: SharedBackend,
) {
    let (a, sink_a) = node(&backend).await;
    let (b, sink_b) = node(&backend).await;
    let (c, sink_c) = node(&backend).await;
    let topic = conversation_topic();
    let marker = user_topic();
    a.subscribe(topic).await.unwrap();
    b.subscribe(topic).await.unwrap();
    for n in [&a, &b, &c] {
        n.subscribe(marker).await.unwrap();
    }

    a.publish(topic, payload("hello")).await.unwrap();
    let m = flush(&a, marker, &[&sink_a, &sink_b, &sink_c]).await;

    let expected = vec![(topic, "hello".to_string()), (marker, m.clone())];
    assert_eq!(sink_a.events(), expected, "the publisher's own node");
    assert_eq!(sink_b.events(), expected, "another subscribed node");
    assert_eq!(
        sink_c.events(),
        vec![(marker, m)],
        "a node not subscribed to the topic"
    );
}

/// Payloads are opaque text: JSON, non-ASCII and empty payloads arrive unchanged.
pub async fn payloads_arrive_byte_for_byte(backend: SharedBackend) {
    let (a, _) = node(&backend).await;
    let (b, sink_b) = node(&backend).await;
    let topic = conversation_topic();
    b.subscribe(topic).await.unwrap();
    let sent = [
        r#"{"type":"message","content":"a \"quoted\" line\nand another"}"#,
        "héllo wörld — 你好 👋",
        "",
    ];
    for text in sent {
        a.publish(topic, payload(text)).await.unwrap();
    }
    sink_b.wait_for_count(topic, sent.len()).await;
    assert_eq!(sink_b.payloads_on(topic), sent);
}

/// Two subscribes need two unsubscribes: after one, the topic still arrives.
pub async fn two_subscribes_and_one_unsubscribe_keep_the_topic_flowing(backend: SharedBackend) {
    let (a, sink_a) = node(&backend).await;
    let topic = conversation_topic();
    a.subscribe(topic).await.unwrap();
    a.subscribe(topic).await.unwrap();
    a.unsubscribe(topic).await.unwrap();

    a.publish(topic, payload("still here")).await.unwrap();
    sink_a.wait_for(topic, "still here").await;
    assert_eq!(sink_a.payloads_on(topic), vec!["still here"]);
}

/// At zero references the node stops receiving the topic.
pub async fn unsubscribing_the_last_reference_stops_delivery(backend: SharedBackend) {
    let (a, sink_a) = node(&backend).await;
    let topic = conversation_topic();
    let marker = user_topic();
    a.subscribe(marker).await.unwrap();
    a.subscribe(topic).await.unwrap();
    a.subscribe(topic).await.unwrap();
    a.publish(topic, payload("before")).await.unwrap();
    sink_a.wait_for(topic, "before").await;
    a.unsubscribe(topic).await.unwrap();
    a.unsubscribe(topic).await.unwrap();

    a.publish(topic, payload("after")).await.unwrap();
    flush(&a, marker, &[&sink_a]).await;

    assert_eq!(sink_a.payloads_on(topic), vec!["before"]);
}

/// Dropping to zero and subscribing again works like the first time.
pub async fn a_topic_can_be_subscribed_again_after_the_last_unsubscribe(backend: SharedBackend) {
    let (a, _) = node(&backend).await;
    let (b, sink_b) = node(&backend).await;
    let topic = conversation_topic();
    b.subscribe(topic).await.unwrap();
    b.unsubscribe(topic).await.unwrap();
    b.subscribe(topic).await.unwrap();

    a.publish(topic, payload("again")).await.unwrap();
    sink_b.wait_for(topic, "again").await;
    assert_eq!(sink_b.payloads_on(topic), vec!["again"]);
}

/// One publisher's events on one topic arrive in the order they were published.
pub async fn events_of_one_publisher_on_one_topic_arrive_in_publish_order(backend: SharedBackend) {
    let (a, _) = node(&backend).await;
    let (b, sink_b) = node(&backend).await;
    let topic = conversation_topic();
    b.subscribe(topic).await.unwrap();
    let sent: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    for text in &sent {
        a.publish(topic, payload(text)).await.unwrap();
    }
    sink_b.wait_for_count(topic, sent.len()).await;
    assert_eq!(sink_b.payloads_on(topic), sent);
}

/// A node's sink sees only the topics that node subscribed, whatever else is published and
/// whatever other nodes subscribe.
pub async fn a_node_receives_only_the_topics_it_subscribed(backend: SharedBackend) {
    let (a, sink_a) = node(&backend).await;
    let (b, sink_b) = node(&backend).await;
    let mine = conversation_topic();
    let theirs = conversation_topic();
    let nobodys = user_topic();
    a.subscribe(mine).await.unwrap();
    b.subscribe(theirs).await.unwrap();

    b.publish(theirs, payload("for b")).await.unwrap();
    b.publish(nobodys, payload("for nobody")).await.unwrap();
    b.publish(mine, payload("for a")).await.unwrap();
    sink_a.wait_for(mine, "for a").await;
    sink_b.wait_for(theirs, "for b").await;

    assert_eq!(sink_a.events(), vec![(mine, "for a".to_string())]);
    assert_eq!(sink_b.events(), vec![(theirs, "for b".to_string())]);
}

/// Many sessions subscribing and unsubscribing one topic at once leave exactly the
/// difference: 20 concurrent subscribes and 19 concurrent unsubscribes still receive; the
/// 20th unsubscribe stops.
pub async fn concurrent_subscribes_and_unsubscribes_keep_an_exact_reference_count(
    backend: SharedBackend,
) {
    let (a, sink_a) = node(&backend).await;
    let topic = conversation_topic();
    let marker = user_topic();
    a.subscribe(marker).await.unwrap();

    let subscribes: Vec<_> = (0..20)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.subscribe(topic).await })
        })
        .collect();
    for task in subscribes {
        task.await.unwrap().unwrap();
    }
    let unsubscribes: Vec<_> = (0..19)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.unsubscribe(topic).await })
        })
        .collect();
    for task in unsubscribes {
        task.await.unwrap().unwrap();
    }

    a.publish(topic, payload("one reference left"))
        .await
        .unwrap();
    sink_a.wait_for(topic, "one reference left").await;

    a.unsubscribe(topic).await.unwrap();
    a.publish(topic, payload("none left")).await.unwrap();
    flush(&a, marker, &[&sink_a]).await;
    assert_eq!(sink_a.payloads_on(topic), vec!["one reference left"]);
}

/// `publish_all` is `publish` one after the other: every payload reaches every subscribed node
/// (the publisher's own included), in the given order per topic; an empty batch is fine.
pub async fn publish_all_delivers_each_payload_in_order(backend: SharedBackend) {
    let (a, sink_a) = node(&backend).await;
    let (b, sink_b) = node(&backend).await;
    let (one, two) = (conversation_topic(), conversation_topic());
    for n in [&a, &b] {
        n.subscribe(one).await.unwrap();
        n.subscribe(two).await.unwrap();
    }
    a.publish_all(Vec::new()).await.unwrap();
    let batch: Vec<(Topic, String)> = (0..50)
        .map(|i| (if i % 3 == 0 { two } else { one }, format!("p{i}")))
        .collect();
    a.publish_all(batch.iter().map(|(t, p)| (*t, payload(p))).collect())
        .await
        .unwrap();
    for sink in [&sink_a, &sink_b] {
        for topic in [one, two] {
            let want: Vec<&str> = batch
                .iter()
                .filter(|(t, _)| *t == topic)
                .map(|(_, p)| p.as_str())
                .collect();
            sink.wait_for_count(topic, want.len()).await;
            assert_eq!(sink.payloads_on(topic), want);
        }
    }
}
