//! Sequences under concurrency: gap-free and idempotent, also across nodes.

use crate::fixtures::{direct, message, user};
use crate::Store;
use domain::message::AppendOutcome;
use domain::ConversationId;
use std::collections::BTreeSet;

async fn concurrent_sends(
    stores: &[Store],
    id: ConversationId,
    sender: domain::UserId,
    n: usize,
) -> Vec<i64> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move {
                let r = store
                    .append_messages(&[message(
                        id,
                        sender,
                        Some(&format!("c-{i}")),
                        &format!("m{i}"),
                    )])
                    .await
                    .unwrap();
                r.into_iter().next().unwrap().unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            AppendOutcome::Created(m) => seqs.push(m.seq),
            AppendOutcome::Replayed(m) => panic!("unexpected replay {m:?}"),
        }
    }
    seqs.sort_unstable();
    seqs
}

async fn assert_gap_free(store: &Store, id: ConversationId, n: usize) {
    let stored: Vec<i64> = store
        .messages_after(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(stored, (1..=n as i64).collect::<Vec<_>>());
    assert_eq!(
        store
            .conversation(id)
            .await
            .unwrap()
            .unwrap()
            .conversation
            .last_seq,
        n as i64
    );
}

/// 50 concurrent sends into one conversation: seqs 1..=50, no gap, no duplicate.
pub async fn fifty_concurrent_sends_get_seqs_one_to_fifty(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let seqs = concurrent_sends(std::slice::from_ref(&store), id, a.id, 50).await;
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_gap_free(&store, id, 50).await;
}

/// 20 concurrent retries of one key: one message, seq 1, all answers the same message.
pub async fn concurrent_retries_of_one_key_give_one_message_and_burn_no_seq(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let r = store
                    .append_messages(&[message(id, a.id, Some("same-key"), "once")])
                    .await
                    .unwrap();
                r.into_iter().next().unwrap().unwrap()
            })
        })
        .collect();
    let mut created = 0;
    let mut ids = BTreeSet::new();
    for t in tasks {
        let outcome = t.await.unwrap();
        created += usize::from(matches!(outcome, AppendOutcome::Created(_)));
        ids.insert(outcome.message().id);
        assert_eq!(outcome.message().seq, 1);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_gap_free(&store, id, 1).await;
    // The next message takes seq 2: no seq was burned by the losers.
    let next = store
        .append_messages(&[message(id, a.id, None, "next")])
        .await
        .unwrap();
    assert_eq!(next[0].as_ref().unwrap().message().seq, 2);
}

/// Two stores on one database (two nodes, two pools) share one gap-free sequence.
/// Not in the macro: only adapters with a shared server can run it; call it directly.
pub async fn sends_through_two_stores_share_one_gap_free_sequence(a_store: Store, b_store: Store) {
    let (a, b) = (user(&a_store, "A").await, user(&a_store, "B").await);
    let id = direct(&b_store, &a, &b).await.conversation.id;
    let seqs = concurrent_sends(&[a_store.clone(), b_store.clone()], id, a.id, 50).await;
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_gap_free(&a_store, id, 50).await;
    assert_gap_free(&b_store, id, 50).await;
}

/// Two stores (two nodes' pools) advance the same members' watermarks at once, in batches
/// naming the two rows in either order: every update finds its member (none is reported as a
/// non-member because another transaction held or moved the row), none deadlocks, and each
/// watermark ends at the highest value sent (or where it was), whatever order the updates
/// landed in.
/// Not in the macro: call it with two stores on one database.
pub async fn concurrent_watermark_updates_of_one_row_lose_none(a_store: Store, b_store: Store) {
    use domain::ports::WatermarkUpdate;
    let (a, b) = (user(&a_store, "A").await, user(&a_store, "B").await);
    let id = direct(&a_store, &a, &b).await.conversation.id;
    for i in 0..60 {
        crate::fixtures::send(&a_store, id, a.id, &format!("m{i}")).await;
    }
    let update = |user_id, seq: i64| WatermarkUpdate {
        conversation_id: id,
        user_id,
        delivered_seq: Some(seq),
        read_seq: Some(seq / 2),
    };
    let tasks: Vec<_> = (1..=60_i64)
        .map(|seq| {
            let store = if seq % 2 == 0 {
                a_store.clone()
            } else {
                b_store.clone()
            };
            // Alternate the order of the two rows within a batch.
            let batch = if seq % 3 == 0 {
                vec![update(a.id, seq), update(b.id, seq)]
            } else {
                vec![update(b.id, seq), update(a.id, seq)]
            };
            tokio::spawn(async move { store.advance_watermarks(&batch).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let answers = task
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("update {} failed: {e}", i + 1));
        assert_eq!(answers.len(), 2);
        assert!(
            answers.iter().all(Option::is_some),
            "update {} reported a member as not one: {answers:?}",
            i + 1
        );
    }
    // The sender's own watermarks were at 60 already (appending moves them).
    for (user_id, expected) in [(a.id, (60, 60)), (b.id, (60, 30))] {
        for store in [&a_store, &b_store] {
            let p = store.participant(id, user_id).await.unwrap().unwrap();
            assert_eq!((p.delivered_seq, p.read_seq), expected);
        }
    }
}
