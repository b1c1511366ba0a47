//! Session limits over real sockets: every bad frame gets its error code and the session
//! stays usable; an over-size frame closes 1009; an 11th session closes 1008; a client that
//! does not read is closed 4009 while the others get everything; rate limits; heartbeats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::ws::{seqs, WsClient, WsConnect, WAIT};
use e2e::{Api, TestUser};
use serde_json::{json, Value};
use std::time::Duration;

async fn every_bad_frame_gets_its_error_code_and_the_session_stays_usable(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let c = api.register("Cat").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let conv_ac = cluster::direct(&api, &a, &c).await;
    let foreign = cluster::direct(&api, &b, &c).await;
    let (mut ws, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;
    let first = ws.send_acked(&conv, "first", "dup-1").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let msg = |content: &str, temp_id: &str| {
        json!({"type": "message", "conversation_id": conv, "content": content,
               "content_type": "text", "temp_id": temp_id})
        .to_string()
    };

    // (what, frame, code, ref)
    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        ("not JSON", "hello there".into(), "invalid_json", None),
        ("a JSON array", "[1,2,3]".into(), "invalid_json", None),
        ("a JSON string", "\"message\"".into(), "invalid_json", None),
        ("an unknown type", json!({"type": "dance"}).to_string(), "unknown_type", None),
        ("no type", json!({"content": "x"}).to_string(), "unknown_type", None),
        (
            "a message without content",
            json!({"type": "message", "conversation_id": conv, "temp_id": "v-1"}).to_string(),
            "validation_failed",
            Some("v-1"),
        ),
        (
            "a message without conversation_id",
            json!({"type": "message", "content": "x", "temp_id": "v-2"}).to_string(),
            "validation_failed",
            Some("v-2"),
        ),
        (
            "a malformed conversation_id",
            json!({"type": "message", "conversation_id": "abc", "content": "x", "temp_id": "v-3"})
                .to_string(),
            "validation_failed",
            Some("v-3"),
        ),
        ("too-long content", msg(&"x".repeat(4001), "v-4"), "validation_failed", Some("v-4")),
        ("blank content", msg("   \n\t ", "v-5"), "validation_failed", Some("v-5")),
        ("empty content", msg("", "v-6"), "validation_failed", Some("v-6")),
        ("a too-long temp_id", msg("x", &"t".repeat(65)), "validation_failed", None),
        (
            "an unknown content_type",
            json!({"type": "message", "conversation_id": conv, "content": "x",
                   "content_type": "hologram", "temp_id": "v-7"})
            .to_string(),
            "validation_failed",
            Some("v-7"),
        ),
        (
            "a conversation A is not in",
            json!({"type": "message", "conversation_id": foreign, "content": "x", "temp_id": "v-8"})
                .to_string(),
            "not_participant",
            Some("v-8"),
        ),
        (
            "a conversation that does not exist",
            json!({"type": "message", "conversation_id": unknown, "content": "x", "temp_id": "v-9"})
                .to_string(),
            "not_participant",
            Some("v-9"),
        ),
        ("a reused temp_id with other content", msg("second", "dup-1"), "temp_id_conflict", Some("dup-1")),
        (
            "a reused temp_id in another conversation",
            json!({"type": "message", "conversation_id": conv_ac, "content": "first",
                   "temp_id": "dup-1"})
            .to_string(),
            "temp_id_conflict",
            Some("dup-1"),
        ),
        (
            "a read of a message not in the conversation",
            json!({"type": "read", "conversation_id": conv, "message_id": unknown}).to_string(),
            "message_not_found",
            None,
        ),
        (
            "a read in a foreign conversation",
            json!({"type": "read", "conversation_id": foreign, "message_id": first["message_id"]})
                .to_string(),
            "not_participant",
            None,
        ),
        (
            "typing without is_typing",
            json!({"type": "typing", "conversation_id": conv}).to_string(),
            "validation_failed",
            None,
        ),
        (
            "typing in a foreign conversation",
            json!({"type": "typing", "conversation_id": foreign, "is_typing": true}).to_string(),
            "not_participant",
            None,
        ),
        (
            "sync with cursors that are not an object",
            json!({"type": "sync", "cursors": [1, 2]}).to_string(),
            "validation_failed",
            None,
        ),
        (
            "sync of a foreign conversation",
            json!({"type": "sync", "cursors": {foreign.as_str(): 0}}).to_string(),
            "not_participant",
            None,
        ),
        (
            "an unknown presence status",
            json!({"type": "presence", "status": "dancing"}).to_string(),
            "validation_failed",
            None,
        ),
        (
            "an auth frame with a bad token",
            json!({"type": "auth", "token": "not-a-jwt"}).to_string(),
            "unauthorized",
            None,
        ),
    ];

    let mut valid = vec![first["message_id"].clone()];
    for (i, (what, frame, code, reference)) in cases.iter().enumerate() {
        ws.send_text(frame.clone()).await;
        let err = ws
            .recv_where(&format!("the error for {what}"), WAIT, |f| {
                f["type"] == "error"
            })
            .await;
        assert_eq!(err["code"], *code, "{what}: {err}");
        assert!(err["message"].is_string(), "{what}: no message: {err}");
        if let Some(r) = reference {
            assert_eq!(err["ref"], *r, "{what}: {err}");
        }
        // Still usable: a valid send right after is acked.
        let ok = ws
            .send_acked(&conv, &format!("ok after {what}"), &format!("ok-{i}"))
            .await;
        valid.push(ok["message_id"].clone());
    }
    assert!(
        ws.closed().is_none(),
        "an error closed the session: {:?}",
        ws.closed()
    );

    // Only the valid messages exist, and B got exactly those.
    let history = cluster::history(&api, &a, &conv).await;
    let stored: Vec<&Value> = history.iter().map(|m| &m["id"]).collect();
    assert_eq!(stored, valid.iter().collect::<Vec<_>>(), "stored messages");
    let mut received = vec![ws_b.recv_frame("message", WAIT).await];
    while received.len() < valid.len() {
        received.push(ws_b.recv_frame("message", WAIT).await);
    }
    received.extend(
        ws_b.collect_type_for("message", Duration::from_millis(500))
            .await,
    );
    let ids: Vec<&Value> = received.iter().map(|m| &m["message"]["id"]).collect();
    assert_eq!(ids, valid.iter().collect::<Vec<_>>(), "what B received");
    assert!(
        cluster::history(&api, &c, &foreign).await.is_empty(),
        "nothing reached the foreign conversation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_frame_gets_its_error_code_and_the_session_stays_usable_embedded() {
    every_bad_frame_gets_its_error_code_and_the_session_stays_usable(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_frame_gets_its_error_code_and_the_session_stays_usable_on_a_cluster() {
    every_bad_frame_gets_its_error_code_and_the_session_stays_usable(Mode::ScaleOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_size_limit_closes_the_session_with_1009() {
    let d = Deployment::start(Mode::Embedded, &quick(&[(keys::MAX_FRAME_BYTES, "2048")])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    // Just under the limit is fine.
    ws.send_acked(&conv, &"x".repeat(1800), "fits").await;
    ws.send_message(&conv, &"x".repeat(3000), "too-big").await;
    ws.expect_close(1009, WAIT).await;
    assert_eq!(cluster::history(&api, &a, &conv).await.len(), 1);
}

async fn an_eleventh_session_of_one_user_closes_with_1008(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[(keys::MAX_SESSIONS, "10")])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let mut sessions = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { 0 } else { d.other(0) };
        let (ws, _) = WsConnect::all(&d.base(node), &a.token)
            .open_ready(&format!("session {i}"))
            .await;
        sessions.push(ws);
    }
    let mut eleventh = WsConnect::all(&d.base(0), &a.token)
        .open("11th session")
        .await;
    eleventh.expect_close(1008, WAIT).await;
    let mut twelfth = WsConnect::all(&d.base(d.other(0)), &a.token)
        .open("11th session on the other node")
        .await;
    twelfth.expect_close(1008, WAIT).await;

    // The cap is a count, not a lock: once one session ends, a new one is let in.
    sessions.pop().unwrap().close().await;
    let mut admitted = None;
    for _ in 0..20 {
        let mut ws = WsConnect::all(&d.base(d.other(0)), &a.token)
            .open("a session after one closed")
            .await;
        if admitted_with_hello(&mut ws).await {
            admitted = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        admitted.is_some(),
        "no session admitted after one of ten closed"
    );
}

/// Whether a fresh socket got its `hello` and stayed open (rather than a 1008 close).
async fn admitted_with_hello(ws: &mut WsClient) -> bool {
    ws.still_open_after(Duration::from_millis(300))
        .await
        .is_none()
        && ws.kept().any(|f| f["type"] == "hello")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eleventh_session_of_one_user_closes_with_1008_embedded() {
    an_eleventh_session_of_one_user_closes_with_1008(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eleventh_session_of_one_user_across_two_nodes_closes_with_1008() {
    an_eleventh_session_of_one_user_closes_with_1008(Mode::ScaleOut).await;
}

/// A client that never reads, with a small outbound queue, is closed with 4009; the others
/// get every message, and the slow one recovers with `sync` on reconnect.
async fn a_slow_consumer_is_closed_with_4009_while_the_others_receive_everything(mode: Mode) {
    // 150 messages of 60,000 characters: 9 MB, more than the kernel's socket buffers
    // (up to 4 MB of send buffer here) can hide from the server.
    const N: usize = 150;
    const SIZE: usize = 60_000;
    let size = SIZE.to_string();
    let d = Deployment::start(
        mode,
        &quick(&[
            (keys::OUTBOUND_QUEUE, "16"),
            // The slow reader only starts reading once every send is done: the server
            // must still be waiting to hand it the close frame then.
            (keys::CLOSE_GRACE_MS, "60000"),
            // Nor may it be reaped for the pings it leaves unanswered meanwhile.
            (keys::HEARTBEAT_MS, "60000"),
            (keys::MAX_CONTENT_CHARS, &size),
        ]),
    )
    .await;
    let api = d.api(0);
    let x = api.register("Sender").await;
    let f = api.register("Fast").await;
    let s = api.register("Slow").await;
    let conv = cluster::group(&api, &x, &[&f, &s]).await;
    let (mut slow, _) = WsConnect::all(&d.base(0), &s.token)
        .small_receive_buffer()
        .open_ready("slow reader")
        .await;
    speak_first(&mut slow).await;
    let closed_before = slow_consumers_closed(&api).await;
    let fast_base = d.base(d.other(0));
    let fast_token = f.token.clone();
    let fast_conv = conv.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let fast = tokio::spawn(async move {
        let (mut ws, _) = WsConnect::all(&fast_base, &fast_token)
            .open_ready("fast reader")
            .await;
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while got.len() < N {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match ws.next_frame(left).await {
                Some(m)
                    if m["type"] == "message" && m["message"]["conversation_id"] == fast_conv =>
                {
                    got.push(m)
                }
                Some(_) => {}
                None => break,
            }
        }
        (seqs(&got), ws.closed().cloned())
    });
    ready_rx.await.unwrap();

    burst(&api, &x, &conv, N, SIZE).await;

    let (fast_seqs, fast_closed) = fast.await.unwrap();
    assert_eq!(fast_closed, None, "the fast reader was closed");
    assert_eq!(
        fast_seqs,
        (1..=N as i64).collect::<Vec<_>>(),
        "the fast reader got every message once, in order"
    );
    // The slow one reads nothing until the server closed it: a reader that starts reading
    // within the slow-consumer grace is not slow (under load, the burst can end and the
    // fast reader finish before the slow session's first write has waited a whole grace).
    closed_by_the_server(&api, closed_before).await;
    // Now the slow one reads: what was written before the close, then 4009.
    slow.expect_close(4009, WAIT * 2).await;
    // It reconnects and syncs from what it has: the rest, once.
    gets_the_rest_after_4009(&slow, &d.base(0), &s.token, &conv, N).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4009_while_the_others_receive_everything_embedded() {
    a_slow_consumer_is_closed_with_4009_while_the_others_receive_everything(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_4009_while_the_others_on_another_node_receive_everything() {
    a_slow_consumer_is_closed_with_4009_while_the_others_receive_everything(Mode::ScaleOut).await;
}

/// A burst that ends leaves a reader that stopped reading over its limit, with no more events
/// for the hub to judge it by: its write, stalled for the grace, closes it with 4009 all the
/// same (the test reads nothing until the server counted the close), and `sync` brings the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_left_over_its_limit_when_a_burst_ends_is_closed_with_4009() {
    // 150 frames of 60,000 characters: the kernel's buffers hold at most ~4 MB of them, so
    // more than 40 wait in the queue, which holds 160: it never fills, only time judges.
    const N: usize = 150;
    const SIZE: usize = 60_000;
    let size = SIZE.to_string();
    let d = Deployment::start(
        Mode::Embedded,
        &quick(&[
            (keys::OUTBOUND_QUEUE, "40"),
            (keys::SLOW_CONSUMER_GRACE_MS, "1500"),
            (keys::CLOSE_GRACE_MS, "60000"),
            (keys::HEARTBEAT_MS, "60000"),
            (keys::MAX_CONTENT_CHARS, &size),
        ]),
    )
    .await;
    let api = d.api(0);
    let x = api.register("Sender").await;
    let s = api.register("Slow").await;
    let conv = cluster::direct(&api, &x, &s).await;
    let (mut slow, _) = WsConnect::all(&d.base(0), &s.token)
        .small_receive_buffer()
        .open_ready("slow reader")
        .await;
    speak_first(&mut slow).await;
    let closed_before = slow_consumers_closed(&api).await;
    burst(&api, &x, &conv, N, SIZE).await;
    // Nothing more comes. The server closes the reader while it still reads nothing.
    closed_by_the_server(&api, closed_before).await;
    slow.expect_close(4009, WAIT * 2).await;
    gets_the_rest_after_4009(&slow, &d.base(0), &s.token, &conv, N).await;
}

/// The client's first frame, answered, before any burst: it ends the session's hold after
/// `hello` (live messages wait there for the client's `sync`, at most `sync_hold`), so the
/// burst goes through the session's queue, which is what the hub judges. A client that says
/// nothing has its live messages held (at most `max_pending`, the rest fetched from storage
/// afterwards): not queued, so not what these tests are about; the heartbeat reaps it.
async fn speak_first(ws: &mut WsClient) {
    ws.send_json(&json!({"type": "ping"})).await;
    ws.recv_frame("pong", WAIT).await;
}

/// Sessions the node of `api` closed as slow consumers so far.
async fn slow_consumers_closed(api: &Api) -> f64 {
    api.metric("chat_slow_consumers_closed_total")
        .await
        .unwrap_or(0.0)
}

/// Waits (reading nothing) until the node of `api` closed one more slow consumer than
/// `before`; fails after 30 s.
async fn closed_by_the_server(api: &Api, before: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while slow_consumers_closed(api).await < before + 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader that reads nothing was never closed as a slow consumer"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` messages of `size` characters from `sender`, over REST on eight lanes at once.
async fn burst(api: &Api, sender: &TestUser, conv: &str, n: usize, size: usize) {
    let filler = "z".repeat(size - 10);
    futures_util::future::join_all((0..8).map(|lane| {
        let filler = &filler;
        async move {
            for i in (lane..n).step_by(8) {
                cluster::send_rest(
                    api,
                    sender,
                    conv,
                    &format!("{i} {filler}"),
                    &format!("t-{i}"),
                )
                .await;
            }
        }
    }))
    .await;
}

/// What a client closed with 4009 got is a gapless prefix of the `n` messages (not all of
/// them: it was slow), and a new socket's `sync` from there brings the rest, once.
async fn gets_the_rest_after_4009(slow: &WsClient, base: &str, token: &str, conv: &str, n: usize) {
    let got = seqs(
        &slow
            .kept()
            .filter(|f| f["type"] == "message")
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert!(
        got.len() < n,
        "the slow reader got all {n} messages: it was never slow"
    );
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "what the slow reader got before 4009 has gaps: {got:?}"
    );
    let have = got.last().copied().unwrap_or(0);
    let (mut again, _) = WsConnect::all(base, token)
        .open_ready("slow reader again")
        .await;
    let rest = seqs(&again.sync_all(conv, have).await);
    assert_eq!(rest, ((have + 1)..=n as i64).collect::<Vec<_>>());
}

/// A burst larger than the outbound queue (one group-commit batch lands at once, before the
/// reader's session even runs) does not close a client that reads: it is drained within the
/// grace. The hard bound, four times the limit, still holds.
async fn a_burst_over_the_queue_limit_does_not_close_a_client_that_reads(mode: Mode) {
    const QUEUE: usize = 8;
    // Over the limit, within the four-fold bound.
    const N: usize = 3 * QUEUE;
    let queue = QUEUE.to_string();
    let d = Deployment::start(
        mode,
        &quick(&[
            (keys::OUTBOUND_QUEUE, &queue),
            (keys::SLOW_CONSUMER_GRACE_MS, "5000"),
        ]),
    )
    .await;
    let api = d.api(0);
    let x = api.register("Sender").await;
    let r = api.register("Reader").await;
    let conv = cluster::group(&api, &x, &[&r]).await;
    let (mut reader, _) = WsConnect::all(&d.base(d.other(0)), &r.token)
        .open_ready("reader")
        .await;
    let (mut sender, _) = WsConnect::all(&d.base(0), &x.token)
        .open_ready("sender")
        .await;
    for round in 0..3 {
        // Pipelined: the batcher commits them together and they are published together.
        for i in 0..N {
            let key = format!("{round}-{i}");
            sender.send_message(&conv, &key, &key).await;
        }
        for i in 0..N {
            sender.ack(&format!("{round}-{i}")).await;
        }
        let mut got = Vec::new();
        while got.len() < N {
            match reader.next_frame(WAIT).await {
                Some(m) if m["type"] == "message" => got.push(m),
                Some(_) => {}
                None => break,
            }
        }
        let first = (round * N) as i64 + 1;
        assert_eq!(
            seqs(&got),
            (first..first + N as i64).collect::<Vec<_>>(),
            "round {round}: every message once, in order; closed: {:?}",
            reader.closed()
        );
    }
    assert_eq!(reader.closed(), None, "the reader was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_queue_limit_does_not_close_a_client_that_reads_embedded() {
    a_burst_over_the_queue_limit_does_not_close_a_client_that_reads(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_queue_limit_does_not_close_a_client_that_reads_across_nodes() {
    a_burst_over_the_queue_limit_does_not_close_a_client_that_reads(Mode::ScaleOut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_over_the_rate_limit_is_refused_with_rate_limited_and_the_session_stays_usable() {
    let d = Deployment::start(
        Mode::Embedded,
        &quick(&[(keys::MESSAGES_PER_SECOND, "2"), (keys::MESSAGE_BURST, "3")]),
    )
    .await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    for i in 0..6 {
        ws.send_message(&conv, &format!("m{i}"), &format!("t-{i}"))
            .await;
    }
    let mut acked = 0;
    let mut limited = Vec::new();
    for i in 0..6 {
        let key = format!("t-{i}");
        let f = ws
            .recv_where(&format!("an answer to {key}"), WAIT, |f| {
                (f["type"] == "message_sent" && f["temp_id"] == key.as_str())
                    || (f["type"] == "error" && f["ref"] == key.as_str())
            })
            .await;
        if f["type"] == "message_sent" {
            acked += 1;
        } else {
            assert_eq!(f["code"], "rate_limited", "{f}");
            limited.push(key);
        }
    }
    assert!(acked >= 3, "the burst of 3 was not allowed: {acked} acked");
    assert!(
        !limited.is_empty(),
        "6 sends at once with a burst of 3: none limited"
    );
    // After the bucket refills, the refused one goes through with the same temp_id.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let retried = ws
        .send_acked(&conv, &format!("m{}", &limited[0][2..]), &limited[0])
        .await;
    assert!(retried["seq"].as_i64().unwrap() > 0);
}

async fn heartbeats(mode: Mode) {
    // A client answers a ping only when it next reads, and these clients share two CPUs
    // with the rest of the suite: an interval of 800 ms (answer within 1.6 s) keeps a client
    // that reads from being reaped because a busy machine held it off the CPU for a moment.
    let d = Deployment::start(
        mode,
        &quick(&[
            (keys::HEARTBEAT_MS, "800"),
            (keys::PRESENCE_GRACE_MS, "200"),
        ]),
    )
    .await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    cluster::direct(&api, &a, &b).await;
    let (mut ws_b, _) = WsConnect::all(&d.base(d.other(0)), &b.token)
        .open_ready("B")
        .await;

    // A client ping gets a pong.
    ws_b.send_json(&json!({"type": "ping"})).await;
    ws_b.recv_frame("pong", WAIT).await;

    // A client that reads (so its library answers the server's pings) but sends nothing
    // stays connected for several intervals.
    let (mut quiet, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A, quiet but reading")
        .await;
    // B reads meanwhile too, or it would be the one reaped.
    let (quiet_end, b_end) = tokio::join!(
        quiet.still_open_after(Duration::from_millis(3000)),
        ws_b.still_open_after(Duration::from_millis(3000)),
    );
    assert_eq!(quiet_end, None, "a reading client was closed");
    assert_eq!(b_end, None, "a reading client was closed");
    quiet.close().await;
    ws_b.recv_where("A offline", WAIT, |f| {
        f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "offline"
    })
    .await;

    // A client that stops reading answers no ping: it is reaped, and goes offline.
    let (dead, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A, unresponsive")
        .await;
    ws_b.recv_where("A online", WAIT, |f| {
        f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "online"
    })
    .await;
    let offline = ws_b
        .recv_where("A offline after missing pings", WAIT, |f| {
            f["type"] == "presence" && f["user_id"] == a.id.as_str() && f["status"] == "offline"
        })
        .await;
    assert!(offline["last_seen"].is_string());
    drop(dead);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_live_clients_and_reap_silent_ones_embedded() {
    heartbeats(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_live_clients_and_reap_silent_ones_on_a_cluster() {
    heartbeats(Mode::ScaleOut).await;
}
