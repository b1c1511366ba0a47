//! Contract of `ReceiptStore` and `StoreHealth`.

use crate::fixtures::{direct, send, user};
use crate::Store;
use domain::ports::WatermarkUpdate;
use domain::{ConversationId, UserId};

fn update(
    conversation_id: ConversationId,
    user_id: UserId,
    delivered: Option<i64>,
    read: Option<i64>,
) -> WatermarkUpdate {
    WatermarkUpdate {
        conversation_id,
        user_id,
        delivered_seq: delivered,
        read_seq: read,
    }
}

/// An older seq never moves a watermark back.
pub async fn watermarks_only_move_forward(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    for _ in 0..5 {
        send(&store, id, a.id, "m").await;
    }
    let r = store
        .advance_watermarks(&[update(id, b.id, Some(4), Some(3))])
        .await
        .unwrap();
    let p = r[0].clone().unwrap();
    assert_eq!((p.delivered_seq, p.read_seq), (4, 3));
    let r = store
        .advance_watermarks(&[update(id, b.id, Some(2), Some(1))])
        .await
        .unwrap();
    let p = r[0].clone().unwrap();
    assert_eq!((p.delivered_seq, p.read_seq), (4, 3));
    let stored = store.participant(id, b.id).await.unwrap().unwrap();
    assert_eq!((stored.delivered_seq, stored.read_seq), (4, 3));
}

/// Reading up to n delivers up to n too.
pub async fn read_implies_delivered(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    for _ in 0..3 {
        send(&store, id, a.id, "m").await;
    }
    let r = store
        .advance_watermarks(&[update(id, b.id, None, Some(3))])
        .await
        .unwrap();
    let p = r[0].clone().unwrap();
    assert_eq!((p.delivered_seq, p.read_seq), (3, 3));
    assert_eq!(store.unread_counts(b.id).await.unwrap(), vec![(id, 0)]);
}

/// One call applies many updates, in order, and tells non-members apart.
pub async fn a_batch_of_updates_applies_each_and_reports_non_members_as_none(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let ac = direct(&store, &a, &c).await.conversation.id;
    send(&store, ab, a.id, "1").await;
    send(&store, ab, a.id, "2").await;
    send(&store, ac, a.id, "1").await;
    let r = store
        .advance_watermarks(&[
            update(ab, b.id, Some(2), None),
            update(ac, c.id, None, Some(1)),
            update(ab, c.id, Some(2), None),
            update(ab, b.id, None, Some(1)),
        ])
        .await
        .unwrap();
    assert_eq!(r.len(), 4);
    let first = r[0].clone().unwrap();
    assert_eq!((first.delivered_seq, first.read_seq), (2, 0));
    let second = r[1].clone().unwrap();
    assert_eq!((second.delivered_seq, second.read_seq), (1, 1));
    assert_eq!(r[2], None);
    let fourth = r[3].clone().unwrap();
    assert_eq!((fourth.delivered_seq, fourth.read_seq), (2, 1));
    assert_eq!(store.participant(ab, c.id).await.unwrap(), None);
}

/// A healthy store answers a ping.
pub async fn the_store_answers_a_ping(store: Store) {
    store.ping().await.unwrap();
}
