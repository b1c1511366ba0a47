//! Committed but never published: a node commits sends and dies before publishing them
//! (node 1 runs with `testing.stall_after_commit`, then is killed with -9). The sender
//! resends them to the other node with the same `temp_id`s (over the socket, the last one
//! over REST) and gets the original acks as replays; a recipient that stayed connected to the other node gets those messages live,
//! each exactly once and in order, without a `sync` of its own; and a message a recipient
//! already got live is not delivered again when the sender replays it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment};
use e2e::ws::{frame_type, WsClient, WsConnect, WAIT};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Sends committed by the node that dies before publishing them.
const STALLED: usize = 6;

/// Every `message` frame of `conversation` the client receives within `period`.
async fn messages_within(ws: &mut WsClient, conversation: &str, period: Duration) -> Vec<Value> {
    ws.collect_for(period)
        .await
        .into_iter()
        .filter(|f| frame_type(f) == "message" && f["message"]["conversation_id"] == conversation)
        .collect()
}

fn seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| f["message"]["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_sends_committed_by_a_node_that_died_before_publishing_reaches_recipients_live_once(
) {
    let mut d = Deployment::scale_out(&quick(&[]), 1).await;
    let stalling = d.add_node(&[(keys::STALL_AFTER_COMMIT, "true")]).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;

    // Bob, and Alice's other device, stay connected to node 0 throughout.
    let (mut ws_b, _) = WsConnect::all(&d.base(0), &b.token)
        .open_ready("Bob on node 0")
        .await;
    let (mut ws_a2, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("Alice's other device on node 0")
        .await;
    // The first frame ends the post-hello hold: live messages flow at once.
    for ws in [&mut ws_b, &mut ws_a2] {
        ws.send_json(&serde_json::json!({"type": "ping"})).await;
        ws.recv_frame("pong", WAIT).await;
    }

    // Two messages go the normal way: published, received live.
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("Alice on node 0")
        .await;
    for i in 1..=2 {
        ws_a.send_acked(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    for ws in [&mut ws_b, &mut ws_a2] {
        let live = ws.recv_frame("message", WAIT).await;
        let next = ws.recv_frame("message", WAIT).await;
        assert_eq!(seqs(&[live, next]), vec![1, 2], "{}", ws.label);
    }
    ws_a.close().await;

    // Alice moves to node 1, which commits her next sends and never publishes nor acks them.
    let (mut ws_stalled, _) = WsConnect::all(&d.base(stalling), &a.token)
        .open_ready("Alice on the stalling node")
        .await;
    for i in 3..3 + STALLED {
        ws_stalled
            .send_message(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = cluster::history(&api, &a, &conv).await;
        if stored.len() == 2 + STALLED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalling node committed {} of {STALLED} sends",
            stored.len() - 2
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Committed, not published: nobody heard of them, and the sender has no ack.
    let heard = messages_within(&mut ws_b, &conv, Duration::from_millis(300)).await;
    assert!(heard.is_empty(), "published anyway: {heard:?}");
    let acks: Vec<Value> = ws_stalled
        .collect_for(Duration::from_millis(100))
        .await
        .into_iter()
        .filter(|f| frame_type(f) == "message_sent")
        .collect();
    assert!(acks.is_empty(), "acked although stalled: {acks:?}");

    // The node dies; Alice's client resends what was never acknowledged to node 0, plus
    // one message that was acked (and delivered) already, as a client unsure of it would.
    d.kill9(stalling).await;
    ws_stalled.wait_closed(WAIT).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("Alice back on node 0")
        .await;
    let resent = Instant::now();
    ws_a.send_message(&conv, "m2", "t-2").await;
    // All but the last over the socket; the last over REST (the fallback replays alike).
    let last = 2 + STALLED;
    for i in 3..last {
        ws_a.send_message(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    let mut acked = Vec::new();
    for i in 2..last {
        let ack = ws_a.ack(&format!("t-{i}")).await;
        acked.push(ack["seq"].as_i64().unwrap());
    }
    let reply = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            a.t(),
            serde_json::json!({"content": format!("m{last}"), "temp_id": format!("t-{last}")}),
        )
        .await;
    assert_eq!(
        reply.status,
        reqwest::StatusCode::OK,
        "a replay: {:?}",
        reply.body
    );
    acked.push(reply.body["seq"].as_i64().unwrap());
    let expected: Vec<i64> = (3..3 + STALLED as i64).collect();
    assert_eq!(acked[0], 2, "the acked message keeps its seq");
    assert_eq!(&acked[1..], expected.as_slice(), "replays keep their seqs");

    // Bob and Alice's other device get the stalled messages live, once each, in order, and
    // nothing of seq 2 again.
    let mut took = Vec::new();
    let mut received = Vec::new();
    for ws in [&mut ws_b, &mut ws_a2] {
        let mut live = Vec::new();
        while live.len() < STALLED {
            let frame = ws
                .recv_where("a replayed message", Duration::from_secs(5), |f| {
                    frame_type(f) == "message"
                })
                .await;
            live.push(frame);
        }
        took.push(resent.elapsed());
        received.push(live);
    }
    for (ws, mut live) in [&mut ws_b, &mut ws_a2].into_iter().zip(received) {
        let extra = messages_within(ws, &conv, Duration::from_millis(800)).await;
        live.extend(extra);
        assert_eq!(
            seqs(&live),
            expected,
            "{}: live exactly once, in order",
            ws.label
        );
        let contents: Vec<&str> = live
            .iter()
            .map(|f| f["message"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents[0], "m3", "{}", ws.label);
    }
    println!(
        "{STALLED} sends committed by a node that died before publishing: replayed, and all \
         live at the recipient {:?} and the sender's other device {:?} after the resend",
        took[0], took[1]
    );
}
