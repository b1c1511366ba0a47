//! The embedded migrations on a real server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_postgres::testing::fresh_database;
use adapters_postgres::{revert_all_migrations, run_migrations, PostgresStorage};
use domain::ports::StoreHealth;

#[tokio::test]
async fn every_migration_runs_up_down_and_up_again() {
    let url = fresh_database().await;
    // A fresh database is already migrated: nothing is pending.
    assert_eq!(run_migrations(&url).await.unwrap(), 0);

    let reverted = revert_all_migrations(&url).await.unwrap();
    assert!(reverted >= 1);
    assert_eq!(run_migrations(&url).await.unwrap(), reverted);

    let store = PostgresStorage::connect(&url, 1).await.unwrap();
    store.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_nodes_migrating_at_once_apply_each_migration_once() {
    let url = fresh_database().await;
    let all = revert_all_migrations(&url).await.unwrap();

    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { run_migrations(&url).await.unwrap() })
        })
        .collect();
    let mut applied = 0;
    for node in nodes {
        applied += node.await.unwrap();
    }

    assert_eq!(applied, all);
    assert_eq!(run_migrations(&url).await.unwrap(), 0);
}

#[tokio::test]
async fn migrating_an_unreachable_server_is_a_storage_error() {
    assert!(run_migrations("postgres://postgres@127.0.0.1:1/none")
        .await
        .is_err());
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

#[tokio::test]
async fn messages_stored_before_the_lifecycle_migration_read_back_intact_after_it() {
    use chrono::{DateTime, Utc};
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
    use domain::conversation::ConversationState;
    use domain::message::{ContentType, Message, MessageContent};
    use domain::ports::{ConversationStore, MessageStore};
    use domain::{ConversationId, MessageId, UserId};

    let url = adapters_postgres::testing::database_migrated_to(
        adapters_postgres::testing::BEFORE_LIFECYCLE,
    )
    .await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let before: Exists = diesel::sql_query("SELECT to_regclass('reactions') IS NOT NULL AS exists")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(!before.exists, "the lifecycle migration has not run yet");
    conn.batch_execute(adapters_postgres::testing::PREVIOUS_RELEASE_ROWS)
        .await
        .unwrap();
    drop(conn);

    // The lifecycle's and those after it (end-to-end encryption, attachments).
    assert_eq!(
        run_migrations(&url).await.unwrap(),
        3,
        "the lifecycle's, the e2ee one and the attachments'"
    );
    let store = PostgresStorage::connect(&url, 2).await.unwrap();

    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    let time = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let (ada, bob) = (
        UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000a")),
        UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000b")),
    );
    let id = ConversationId::from_uuid(uuid("018f0000-0000-7000-8000-0000000000c0"));
    let message =
        |n: u8, seq, sender, key: Option<&str>, content: &str, reply_to, at: &str| Message {
            id: MessageId::from_uuid(uuid(&format!("018f0000-0000-7000-8000-00000000000{n}"))),
            conversation_id: id,
            seq,
            sender_id: sender,
            client_msg_id: key.map(str::to_owned),
            content: content.to_owned(),
            content_type: ContentType::Text,
            reply_to,
            created_at: time(at),
            edited_at: None,
            deleted_at: None,
            deleted_by: None,
            change_seq: 0,
            attachments: Vec::new(),
        };
    let m1 = message(
        1,
        1,
        ada,
        Some("key-1"),
        "hello",
        None,
        "2026-11-30T09:02:00.000001Z",
    );
    let m2 = message(
        2,
        2,
        bob,
        None,
        "hi Ada",
        Some(m1.id),
        "2026-11-30T09:03:00.000002Z",
    );
    let m3 = message(
        3,
        3,
        ada,
        None,
        "  multi\nline ünïcødé 🎉 ",
        None,
        "2026-11-30T09:04:00.000003Z",
    );

    assert_eq!(
        store.messages_before(id, None, 10).await.unwrap(),
        vec![m3.clone(), m2.clone(), m1.clone()]
    );
    assert_eq!(
        store.messages_after(id, 0, 10).await.unwrap(),
        vec![m1.clone(), m2.clone(), m3.clone()]
    );
    assert_eq!(store.message(id, m2.id).await.unwrap(), Some(m2.clone()));
    assert!(store.changes_after(id, 0, 10).await.unwrap().is_empty());

    let list = store.list_conversations(bob, None, 0, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    let conversation = &list[0].details.conversation;
    assert_eq!(
        (
            conversation.id,
            conversation.last_seq,
            conversation.last_change
        ),
        (id, 3, 0)
    );
    assert_eq!(conversation.last_message_at, Some(m3.created_at));
    assert_eq!(list[0].last_message.as_ref(), Some(&m3));
    assert_eq!(list[0].details.participants.len(), 2);

    let snapshot = store.session_snapshot(bob).await.unwrap().unwrap();
    assert_eq!(snapshot.user.display_name.as_str(), "Bob");
    assert_eq!(
        snapshot.conversations,
        vec![ConversationState {
            conversation_id: id,
            last_seq: 3,
            delivered_seq: 2,
            read_seq: 1,
            peer_delivered_seq: 3,
            peer_read_seq: 3,
            last_change: 0,
        }]
    );

    // And the old messages take part in the lifecycle from the first change number.
    let text = MessageContent::parse("hello, edited", 100).unwrap();
    let edited = store
        .edit_message(id, m1.id, &text, time("2026-12-03T10:00:00Z"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((edited.change_seq, edited.seq), (1, 1));
    assert_eq!(store.changes_after(id, 0, 10).await.unwrap(), vec![edited]);
}

#[tokio::test]
async fn a_database_from_before_end_to_end_encryption_migrates_and_encrypts() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
    use domain::conversation::Role;
    use domain::encryption::{
        DeviceName, DevicePublicKey, InsertDeviceOutcome, KeyUpload, NewDevice, PutKeysOutcome,
        WrappedKey,
    };
    use domain::ports::{ConversationStore, EncryptionStore, MessageStore};
    use domain::{ConversationId, DeviceId, UserId};

    let url =
        adapters_postgres::testing::database_migrated_to(adapters_postgres::testing::BEFORE_E2EE)
            .await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let before: Exists = diesel::sql_query("SELECT to_regclass('devices') IS NOT NULL AS exists")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(!before.exists, "the e2ee migration has not run yet");
    conn.batch_execute(adapters_postgres::testing::PREVIOUS_RELEASE_ROWS)
        .await
        .unwrap();
    drop(conn);

    assert_eq!(
        run_migrations(&url).await.unwrap(),
        2,
        "the e2ee one and the attachments'"
    );
    let store = PostgresStorage::connect(&url, 2).await.unwrap();
    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    let ada = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000a"));
    let bob = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000b"));
    let id = ConversationId::from_uuid(uuid("018f0000-0000-7000-8000-0000000000c0"));

    // The old conversation is plain, its messages intact; it can be encrypted now.
    assert_eq!(store.encryption_state(id).await.unwrap(), None);
    assert_eq!(store.messages_after(id, 0, 10).await.unwrap().len(), 3);
    let (state, turned_on) = store
        .enable_encryption(id, chrono::Utc::now())
        .await
        .unwrap();
    assert!(turned_on);
    assert_eq!(state.key_version, 0);
    let key = format!("BA{}", "A".repeat(85));
    let mut devices = Vec::new();
    for user in [ada, bob] {
        let new = NewDevice {
            id: DeviceId::new(),
            user_id: user,
            public_key: DevicePublicKey::parse(&key).unwrap(),
            name: DeviceName::parse("laptop").unwrap(),
            created_at: chrono::Utc::now(),
        };
        assert!(matches!(
            store.insert_device(&new, 10).await.unwrap(),
            InsertDeviceOutcome::Inserted(_)
        ));
        devices.push(new.id);
    }
    let upload = KeyUpload {
        conversation_id: id,
        version: 1,
        intent: domain::encryption::KeyIntent::New,
        from_device_id: devices[0],
        from_user_id: ada,
        wraps: devices
            .iter()
            .map(|d| WrappedKey::parse(*d, "AQID").unwrap())
            .collect(),
        created_at: chrono::Utc::now(),
    };
    assert_eq!(
        store.put_keys(&upload).await.unwrap(),
        PutKeysOutcome::Stored {
            key_version: 1,
            rotated: true
        }
    );
    assert_eq!(
        store.keys_for_device(id, devices[1]).await.unwrap().len(),
        1
    );
    // A direct conversation keeps its members; the flag is exercised on a plain removal.
    assert!(store.remove_participant(id, bob).await.unwrap());
    assert!(
        store
            .encryption_state(id)
            .await
            .unwrap()
            .unwrap()
            .rotation_needed
    );
    store
        .add_participant(id, bob, Role::Member, chrono::Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn messages_stored_before_attachments_read_back_with_none_and_can_be_sent_with_some() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
    use domain::attachment::{AttachmentConfirmation, NewAttachment};
    use domain::message::{
        AppendOutcome, ClientMsgId, ContentType, DeleteOutcome, MessageContent, NewMessage,
    };
    use domain::ports::{AttachmentStore, ConversationStore, MessageStore};
    use domain::{AttachmentId, ConversationId, MessageId, UserId};

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    let url = adapters_postgres::testing::database_migrated_to(
        adapters_postgres::testing::BEFORE_ATTACHMENTS,
    )
    .await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let before: Exists =
        diesel::sql_query("SELECT to_regclass('attachments') IS NOT NULL AS exists")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert!(!before.exists, "the attachments migration has not run yet");
    conn.batch_execute(adapters_postgres::testing::PREVIOUS_RELEASE_ROWS)
        .await
        .unwrap();

    assert_eq!(run_migrations(&url).await.unwrap(), 1, "only the new one");
    let counted: Count =
        diesel::sql_query("SELECT count(*) AS n FROM messages WHERE attachment_count = 0")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(counted.n, 3, "every old message has attachment_count 0");
    drop(conn);

    let store = PostgresStorage::connect(&url, 2).await.unwrap();
    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    let ada = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000a"));
    let bob = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000b"));
    let id = ConversationId::from_uuid(uuid("018f0000-0000-7000-8000-0000000000c0"));
    let old = store.messages_after(id, 0, 10).await.unwrap();
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|m| m.attachments.is_empty()), "{old:?}");
    assert_eq!(old[1].content, "hi Ada");
    let m1 = MessageId::from_uuid(uuid("018f0000-0000-7000-8000-000000000001"));
    let first = store.message(id, m1).await.unwrap().unwrap();
    assert!(first.attachments.is_empty());
    let list = store.list_conversations(bob, None, 0, 10).await.unwrap();
    assert_eq!(list[0].last_message.as_ref(), old.last());

    // The old conversation takes attachments now, and its old messages are deleted alike.
    let now = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
    let new = NewAttachment {
        id: AttachmentId::new(),
        conversation_id: id,
        uploader_id: ada,
        filename: "a.pdf".to_owned(),
        mime_type: "application/pdf".to_owned(),
        size: 10,
        encrypted: false,
        created_at: now,
    };
    store.insert_attachment(&new).await.unwrap();
    let confirmed = store
        .confirm_attachment(
            new.id,
            &AttachmentConfirmation {
                mime_type: "application/pdf".to_owned(),
                size: 10,
                width: None,
                height: None,
                has_thumbnail: false,
                confirmed_at: now,
            },
        )
        .await
        .unwrap()
        .unwrap();
    let send = NewMessage {
        id: MessageId::new(),
        conversation_id: id,
        sender_id: ada,
        client_msg_id: Some(ClientMsgId::parse("key-2").unwrap()),
        content: MessageContent::parse("the file", 100).unwrap(),
        content_type: ContentType::Text,
        reply_to: None,
        reply_preview: None,
        created_at: now,
        attachments: vec![confirmed],
    };
    let mut results = store.append_messages(&[send]).await.unwrap();
    let Some(Ok(AppendOutcome::Created(sent))) = results.pop() else {
        panic!("created")
    };
    assert_eq!((sent.seq, sent.attachments.len()), (4, 1));
    assert_eq!(store.messages_after(id, 3, 10).await.unwrap(), vec![sent]);
    let deleted = store.delete_message(id, m1, ada, now).await.unwrap();
    assert!(matches!(deleted, Some(DeleteOutcome::Deleted(m)) if m.attachments.is_empty()));
}
