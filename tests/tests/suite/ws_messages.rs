//! Message, typing and presence semantics over real sockets: a retried `temp_id` is acked
//! again and no recipient gets it a second time (replays are published again, sessions
//! drop what they already delivered); the sender's other sessions see its messages; typing
//! ends by itself; presence only reaches users who share a conversation; read state
//! follows a user across devices. Embedded and on two nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::ws::{WsConnect, WAIT};
use std::time::{Duration, Instant};

async fn a_retried_temp_id_gets_the_original_ack_and_no_second_broadcast(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;
    let first = ws_a.send_acked(&conv, "only once", "retry-me").await;
    assert_eq!(
        ws_b.recv_frame("message", WAIT).await["message"]["id"],
        first["message_id"]
    );

    // The client did not see the ack (say) and retries, on the same socket and on a new one.
    let again = ws_a.send_acked(&conv, "only once", "retry-me").await;
    let (mut ws_a2, _) = WsConnect::all(&d.base(d.other(0)), &a.token)
        .open_ready("A reconnected")
        .await;
    let third = ws_a2.send_acked(&conv, "only once", "retry-me").await;
    for ack in [&again, &third] {
        for field in ["message_id", "seq", "created_at", "temp_id"] {
            assert_eq!(ack[field], first[field], "{field}: {ack} vs {first}");
        }
    }
    ws_b.expect_no_frame("message", Duration::from_millis(800))
        .await;
    assert_eq!(cluster::history(&api, &b, &conv).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_temp_id_gets_the_original_ack_and_no_second_broadcast_embedded() {
    a_retried_temp_id_gets_the_original_ack_and_no_second_broadcast(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_temp_id_gets_the_original_ack_and_no_second_broadcast_on_a_cluster() {
    a_retried_temp_id_gets_the_original_ack_and_no_second_broadcast(Mode::ScaleOut).await;
}

async fn the_senders_other_sessions_get_its_message_and_the_sending_one_does_not(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut phone, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A's phone")
        .await;
    let (mut laptop, _) = WsConnect::all(&d.base(d.other(0)), &a.token)
        .open_ready("A's laptop")
        .await;
    let sent = phone.send_acked(&conv, "from my phone", "p-1").await;
    let echoed = laptop.recv_frame("message", WAIT).await;
    assert_eq!(echoed["message"]["id"], sent["message_id"], "{echoed}");
    assert_eq!(echoed["message"]["sender_id"], a.id.as_str());
    phone
        .expect_no_frame("message", Duration::from_millis(700))
        .await;

    // A message sent over REST reaches every socket of both users.
    let rest = cluster::send_rest(&api, &a, &conv, "from the API", "r-1").await;
    for ws in [&mut phone, &mut laptop] {
        let got = ws.recv_frame("message", WAIT).await;
        assert_eq!(got["message"]["id"], rest["id"], "{}: {got}", ws.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_other_sessions_get_its_message_and_the_sending_one_does_not_embedded() {
    the_senders_other_sessions_get_its_message_and_the_sending_one_does_not(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_senders_other_sessions_on_another_node_get_its_message() {
    the_senders_other_sessions_get_its_message_and_the_sending_one_does_not(Mode::ScaleOut).await;
}

const TYPING_TTL_MS: u64 = 800;

async fn typing_ends_by_itself(mode: Mode) {
    let ttl = TYPING_TTL_MS.to_string();
    let d = Deployment::start(mode, &quick(&[(keys::TYPING_TTL_MS, &ttl)])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;
    let is_b_typing = |v: bool| {
        let id = b.id.clone();
        move |f: &serde_json::Value| {
            f["type"] == "typing" && f["user_id"] == id.as_str() && f["is_typing"] == v
        }
    };

    // A start with no refresh and no stop: the lease expires and A is told.
    ws_b.typing(&conv, true).await;
    let started = Instant::now();
    ws_a.recv_where("B typing", WAIT, is_b_typing(true)).await;
    ws_a.recv_where("B no longer typing", WAIT, is_b_typing(false))
        .await;
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(TYPING_TTL_MS * 8 / 10),
        "typing ended {after:?} after the start, before the {TYPING_TTL_MS} ms TTL"
    );
    // The typing user is never told of its own typing.
    assert!(
        !ws_b.kept().any(|f| f["type"] == "typing"),
        "B was told of its own typing"
    );

    // A session that closes while typing ends the lease too.
    ws_b.typing(&conv, true).await;
    ws_a.recv_where("B typing again", WAIT, is_b_typing(true))
        .await;
    ws_b.vanish();
    ws_a.recv_where("B stopped by the close", WAIT, is_b_typing(false))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_without_a_stop_ends_after_the_ttl_or_when_the_session_closes_embedded() {
    typing_ends_by_itself(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_without_a_stop_ends_after_the_ttl_or_when_the_session_closes_on_a_cluster() {
    typing_ends_by_itself(Mode::ScaleOut).await;
}

async fn presence_reaches_only_users_who_share_a_conversation(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let friend = api.register("Friend").await;
    let stranger = api.register("Stranger").await;
    cluster::direct(&api, &a, &friend).await;
    let (mut ws_f, _) = WsConnect::all(&d.base(d.other(0)), &friend.token)
        .open_ready("friend")
        .await;
    let (mut ws_s, _) = WsConnect::all(&d.base(d.other(0)), &stranger.token)
        .open_ready("stranger")
        .await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    ws_f.recv_where("A online", WAIT, |f| {
        f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "online"
    })
    .await;
    ws_a.send_json(&serde_json::json!({"type": "presence", "status": "away"}))
        .await;
    ws_f.recv_where("A away", WAIT, |f| {
        f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "away"
    })
    .await;
    ws_a.close().await;
    ws_f.recv_where("A offline", WAIT, |f| {
        f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "offline"
    })
    .await;
    ws_s.expect_no_frame("presence", Duration::from_millis(300))
        .await;
    let reply = api
        .get(&format!("/api/v1/users/{}", a.id), stranger.t())
        .await;
    let leaked = reply.body.get("status").or(reply.body.get("presence"));
    assert!(
        leaked.is_none() || leaked == Some(&serde_json::Value::Null),
        "the user API shows a stranger A's presence: {:?}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_only_users_who_share_a_conversation_embedded() {
    presence_reaches_only_users_who_share_a_conversation(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_only_users_who_share_a_conversation_on_a_cluster() {
    presence_reaches_only_users_who_share_a_conversation(Mode::ScaleOut).await;
}

async fn reading_on_one_device_updates_the_others(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    for i in 0..3 {
        cluster::send_rest(&api, &a, &conv, &format!("m{i}"), &format!("t-{i}")).await;
    }
    let (mut phone, hello) = WsConnect::all(&d.base(0), &b.token)
        .open_ready("B's phone")
        .await;
    assert_eq!(
        e2e::ws::hello_conversation(&hello, &conv)["unread_count"],
        3
    );
    let (mut laptop, _) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B's laptop")
        .await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let history = cluster::history(&api, &b, &conv).await;
    phone.read(&conv, history[1]["id"].as_str().unwrap()).await;

    let unread = laptop.recv_frame("unread", WAIT).await;
    assert_eq!(unread["conversation_id"], conv.as_str(), "{unread}");
    assert_eq!(unread["unread_count"], 1, "{unread}");
    assert_eq!(unread["total"], 1, "{unread}");
    let receipt = ws_a.recv_frame("read_receipt", WAIT).await;
    assert_eq!(receipt["seq"], 2, "{receipt}");
    assert_eq!(receipt["read_by"], b.id.as_str());
    // Read watermarks never move back.
    phone.read(&conv, history[0]["id"].as_str().unwrap()).await;
    ws_a.expect_no_frame("read_receipt", Duration::from_millis(500))
        .await;
    let unread = api.get("/api/v1/unread", b.t()).await;
    assert_eq!(unread.body["total"], 1, "{:?}", unread.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_one_device_updates_unread_counts_on_the_others_embedded() {
    reading_on_one_device_updates_the_others(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_on_one_device_updates_unread_counts_on_the_others_across_nodes() {
    reading_on_one_device_updates_the_others(Mode::ScaleOut).await;
}
