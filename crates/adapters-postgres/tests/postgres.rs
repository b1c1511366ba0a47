//! Behaviour specific to the PostgreSQL adapter: concurrency across connections and pools
//! (several server nodes), on a real server, each test on its own fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_postgres::testing::fresh_database;
use adapters_postgres::PostgresStorage;
use chrono::{SubsecRound, Utc};
use domain::auth::{ConsumeOutcome, NewRefreshToken};
use domain::conversation::{GroupTitle, NewDirectConversation, NewGroupConversation};
use domain::message::{
    AppendOutcome, AppendRejection, ClientMsgId, ContentType, MessageContent, NewMessage,
};
use domain::ports::{
    ConversationStore, InsertUserError, MessageStore, ReceiptStore, RefreshTokenStore, StoreHealth,
    UserStore, WatermarkUpdate,
};
use domain::user::{DisplayName, EmailAddress, NewUser};
use domain::{ConversationId, MessageId, TokenFamilyId, UserId};

async fn store() -> (PostgresStorage, String) {
    let url = fresh_database().await;
    (PostgresStorage::connect(&url, 8).await.unwrap(), url)
}

async fn user(store: &PostgresStorage, name: &str) -> UserId {
    let id = UserId::new();
    store
        .insert_user(&NewUser {
            id,
            email: EmailAddress::parse(&format!("user-{id}@example.com")).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
            password_hash: "$argon2id$fake".into(),
            created_at: Utc::now().trunc_subsecs(6),
        })
        .await
        .unwrap();
    id
}

async fn group(store: &PostgresStorage, owner: UserId, members: &[UserId]) -> ConversationId {
    let id = ConversationId::new();
    store
        .create_group(&NewGroupConversation {
            id,
            created_by: owner,
            title: GroupTitle::parse("team").unwrap(),
            members: members.to_vec(),
            created_at: Utc::now().trunc_subsecs(6),
        })
        .await
        .unwrap();
    id
}

fn message(
    conversation: ConversationId,
    sender: UserId,
    key: Option<&str>,
    text: &str,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation_id: conversation,
        sender_id: sender,
        client_msg_id: key.map(|k| ClientMsgId::parse(k).unwrap()),
        content: MessageContent::parse(text, 4000).unwrap(),
        content_type: ContentType::Text,
        reply_to: None,
        reply_preview: None,
        created_at: Utc::now().trunc_subsecs(6),
        attachments: Vec::new(),
    }
}

async fn append_one(
    store: &PostgresStorage,
    new: NewMessage,
) -> Result<AppendOutcome, AppendRejection> {
    store.append_messages(&[new]).await.unwrap().pop().unwrap()
}

