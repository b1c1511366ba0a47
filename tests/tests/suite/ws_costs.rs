//! What sends cost the database: concurrent sends share transactions (group commit), and a
//! message to a 100-member group costs the statements of one to a 3-member group.
//! Counted on PostgreSQL by the adapter's own counters (the test holds the storage), and in
//! embedded mode through the server's `/metrics` counter. Also what `/metrics` reports of
//! sends: messages in by transport and the latency histograms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use adapters_postgres::PostgresStorage;
use e2e::cluster::{self, quick};
use e2e::ws::{WsClient, WsConnect, WAIT};
use e2e::{Api, Backend, TestApp, TestStore, TestUser};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The server's counter of committed message transactions on `/metrics`.
const COMMITS_METRIC: &str = "chat_commit_transactions_total";

async fn postgres_app() -> (TestApp, PostgresStorage) {
    let store = TestStore::new(Backend::Postgres).await;
    let storage = PostgresStorage::connect(store.database_url.as_deref().unwrap(), 8)
        .await
        .unwrap();
    let app = TestApp::spawn_with_storage(store, Arc::new(storage.clone()), &quick(&[])).await;
    (app, storage)
}

/// Fifty users, each with a socket and a direct conversation with one offline peer (so no
/// delivery receipt is written meanwhile).
async fn fifty_senders(api: &Api, base: &str) -> Vec<(WsClient, String)> {
    let peer = api.register("Offline peer").await;
    let mut senders = Vec::new();
    for i in 0..50 {
        let user = api.register(&format!("Sender {i}")).await;
        let conv = cluster::direct(api, &user, &peer).await;
        let (ws, _) = WsConnect::all(base, &user.token)
            .open_ready(&format!("sender {i}"))
            .await;
        senders.push((ws, conv));
    }
    senders
}

