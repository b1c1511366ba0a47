//! Plans that cannot go bad: the statements a pooled connection prepared while the tables
//! were empty still read by index once `messages` holds 100,000 rows.
//!
//! A pooled connection plans each statement once (`plan_cache_mode = force_generic_plan`)
//! and keeps that plan until something invalidates it, typically autovacuum's ANALYZE. A
//! fresh deployment prepares everything on empty tables; a plan that chose a sequential
//! scan then (cheapest on an empty table) reads the whole table on every call as it grows,
//! and whether an ANALYZE lands in time decided whether a fresh database held 4,000 sends
//! a second or collapsed. Here autovacuum is off for the test's tables, so nothing rescues
//! a bad plan, and the statistics say "empty" (as they do once autovacuum or `vacuumdb`
//! has looked at a new deployment) while the statements are first prepared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use adapters_postgres::testing::fresh_database;
use adapters_postgres::{Conn, PostgresStorage};
use chrono::{SubsecRound, Utc};
use common::{message, user};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::attachment::{AttachmentConfirmation, NewAttachment};
use domain::conversation::{GroupTitle, NewDirectConversation, NewGroupConversation};
use domain::message::{DeleteOutcome, Emoji, MessageContent};
use domain::ports::{
    AttachmentStore, ConversationStore, MessageStore, ReceiptStore, UserStore, WatermarkUpdate,
};
use domain::{AttachmentId, ConversationId, MessageId, UserId};

/// The tables the hot statements read.
const TABLES: [&str; 6] = [
    "messages",
    "conversations",
    "participants",
    "users",
    "reactions",
    "attachments",
];

/// The rows `messages` is grown to (over 1,000 conversations of 2,000 users).
const GROWN_MESSAGES: i64 = 100_000;

/// Grows every table behind the pool's back, in one transaction: 2,000 users in 1,000
/// direct conversations of 100 messages each, every message with an idempotency key, the
/// first 20 of each changed (a change number) with a reaction from their sender. Ids
/// are made from numbers (`md5(...)::uuid`) so that no temporary table is needed: creating
/// one changes the session's temporary schema, and any schema change makes every backend
/// of the database drop its cached plans, which would hide exactly what is tested here.
const GROW: &str = "
INSERT INTO users (id, email, display_name, password_hash, created_at)
    SELECT md5('grown-user-' || i)::uuid, 'grown-' || i || '@example.com', 'grown', 'x', now()
    FROM generate_series(1, 2000) AS i;
INSERT INTO conversations (id, kind, created_by, created_at, last_seq, last_change, direct_key)
    SELECT md5('grown-conversation-' || k)::uuid, 'direct', md5('grown-user-' || 2 * k)::uuid,
        now(), 100, 20, 'grown:' || k
    FROM generate_series(1, 1000) AS k;
INSERT INTO participants (conversation_id, user_id, role, joined_at, delivered_seq, read_seq)
    SELECT md5('grown-conversation-' || k)::uuid, md5('grown-user-' || (2 * k - side))::uuid,
        'member', now(), 100, 100
    FROM generate_series(1, 1000) AS k, generate_series(0, 1) AS side;
INSERT INTO messages
    (id, conversation_id, seq, sender_id, client_msg_id, content, content_type, created_at,
     change_seq)
    SELECT gen_random_uuid(), md5('grown-conversation-' || k)::uuid, s,
        md5('grown-user-' || (2 * k - s % 2))::uuid, 'grown-' || s,
        'a message of the grown history', 'text', now(), CASE WHEN s <= 20 THEN s ELSE 0 END
    FROM generate_series(1, 1000) AS k, generate_series(1, 100) AS s;
INSERT INTO reactions (conversation_id, message_id, user_id, emoji, change_seq, created_at)
    SELECT conversation_id, id, sender_id, 'grown', change_seq, now()
    FROM messages WHERE change_seq > 0;";

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    statement: String,
    #[diesel(sql_type = BigInt)]
    params: i64,
    #[diesel(sql_type = BigInt)]
    generic_plans: i64,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName, Debug, PartialEq, Eq, Clone)]
