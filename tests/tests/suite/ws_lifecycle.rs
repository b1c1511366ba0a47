//! Edits, deletions and reactions over the WebSocket (issue 12): live to every session of
//! every member, on one node and across two; refused with an `error` frame and no change;
//! recovered after any time offline from storage, by the change cursor, each change once and
//! in order, then live with no gap, also when Redis dropped the live event.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment, Mode};
use e2e::services::PrivateRedis;
use e2e::ws::{frame_type, hello_conversation, WsClient, WsConnect, WAIT};
use e2e::{uuid, Api, Backend, TestStore, TestUser};
use protocol::ClientFrame;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(400);

fn is_change(frame: &Value) -> bool {
    matches!(
        frame_type(frame),
        "message_updated" | "message_deleted" | "reaction"
    )
}

/// The next change frame (`message_updated`, `message_deleted`, `reaction`) of `conv`.
async fn next_change(ws: &mut WsClient, conv: &str) -> Value {
    ws.recv_where("a change frame", WAIT, |f| {
        is_change(f) && f["conversation_id"] == conv
    })
    .await
}

/// The `error` frame answering the request named `reference`.
async fn error_of(ws: &mut WsClient, reference: &str) -> Value {
    ws.recv_where(&format!("the error of {reference}"), WAIT, |f| {
        frame_type(f) == "error" && f["ref"] == reference
    })
    .await
}

/// `sync` of `conv` from `seq` and change `change`, every page: the change frames replayed
/// (or live meanwhile) in arrival order, and the last `sync_done` entry.
async fn sync_changes(ws: &mut WsClient, conv: &str, seq: i64, change: i64) -> (Vec<Value>, Value) {
    let (mut seq, mut change) = (seq, change);
    let mut changes = Vec::new();
    for _ in 0..100 {
        ws.send_frame(&ClientFrame::sync_with_changes([(uuid(conv), seq, change)]))
            .await;
        loop {
            let frame = ws
                .recv_where("a change or sync_done", WAIT, |f| {
                    is_change(f) || matches!(frame_type(f), "sync_done" | "message")
                })
                .await;
            match frame_type(&frame) {
                "sync_done" => {
                    let entry = frame["conversations"][conv].clone();
                    if !entry["has_more"].as_bool().unwrap() {
                        return (changes, entry);
                    }
                    seq = entry["last_seq"].as_i64().unwrap();
                    change = entry["last_change"].as_i64().unwrap();
                    break;
                }
                "message" => seq = seq.max(frame["message"]["seq"].as_i64().unwrap()),
                _ => changes.push(frame),
            }
        }
    }
    panic!("{}: the sync never ended", ws.label)
}

fn change_seqs(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| f["change_seq"].as_i64().unwrap())
        .collect()
}

fn message_id(sent: &Value) -> String {
    sent["message_id"].as_str().unwrap().to_owned()
}

async fn edit(ws: &mut WsClient, conv: &str, message: &str, content: &str, reference: &str) {
    ws.send_json(
        &json!({"type": "edit", "conversation_id": conv, "message_id": message,
        "content": content, "request_id": reference}),
    )
    .await;
}

async fn react(
    ws: &mut WsClient,
    conv: &str,
    message: &str,
    emoji: &str,
    add: bool,
    reference: &str,
) {
    ws.send_json(
        &json!({"type": "react", "conversation_id": conv, "message_id": message,
        "emoji": emoji, "add": add, "request_id": reference}),
    )
    .await;
}

async fn delete(ws: &mut WsClient, conv: &str, message: &str, reference: &str) {
    ws.send_json(
        &json!({"type": "delete", "conversation_id": conv, "message_id": message,
        "request_id": reference}),
    )
    .await;
}

async fn history_of(api: &Api, user: &TestUser, conv: &str) -> Vec<Value> {
    cluster::history(api, user, conv).await
}

