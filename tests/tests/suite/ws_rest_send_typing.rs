//! A message sent over REST ends the sender's typing lease at once, as one sent over the
//! WebSocket does: the other side sees `is_typing:false` long before the lease would expire.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::ws::{WsConnect, WAIT};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_send_ends_the_senders_typing_at_once() {
    // A lease far longer than the test waits: only the send can end it.
    let d = Deployment::start(Mode::Embedded, &quick(&[(keys::TYPING_TTL_MS, "30000")])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(0), &b.token).open_ready("B").await;
    ws_a.typing(&conv, true).await;
    let started = ws_b.recv_frame("typing", WAIT).await;
    assert_eq!(started["is_typing"], true);

    let sent_at = Instant::now();
    let reply = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            a.t(),
            json!({"content": "sent over REST", "temp_id": "rest-typing"}),
        )
        .await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED);
    let stopped = ws_b.recv_frame("typing", Duration::from_secs(3)).await;
    assert_eq!(stopped["is_typing"], false, "{stopped}");
    assert_eq!(stopped["user_id"], a.id.as_str());
    assert!(sent_at.elapsed() < Duration::from_secs(3));
}
