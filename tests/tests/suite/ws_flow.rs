//! Seed 000's human test flow over real sockets: on the embedded server, on one node of a
//! two-node cluster (PostgreSQL + Redis), and with A and B on different nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::ws::{hello_conversation, WsConnect, WAIT};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The grace before `offline`: long enough to tell "after the grace" from "at once".
const GRACE_MS: u64 = 1000;

async fn seed_000_human_test_flow(mode: Mode, a_node: usize, b_node: usize) {
    let grace = GRACE_MS.to_string();
    let d = Deployment::start(mode, &quick(&[(keys::PRESENCE_GRACE_MS, &grace)])).await;
    let (api_a, api_b) = (d.api(a_node), d.api(b_node));
    let a = api_a.register("Alice").await;
    let b = api_b.register("Bob").await;

    // Both connect.
    let (mut ws_a, hello_a) = WsConnect::all(&d.base(a_node), &a.token)
        .open_ready("A")
        .await;
    let (mut ws_b, hello_b) = WsConnect::all(&d.base(b_node), &b.token)
        .open_ready("B")
        .await;
    assert_eq!(hello_a["user"]["id"], a.id.as_str(), "{hello_a}");
    assert_eq!(hello_b["user"]["id"], b.id.as_str(), "{hello_b}");
    assert_eq!(hello_b["conversations"], serde_json::json!([]), "{hello_b}");

    // A starts a conversation over REST: B's open socket hears of it.
    let conv = cluster::direct(&api_a, &a, &b).await;
    let created = ws_b
        .recv_where("conversation created", WAIT, |f| {
            f["type"] == "conversation" && f["conversation"]["id"] == conv.as_str()
        })
        .await;
    assert_eq!(created["event"], "created", "{created}");

    // A sends "Hello!" over the socket: acked after commit, B sees it at once.
    let ack = ws_a.send_acked(&conv, "Hello!", "hello-1").await;
    assert_eq!(ack["seq"], 1, "{ack}");
    let hello_id = ack["message_id"].as_str().unwrap().to_owned();
    let got = ws_b.recv_frame("message", WAIT).await;
    let m = &got["message"];
    assert_eq!(m["id"], hello_id.as_str(), "{got}");
    assert_eq!(m["content"], "Hello!");
    assert_eq!(m["seq"], 1);
    assert_eq!(m["sender_id"], a.id.as_str());
    assert_eq!(m["conversation_id"], conv.as_str());

    // A sees it delivered (B's live session got it; B's client sends no ack).
    let delivered = ws_a
        .recv_where("delivered by B", WAIT, |f| {
            f["type"] == "delivered" && f["user_id"] == b.id.as_str()
        })
        .await;
    assert_eq!(delivered["seq"], 1, "{delivered}");
    assert_eq!(delivered["conversation_id"], conv.as_str());

    // B types: A sees "typing...".
    ws_b.typing(&conv, true).await;
    let typing = ws_a
        .recv_where("B typing", WAIT, |f| {
            f["type"] == "typing" && f["is_typing"] == true
        })
        .await;
    assert_eq!(typing["user_id"], b.id.as_str(), "{typing}");
    assert_eq!(typing["conversation_id"], conv.as_str());

    // B replies: A sees the reply, and B's typing ends with it.
    let reply_ack = ws_b.send_acked(&conv, "Hi back!", "reply-1").await;
    assert_eq!(reply_ack["seq"], 2, "{reply_ack}");
    let reply_id = reply_ack["message_id"].as_str().unwrap().to_owned();
    let reply = ws_a
        .recv_where("B's reply", WAIT, |f| f["type"] == "message")
        .await;
    assert_eq!(reply["message"]["content"], "Hi back!", "{reply}");
    assert_eq!(reply["message"]["seq"], 2);
    let stopped = ws_a
        .recv_where("B stopped typing", WAIT, |f| {
            f["type"] == "typing" && f["is_typing"] == false
        })
        .await;
    assert_eq!(stopped["user_id"], b.id.as_str(), "{stopped}");

    // A marks it read: B sees the read receipt.
    ws_a.read(&conv, &reply_id).await;
    let receipt = ws_b.recv_frame("read_receipt", WAIT).await;
    assert_eq!(receipt["seq"], 2, "{receipt}");
    assert_eq!(receipt["read_by"], a.id.as_str());
    assert_eq!(receipt["message_id"], reply_id.as_str());
    assert_eq!(receipt["conversation_id"], conv.as_str());

    // Both see the history with receipts over REST: each one's message read by the other
    // (B's reply moved B's own read watermark past "Hello!").
    let seen_by_a = cluster::history(&api_a, &a, &conv).await;
    let seen_by_b = cluster::history(&api_b, &b, &conv).await;
    for history in [&seen_by_a, &seen_by_b] {
        let contents: Vec<&str> = history
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, ["Hello!", "Hi back!"], "{history:?}");
    }
    assert_eq!(seen_by_a[0]["status"], "read", "A's message: {seen_by_a:?}");
    assert_eq!(seen_by_b[1]["status"], "read", "B's reply: {seen_by_b:?}");

    // A goes offline: B sees it after the grace period, not before.
    let gone = Instant::now();
    ws_a.close().await;
    let offline = ws_b
        .recv_where("A offline", WAIT + Duration::from_millis(GRACE_MS), |f| {
            f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "offline"
        })
        .await;
    let after = gone.elapsed();
    assert!(
        after >= Duration::from_millis(GRACE_MS * 8 / 10),
        "offline came {after:?} after the close, before the {GRACE_MS} ms grace"
    );
    assert!(offline["last_seen"].is_string(), "{offline}");

    // Messages persist after logout and login.
    let out = api_a
        .post(
            "/api/v1/auth/logout",
            a.t(),
            serde_json::json!({"refresh_token": a.refresh_token}),
        )
        .await;
    assert!(out.status.is_success(), "logout: {:?}", out.body);
    let again = api_a.login(&a.email, &a.password).await;
    let (_ws, hello) = WsConnect::all(&d.base(a_node), &again.token)
        .open_ready("A again")
        .await;
    let snapshot = hello_conversation(&hello, &conv);
    assert_eq!(snapshot["last_seq"], 2, "{hello}");
    assert_eq!(snapshot["unread_count"], 0, "{hello}");
    let history: Vec<Value> = cluster::history(&api_a, &again, &conv).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["id"], hello_id.as_str());
    assert_eq!(history[1]["id"], reply_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_test_flow_passes_on_the_embedded_server() {
    seed_000_human_test_flow(Mode::Embedded, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_test_flow_passes_on_one_node_of_a_cluster() {
    seed_000_human_test_flow(Mode::ScaleOut, 0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_human_test_flow_passes_with_a_and_b_on_different_nodes() {
    seed_000_human_test_flow(Mode::ScaleOut, 0, 1).await;
}