async fn seqs(store: &PostgresStorage, conversation: ConversationId) -> Vec<i64> {
    store
        .messages_after(conversation, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_appends_into_one_conversation_get_seqs_one_to_fifty() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let conversation = group(&store, alice, &[]).await;

    let sends = (0..50).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            append_one(&store, message(conversation, alice, None, &format!("m{i}"))).await
        })
    });
    for send in sends {
        assert!(matches!(send.await.unwrap(), Ok(AppendOutcome::Created(_))));
    }

    assert_eq!(
        seqs(&store, conversation).await,
        (1..=50).collect::<Vec<_>>()
    );
    let details = store.conversation(conversation).await.unwrap().unwrap();
    assert_eq!(details.conversation.last_seq, 50);
    assert_eq!(details.participant(alice).unwrap().read_seq, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_through_two_separate_pools_share_one_gap_free_sequence() {
    let (node_a, url) = store().await;
    let node_b = PostgresStorage::connect(&url, 4).await.unwrap();
    let alice = user(&node_a, "alice").await;
    let bob = user(&node_a, "bob").await;
    let conversation = group(&node_a, alice, &[bob]).await;

    let sends = (0..60).map(|i| {
        let (node, sender) = if i % 2 == 0 {
            (node_a.clone(), alice)
        } else {
            (node_b.clone(), bob)
        };
        tokio::spawn(async move {
            // Batches of two, so batches interleave as well as single sends.
            let batch = [
                message(conversation, sender, None, &format!("m{i}a")),
                message(conversation, sender, None, &format!("m{i}b")),
            ];
            node.append_messages(&batch).await.unwrap()
        })
    });
    for send in sends {
        let results = send.await.unwrap();
        let seqs: Vec<i64> = results
            .iter()
            .map(|r| r.as_ref().unwrap().message().seq)
            .collect();
        assert_eq!(seqs[1], seqs[0] + 1, "one batch takes consecutive seqs");
    }

    assert_eq!(
        seqs(&node_b, conversation).await,
        (1..=120).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_retries_of_one_client_msg_id_give_one_message_and_burn_no_seq() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let conversation = group(&store, alice, &[]).await;
    let send = message(conversation, alice, Some("tmp-1"), "hello");

    let retries = (0..20).map(|_| {
        let (store, mut send) = (store.clone(), send.clone());
        // Every retry comes with a fresh id, as a new request would.
        send.id = MessageId::new();
        tokio::spawn(async move { append_one(&store, send).await.unwrap() })
    });
    let mut ids = Vec::new();
    let mut created = 0;
    for retry in retries {
        let outcome = retry.await.unwrap();
        created += usize::from(matches!(outcome, AppendOutcome::Created(_)));
        ids.push(outcome.message().id);
    }

    assert_eq!(created, 1);
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(seqs(&store, conversation).await, vec![1]);
    let details = store.conversation(conversation).await.unwrap().unwrap();
    assert_eq!(details.conversation.last_seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_raced_into_two_conversations_is_stored_once_and_refused_once() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let (first, second) = (
        group(&store, alice, &[]).await,
        group(&store, alice, &[]).await,
    );

    for round in 0..10 {
        let key = format!("race-{round}");
        let a = tokio::spawn({
            let (store, send) = (store.clone(), message(first, alice, Some(&key), "hi"));
            async move { append_one(&store, send).await }
        });
        let b = tokio::spawn({
            let (store, send) = (store.clone(), message(second, alice, Some(&key), "hi"));
            async move { append_one(&store, send).await }
        });
        let outcomes = [a.await.unwrap(), b.await.unwrap()];

        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(AppendOutcome::Created(_))))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| **o == Err(AppendRejection::KeyReused))
            .count();
        assert_eq!((created, refused), (1, 1), "round {round}: {outcomes:?}");
    }
    let total = seqs(&store, first).await.len() + seqs(&store, second).await.len();
    assert_eq!(total, 10);
    for conversation in [first, second] {
        let stored = seqs(&store, conversation).await;
        assert_eq!(
            stored,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "no seq burnt"
        );
    }
}

#[tokio::test]
async fn a_key_repeated_within_one_batch_is_replayed_or_refused_without_using_a_seq() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let conversation = group(&store, alice, &[]).await;

    let results = store
        .append_messages(&[
            message(conversation, alice, Some("k"), "hello"),
            message(conversation, alice, Some("k"), "hello"),
            message(conversation, alice, Some("k"), "something else"),
            message(conversation, alice, None, "next"),
        ])
        .await
        .unwrap();

    let original = match &results[0] {
        Ok(AppendOutcome::Created(m)) => m.clone(),
        other => panic!("expected the first to be created, got {other:?}"),
    };
    assert_eq!(results[1], Ok(AppendOutcome::Replayed(original)));
    assert_eq!(results[2], Err(AppendRejection::KeyReused));
    assert_eq!(results[3].as_ref().unwrap().message().seq, 2);
}

#[tokio::test]
async fn appending_to_a_missing_conversation_rejects_only_that_message() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let conversation = group(&store, alice, &[]).await;

    let results = store
        .append_messages(&[
            message(ConversationId::new(), alice, None, "lost"),
            message(conversation, alice, None, "kept"),
        ])
        .await
        .unwrap();

    assert_eq!(results[0], Err(AppendRejection::ConversationNotFound));
    assert_eq!(results[1].as_ref().unwrap().message().seq, 1);
}

