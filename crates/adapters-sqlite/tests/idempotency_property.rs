//! Seed 004's idempotency property, through the domain's `MessageService` on a real store:
//! whatever mix of first sends, retries and reuses of `temp_id`s arrives, concurrently,
//! each (sender, temp_id) yields exactly one message, a retry answers the original, a reuse
//! for other content is refused, and the conversation's seqs stay 1..n with no gap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_sqlite::testing::temporary_store;
use domain::conversation::{ConversationKind, GroupTitle, NewGroupConversation};
use domain::ports::{Storage, SystemClock};
use domain::services::{ChatError, MessageService, SendCommand};
use domain::user::{DisplayName, EmailAddress, NewUser};
use domain::{ConversationId, Limits, UserId};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// One send: which of three senders, which of a few keys, which of two contents.
#[derive(Debug, Clone)]
struct Send {
    sender: usize,
    key: u8,
    content: u8,
}

fn sends() -> impl Strategy<Value = Vec<Send>> {
    proptest::collection::vec(
        (0usize..3, 0u8..6, 0u8..2).prop_map(|(sender, key, content)| Send {
            sender,
            key,
            content,
        }),
        1..40,
    )
}

async fn world() -> (
    Arc<dyn Storage>,
    MessageService,
    Vec<UserId>,
    ConversationId,
) {
    let store: Arc<dyn Storage> = Arc::new(temporary_store().await.unwrap());
    let mut users = Vec::new();
    for i in 0..3 {
        let id = UserId::new();
        store
            .insert_user(&NewUser {
                id,
                email: EmailAddress::parse(&format!("u{i}-{id}@example.com")).unwrap(),
                display_name: DisplayName::parse(&format!("U{i}")).unwrap(),
                password_hash: "x".into(),
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        users.push(id);
    }
    let group = store
        .create_group(&NewGroupConversation {
            id: ConversationId::new(),
            created_by: users[0],
            title: GroupTitle::parse("G").unwrap(),
            members: users[1..].to_vec(),
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(group.conversation.kind, ConversationKind::Group);
    let service = MessageService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(SystemClock),
        Limits::default(),
    );
    (store, service, users, group.conversation.id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn every_sender_key_yields_one_message_and_seqs_stay_gap_free(batch in sends()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let (store, service, users, conversation) = world().await;
            // All sends at once: first sends, retries and reuses race each other.
            let tasks: Vec<_> = batch
                .iter()
                .map(|s| {
                    let service = service.clone();
                    let cmd = SendCommand {
                        sender: users[s.sender],
                        conversation_id: conversation,
                        content: format!("content {}", s.content),
                        content_type: None,
                        temp_id: Some(format!("key-{}", s.key)),
                        reply_to: None,
                        encrypted: None,
                        attachment_ids: Vec::new(),
                    };
                    tokio::spawn(async move { service.send(cmd).await })
                })
                .collect();
            let mut outcomes = Vec::new();
            for t in tasks {
                outcomes.push(t.await.unwrap());
            }

            // Per (sender, key): every accepted answer is the same message, and its content
            // is the content of every accepted send; refused sends carried other content.
            let mut by_key: HashMap<(usize, u8), domain::message::Message> = HashMap::new();
            for (s, outcome) in batch.iter().zip(&outcomes) {
                match outcome {
                    Ok(o) => {
                        let m = o.message().clone();
                        prop_assert_eq!(&m.content, &format!("content {}", s.content));
                        if let Some(first) = by_key.get(&(s.sender, s.key)) {
                            prop_assert_eq!(first, &m);
                        } else {
                            by_key.insert((s.sender, s.key), m);
                        }
                    }
                    Err(ChatError::TempIdReused) => {}
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
            }
            // Every refused send reused a key whose message has other content.
            for (s, outcome) in batch.iter().zip(&outcomes) {
                if outcome.is_err() {
                    let kept = by_key.get(&(s.sender, s.key)).expect("a refused key has its message");
                    prop_assert_ne!(&kept.content, &format!("content {}", s.content));
                }
            }
            // Storage holds exactly one message per (sender, key), seqs 1..n.
            let stored = store.messages_after(conversation, 0, 1_000).await.unwrap();
            prop_assert_eq!(stored.len(), by_key.len());
            let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
            prop_assert_eq!(seqs, (1..=by_key.len() as i64).collect::<Vec<_>>());
            Ok(())
        })?;
    }
}
