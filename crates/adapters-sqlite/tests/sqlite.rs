//! What the contract cannot see: durability settings, files, migrations, and the single
//! writer's behaviour under concurrency and failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_sqlite::{run_migrations, SqliteOptions, SqliteStorage};
use domain::message::AppendOutcome;
use domain::ports::Storage;
use domain::UserId;
use std::path::Path;
use std::sync::Arc;
use storage_contract::fixtures::{direct, message, send, user, user_with_email};
use storage_contract::Store;

async fn open(path: &Path) -> SqliteStorage {
    SqliteStorage::open(path, SqliteOptions::default())
        .await
        .expect("open the database")
}

fn store(storage: &SqliteStorage) -> Store {
    Arc::new(storage.clone()) as Arc<dyn Storage>
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[tokio::test]
async fn the_writer_runs_in_wal_mode_with_full_sync_and_foreign_keys() {
    let dir = temp_dir();
    let storage = open(&dir.path().join("chat.db")).await;
    let pragmas = storage.writer_pragmas().await.unwrap();
    assert_eq!(pragmas.journal_mode, "wal");
    assert_eq!(pragmas.synchronous, 2, "synchronous=FULL");
    assert!(pragmas.foreign_keys);
    assert_eq!(pragmas.busy_timeout, std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn opening_creates_the_file_and_its_parent_directories() {
    let dir = temp_dir();
    let path = dir.path().join("nested").join("deeper").join("chat.db");
    let storage = open(&path).await;
    store(&storage).ping().await.unwrap();
    assert!(path.is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_closing_and_reopening_the_file() {
    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    let first = store(&open(&path).await);
    let (a, b) = (user(&first, "A").await, user(&first, "B").await);
    let conversation = direct(&first, &a, &b).await;
    let sent = send(&first, conversation.conversation.id, a.id, "still here?").await;
    drop(first);

    let reopened = store(&open(&path).await);
    assert_eq!(reopened.user_by_id(a.id).await.unwrap(), Some(a));
    let details = reopened
        .conversation(conversation.conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(details.conversation.last_seq, 1);
    assert_eq!(details.participants.len(), 2);
    assert_eq!(
        reopened
            .messages_after(conversation.conversation.id, 0, 10)
            .await
            .unwrap(),
        vec![sent]
    );
}

#[tokio::test]
async fn migrations_run_once_and_opening_twice_is_harmless() {
    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    assert_eq!(run_migrations(&path).await.unwrap(), 5);
    assert_eq!(run_migrations(&path).await.unwrap(), 0);
    let first = open(&path).await;
    let a = user(&store(&first), "A").await;
    drop(first);
    let second = open(&path).await;
    assert_eq!(store(&second).user_by_id(a.id).await.unwrap(), Some(a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_appends_into_one_conversation_get_seqs_one_to_fifty() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let new = message(id, a.id, Some(&format!("k{i}")), &format!("m{i}"));
                store.append_messages(&[new]).await.unwrap().pop().unwrap()
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            AppendOutcome::Created(m) => seqs.push(m.seq),
            AppendOutcome::Replayed(m) => panic!("unexpected replay of {m:?}"),
        }
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<i64>>());
    let stored: Vec<i64> = store
        .messages_after(id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(stored, (1..=50).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_appends_with_one_key_make_one_message() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let new = message(id, a.id, Some("retry"), "once");
                store.append_messages(&[new]).await.unwrap().pop().unwrap()
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let outcome = task.await.unwrap().unwrap();
        created += usize::from(matches!(outcome, AppendOutcome::Created(_)));
        assert_eq!(outcome.message().seq, 1);
    }
    assert_eq!(created, 1);
    let details = store.conversation(id).await.unwrap().unwrap();
    assert_eq!(details.conversation.last_seq, 1);
    assert_eq!(store.messages_after(id, 0, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_share_one_gap_free_sequence() {
    // Two writers on one file, as two processes would be: the busy timeout and
    // BEGIN IMMEDIATE serialise them.
    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    let (first, second) = (open(&path).await, open(&path).await);
    storage_contract::concurrency::sends_through_two_stores_share_one_gap_free_sequence(
        store(&first),
        store(&second),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_lose_no_concurrent_watermark_update() {
    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    let (first, second) = (open(&path).await, open(&path).await);
    storage_contract::concurrency::concurrent_watermark_updates_of_one_row_lose_none(
        store(&first),
        store(&second),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_take_distinct_consecutive_change_numbers() {
    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    let (first, second) = (open(&path).await, open(&path).await);
    storage_contract::lifecycle::concurrent_changes_through_two_stores_get_distinct_consecutive_numbers(
        store(&first),
        store(&second),
    )
    .await;
}

#[tokio::test]
async fn a_batch_that_fails_commits_none_of_its_messages() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    // The second message's sender is no account: its insert breaks a foreign key.
    let batch = [
        message(id, a.id, None, "fine"),
        message(id, UserId::new(), None, "from nobody"),
    ];
    assert!(store.append_messages(&batch).await.is_err());
    assert!(store.messages_after(id, 0, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .conversation(id)
            .await
            .unwrap()
            .unwrap()
            .conversation
            .last_seq,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_does_not_fail_the_writes_committed_with_it() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    let id = direct(&store, &a, &b).await.conversation.id;
    // Concurrent writes share commits; the broken one in their midst must fail alone.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            let sender = if i == 20 { UserId::new() } else { a.id };
            tokio::spawn(async move {
                store
                    .append_messages(&[message(id, sender, None, &format!("m{i}"))])
                    .await
            })
        })
        .collect();
    let mut failures = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(mut results) => assert!(results.pop().unwrap().is_ok()),
            Err(_) => failures += 1,
        }
    }
    assert_eq!(failures, 1);
    let seqs: Vec<i64> = store
        .messages_after(id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (1..=39).collect::<Vec<i64>>());
}

#[tokio::test]
async fn search_ignores_case_beyond_ascii() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let me = user(&store, "Me").await;
    let emile = user_with_email(&store, "Émile Zola", "zola@example.com").await;
    let found: Vec<UserId> = store
        .search_users("éMILE", 10, me.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(found, vec![emile.id]);
}

#[tokio::test]
async fn search_matches_percent_and_underscore_only_literally() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let me = user(&store, "Me").await;
    let literal = user_with_email(&store, "100% sure", "sure@example.com").await;
    let _decoy = user_with_email(&store, "100x sure", "decoy@example.com").await;
    let found: Vec<UserId> = store
        .search_users("100% sure", 10, me.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(found, vec![literal.id]);
    // A lone `%` finds the name that has one, not everyone.
    let percent: Vec<UserId> = store
        .search_users("%", 10, me.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(percent, vec![literal.id]);
    assert!(store
        .search_users("100_", 10, me.id)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn search_orders_by_display_name_ignoring_case_and_stops_at_the_limit() {
    let dir = temp_dir();
    let store = store(&open(&dir.path().join("chat.db")).await);
    let me = user(&store, "Me").await;
    for (name, email) in [
        ("Carol Tag", "carol@example.com"),
        ("alice Tag", "alice@example.com"),
        ("Bob Tag", "bob@example.com"),
    ] {
        user_with_email(&store, name, email).await;
    }
    let names: Vec<String> = store
        .search_users("tag", 10, me.id)
        .await
        .unwrap()
        .iter()
        .map(|u| u.display_name.as_str().to_owned())
        .collect();
    assert_eq!(names, ["alice Tag", "Bob Tag", "Carol Tag"]);
    assert_eq!(store.search_users("tag", 2, me.id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn messages_stored_before_the_lifecycle_migration_read_back_intact_after_it() {
    use chrono::DateTime;
    use diesel::connection::{Connection, SimpleConnection};
    use diesel::sqlite::SqliteConnection;
    use domain::conversation::ConversationState;
    use domain::message::{ContentType, Message, MessageContent};
    use domain::{ConversationId, MessageId};

    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    // The release before: its two migrations, then its rows, by plain SQL.
    assert_eq!(
        adapters_sqlite::testing::migrate_to(&path, adapters_sqlite::testing::BEFORE_LIFECYCLE)
            .unwrap(),
        2
    );
    {
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let missing = conn.batch_execute("SELECT 1 FROM reactions");
        assert!(missing.is_err(), "the lifecycle migration has not run yet");
        conn.batch_execute(adapters_sqlite::testing::PREVIOUS_RELEASE_ROWS)
            .unwrap();
    }
    // Opening applies the new migration.
    let storage = open(&path).await;
    assert_eq!(run_migrations(&path).await.unwrap(), 0, "applied on open");
    let store = store(&storage);

    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    let time = |micros| DateTime::from_timestamp_micros(micros).unwrap();
    let (ada, bob) = (
        UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000a")),
        UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000b")),
    );
    let id = ConversationId::from_uuid(uuid("018f0000-0000-7000-8000-0000000000c0"));
    let message = |n: u8, seq, sender, key: Option<&str>, content: &str, reply_to, at| Message {
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
        1_796_029_320_000_001,
    );
    let m2 = message(
        2,
        2,
        bob,
        None,
        "hi Ada",
        Some(m1.id),
        1_796_029_380_000_002,
    );
    let m3 = message(
        3,
        3,
        ada,
        None,
        "  multi\nline ünïcødé 🎉 ",
        None,
        1_796_029_440_000_003,
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
        .edit_message(id, m1.id, &text, time(1_796_112_000_000_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((edited.change_seq, edited.seq), (1, 1));
    assert_eq!(store.changes_after(id, 0, 10).await.unwrap(), vec![edited]);
}

#[tokio::test]
async fn a_file_from_before_end_to_end_encryption_migrates_and_encrypts() {
    use diesel::connection::{Connection, SimpleConnection};
    use diesel::sqlite::SqliteConnection;
    use domain::encryption::{
        DeviceName, DevicePublicKey, InsertDeviceOutcome, KeyUpload, NewDevice, PutKeysOutcome,
        WrappedKey,
    };
    use domain::ports::{ConversationStore, EncryptionStore, MessageStore};
    use domain::{ConversationId, DeviceId};

    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    adapters_sqlite::testing::migrate_to(&path, adapters_sqlite::testing::BEFORE_E2EE).unwrap();
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    conn.batch_execute(adapters_sqlite::testing::PREVIOUS_RELEASE_ROWS)
        .unwrap();
    assert!(
        conn.batch_execute("SELECT 1 FROM devices").is_err(),
        "the e2ee migration has not run yet"
    );
    drop(conn);

    let storage = open(&path).await;
    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    let ada = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000a"));
    let bob = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000b"));
    let id = ConversationId::from_uuid(uuid("018f0000-0000-7000-8000-0000000000c0"));
    assert_eq!(storage.encryption_state(id).await.unwrap(), None);
    assert_eq!(storage.messages_after(id, 0, 10).await.unwrap().len(), 3);
    let (state, turned_on) = storage
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
            storage.insert_device(&new, 10).await.unwrap(),
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
        storage.put_keys(&upload).await.unwrap(),
        PutKeysOutcome::Stored {
            key_version: 1,
            rotated: true
        }
    );
    assert_eq!(
        storage.keys_for_device(id, devices[1]).await.unwrap().len(),
        1
    );
    assert!(storage.remove_participant(id, bob).await.unwrap());
    assert!(
        storage
            .encryption_state(id)
            .await
            .unwrap()
            .unwrap()
            .rotation_needed
    );
}

#[tokio::test]
async fn messages_stored_before_attachments_read_back_with_none_and_can_be_sent_with_some() {
    use diesel::connection::{Connection, SimpleConnection};
    use diesel::sqlite::SqliteConnection;
    use diesel::RunQueryDsl;
    use domain::attachment::{AttachmentConfirmation, NewAttachment};
    use domain::message::{
        AppendOutcome, ClientMsgId, ContentType, DeleteOutcome, MessageContent, NewMessage,
    };
    use domain::ports::{AttachmentStore, ConversationStore, MessageStore};
    use domain::{AttachmentId, ConversationId, MessageId};

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    let dir = temp_dir();
    let path = dir.path().join("chat.db");
    adapters_sqlite::testing::migrate_to(&path, adapters_sqlite::testing::BEFORE_ATTACHMENTS)
        .unwrap();
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    assert!(
        conn.batch_execute("SELECT 1 FROM attachments").is_err(),
        "the attachments migration has not run yet"
    );
    conn.batch_execute(adapters_sqlite::testing::PREVIOUS_RELEASE_ROWS)
        .unwrap();
    drop(conn);

    // Opening applies the new migration.
    let storage = open(&path).await;
    assert_eq!(run_migrations(&path).await.unwrap(), 0, "applied on open");
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    let counted: Count =
        diesel::sql_query("SELECT count(*) AS n FROM messages WHERE attachment_count = 0")
            .get_result(&mut conn)
            .unwrap();
    assert_eq!(counted.n, 3, "every old message has attachment_count 0");
    drop(conn);

    let uuid = |s: &str| uuid::Uuid::parse_str(s).unwrap();
    let ada = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000a"));
    let bob = UserId::from_uuid(uuid("018f0000-0000-7000-8000-00000000000b"));
    let id = ConversationId::from_uuid(uuid("018f0000-0000-7000-8000-0000000000c0"));
    let old = storage.messages_after(id, 0, 10).await.unwrap();
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|m| m.attachments.is_empty()), "{old:?}");
    assert_eq!(old[1].content, "hi Ada");
    let m1 = MessageId::from_uuid(uuid("018f0000-0000-7000-8000-000000000001"));
    let first = storage.message(id, m1).await.unwrap().unwrap();
    assert!(first.attachments.is_empty());
    let list = storage.list_conversations(bob, None, 0, 10).await.unwrap();
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
    storage.insert_attachment(&new).await.unwrap();
    let confirmed = storage
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
    let mut results = storage.append_messages(&[send]).await.unwrap();
    let Some(Ok(AppendOutcome::Created(sent))) = results.pop() else {
        panic!("created")
    };
    assert_eq!((sent.seq, sent.attachments.len()), (4, 1));
    assert_eq!(storage.messages_after(id, 3, 10).await.unwrap(), vec![sent]);
    let deleted = storage.delete_message(id, m1, ada, now).await.unwrap();
    assert!(matches!(deleted, Some(DeleteOutcome::Deleted(m)) if m.attachments.is_empty()));
}