#[tokio::test]
async fn a_message_postgresql_refuses_fails_alone_and_the_others_of_its_batch_commit() {
    use domain::ports::SystemClock;
    use domain::services::{ChatError, MessageService};
    use std::sync::Arc;
    let (store, _) = store().await;
    let store = Arc::new(store);
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let conversation = group(&store, alice, &[bob]).await;
    let mut poisoned = message(conversation, bob, Some("nul"), "x");
    // Past validation, as a check nobody thought of would let it: PostgreSQL refuses it.
    poisoned.content = MessageContent::from_trusted("a\u{0}b".to_owned());
    let batch = vec![
        message(conversation, alice, Some("a1"), "one"),
        message(conversation, alice, Some("a2"), "two"),
        poisoned,
        message(conversation, alice, Some("a3"), "three"),
    ];

    let refused = store.append_messages(&batch).await.unwrap_err();
    assert!(refused.is_refused(), "{refused}");
    assert!(
        seqs(&store, conversation).await.is_empty(),
        "nothing of it committed"
    );

    let service = MessageService::new(
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        Arc::new(SystemClock),
        domain::Limits::default(),
    );
    let results = service.append(&batch).await.unwrap();
    assert!(
        matches!(results[2], Err(ChatError::Unstorable(_))),
        "{:?}",
        results[2]
    );
    let committed: Vec<i64> = [0, 1, 3]
        .iter()
        .map(|&i| results[i].as_ref().unwrap().message().seq)
        .collect();
    assert_eq!(committed, vec![1, 2, 3], "the others, in order, gap-free");
    assert_eq!(seqs(&store, conversation).await, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_direct_creations_of_one_pair_in_both_directions_make_one_conversation() {
    let (store, _) = store().await;
    for _ in 0..5 {
        let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let store = store.clone();
                let (created_by, other) = if i % 2 == 0 {
                    (alice, bob)
                } else {
                    (bob, alice)
                };
                tokio::spawn(async move {
                    store
                        .create_direct(&NewDirectConversation {
                            id: ConversationId::new(),
                            created_by,
                            other,
                            created_at: Utc::now().trunc_subsecs(6),
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut ids = Vec::new();
        let mut made = 0;
        for task in tasks {
            let (details, created) = task.await.unwrap();
            made += usize::from(created);
            assert_eq!(details.participants.len(), 2);
            ids.push(details.conversation.id);
        }
        assert_eq!(made, 1);
        assert!(ids.iter().all(|id| *id == ids[0]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_concurrent_refreshes_with_one_token_exactly_one_consumes_it() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let now = Utc::now().trunc_subsecs(6);
    let family_id = TokenFamilyId::new();
    store
        .insert_refresh_token(&NewRefreshToken {
            token_hash: "h".repeat(64),
            family_id,
            user_id: alice,
            created_at: now,
            expires_at: now + chrono::Duration::days(1),
        })
        .await
        .unwrap();

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .consume_refresh_token(&"h".repeat(64), now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }

    let consumed = outcomes
        .iter()
        .filter(|o| matches!(o, ConsumeOutcome::Consumed { .. }))
        .count();
    assert_eq!(consumed, 1);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == ConsumeOutcome::AlreadyUsed { family_id })
            .count(),
        9
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_registrations_of_one_email_store_one_account() {
    let (store, _) = store().await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_user(&NewUser {
                        id: UserId::new(),
                        email: EmailAddress::parse("same@example.com").unwrap(),
                        display_name: DisplayName::parse("Same").unwrap(),
                        password_hash: "$argon2id$fake".into(),
                        created_at: Utc::now().trunc_subsecs(6),
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(InsertUserError::DuplicateEmail) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn search_treats_percent_and_underscore_literally() {
    let (store, _) = store().await;
    let me = user(&store, "me").await;
    let literal = user(&store, "100%_sure").await;
    user(&store, "100 x sure").await;

    let found = store.search_users("0%_", 10, me).await.unwrap();

    assert_eq!(
        found.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![literal]
    );
}

#[tokio::test]
async fn connecting_to_a_database_that_does_not_exist_fails_with_a_storage_error() {
    let url = fresh_database().await;
    let missing = format!("{}_missing", url);
    assert!(PostgresStorage::connect(&missing, 2).await.is_err());
}

#[tokio::test]
async fn search_orders_names_case_insensitively_whatever_the_server_locale() {
    let (store, _) = store().await;
    let me = user(&store, "me").await;
    for name in ["carol-x", "Bob-x", "alice-x", "Alice-x"] {
        user(&store, name).await;
    }

    let names: Vec<String> = store
        .search_users("-x", 10, me)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.display_name.as_str().to_owned())
        .collect();

    assert_eq!(&names[2..], ["Bob-x", "carol-x"]);
    assert_eq!(
        names[..2]
            .iter()
            .map(|n| n.to_lowercase())
            .collect::<Vec<_>>(),
        ["alice-x", "alice-x"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_and_receipts_over_the_same_members_in_any_order_never_deadlock() {
    use domain::ports::{ReceiptStore, WatermarkUpdate};
    let (store, _) = store().await;
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let first = group(&store, alice, &[bob]).await;
    let second = group(&store, bob, &[alice]).await;

    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Batches and receipt updates name the same members in opposite orders.
                let (c1, c2) = if i % 2 == 0 {
                    (first, second)
                } else {
                    (second, first)
                };
                let (u1, u2) = if i % 3 == 0 {
                    (alice, bob)
                } else {
                    (bob, alice)
                };
                if i % 4 < 2 {
                    let batch = [
                        message(c1, u1, None, "x"),
                        message(c2, u2, None, "y"),
                        message(c1, u2, None, "z"),
                        message(c2, u1, None, "w"),
                    ];
                    store.append_messages(&batch).await.map(|_| ())
                } else {
                    let update = |conversation_id, user_id| WatermarkUpdate {
                        conversation_id,
                        user_id,
                        delivered_seq: Some(i),
                        read_seq: Some(i / 2),
                    };
                    let updates = [
                        update(c1, u1),
                        update(c2, u2),
                        update(c1, u2),
                        update(c2, u1),
                    ];
                    store.advance_watermarks(&updates).await.map(|_| ())
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let total = seqs(&store, first).await.len() + seqs(&store, second).await.len();
    assert_eq!(total, 20 * 4);
}

#[tokio::test]
async fn every_statement_and_commit_on_the_pool_is_counted_and_shared_by_clones() {
    let (store, _) = store().await;
    let clone = store.clone();
    let alice = user(&store, "alice").await;
    let conversation = group(&store, alice, &[]).await;

    let (statements, commits) = (store.statements_executed(), store.transactions_committed());
    store.ping().await.unwrap();
    assert_eq!(
        store.statements_executed(),
        statements + 1,
        "SELECT 1 is one"
    );
    assert_eq!(store.transactions_committed(), commits, "no transaction");

    let before = clone.statements_executed();
    append_one(&store, message(conversation, alice, Some("k1"), "hi"))
        .await
        .unwrap();
    assert_eq!(clone.transactions_committed(), commits + 1);
    assert!(
        clone.statements_executed() >= before + 3,
        "BEGIN, at least one statement, COMMIT: {} -> {}",
        before,
        clone.statements_executed()
    );
}

#[tokio::test]
async fn appending_to_a_hundred_member_group_costs_the_statements_of_a_three_member_one() {
    let (store, _) = store().await;
    let owner = user(&store, "owner").await;
    let mut members = Vec::new();
    for i in 0..99 {
        members.push(user(&store, &format!("m{i}")).await);
    }
    let small = group(&store, owner, &members[..2]).await;
    let large = group(&store, owner, &members).await;
    // Warm up (prepared statement cache) so both measured appends take the same path.
    append_one(&store, message(small, owner, Some("w1"), "warm"))
        .await
        .unwrap();
    append_one(&store, message(large, owner, Some("w2"), "warm"))
        .await
        .unwrap();

    let cost = |conv, key: &'static str| {
        let store = store.clone();
        async move {
            let before = store.statements_executed();
            append_one(&store, message(conv, owner, Some(key), "hello"))
                .await
                .unwrap();
            store.statements_executed() - before
        }
    };
    let small_cost = cost(small, "s").await;
    let large_cost = cost(large, "l").await;
    assert_eq!(
        small_cost, large_cost,
        "statements per append, 3 vs 100 members"
    );
}

#[tokio::test]
async fn a_session_snapshot_is_one_statement_whatever_the_number_of_conversations() {
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let others = [user(&store, "ben").await, user(&store, "cat").await];
    let cost = |store: PostgresStorage| async move {
        let before = store.statements_executed();
        let snapshot = store.session_snapshot(alice).await.unwrap().unwrap();
        (
            store.statements_executed() - before,
            snapshot.conversations.len(),
        )
    };
    assert_eq!(cost(store.clone()).await, (1, 0));
    for _ in 0..5 {
        group(&store, alice, &others).await;
    }
    assert_eq!(cost(store.clone()).await, (1, 5));
    let before = store.statements_executed();
    assert_eq!(store.session_snapshot(UserId::new()).await.unwrap(), None);
    assert_eq!(store.statements_executed(), before + 1);
}

#[tokio::test]
async fn the_statements_of_sends_receipts_and_session_opens_are_prepared_once_per_connection() {
    let url = fresh_database().await;
    // One connection, so the second round must find every statement in its cache.
    let store = PostgresStorage::connect(&url, 1).await.unwrap();
    let alice = user(&store, "alice").await;
    let ben = user(&store, "ben").await;
    let conversation = group(&store, alice, &[ben]).await;
    let round = |n: u32| {
        let store = store.clone();
        async move {
            let before = store.statements_cached();
            let key = format!("k{n}");
            append_one(&store, message(conversation, alice, Some(&key), "hi"))
                .await
                .unwrap();
            // The same key again: found by the key lookup, nothing written.
            append_one(&store, message(conversation, alice, Some(&key), "hi"))
                .await
                .unwrap();
            store
                .advance_watermarks(&[WatermarkUpdate {
                    conversation_id: conversation,
                    user_id: ben,
                    delivered_seq: Some(i64::from(n)),
                    read_seq: None,
                }])
                .await
                .unwrap();
            store.session_snapshot(ben).await.unwrap().unwrap();
            store.touch_last_seen(ben, Utc::now()).await.unwrap();
            store.statements_cached() - before
        }
    };
    // The append's lock, key lookup, insert, conversation update and sender watermarks; the
    // receipt flush shares the watermark statement; the snapshot; the departure.
    assert_eq!(round(1).await, 7, "prepared on first use");
    assert_eq!(round(2).await, 0, "all reused");
}

/// What each lifecycle operation costs, in statements and commits: a change is one
/// transaction of the change number, one statement and the commit; one that changes
/// nothing reads the message and rolls back (committing nothing); a page's reactions are
/// one statement however many messages it has.
#[tokio::test]
async fn each_change_is_one_transaction_and_a_page_of_reactions_one_statement() {
    use domain::message::{DeleteOutcome, Emoji};
    let (store, _) = store().await;
    let alice = user(&store, "alice").await;
    let ben = user(&store, "ben").await;
    let conversation = group(&store, alice, &[ben]).await;
    let mut page = Vec::new();
    for i in 0..50 {
        let sent = append_one(&store, message(conversation, alice, None, &format!("m{i}")))
            .await
            .unwrap();
        page.push(sent.message().id);
    }
    let now = Utc::now().trunc_subsecs(6);
    let thumbs = Emoji::parse("\u{1F44D}").unwrap();
    let text = MessageContent::parse("edited", 100).unwrap();
    let cost = |before: (u64, u64)| {
        (
            store.statements_executed() - before.0,
            store.transactions_committed() - before.1,
        )
    };
    let counters = || (store.statements_executed(), store.transactions_committed());

    let before = counters();
    assert!(store
        .edit_message(conversation, page[0], &text, now)
        .await
        .unwrap()
        .is_some());
    assert_eq!(cost(before), (4, 1), "BEGIN, change number, edit, COMMIT");

    for (i, m) in page.iter().enumerate() {
        let by = if i % 2 == 0 { alice } else { ben };
        let before = counters();
        let outcome = store
            .set_reaction(conversation, *m, by, &thumbs, true, now)
            .await
            .unwrap()
            .unwrap();
        assert!(outcome.changed);
        assert_eq!(
            cost(before),
            (4, 1),
            "BEGIN, change number, reaction, COMMIT"
        );
    }
    let before = counters();
    let again = store
        .set_reaction(conversation, page[0], alice, &thumbs, true, now)
        .await
        .unwrap()
        .unwrap();
    assert!(!again.changed);
    assert_eq!(cost(before), (5, 0), "... the message read back, ROLLBACK");

    let before = counters();
    let reactions = store
        .reactions_of(conversation, &page, ben, 3)
        .await
        .unwrap();
    assert_eq!(reactions.len(), 50);
    assert_eq!(cost(before), (1, 0), "one statement for 50 messages");

    let before = counters();
    let deleted = store
        .delete_message(conversation, page[1], alice, now)
        .await
        .unwrap();
    assert!(matches!(deleted, Some(DeleteOutcome::Deleted(_))));
    assert_eq!(cost(before), (4, 1), "BEGIN, change number, erase, COMMIT");
    let before = counters();
    let twice = store
        .delete_message(conversation, page[1], alice, now)
        .await
        .unwrap();
    assert!(matches!(twice, Some(DeleteOutcome::AlreadyDeleted(_))));
    assert_eq!(cost(before), (5, 0));

    let before = counters();
    assert_eq!(
        store
            .changes_after(conversation, 0, 100)
            .await
            .unwrap()
            .len(),
        50
    );
    assert_eq!(cost(before), (1, 0));
    // The rolled-back changes gave their numbers back.
    let details = store.conversation(conversation).await.unwrap().unwrap();
    assert_eq!(details.conversation.last_change, 52);
}
