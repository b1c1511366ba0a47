//! Contract of `MessageStore::append_messages` and history.

use crate::fixtures::{direct, message, send, user};
use crate::Store;
use domain::message::{AppendOutcome, AppendRejection, Message};
use domain::ConversationId;
use domain::MessageId;

async fn append_one(
    store: &Store,
    m: domain::message::NewMessage,
) -> Result<AppendOutcome, AppendRejection> {
    let mut r = store.append_messages(&[m]).await.unwrap();
    assert_eq!(r.len(), 1);
    r.pop().unwrap()
}

/// Seqs are 1, 2, 3... and `last_seq`/`last_message_at` follow.
pub async fn appended_messages_get_consecutive_seqs(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let batch: Vec<_> = (0..3)
        .map(|i| message(id, a.id, None, &format!("m{i}")))
        .collect();
    let results = store.append_messages(&batch).await.unwrap();
    let seqs: Vec<i64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().message().seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let m4 = send(&store, id, b.id, "m3").await;
    assert_eq!(m4.seq, 4);
    let conv = store.conversation(id).await.unwrap().unwrap().conversation;
    assert_eq!(conv.last_seq, 4);
    assert_eq!(conv.last_message_at, Some(m4.created_at));
}

/// The sender has read (and has) what it sent; the other member has neither.
pub async fn appending_moves_the_senders_own_watermarks(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    send(&store, id, a.id, "one").await;
    send(&store, id, a.id, "two").await;
    let pa = store.participant(id, a.id).await.unwrap().unwrap();
    let pb = store.participant(id, b.id).await.unwrap().unwrap();
    assert_eq!((pa.delivered_seq, pa.read_seq), (2, 2));
    assert_eq!((pb.delivered_seq, pb.read_seq), (0, 0));
}

/// Every field written reads back equal, timestamps to the microsecond.
pub async fn timestamps_and_fields_read_back_exactly(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let first = send(&store, id, a.id, "first").await;
    let mut new = message(id, b.id, Some("key-1"), "  multi\nline ünïcødé 🎉 ");
    new.reply_to = Some(first.id);
    let created = append_one(&store, new.clone()).await.unwrap();
    let AppendOutcome::Created(m) = created else {
        panic!("expected Created")
    };
    let want = Message {
        id: new.id,
        conversation_id: id,
        seq: 2,
        sender_id: b.id,
        client_msg_id: Some("key-1".into()),
        content: "  multi\nline ünïcødé 🎉 ".into(),
        content_type: new.content_type,
        reply_to: Some(first.id),
        created_at: new.created_at,
        edited_at: None,
        deleted_at: None,
        deleted_by: None,
        change_seq: 0,
        attachments: Vec::new(),
    };
    assert_eq!(m, want);
    assert_eq!(store.message(id, new.id).await.unwrap(), Some(want));
}

/// Same sender, same key, same content: the original, with no new seq.
pub async fn a_replayed_key_returns_the_original_and_uses_no_seq(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let original = append_one(&store, message(id, a.id, Some("k"), "hello"))
        .await
        .unwrap();
    let retry = append_one(&store, message(id, a.id, Some("k"), "hello"))
        .await
        .unwrap();
    assert!(matches!(original, AppendOutcome::Created(_)));
    assert_eq!(retry, AppendOutcome::Replayed(original.message().clone()));
    assert_eq!(
        store
            .conversation(id)
            .await
            .unwrap()
            .unwrap()
            .conversation
            .last_seq,
        1
    );
    // Another sender may use the same key freely.
    let other = append_one(&store, message(id, b.id, Some("k"), "hello"))
        .await
        .unwrap();
    assert!(matches!(other, AppendOutcome::Created(m) if m.seq == 2));
}

/// A key reused for different content, or in another conversation, is refused and writes nothing.
pub async fn a_key_reused_for_other_content_or_another_conversation_is_rejected(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let ac = direct(&store, &a, &c).await.conversation.id;
    append_one(&store, message(ab, a.id, Some("k"), "hello"))
        .await
        .unwrap();
    let other_content = append_one(&store, message(ab, a.id, Some("k"), "HELLO")).await;
    assert_eq!(other_content, Err(AppendRejection::KeyReused));
    let other_conversation = append_one(&store, message(ac, a.id, Some("k"), "hello")).await;
    assert_eq!(other_conversation, Err(AppendRejection::KeyReused));
    assert_eq!(
        store
            .conversation(ab)
            .await
            .unwrap()
            .unwrap()
            .conversation
            .last_seq,
        1
    );
    assert_eq!(
        store
            .conversation(ac)
            .await
            .unwrap()
            .unwrap()
            .conversation
            .last_seq,
        0
    );
    assert!(store.messages_after(ac, 0, 10).await.unwrap().is_empty());
}