async fn live_changes_reach_every_session_and_refusals_change_nothing(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let (a, b, c, outsider) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Cleo").await,
        api.register("Oscar").await,
    );
    // Alice owns the group; Bob and Cleo are members.
    let conv = cluster::group(&api, &a, &[&b, &c]).await;
    let elsewhere = cluster::direct(&api, &a, &outsider).await;
    let far = d.other(0);
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_a2, _) = WsConnect::all(&d.base(far), &a.token)
        .open_ready("A's other session")
        .await;
    let (mut ws_b, _) = WsConnect::all(&d.base(far), &b.token).open_ready("B").await;
    let (mut ws_c, _) = WsConnect::all(&d.base(0), &c.token).open_ready("C").await;
    let (mut ws_o, _) = WsConnect::all(&d.base(0), &outsider.token)
        .open_ready("outsider")
        .await;
    let m1 = message_id(&ws_a.send_acked(&conv, "helo", "a-1").await);
    let m2 = message_id(&ws_b.send_acked(&conv, "from Bob", "b-1").await);
    let other = message_id(&ws_a.send_acked(&elsewhere, "not here", "a-x").await);
    for ws in [&mut ws_a, &mut ws_a2, &mut ws_b, &mut ws_c] {
        ws.forget_kept();
    }

    // An edit reaches every session of every member, the editing one included.
    edit(&mut ws_a, &conv, &m1, "hello", "e-1").await;
    for ws in [&mut ws_a, &mut ws_a2, &mut ws_b, &mut ws_c] {
        let updated = next_change(ws, &conv).await;
        assert_eq!(frame_type(&updated), "message_updated", "{}", ws.label);
        assert_eq!(updated["change_seq"], 1, "{}: {updated}", ws.label);
        assert_eq!(updated["message"]["id"], m1.as_str());
        assert_eq!(updated["message"]["content"], "hello");
        assert!(updated["message"]["edited_at"].is_string(), "{updated}");
        assert_eq!(updated["message"]["change_seq"], 1);
    }
    // The same edit again changes and announces nothing.
    edit(&mut ws_a, &conv, &m1, "hello", "e-2").await;
    ws_b.expect_no_frame("message_updated", QUIET).await;

    // A reaction: to everyone, with the message as it is now.
    react(&mut ws_b, &conv, &m1, "👍", true, "r-1").await;
    for ws in [&mut ws_a, &mut ws_a2, &mut ws_b, &mut ws_c] {
        let reaction = next_change(ws, &conv).await;
        assert_eq!(
            frame_type(&reaction),
            "reaction",
            "{}: {reaction}",
            ws.label
        );
        assert_eq!(reaction["change_seq"], 2);
        assert_eq!(reaction["user_id"], b.id.as_str());
        assert_eq!(reaction["emoji"], "👍");
        assert_eq!(reaction["added"], true);
        assert_eq!(reaction["reactions"][0]["count"], 1);
        assert_eq!(reaction["reactions"][0]["user_ids"][0], b.id.as_str());
        assert!(
            reaction["reactions"][0].get("me").is_none(),
            "a live frame serves everyone: no `me`: {reaction}"
        );
        assert_eq!(reaction["message"]["content"], "hello");
    }
    // Adding it again changes nothing.
    react(&mut ws_b, &conv, &m1, "👍", true, "r-2").await;
    ws_c.expect_no_frame("reaction", QUIET).await;

    // The owner deletes Bob's message: a tombstone for everyone.
    delete(&mut ws_a, &conv, &m2, "d-1").await;
    for ws in [&mut ws_a, &mut ws_a2, &mut ws_b, &mut ws_c] {
        let deleted = next_change(ws, &conv).await;
        assert_eq!(
            frame_type(&deleted),
            "message_deleted",
            "{}: {deleted}",
            ws.label
        );
        assert_eq!(deleted["message_id"], m2.as_str());
        assert_eq!(deleted["deleted_by"], a.id.as_str());
        assert_eq!(deleted["seq"], 2);
        assert_eq!(deleted["change_seq"], 3);
    }

    // Refusals: an error frame naming the request, and nothing changes.
    edit(&mut ws_c, &conv, &m1, "mine now", "bad-1").await;
    assert_eq!(error_of(&mut ws_c, "bad-1").await["code"], "not_sender");
    delete(&mut ws_c, &conv, &m1, "bad-2").await;
    assert_eq!(error_of(&mut ws_c, "bad-2").await["code"], "not_sender");
    react(&mut ws_c, &conv, &m1, "lol", true, "bad-3").await;
    assert_eq!(
        error_of(&mut ws_c, "bad-3").await["code"],
        "validation_failed"
    );
    edit(&mut ws_b, &conv, &m2, "back from the dead", "bad-4").await;
    assert_eq!(
        error_of(&mut ws_b, "bad-4").await["code"],
        "message_deleted"
    );
    react(&mut ws_b, &conv, &m2, "👍", true, "bad-5").await;
    assert_eq!(
        error_of(&mut ws_b, "bad-5").await["code"],
        "message_deleted"
    );
    edit(&mut ws_a, &conv, &other, "wrong room", "bad-6").await;
    assert_eq!(
        error_of(&mut ws_a, "bad-6").await["code"],
        "message_not_found"
    );
    edit(&mut ws_a, &conv, &m1, "   ", "bad-7").await;
    assert_eq!(
        error_of(&mut ws_a, "bad-7").await["code"],
        "validation_failed"
    );
    react(&mut ws_o, &conv, &m1, "👍", true, "bad-8").await;
    assert_eq!(
        error_of(&mut ws_o, "bad-8").await["code"],
        "not_participant"
    );
    delete(&mut ws_o, &conv, &m1, "bad-9").await;
    assert_eq!(
        error_of(&mut ws_o, "bad-9").await["code"],
        "not_participant"
    );
    ws_b.expect_no_frame("message_updated", QUIET).await;
    for ws in [&mut ws_a, &mut ws_b, &mut ws_c] {
        assert!(
            ws.take_kept(is_change).is_none(),
            "{}: a refusal announced a change",
            ws.label
        );
    }

    // History shows every change; unread counts count messages only.
    let history = history_of(&api, &c, &conv).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["content"], "hello");
    assert_eq!(history[0]["reactions"][0]["emoji"], "👍");
    assert_eq!(history[0]["reactions"][0]["me"], false);
    assert_eq!(history[1]["content"], "");
    assert!(history[1]["deleted_at"].is_string());
    let unread = api.get("/api/v1/unread", c.t()).await;
    assert_eq!(unread.body["total"], 2, "{:?}", unread.body);
    // The session that sent a refused frame still works.
    ws_c.send_acked(&conv, "still here", "c-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_reach_every_session_and_refusals_change_nothing_embedded() {
    live_changes_reach_every_session_and_refusals_change_nothing(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_reach_every_session_across_two_nodes_and_refusals_change_nothing() {
    live_changes_reach_every_session_and_refusals_change_nothing(Mode::ScaleOut).await;
}

/// Five messages to Bob; Bob goes away; eight changes on them: the change numbers are 1..8.
/// Returns the message ids.
async fn changes_while_away(ws_a: &mut WsClient, conv: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 1..=5 {
        ids.push(message_id(
            &ws_a
                .send_acked(conv, &format!("m{i}"), &format!("a-{i}"))
                .await,
        ));
    }
    ws_a.forget_kept();
    edit(ws_a, conv, &ids[0], "m1 edited", "x-1").await; // 1
    react(ws_a, conv, &ids[1], "🎉", true, "x-2").await; // 2
    delete(ws_a, conv, &ids[2], "x-3").await; // 3
    edit(ws_a, conv, &ids[3], "m4 edited", "x-4").await; // 4
    edit(ws_a, conv, &ids[3], "m4 edited twice", "x-5").await; // 5
    delete(ws_a, conv, &ids[3], "x-6").await; // 6
    react(ws_a, conv, &ids[4], "👀", true, "x-7").await; // 7
    react(ws_a, conv, &ids[4], "👀", false, "x-8").await; // 8
    for expected in 1..=8 {
        let change = next_change(ws_a, conv).await;
        assert_eq!(change["change_seq"], expected, "{change}");
    }
    ids
}

async fn an_offline_client_recovers_every_change_in_order_once(mode: Mode) {
    // Pages of two: the changes come over several `sync`s.
    let d = Deployment::start(mode, &quick(&[(keys::SYNC_PAGE, "2")])).await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let ids = changes_while_away(&mut ws_a, &conv).await;

    // Bob comes back on the other node, having seen nothing: the snapshot has the cursor.
    let far = d.other(0);
    let (mut ws_b, hello) = WsConnect::all(&d.base(far), &b.token).open_ready("B").await;
    let snapshot = hello_conversation(&hello, &conv);
    assert_eq!(snapshot["last_change"], 8, "{hello}");
    assert_eq!(
        snapshot["unread_count"], 5,
        "changes are not unread messages"
    );
    let (changes, done) = sync_changes(&mut ws_b, &conv, 5, 0).await;
    assert_eq!(
        change_seqs(&changes),
        [1, 2, 3, 6, 8],
        "each changed message once, as it is now, in change order: {changes:?}"
    );
    assert_eq!(done["last_change"], 8);
    let kinds: Vec<&str> = changes.iter().map(frame_type).collect();
    assert_eq!(
        kinds,
        [
            "message_updated",
            "message_updated",
            "message_deleted",
            "message_deleted",
            "message_updated"
        ]
    );
    assert_eq!(changes[0]["message"]["content"], "m1 edited");
    assert_eq!(changes[1]["message"]["id"], ids[1].as_str());
    let tada = &changes[1]["message"]["reactions"][0];
    assert_eq!(
        (tada["emoji"].as_str(), tada["count"].as_i64()),
        (Some("🎉"), Some(1))
    );
    assert_eq!(tada["me"], false, "replayed for one reader: `me` is there");
    assert_eq!(changes[3]["message_id"], ids[3].as_str());
    assert_eq!(changes[4]["message"]["reactions"], json!([]));

    // Then live, with no gap: the next change is 9, once.
    edit(&mut ws_a, &conv, &ids[0], "m1 edited again", "x-9").await;
    let live = next_change(&mut ws_b, &conv).await;
    assert_eq!(live["change_seq"], 9);
    ws_b.expect_no_frame("message_updated", QUIET).await;

    // A sync from the cursor it was given replays nothing.
    let (again, done) = sync_changes(&mut ws_b, &conv, 5, 9).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(done["last_change"], 9);

    // A client of seed 000's frames (no `changes`) gets no change replayed.
    let (mut old, _) = WsConnect::all(&d.base(0), &b.token)
        .open_ready("seed 000 client")
        .await;
    let page = old.sync(&[(&conv, 5)]).await;
    assert!(page.done["conversations"][&conv]
        .get("last_change")
        .is_none());
    old.expect_no_frame("message_updated", QUIET).await;
    assert!(old.take_kept(is_change).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_recovers_every_change_in_order_once_embedded() {
    an_offline_client_recovers_every_change_in_order_once(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_client_recovers_every_change_in_order_once_across_two_nodes() {
    an_offline_client_recovers_every_change_in_order_once(Mode::ScaleOut).await;
}

/// A client whose `sync` comes after live changes were written (its hold passed) gets what
/// it lacked from before, and not again what it got live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_sync_replays_what_came_before_and_not_what_came_live() {
    let d = Deployment::start(Mode::Embedded, &quick(&[])).await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let ids = changes_while_away(&mut ws_a, &conv).await;
    let (mut ws_b, hello) = WsConnect::all(&d.base(0), &b.token).open_ready("B").await;
    assert_eq!(hello_conversation(&hello, &conv)["last_change"], 8);
    // Past the hold: live changes flow before Bob asks for anything.
    tokio::time::sleep(Duration::from_millis(700)).await;
    react(&mut ws_a, &conv, &ids[0], "❤️", true, "x-9").await; // 9, on m1 (changed at 1)
    edit(&mut ws_a, &conv, &ids[1], "m2 edited", "x-10").await; // 10, on m2 (changed at 2)
    let live: Vec<i64> = vec![
        next_change(&mut ws_b, &conv).await["change_seq"]
            .as_i64()
            .unwrap(),
        next_change(&mut ws_b, &conv).await["change_seq"]
            .as_i64()
            .unwrap(),
    ];
    assert_eq!(live, [9, 10]);
    let (changes, done) = sync_changes(&mut ws_b, &conv, 5, 0).await;
    assert_eq!(
        change_seqs(&changes),
        [3, 6, 8],
        "m1 and m2 came live, whole; the rest once: {changes:?}"
    );
    assert_eq!(done["last_change"], 10);
}

/// Redis drops every subscription between two changes: the reader's session fetches what it
/// may have missed from storage when its node resubscribes, and gets each change once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_live_event_redis_dropped_is_recovered_from_storage() {
    let redis = PrivateRedis::start().await;
    let store = TestStore::new(Backend::Postgres).await;
    let d = Deployment::scale_out_on(store, &redis.url(), &quick(&[]), 2).await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(1), &b.token).open_ready("B").await;
    // One message per change, so that no change absorbs another (storage keeps each
    // message's latest): every change number must reach Bob.
    let mut ids = Vec::new();
    for i in 1..=7 {
        ids.push(message_id(
            &ws_a
                .send_acked(&conv, &format!("m{i}"), &format!("a-{i}"))
                .await,
        ));
    }
    let m1 = ids[0].clone();
    edit(&mut ws_a, &conv, &m1, "change 1", "x-1").await;
    assert_eq!(next_change(&mut ws_b, &conv).await["change_seq"], 1);

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for round in 2..=6 {
        // Both nodes subscribed again (after the previous round's kill)...
        for _ in 0..200 {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut conn)
                .await
                .unwrap();
            if list.lines().count() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ...then every subscription dropped, and a change made right away.
        let killed: u32 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(killed >= 2, "both nodes' subscriptions killed: {killed}");
        edit(
            &mut ws_a,
            &conv,
            &ids[round - 1],
            &format!("change {round}"),
            &format!("x-{round}"),
        )
        .await;
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        got.push(
            next_change(&mut ws_b, &conv).await["change_seq"]
                .as_i64()
                .unwrap(),
        );
    }
    let late = ws_b.collect_for(Duration::from_millis(800)).await;
    got.extend(
        late.iter()
            .filter(|f| is_change(f))
            .map(|f| f["change_seq"].as_i64().unwrap()),
    );
    assert_eq!(got, [2, 3, 4, 5, 6], "every change once, in order");
    // And live again afterwards.
    edit(&mut ws_a, &conv, &ids[6], "change 7", "x-7").await;
    assert_eq!(next_change(&mut ws_b, &conv).await["change_seq"], 7);
}

/// Edits, deletions and reactions have a rate limit of their own: past the burst, an
/// `error` frame `rate_limited` naming the request, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_past_the_burst_are_rate_limited_and_change_nothing() {
    let d = Deployment::start(
        Mode::Embedded,
        &quick(&[(keys::CHANGE_BURST, "2"), (keys::CHANGES_PER_SECOND, "1")]),
    )
    .await;
    let api = d.api(0);
    let (a, b) = (api.register("Alice").await, api.register("Bob").await);
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let m1 = message_id(&ws_a.send_acked(&conv, "m1", "a-1").await);
    react(&mut ws_a, &conv, &m1, "👍", true, "r-1").await;
    react(&mut ws_a, &conv, &m1, "👎", true, "r-2").await;
    react(&mut ws_a, &conv, &m1, "🎉", true, "r-3").await;
    assert_eq!(error_of(&mut ws_a, "r-3").await["code"], "rate_limited");
    let history = cluster::history(&api, &a, &conv).await;
    let emoji: Vec<&str> = history[0]["reactions"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["emoji"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(emoji, ["👍", "👎"], "the refused reaction was not stored");
    // Sending messages is a limit of its own: still allowed.
    ws_a.send_acked(&conv, "still sending", "a-2").await;
}