/// Every sender sends one message at (nearly) the same moment; waits for every ack.
async fn send_all_at_once(senders: &mut [(WsClient, String)]) {
    for (i, (ws, conv)) in senders.iter_mut().enumerate() {
        ws.send_message(conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    for (i, (ws, _)) in senders.iter_mut().enumerate() {
        ws.ack(&format!("t-{i}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sends_are_committed_in_fewer_than_fifty_transactions_on_postgres() {
    let (app, storage) = postgres_app().await;
    let api = app.api();
    let mut senders = fifty_senders(&api, &app.address).await;
    let metric_before = api.metric(COMMITS_METRIC).await;

    let before = storage.transactions_committed();
    send_all_at_once(&mut senders).await;
    let transactions = storage.transactions_committed() - before;

    assert!(
        transactions < 50,
        "50 concurrent sends took {transactions} transactions: no group commit"
    );
    let metric_after = api.metric(COMMITS_METRIC).await;
    let (Some(m0), Some(m1)) = (metric_before, metric_after) else {
        panic!("the server exposes no {COMMITS_METRIC} on /metrics");
    };
    assert!(
        (1.0..50.0).contains(&(m1 - m0)),
        "{COMMITS_METRIC} moved by {} for 50 sends ({transactions} counted by the storage)",
        m1 - m0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sends_are_committed_in_fewer_than_fifty_transactions_embedded() {
    let app = TestApp::spawn_tuned(Backend::Sqlite, &quick(&[])).await;
    let api = app.api();
    let mut senders = fifty_senders(&api, &app.address).await;
    let before = api
        .metric(COMMITS_METRIC)
        .await
        .unwrap_or_else(|| panic!("the server exposes no {COMMITS_METRIC} on /metrics"));
    send_all_at_once(&mut senders).await;
    let after = api.metric(COMMITS_METRIC).await.unwrap();
    assert!(
        (1.0..50.0).contains(&(after - before)),
        "50 concurrent sends took {} transactions: no group commit",
        after - before
    );
}

/// Waits until the counter has not moved for a while (receipt flushes done).
async fn settled(storage: &PostgresStorage) -> u64 {
    let mut last = storage.statements_executed();
    let mut quiet = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = storage.statements_executed();
        if now == last {
            quiet += 1;
            if quiet == 8 {
                return now;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
    panic!("the statement counter never settled");
}

/// Statements spent on one message from `owner` into `conv`, with every member connected,
/// from the send until the owner saw every member's delivery and the counter settled.
async fn statements_for_one_message(
    storage: &PostgresStorage,
    owner_ws: &mut WsClient,
    members: &[TestUser],
    member_sockets: &mut [WsClient],
    conv: &str,
    key: &str,
) -> u64 {
    let before = settled(storage).await;
    let ack = owner_ws.send_acked(conv, "hello everyone", key).await;
    let seq = ack["seq"].as_i64().unwrap();
    for ws in member_sockets.iter_mut() {
        let got = ws.recv_frame("message", WAIT).await;
        assert_eq!(got["message"]["seq"], seq, "{}: {got}", ws.label);
    }
    let mut delivered: HashSet<String> = HashSet::new();
    while delivered.len() < members.len() {
        let f = owner_ws
            .recv_where("delivered", WAIT, |f| {
                f["type"] == "delivered" && f["seq"].as_i64() >= Some(seq)
            })
            .await;
        delivered.insert(f["user_id"].as_str().unwrap().to_owned());
    }
    settled(storage).await - before
}

async fn group_with_everyone_connected(
    api: &Api,
    base: &str,
    owner: &TestUser,
    size: usize,
) -> (String, Vec<TestUser>, Vec<WsClient>) {
    let mut members = Vec::new();
    for i in 1..size {
        members.push(api.register(&format!("Member {i}")).await);
    }
    let refs: Vec<&TestUser> = members.iter().collect();
    let conv = cluster::group(api, owner, &refs).await;
    let mut sockets = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let (ws, _) = WsConnect::all(base, &m.token)
            .open_ready(&format!("member {i} of {size}"))
            .await;
        sockets.push(ws);
    }
    (conv, members, sockets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_hundred_member_group_costs_a_fixed_number_of_statements() {
    let (app, storage) = postgres_app().await;
    let api = app.api();
    let owner = api.register("Owner").await;
    let (mut owner_ws, _) = WsConnect::all(&app.address, &owner.token)
        .open_ready("owner")
        .await;
    let (small, small_members, mut small_sockets) =
        group_with_everyone_connected(&api, &app.address, &owner, 3).await;
    let (large, large_members, mut large_sockets) =
        group_with_everyone_connected(&api, &app.address, &owner, 100).await;
    // Warm-up: the first message of each group (caches, prepared statements).
    for (conv, members, sockets, key) in [
        (&small, &small_members, &mut small_sockets, "warm-small"),
        (&large, &large_members, &mut large_sockets, "warm-large"),
    ] {
        statements_for_one_message(&storage, &mut owner_ws, members, sockets, conv, key).await;
    }

    let three = statements_for_one_message(
        &storage,
        &mut owner_ws,
        &small_members,
        &mut small_sockets,
        &small,
        "small",
    )
    .await;
    let hundred = statements_for_one_message(
        &storage,
        &mut owner_ws,
        &large_members,
        &mut large_sockets,
        &large,
        "large",
    )
    .await;
    // Receipt flushes may split differently; one statement per member may not hide.
    assert!(
        hundred <= 2 * three + 5,
        "a message to 100 members cost {hundred} statements, to 3 members {three}"
    );
    assert!(
        hundred < 99,
        "{hundred} statements for 99 recipients: one per member"
    );
}

/// The value of the exact series `series` (name and labels as exposed) on `/metrics`.
fn series(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sends_by_transport_and_time_their_fan_out_and_acks() {
    let app = TestApp::spawn_tuned(Backend::Sqlite, &quick(&[])).await;
    let api = app.api();
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&app.address, &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&app.address, &b.token).open_ready("B").await;

    ws_a.send_acked(&conv, "over the socket", "m-ws").await;
    let got = ws_b.recv_frame("message", WAIT).await;
    assert_eq!(got["message"]["content"], "over the socket");
    let reply = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            a.t(),
            json!({"content": "over REST", "temp_id": "m-rest"}),
        )
        .await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::CREATED,
        "{:?}",
        reply.body
    );
    let got = ws_b.recv_frame("message", WAIT).await;
    assert_eq!(got["message"]["content"], "over REST");

    let text = api.metrics_text().await;
    assert_eq!(
        series(&text, "chat_messages_in_total{transport=\"ws\"}"),
        1.0
    );
    assert_eq!(
        series(&text, "chat_messages_in_total{transport=\"rest\"}"),
        1.0
    );
    // Bob's two live frames at least (Alice's socket also gets her REST message).
    let e2e = series(&text, "chat_e2e_latency_seconds_count");
    let fanout = series(&text, "chat_fanout_latency_seconds_count");
    assert!(e2e >= 2.0, "e2e latency count {e2e}");
    assert!(fanout >= 2.0, "fan-out latency count {fanout}");
    assert_eq!(
        series(&text, "chat_e2e_latency_seconds_bucket{le=\"+Inf\"}"),
        e2e
    );
    assert!(series(&text, "chat_e2e_latency_seconds_sum") > 0.0);
    assert!(
        series(
            &text,
            "chat_send_ack_latency_seconds_count{transport=\"ws\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        series(
            &text,
            "chat_send_ack_latency_seconds_count{transport=\"rest\"}"
        ),
        1.0
    );
    assert_eq!(series(&text, "chat_storage_errors_total"), 0.0);
    assert_eq!(series(&text, "chat_pubsub_errors_total"), 0.0);
    assert!(series(&text, "chat_outbound_queue_depth") >= 0.0);
    assert!(series(&text, "chat_outbound_queue_depth_max") >= 0.0);
}

/// Opening a session costs two statements whatever the number of conversations: the ids
/// to subscribe to, then the snapshot with the account (a user coming online also has
/// presence read the ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_costs_two_statements() {
    let (app, storage) = postgres_app().await;
    let api = app.api();
    let alice = api.register("Alice").await;
    for i in 0..3 {
        let other = api.register(&format!("Friend {i}")).await;
        cluster::direct(&api, &alice, &other).await;
    }
    let others: Vec<TestUser> = vec![api.register("Ben").await, api.register("Cat").await];
    let team = cluster::group(&api, &alice, &others.iter().collect::<Vec<_>>()).await;
    for i in 1..=3 {
        cluster::send_rest(&api, &alice, &team, &format!("m{i}"), &format!("t-{i}")).await;
    }

    // Alice's first session announces her online, which reads her conversations too
    // (presence); her second one only opens.
    let (_first, _) = WsConnect::all(&app.address, &alice.token)
        .open_ready("alice")
        .await;
    let before = settled(&storage).await;
    let (_again, hello) = WsConnect::all(&app.address, &alice.token)
        .open_ready("alice again")
        .await;
    assert_eq!(
        storage.statements_executed() - before,
        2,
        "conversation ids, then the snapshot: {hello}"
    );
    assert_eq!(hello["conversations"].as_array().map(Vec::len), Some(4));
    assert_eq!(hello["user"]["id"], alice.id.as_str());
}

/// A `sync` of cursors the `hello` gave (the client holds everything) is answered from
/// the session's snapshot without a statement; one behind reads the conversation and the
/// page, and its watermarks with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_of_current_cursors_costs_no_statement_and_a_behind_one_replays() {
    let (app, storage) = postgres_app().await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let ben = api.register("Ben").await;
    let cat = api.register("Cat").await;
    let quiet = cluster::direct(&api, &alice, &ben).await;
    let team = cluster::group(&api, &alice, &[&ben, &cat]).await;
    for i in 1..=3 {
        cluster::send_rest(&api, &alice, &team, &format!("m{i}"), &format!("t-{i}")).await;
    }

    let (mut ws, _) = WsConnect::all(&app.address, &alice.token)
        .open_ready("alice")
        .await;
    let before = settled(&storage).await;
    let cursors = [(quiet.as_str(), 0), (team.as_str(), 3)];
    let page = ws.sync(&cursors).await;
    assert!(page.messages.is_empty(), "{:?}", page.messages);
    assert_eq!(
        storage.statements_executed() - before,
        0,
        "current cursors: {}",
        page.done
    );
    for (c, last) in cursors {
        let done = &page.done["conversations"][c];
        assert_eq!(done["last_seq"], last, "{}", page.done);
        assert_eq!(done["has_more"], false, "{}", page.done);
    }

    let (mut again, _) = WsConnect::all(&app.address, &alice.token)
        .open_ready("alice again")
        .await;
    let before = settled(&storage).await;
    let page = again.sync(&[(team.as_str(), 1)]).await;
    assert_eq!(e2e::ws::seqs(&page.messages), vec![2, 3]);
    // The conversation with its members and the page, the watermarks with them (Alice's
    // own messages move no delivered watermark); one page: nothing to catch up after it.
    assert_eq!(
        storage.statements_executed() - before,
        2,
        "a behind cursor: {}",
        page.done
    );
    let done = &page.done["conversations"][team.as_str()];
    assert_eq!(
        (&done["last_seq"], &done["has_more"]),
        (&json!(3), &json!(false))
    );
    assert_eq!(
        (&done["delivered_seq"], &done["read_seq"]),
        (&json!(3), &json!(3))
    );
    assert_eq!(
        (&done["peer_delivered_seq"], &done["peer_read_seq"]),
        (&json!(0), &json!(0))
    );
}
