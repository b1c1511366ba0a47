//! Two node processes on one PostgreSQL and one Redis: a node killed with -9 does not leave
//! its users online, and their clients recover on the other node; a node stopped with
//! SIGTERM closes its sockets with 1001 and loses no acknowledged message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment};
use e2e::ws::{hello_conversation, seqs, WsConnect, WAIT};
use std::time::{Duration, Instant};

const LEASE_TTL_MS: u64 = 1500;
const GRACE_MS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_of_a_node_its_users_go_offline_within_the_lease_ttl_and_recover_on_the_other()
{
    let ttl = LEASE_TTL_MS.to_string();
    let grace = GRACE_MS.to_string();
    let mut d = Deployment::scale_out(
        &quick(&[
            (keys::NODE_LEASE_TTL_MS, &ttl),
            (keys::PRESENCE_GRACE_MS, &grace),
            (keys::MAX_SESSIONS, "2"),
        ]),
        2,
    )
    .await;
    let api = d.api(1);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_b, _) = WsConnect::all(&d.base(1), &b.token)
        .open_ready("B on node 1")
        .await;
    // A has both of its allowed sessions on node 0.
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A on node 0")
        .await;
    let (mut ws_a2, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A's second session on node 0")
        .await;
    let online = ws_b
        .recv_where("A online", WAIT, |f| {
            f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "online"
        })
        .await;
    assert_eq!(online["user_id"], a.id.as_str());
    ws_a.send_acked(&conv, "before the crash", "a-1").await;
    assert_eq!(ws_b.recv_frame("message", WAIT).await["message"]["seq"], 1);

    d.kill9(0).await;
    let killed = Instant::now();
    let closed = ws_a.wait_closed(WAIT).await;
    assert_ne!(closed.code, Some(1000), "not a clean close: {closed:?}");
    ws_a2.wait_closed(WAIT).await;

    // B sees A offline once the dead node's lease ran out (plus the grace), not never.
    let bound = Duration::from_millis(LEASE_TTL_MS + GRACE_MS) + Duration::from_secs(3);
    let offline = ws_b
        .recv_where("A offline after the node died", bound, |f| {
            f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "offline"
        })
        .await;
    assert!(offline["last_seen"].is_string(), "{offline}");
    let after = killed.elapsed();
    assert!(
        after <= bound,
        "offline only {after:?} after the kill (lease TTL {LEASE_TTL_MS} ms)"
    );

    // B writes while A is away.
    for i in 2..=4 {
        ws_b.send_acked(&conv, &format!("while away {i}"), &format!("b-{i}"))
            .await;
    }

    // A's clients reconnect to the surviving node: the dead node's sessions no longer
    // count against A's cap of two, and A recovers what it missed, once.
    let (mut ws_a, hello) = WsConnect::all(&d.base(1), &a.token)
        .open_ready("A reconnected to node 1")
        .await;
    let (_ws_a2, _) = WsConnect::all(&d.base(1), &a.token)
        .open_ready("A's second session reconnected to node 1")
        .await;
    assert_eq!(hello_conversation(&hello, &conv)["last_seq"], 4, "{hello}");
    let missed = ws_a.sync_all(&conv, 1).await;
    assert_eq!(seqs(&missed), vec![2, 3, 4]);
    ws_a.expect_no_frame("message", Duration::from_millis(500))
        .await;
    let back = ws_b
        .recv_where("A online again", WAIT, |f| {
            f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "online"
        })
        .await;
    assert_eq!(back["user_id"], a.id.as_str());

    // And the conversation works live again across the surviving node.
    ws_a.send_acked(&conv, "back", "a-5").await;
    assert_eq!(ws_b.recv_frame("message", WAIT).await["message"]["seq"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001_and_loses_no_acknowledged_message() {
    const N: usize = 30;
    let mut d = Deployment::scale_out(&quick(&[]), 2).await;
    let api = d.api(1);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A on node 0")
        .await;
    let (mut ws_b0, _) = WsConnect::all(&d.base(0), &b.token)
        .open_ready("B on node 0")
        .await;

    // A pipelines sends and the node is told to stop while they are in flight.
    for i in 0..N {
        ws_a.send_message(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    assert!(d.node_mut(0).terminate().await, "clean exit on SIGTERM");
    let closed_a = ws_a.expect_close(1001, WAIT).await;
    ws_b0.expect_close(1001, WAIT).await;
    let acked: Vec<String> = ws_a
        .kept()
        .filter(|f| f["type"] == "message_sent")
        .map(|f| f["temp_id"].as_str().unwrap().to_owned())
        .collect();
    let stored = cluster::history(&api, &b, &conv).await;
    let stored_keys: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    for key in &acked {
        let content = format!("m{}", key.trim_start_matches("t-"));
        assert!(
            stored_keys.contains(&content.as_str()),
            "{key} was acked before {closed_a:?} but is not stored: {stored_keys:?}"
        );
    }

    // A reconnects to the other node and retries everything not acked: each message is
    // stored exactly once, in the order sent.
    let (mut ws_a, _) = WsConnect::all(&d.base(1), &a.token)
        .open_ready("A on node 1")
        .await;
    for i in 0..N {
        let key = format!("t-{i}");
        if !acked.contains(&key) {
            ws_a.send_acked(&conv, &format!("m{i}"), &key).await;
        }
    }
    let stored = cluster::history(&api, &b, &conv).await;
    let contents: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(contents, expected, "each once, in the order sent");
}
