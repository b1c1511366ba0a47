//! Recovery and ordering over real sockets: a client that was away gets everything it missed,
//! in seq order, exactly once; messages committed while a client syncs are neither lost nor
//! doubled; concurrent senders on two nodes never show a receiver a gap or a reordering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::ws::{hello_conversation, seqs, WsClient, WsConnect, WAIT};
use serde_json::Value;
use std::time::Duration;

/// Reads `message` frames of `conv` until `count` arrived or `timeout` passed; the seqs,
/// in arrival order.
async fn seqs_until(ws: &mut WsClient, conv: &str, count: usize, timeout: Duration) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got: Vec<Value> = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(frame) = ws.next_frame(left).await {
            if frame["type"] == "message" && frame["message"]["conversation_id"] == conv {
                got.push(frame);
            }
        }
    }
    seqs(&got)
}

fn one_to(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

async fn an_offline_client_recovers_a_hundred_messages_in_order_once(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[(keys::SYNC_PAGE, "30")])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    // B saw the first message, then went away.
    cluster::send_rest(&api, &a, &conv, "m0", "t-0").await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    for i in 1..100 {
        ws_a.send_message(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    for i in 1..100 {
        ws_a.ack(&format!("t-{i}")).await;
    }

    // B comes back on the other node: the snapshot says what moved, sync pages it all in.
    let (mut ws_b, hello) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;
    let snapshot = hello_conversation(&hello, &conv);
    assert_eq!(snapshot["last_seq"], 100, "{hello}");
    assert_eq!(snapshot["unread_count"], 100, "{hello}");
    let replayed = ws_b.sync_all(&conv, 0).await;
    let contents: Vec<&str> = replayed
        .iter()
        .map(|m| m["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(seqs(&replayed), one_to(100), "{contents:?}");
    assert_eq!(contents[0], "m0");
    assert_eq!(contents[99], "m99");
    // Nothing comes twice afterwards.
    ws_b.expect_no_frame("message", Duration::from_millis(700))
        .await;
    // A sees them delivered: B fetched them.
    let delivered = ws_a
        .recv_where("delivered up to 100", WAIT, |f| {
            f["type"] == "delivered" && f["user_id"] == b.id.as_str() && f["seq"] == 100
        })
        .await;
    assert_eq!(delivered["conversation_id"], conv.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offline_during_a_hundred_messages_recovers_them_in_order_once_embedded() {
    an_offline_client_recovers_a_hundred_messages_in_order_once(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offline_during_a_hundred_messages_recovers_them_in_order_once_across_nodes() {
    an_offline_client_recovers_a_hundred_messages_in_order_once(Mode::ScaleOut).await;
}

/// Messages keep being committed while receivers connect and sync from zero: whatever
/// moment a receiver's sync and live subscription meet, it sees 1..=N once, in order.
async fn messages_committed_during_sync_arrive_exactly_once(mode: Mode) {
    const N: i64 = 120;
    let d = Deployment::start(mode, &quick(&[(keys::SYNC_PAGE, "7")])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let sender_base = d.base(0);
    let sender_token = a.token.clone();
    let sender_conv = conv.clone();
    let sender = tokio::spawn(async move {
        let (mut ws, _) = WsConnect::all(&sender_base, &sender_token)
            .open_ready("sender")
            .await;
        for i in 1..=N {
            ws.send_acked(&sender_conv, &format!("m{i}"), &format!("t-{i}"))
                .await;
        }
        ws
    });

    // Five receivers (B's sessions) join at different moments of the stream.
    let mut receivers = Vec::new();
    for r in 0..5 {
        let base = d.base(if r % 2 == 0 { d.other(0) } else { 0 });
        let token = b.token.clone();
        let conv = conv.clone();
        receivers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(120 * r)).await;
            let label = format!("receiver {r}");
            let (mut ws, _) = WsConnect::all(&base, &token).open_ready(&label).await;
            let replayed = ws.sync_all(&conv, 0).await;
            let mut got = seqs(&replayed);
            let have = got.len();
            if (have as i64) < N {
                let more = seqs_until(&mut ws, &conv, N as usize - have, WAIT * 3).await;
                got.extend(more);
            }
            // Anything after N would be a duplicate.
            let extra = ws
                .collect_type_for("message", Duration::from_millis(500))
                .await;
            got.extend(seqs(&extra));
            (label, got)
        }));
    }
    sender.await.unwrap();
    for r in receivers {
        let (label, got) = r.await.unwrap();
        assert_eq!(got, one_to(N), "{label}: every seq once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_between_sync_and_subscription_arrives_exactly_once_embedded() {
    messages_committed_during_sync_arrive_exactly_once(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_committed_between_sync_and_subscription_arrives_exactly_once_across_nodes() {
    messages_committed_during_sync_arrive_exactly_once(Mode::ScaleOut).await;
}

/// Two senders on two nodes pipeline messages into one group as fast as they can, so
/// publishes of neighbouring seqs race through different nodes: every receiver session
/// still sees strictly increasing seqs with no gap.
async fn concurrent_senders_never_show_a_gap_or_reordering(mode: Mode) {
    const PER_SENDER: usize = 150;
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let s1 = api.register("Sender one").await;
    let s2 = api.register("Sender two").await;
    let r = api.register("Reader").await;
    let conv = cluster::group(&api, &s1, &[&s2, &r]).await;
    let total = (2 * PER_SENDER) as i64;
    // Both reader sessions read all the time, as real clients do.
    let mut readers = Vec::new();
    for (node, label) in [(0, "reader on node 0"), (d.other(0), "reader on node 1")] {
        let (mut ws, _) = WsConnect::all(&d.base(node), &r.token)
            .open_ready(label)
            .await;
        let conv = conv.clone();
        readers.push(tokio::spawn(async move {
            let got = seqs_until(&mut ws, &conv, total as usize, WAIT * 4).await;
            (ws.label.clone(), got)
        }));
    }

    let mut senders = Vec::new();
    for (i, (user, node)) in [(&s1, 0), (&s2, d.other(0))].into_iter().enumerate() {
        let base = d.base(node);
        let token = user.token.clone();
        let conv = conv.clone();
        senders.push(tokio::spawn(async move {
            let label = format!("sender {i}");
            let (mut ws, _) = WsConnect::all(&base, &token).open_ready(&label).await;
            for k in 0..PER_SENDER {
                ws.send_message(&conv, &format!("{i}-{k}"), &format!("{i}-{k}"))
                    .await;
            }
            for k in 0..PER_SENDER {
                ws.ack(&format!("{i}-{k}")).await;
            }
            // What this sender saw of the other's messages: increasing, no duplicate.
            let seen = ws
                .collect_type_for("message", Duration::from_millis(300))
                .await;
            (label, seqs(&seen))
        }));
    }
    for reader in readers {
        let (label, got) = reader.await.unwrap();
        assert_eq!(got, one_to(total), "{label}: strictly 1..={total}");
    }
    for s in senders {
        let (label, seen) = s.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{label} saw the other's messages out of order: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_never_show_a_receiver_a_gap_or_reordering_embedded() {
    concurrent_senders_never_show_a_gap_or_reordering(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_on_two_nodes_never_show_a_receiver_a_gap_or_reordering() {
    concurrent_senders_never_show_a_gap_or_reordering(Mode::ScaleOut).await;
}

/// A `sync` of the cursor the `hello` snapshot gave (the client holds everything) is
/// answered with nothing replayed and the snapshot's watermarks; a message committed
/// meanwhile still arrives once, live; a cursor behind still replays what it lacks.
async fn a_current_cursor_is_answered_at_once_and_a_behind_one_replays(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    for i in 1..=3 {
        cluster::send_rest(&api, &a, &conv, &format!("m{i}"), &format!("t-{i}")).await;
    }

    let (mut ws_b, hello) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;
    let snapshot = hello_conversation(&hello, &conv).clone();
    assert_eq!(snapshot["last_seq"], 3, "{hello}");
    // Committed after the snapshot, before B's sync: it is B's live, held behind the sync.
    cluster::send_rest(&api, &a, &conv, "m4", "t-4").await;
    let page = ws_b.sync(&[(conv.as_str(), 3)]).await;
    let done = &page.done["conversations"][conv.as_str()];
    assert_eq!(done["has_more"], false, "{}", page.done);
    let last_seq = done["last_seq"].as_i64().unwrap();
    assert!((3..=4).contains(&last_seq), "{}", page.done);
    for key in [
        "delivered_seq",
        "read_seq",
        "peer_delivered_seq",
        "peer_read_seq",
    ] {
        assert!(
            done[key].as_i64() >= snapshot[key].as_i64(),
            "{key}: sync_done {} before hello {snapshot}",
            page.done
        );
    }
    assert_eq!(
        (&snapshot["peer_delivered_seq"], &snapshot["peer_read_seq"]),
        (&3.into(), &3.into())
    );
    let mut got = seqs(&page.messages);
    got.extend(seqs_until(&mut ws_b, &conv, 1usize.saturating_sub(got.len()), WAIT).await);
    assert_eq!(got, vec![4], "m4 once, replayed or live");
    ws_b.expect_no_frame("message", Duration::from_millis(500))
        .await;

    // Another session of B that holds only seq 1: 2..=4 are replayed, once.
    let (mut again, _) = WsConnect::all(&d.base(0), &b.token)
        .open_ready("B again")
        .await;
    let replayed = again.sync_all(&conv, 1).await;
    assert_eq!(seqs(&replayed), vec![2, 3, 4]);
    again
        .expect_no_frame("message", Duration::from_millis(500))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_cursor_is_answered_at_once_and_a_behind_one_replays_embedded() {
    a_current_cursor_is_answered_at_once_and_a_behind_one_replays(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_cursor_is_answered_at_once_and_a_behind_one_replays_across_nodes() {
    a_current_cursor_is_answered_at_once_and_a_behind_one_replays(Mode::ScaleOut).await;
}