/// Two sends with one key in one batch: the second replays the first.
pub async fn a_key_repeated_inside_one_batch_is_a_replay(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let batch = vec![
        message(id, a.id, Some("dup"), "x"),
        message(id, a.id, None, "y"),
        message(id, a.id, Some("dup"), "x"),
        message(id, a.id, Some("dup"), "different"),
    ];
    let r = store.append_messages(&batch).await.unwrap();
    let first = r[0].clone().unwrap();
    assert!(matches!(&first, AppendOutcome::Created(m) if m.seq == 1));
    assert!(matches!(&r[1], Ok(AppendOutcome::Created(m)) if m.seq == 2));
    assert_eq!(r[2], Ok(AppendOutcome::Replayed(first.message().clone())));
    assert_eq!(r[3], Err(AppendRejection::KeyReused));
    assert_eq!(store.messages_after(id, 0, 10).await.unwrap().len(), 2);
}

/// Each conversation of a mixed batch counts its own seqs.
pub async fn a_batch_spanning_conversations_keeps_each_sequence(store: Store) {
    let (a, b, c) = (
        user(&store, "A").await,
        user(&store, "B").await,
        user(&store, "C").await,
    );
    let ab = direct(&store, &a, &b).await.conversation.id;
    let ac = direct(&store, &a, &c).await.conversation.id;
    send(&store, ac, c.id, "earlier").await;
    let batch = vec![
        message(ab, a.id, None, "1"),
        message(ac, a.id, None, "2"),
        message(ab, b.id, None, "3"),
        message(ac, c.id, None, "4"),
    ];
    let r = store.append_messages(&batch).await.unwrap();
    let got: Vec<(ConversationId, i64)> = r
        .iter()
        .map(|x| {
            let m = x.as_ref().unwrap().message();
            (m.conversation_id, m.seq)
        })
        .collect();
    assert_eq!(got, vec![(ab, 1), (ac, 2), (ab, 2), (ac, 3)]);
}

/// A missing conversation rejects its own message; the rest of the batch commits.
pub async fn appending_to_a_missing_conversation_rejects_only_that_message(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let batch = vec![
        message(ConversationId::new(), a.id, None, "lost"),
        message(id, a.id, None, "kept"),
    ];
    let r = store.append_messages(&batch).await.unwrap();
    assert_eq!(r[0], Err(AppendRejection::ConversationNotFound));
    assert!(matches!(&r[1], Ok(AppendOutcome::Created(m)) if m.seq == 1));
}

async fn conversation_with(store: &Store, n: usize) -> (ConversationId, Vec<Message>) {
    let (a, b) = (user(store, "A").await, user(store, "B").await);
    let id = direct(store, &a, &b).await.conversation.id;
    let mut sent = Vec::new();
    for i in 0..n {
        sent.push(
            send(
                store,
                id,
                if i % 2 == 0 { a.id } else { b.id },
                &format!("m{}", i + 1),
            )
            .await,
        );
    }
    (id, sent)
}

/// `before_seq` pages backwards, newest first.
pub async fn history_before_pages_newest_first(store: Store) {
    let (id, _) = conversation_with(&store, 7).await;
    let seqs = |ms: Vec<Message>| ms.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.messages_before(id, None, 3).await.unwrap()),
        vec![7, 6, 5]
    );
    assert_eq!(
        seqs(store.messages_before(id, Some(5), 3).await.unwrap()),
        vec![4, 3, 2]
    );
    assert_eq!(
        seqs(store.messages_before(id, Some(2), 3).await.unwrap()),
        vec![1]
    );
    assert!(store
        .messages_before(id, Some(1), 3)
        .await
        .unwrap()
        .is_empty());
}

/// `after_seq` pages forwards, oldest first.
pub async fn history_after_pages_oldest_first(store: Store) {
    let (id, sent) = conversation_with(&store, 5).await;
    let page = store.messages_after(id, 2, 2).await.unwrap();
    assert_eq!(page, sent[2..4].to_vec());
    assert!(store.messages_after(id, 5, 10).await.unwrap().is_empty());
    assert_eq!(store.messages_after(id, 0, 100).await.unwrap(), sent);
}

/// Looking a message up under another conversation finds nothing.
pub async fn a_message_is_only_found_in_its_own_conversation(store: Store) {
    let (id, sent) = conversation_with(&store, 1).await;
    let (other, _) = conversation_with(&store, 1).await;
    assert_eq!(
        store.message(id, sent[0].id).await.unwrap().as_ref(),
        Some(&sent[0])
    );
    assert_eq!(store.message(other, sent[0].id).await.unwrap(), None);
    assert_eq!(store.message(id, MessageId::new()).await.unwrap(), None);
}