struct Scans {
    #[diesel(sql_type = Text)]
    relname: String,
    #[diesel(sql_type = BigInt)]
    seq_scan: i64,
    #[diesel(sql_type = BigInt)]
    seq_tup_read: i64,
    #[diesel(sql_type = BigInt)]
    n_live_tup: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A confirmed upload of `uploader` to `conversation`, ready to send.
async fn upload(
    store: &PostgresStorage,
    conversation: ConversationId,
    uploader: UserId,
    filename: &str,
) -> domain::attachment::Attachment {
    let now = Utc::now().trunc_subsecs(6);
    let new = NewAttachment {
        id: AttachmentId::new(),
        conversation_id: conversation,
        uploader_id: uploader,
        filename: filename.to_owned(),
        mime_type: "image/png".to_owned(),
        size: 100,
        encrypted: false,
        created_at: now,
    };
    store.insert_attachment(&new).await.unwrap();
    let confirmation = AttachmentConfirmation {
        mime_type: "image/png".to_owned(),
        size: 100,
        width: Some(10),
        height: Some(10),
        has_thumbnail: true,
        confirmed_at: now,
    };
    store
        .confirm_attachment(new.id, &confirmation)
        .await
        .unwrap()
        .unwrap()
}

/// Two users with a direct conversation and a group with a third, the way the server's
/// sessions use the store.
struct Traffic {
    a: UserId,
    b: UserId,
    c: UserId,
    direct: ConversationId,
    group: ConversationId,
}

impl Traffic {
    async fn start(store: &PostgresStorage) -> Self {
        let [a, b, c] = [user(store).await, user(store).await, user(store).await];
        let now = Utc::now().trunc_subsecs(6);
        let direct = ConversationId::new();
        store
            .create_direct(&NewDirectConversation {
                id: direct,
                created_by: a,
                other: b,
                created_at: now,
            })
            .await
            .unwrap();
        let group = ConversationId::new();
        store
            .create_group(&NewGroupConversation {
                id: group,
                created_by: a,
                title: GroupTitle::parse("team").unwrap(),
                members: vec![b, c],
                created_at: now,
            })
            .await
            .unwrap();
        Self {
            a,
            b,
            c,
            direct,
            group,
        }
    }

