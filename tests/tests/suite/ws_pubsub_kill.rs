//! Redis drops every subscription (`CLIENT KILL TYPE pubsub`) in the middle of traffic:
//! connected clients still get every acknowledged message exactly once, in order.
//! In its own test binary: the kill cuts every subscriber on the Redis server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, quick, redis_command, Deployment};
use e2e::ws::{seqs, WsClient, WsConnect, WAIT};
use std::time::Duration;

async fn message_seqs(ws: &mut WsClient, conv: &str, count: usize) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.next_frame(left).await {
            Some(f) if f["type"] == "message" && f["message"]["conversation_id"] == conv => {
                got.push(f)
            }
            Some(_) => {}
            None => break,
        }
    }
    got.extend(
        ws.collect_type_for("message", Duration::from_millis(500))
            .await,
    );
    seqs(&got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_redis_subscription_mid_traffic_loses_nothing_for_connected_clients() {
    const N: usize = 200;
    let d = Deployment::scale_out(&quick(&[]), 2).await;
    let api = d.api(0);
    let sender = api.register("Sender").await;
    let r = api.register("Reader").await;
    let conv = cluster::group(&api, &sender, &[&r]).await;
    let (mut ws_s, _) = WsConnect::all(&d.base(0), &sender.token)
        .open_ready("sender")
        .await;
    // The sender's second session, on the other node, receives the sender's messages too.
    let (mut ws_s1, _) = WsConnect::all(&d.base(1), &sender.token)
        .open_ready("sender's other session on node 1")
        .await;
    let (mut ws_r0, _) = WsConnect::all(&d.base(0), &r.token)
        .open_ready("reader on node 0")
        .await;
    let (mut ws_r1, _) = WsConnect::all(&d.base(1), &r.token)
        .open_ready("reader on node 1")
        .await;

    let mut acked = 0;
    for i in 0..N {
        if i == N / 4 || i == N / 2 {
            let killed: u32 =
                redis_command(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub")).await;
            assert!(killed >= 2, "both nodes' subscriptions killed: {killed}");
        }
        ws_s.send_message(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
        if i % 10 == 9 {
            // Pace the traffic a little so the kills land mid-stream.
            for k in i - 9..=i {
                ws_s.ack(&format!("t-{k}")).await;
                acked += 1;
            }
        }
    }
    assert_eq!(acked, N);
    let all: Vec<i64> = (1..=N as i64).collect();
    for ws in [&mut ws_r0, &mut ws_r1, &mut ws_s1] {
        let got = message_seqs(ws, &conv, N).await;
        assert_eq!(got, all, "{}: every acked message once, in order", ws.label);
    }
}
