//! Durability is not traded for speed: every send the server acknowledged survives kill -9 of
//! the server in the middle of pipelined, group-committed traffic, on SQLite and on
//! PostgreSQL; a client that resends what was not acknowledged (same `temp_id`) ends up with
//! every message stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster;
use e2e::ws::{WsConnect, WAIT};
use e2e::{Backend, NodeProcess, TestStore};
use serde_json::Value;
use std::collections::HashMap;

/// Sends in flight when the server dies.
const N: usize = 200;
/// Acknowledgements to wait for before the kill: the rest are mid-batch or queued.
const ACKED_BEFORE_KILL: usize = 40;

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("CHAT_REALTIME__MESSAGES_PER_SECOND", "100000".into()),
        ("CHAT_REALTIME__MESSAGE_BURST", "100000".into()),
        // Small commit batches: several transactions are in flight or queued at the kill.
        ("CHAT_REALTIME__COMMIT_MAX_BATCH", "16".into()),
    ]
}

async fn acked_sends_survive_kill_9_of_the_server(backend: Backend) {
    let store = TestStore::new(backend).await;
    let env = env();
    let mut node = NodeProcess::start(&store, &env).await;
    let api = node.api();
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let key = |i: usize| format!("k-{i}");

    let (mut ws, _) = WsConnect::all(&node.address, &a.token)
        .open_ready("sender")
        .await;
    for i in 0..N {
        ws.send_message(&conv, &format!("m{i}"), &key(i)).await;
    }
    let last = ws.ack(&key(ACKED_BEFORE_KILL - 1)).await;
    node.kill9().await;
    ws.wait_closed(WAIT).await;
    // Every acknowledgement that reached the client before the socket died (acks come in
    // send order: the ones before `last` are among them).
    let mut acked: HashMap<String, Value> = HashMap::new();
    for f in std::iter::once(&last).chain(ws.kept().filter(|f| f["type"] == "message_sent")) {
        acked.insert(f["temp_id"].as_str().unwrap().to_owned(), f.clone());
    }
    for i in 0..ACKED_BEFORE_KILL {
        assert!(acked.contains_key(&key(i)), "{} acked out of order", key(i));
    }

    let node = NodeProcess::start(&store, &env).await;
    let api = node.api();
    let stored = cluster::history(&api, &a, &conv).await;
    let by_key: HashMap<&str, &Value> = stored
        .iter()
        .map(|m| (m["temp_id"].as_str().unwrap_or_default(), m))
        .collect();
    assert_eq!(by_key.len(), stored.len(), "a key stored twice: {stored:?}");
    for (k, ack) in &acked {
        let m = by_key
            .get(k.as_str())
            .unwrap_or_else(|| panic!("{k} was acknowledged, then lost at the kill"));
        assert_eq!(
            m["seq"], ack["seq"],
            "{k}: stored at another seq than acked"
        );
    }
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "seqs have no hole"
    );

    // The client resends everything not acknowledged, with the same keys: each is stored
    // once, those that committed before the kill are not stored again.
    let (mut ws, _) = WsConnect::all(&node.address, &a.token)
        .open_ready("sender again")
        .await;
    for i in (0..N).filter(|i| !acked.contains_key(&key(*i))) {
        ws.send_message(&conv, &format!("m{i}"), &key(i)).await;
    }
    for i in (0..N).filter(|i| !acked.contains_key(&key(*i))) {
        ws.ack(&key(i)).await;
    }
    let stored = cluster::history(&api, &a, &conv).await;
    let mut keys: Vec<&str> = stored
        .iter()
        .map(|m| m["temp_id"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), N, "every message once after the resend");
    assert_eq!(stored.len(), N, "no message twice after the resend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_sends_survive_kill_9_of_the_server_on_sqlite() {
    acked_sends_survive_kill_9_of_the_server(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_sends_survive_kill_9_of_the_server_on_postgres() {
    acked_sends_survive_kill_9_of_the_server(Backend::Postgres).await;
}