    /// One round of the send / receive / sync paths: a batch of keyed sends (one of them a
    /// replay of the round before), delivery and read receipts, a session's snapshot, a
    /// sync and a history page, unread counts, membership checks, a departure; and of the
    /// message lifecycle: an edit, reactions on and off (one changing nothing), a deletion
    /// and its repetition, a page's reactions and reply originals, the changes after a
    /// cursor.
    async fn round(&self, store: &PostgresStorage, round: usize) {
        let mut batch = vec![
            message(self.direct, self.a, &format!("r{round}-1")),
            message(self.direct, self.b, &format!("r{round}-2")),
            message(self.group, self.c, &format!("r{round}-3")),
        ];
        if round > 0 {
            // A resend of a key already stored: the idempotency lookup finds it.
            batch.push(message(self.direct, self.a, &format!("r{}-1", round - 1)));
        }
        // A send with two attachments: their lock and binding, then every page reading them.
        let mut with_files = message(self.direct, self.b, &format!("r{round}-files"));
        for name in ["one.png", "two.png"] {
            with_files
                .attachments
                .push(upload(store, self.direct, self.b, name).await);
        }
        batch.push(with_files);
        let outcomes = store.append_messages(&batch).await.unwrap();
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let seq = store
            .conversation(self.direct)
            .await
            .unwrap()
            .unwrap()
            .conversation
            .last_seq;
        store
            .advance_watermarks(&[
                WatermarkUpdate {
                    conversation_id: self.direct,
                    user_id: self.b,
                    delivered_seq: Some(seq),
                    read_seq: None,
                },
                WatermarkUpdate {
                    conversation_id: self.direct,
                    user_id: self.a,
                    delivered_seq: None,
                    read_seq: Some(seq),
                },
                WatermarkUpdate {
                    conversation_id: self.group,
                    user_id: self.b,
                    delivered_seq: None,
                    read_seq: Some(1),
                },
            ])
            .await
            .unwrap();
        for user in [self.a, self.b, self.c] {
            assert!(store.session_snapshot(user).await.unwrap().is_some());
            store.unread_counts(user).await.unwrap();
            store.conversation_ids(user).await.unwrap();
            store.user_by_id(user).await.unwrap();
        }
        store.messages_after(self.direct, 0, 100).await.unwrap();
        store.messages_before(self.group, None, 50).await.unwrap();
        store
            .messages_before(self.group, Some(2), 50)
            .await
            .unwrap();
        store.participant(self.group, self.c).await.unwrap();
        store.touch_last_seen(self.c, Utc::now()).await.unwrap();
        let replied_to = outcomes[0].as_ref().unwrap().message();
        assert!(store
            .message(self.direct, replied_to.id)
            .await
            .unwrap()
            .is_some());

        // Not the keyed send of `a` replayed next round: its content must stay as sent.
        let sent: Vec<_> = outcomes
            .iter()
            .map(|o| o.as_ref().unwrap().message().clone())
            .collect();
        let (edited, reacted) = (&sent[1], &sent[2]);
        let now = Utc::now().trunc_subsecs(6);
        let text = MessageContent::parse("edited", 100).unwrap();
        assert!(store
            .edit_message(self.direct, edited.id, &text, now)
            .await
            .unwrap()
            .is_some());
        let thumbs = Emoji::parse("\u{1F44D}").unwrap();
        for (on, changes) in [(true, true), (true, false), (false, true), (true, true)] {
            let outcome = store
                .set_reaction(self.group, reacted.id, self.a, &thumbs, on, now)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(outcome.changed, changes);
        }
        let page: Vec<MessageId> = store
            .messages_before(self.group, None, 50)
            .await
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        assert!(!store
            .reactions_of(self.group, &page, self.b, 3)
            .await
            .unwrap()
            .is_empty());
        // A page's reply originals, in one statement.
        assert_eq!(
            store
                .messages_by_ids(self.group, &page[..page.len().min(20)])
                .await
                .unwrap()
                .len(),
            page.len().min(20)
        );
        for deleted_before in [false, true] {
            let outcome = store
                .delete_message(self.direct, edited.id, self.b, now)
                .await
                .unwrap();
            assert_eq!(
                matches!(outcome, Some(DeleteOutcome::AlreadyDeleted(_))),
                deleted_before
            );
        }
        assert!(!store
            .changes_after(self.direct, 0, 50)
            .await
            .unwrap()
            .is_empty());
    }
}

/// The sequential scans of the hot tables so far, with every pooled connection's pending
/// statistics flushed first (a backend reports its counters at most once a second,
/// otherwise up to 10 s later; `pg_stat_force_next_flush` makes the next report immediate).
async fn scans(store: &PostgresStorage, admin: &mut AsyncPgConnection) -> Vec<Scans> {
    for mut conn in store.pooled_connections().await.unwrap() {
        diesel::sql_query("SELECT pg_stat_force_next_flush()")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    // A statement of its own: it ends the flushes' transactions before it reads.
    admin
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    diesel::sql_query(
        "SELECT relname::text, seq_scan, seq_tup_read, n_live_tup FROM pg_stat_user_tables \
         WHERE relname = ANY(ARRAY['messages', 'conversations', 'participants', 'users', \
         'reactions', 'attachments']) ORDER BY relname",
    )
    .load(admin)
    .await
    .unwrap()
}

/// The plan each statement prepared on `conn` uses now: `EXPLAIN EXECUTE` with NULL for
/// every parameter (a generic plan does not depend on the values). Not the listing itself:
/// an uncached statement, closed once it has run.
async fn prepared_plans(conn: &mut Conn) -> Vec<(Prepared, Vec<String>)> {
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, statement, cardinality(parameter_types)::int8 AS params, generic_plans \
         FROM pg_prepared_statements WHERE statement NOT LIKE '%pg_prepared_statements%'",
    )
    .load(&mut **conn)
    .await
    .unwrap();
    let mut plans = Vec::new();
    for statement in prepared {
        let args = vec!["NULL"; usize::try_from(statement.params).unwrap()].join(", ");
        let explain = if args.is_empty() {
            format!("EXPLAIN EXECUTE {}", statement.name)
        } else {
            format!("EXPLAIN EXECUTE {}({args})", statement.name)
        };
        let lines: Vec<PlanLine> = diesel::sql_query(explain).load(&mut **conn).await.unwrap();
        plans.push((statement, lines.into_iter().map(|l| l.line).collect()));
    }
    plans
}

/// What in `plan` reads a whole table: a sequential scan of a hot table, or an index scan
/// without an index condition (a walk of the whole index).
fn full_scans(plan: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in plan.iter().enumerate() {
        if TABLES
            .iter()
            .any(|t| line.contains(&format!("Seq Scan on {t} ")))
        {
            found.push(line.trim().to_owned());
        }
        let index_scan = ["Index Scan", "Index Only Scan", "Bitmap Index Scan"]
            .iter()
            .any(|kind| line.contains(kind));
        if index_scan {
            // The node's own detail lines, up to the next node.
            let conditioned = plan[i + 1..]
                .iter()
                .take_while(|l| !l.contains("->"))
                .any(|l| l.contains("Index Cond:"));
            if !conditioned {
                found.push(line.trim().to_owned());
            }
        }
    }
    found
}

/// What in `plan` finds a message by id through another index than its primary key (the
/// id a filter, so every row of the other index's range is read): `(conversation_id, seq)`
/// with `id` as a filter reads a whole conversation to find one message.
fn messages_by_id_off_the_primary_key(plan: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in plan.iter().enumerate() {
        if line.contains("Index Scan") && line.contains(" on messages") {
            let by_id_filter = plan[i + 1..]
                .iter()
                .take_while(|l| !l.contains("->"))
                .any(|l| l.contains("Filter:") && l.contains("(id = $"));
            if by_id_filter && !line.contains("messages_pkey") {
                found.push(line.trim().to_owned());
            }
        }
    }
    found
}

#[tokio::test]
async fn pooled_plans_made_on_empty_tables_still_use_indexes_after_growth() {
    let url = fresh_database().await;
    let mut admin = AsyncPgConnection::establish(&url).await.unwrap();
    for table in TABLES {
        admin
            .batch_execute(&format!(
                "ALTER TABLE {table} SET (autovacuum_enabled = false)"
            ))
            .await
            .unwrap();
    }
    admin.batch_execute("ANALYZE").await.unwrap();

    // One connection, so every hot statement is prepared on it while the tables are empty.
    let store = PostgresStorage::connect(&url, 1).await.unwrap();
    let traffic = Traffic::start(&store).await;
    traffic.round(&store, 0).await;

    // Grow behind the pool's back: nothing a pooled connection does re-plans.
    admin.batch_execute(GROW).await.unwrap();
    let grown: Count = diesel::sql_query("SELECT count(*) AS n FROM messages")
        .get_result(&mut admin)
        .await
        .unwrap();
    assert!(grown.n >= GROWN_MESSAGES, "{} messages", grown.n);

    // A burst of the hot paths on the plans made on empty tables.
    let before = scans(&store, &mut admin).await;
    for round in 1..=50 {
        traffic.round(&store, round).await;
    }
    let after = scans(&store, &mut admin).await;
    for (b, a) in before.iter().zip(&after) {
        println!(
            "{}: {} rows, {} sequential scans reading {} rows during the burst",
            a.relname,
            a.n_live_tup,
            a.seq_scan - b.seq_scan,
            a.seq_tup_read - b.seq_tup_read
        );
    }

    // And every plan the pooled connection holds, statement by statement.
    let mut conns = store.pooled_connections().await.unwrap();
    assert_eq!(conns.len(), 1);
    let plans = prepared_plans(&mut conns[0]).await;
    println!(
        "{} prepared statements on the pooled connection",
        plans.len()
    );
    let mut bad = Vec::new();
    for (statement, plan) in &plans {
        assert!(
            statement.generic_plans > 0,
            "not planned generically: {}",
            statement.statement
        );
        let mut full = full_scans(plan);
        full.extend(messages_by_id_off_the_primary_key(plan));
        if !full.is_empty() {
            bad.push(format!(
                "{}\n  reads whole tables: {full:?}\n{}",
                statement.statement,
                plan.join("\n")
            ));
        }
    }
    // The hot statements are among them (prepared on this connection, and checked).
    for hot in [
        "sender_id = k.sender_id",       // the idempotency lookup
        "INSERT INTO messages",          // the append
        "UPDATE conversations",          // the append's conversation update
        "FOR NO KEY UPDATE",             // the append's lock, the receipts' lock
        "UPDATE participants",           // the receipt flush
        "FROM users u",                  // the session snapshot
        "\"messages\".\"seq\" > $2",     // sync
        "UPDATE users SET last_seen_at", // a departure
        "SET last_change = last_change", // every change's number
        "edited_at = $2",                // an edit
        "DELETE FROM reactions WHERE message_id = (SELECT", // a deletion
        "INSERT INTO reactions",         // a reaction added
        "DELETE FROM reactions\n",       // a reaction removed
        "array_agg(user_id",             // a page's reactions
        "change_seq > 0 AND",            // the changes after a cursor
        "SELECT * FROM (SELECT * FROM messages WHERE id", // one message
        "WHERE id = ANY(",               // a page's reply originals
        "attachments WHERE id = k.id FOR UPDATE", // a send's attachments locked
        "UPDATE attachments a",          // and bound
        "attachments WHERE message_id = ANY(", // a page's attachments
    ] {
        assert!(
            plans.iter().any(|(s, _)| s.statement.contains(hot)),
            "no prepared statement contains {hot:?}"
        );
    }
    assert!(
        bad.is_empty(),
        "{} of {} prepared statements read whole tables:\n\n{}",
        bad.len(),
        plans.len(),
        bad.join("\n\n")
    );
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            a.seq_scan, b.seq_scan,
            "sequential scans of {} during the burst",
            a.relname
        );
    }
}
