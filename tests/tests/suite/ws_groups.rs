//! Groups over real sockets: every member's sessions get each message once; a member removed
//! over REST stops receiving at once. Embedded and on two nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, quick, Deployment, Mode};
use e2e::ws::{frame_type, seqs, WsClient, WsConnect, WAIT};
use e2e::{Api, TestUser};
use reqwest::StatusCode;
use std::time::Duration;

/// Owner on node 0, members on node 1 and node 0 (all on one server when embedded).
async fn three_member_group_delivers_every_message_to_every_other_member_once(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let owner = api.register("Olivia").await;
    let ben = api.register("Ben").await;
    let cat = api.register("Cat").await;
    let (mut ws_o, _) = WsConnect::all(&d.base(0), &owner.token)
        .open_ready("owner")
        .await;
    let (mut ws_b, _) = WsConnect::all(&d.base(d.other(0)), &ben.token)
        .open_ready("ben")
        .await;
    let (mut ws_c, _) = WsConnect::all(&d.base(0), &cat.token)
        .open_ready("cat")
        .await;
    let conv = cluster::group(&api, &owner, &[&ben, &cat]).await;
    for ws in [&mut ws_b, &mut ws_c] {
        let created = ws.recv_frame("conversation", WAIT).await;
        assert_eq!(created["event"], "created", "{created}");
        assert_eq!(created["conversation"]["id"], conv.as_str(), "{created}");
    }

    // Each member sends one; the two others get it, the sender only its ack.
    ws_o.send_acked(&conv, "from owner", "o-1").await;
    ws_b.send_acked(&conv, "from ben", "b-1").await;
    ws_c.send_acked(&conv, "from cat", "c-1").await;
    let settle = Duration::from_millis(700);
    for (ws, own) in [
        (&mut ws_o, "from owner"),
        (&mut ws_b, "from ben"),
        (&mut ws_c, "from cat"),
    ] {
        let mut got = vec![ws.recv_frame("message", WAIT).await];
        got.push(ws.recv_frame("message", WAIT).await);
        got.extend(ws.collect_type_for("message", settle).await);
        let contents: Vec<&str> = got
            .iter()
            .map(|m| m["message"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(got.len(), 2, "{}: {contents:?}", ws.label);
        assert!(!contents.contains(&own), "{}: {contents:?}", ws.label);
        let s = seqs(&got);
        assert!(s[0] < s[1], "{}: out of order {s:?}", ws.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_group_delivers_each_message_to_the_two_others_embedded() {
    three_member_group_delivers_every_message_to_every_other_member_once(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_group_delivers_each_message_to_the_two_others_across_nodes() {
    three_member_group_delivers_every_message_to_every_other_member_once(Mode::ScaleOut).await;
}

/// Olivia's group with Ben and Cat, then a socket each: Olivia and Ben on node 0, Cat on the
/// other node (all on one server when embedded).
struct Team {
    d: Deployment,
    api: Api,
    owner: TestUser,
    ben: TestUser,
    cat: TestUser,
    conv: String,
    ws_o: WsClient,
    ws_b: WsClient,
    ws_c: WsClient,
}

async fn team(mode: Mode) -> Team {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let owner = api.register("Olivia").await;
    let ben = api.register("Ben").await;
    let cat = api.register("Cat").await;
    let conv = cluster::group(&api, &owner, &[&ben, &cat]).await;
    let (ws_o, _) = WsConnect::all(&d.base(0), &owner.token)
        .open_ready("owner")
        .await;
    let (ws_b, _) = WsConnect::all(&d.base(0), &ben.token)
        .open_ready("ben")
        .await;
    let (ws_c, _) = WsConnect::all(&d.base(d.other(0)), &cat.token)
        .open_ready("cat")
        .await;
    Team {
        d,
        api,
        owner,
        ben,
        cat,
        conv,
        ws_o,
        ws_b,
        ws_c,
    }
}

async fn a_removed_member_stops_receiving_at_once(mode: Mode) {
    // Cat on the other node: the removal must reach a subscription held elsewhere.
    let Team {
        d: _d,
        api,
        owner,
        cat,
        conv,
        mut ws_o,
        mut ws_b,
        mut ws_c,
        ..
    } = team(mode).await;
    ws_o.send_acked(&conv, "before", "before").await;
    for ws in [&mut ws_b, &mut ws_c] {
        let got = ws.recv_frame("message", WAIT).await;
        assert_eq!(got["message"]["content"], "before", "{}", ws.label);
    }

    let removed = api
        .delete(
            &format!("/api/v1/conversations/{conv}/members/{}", cat.id),
            owner.t(),
        )
        .await;
    assert!(removed.status.is_success(), "remove: {:?}", removed.body);
    // Right after the REST answer: the next message must not reach Cat.
    let after = ws_o.send_acked(&conv, "after", "after").await;
    let got = ws_b.recv_frame("message", WAIT).await;
    assert_eq!(got["message"]["id"], after["message_id"], "{got}");

    let frames = ws_c.collect_for(Duration::from_millis(1500)).await;
    // Nothing about the new message: no `message`, and no receipt or typing at its seq.
    let leaked: Vec<_> = frames
        .iter()
        .filter(|f| {
            frame_type(f) == "message"
                || (f["conversation_id"] == conv.as_str() && f["seq"].as_i64() >= Some(2))
        })
        .collect();
    assert!(leaked.is_empty(), "cat still receives: {leaked:?}");
    let notice = frames
        .iter()
        .find(|f| frame_type(f) == "conversation")
        .unwrap_or_else(|| panic!("cat was not told of the removal: {frames:?}"));
    assert_eq!(notice["event"], "member_removed", "{notice}");
    assert_eq!(notice["user_id"], cat.id.as_str(), "{notice}");

    // And Cat can no longer send there.
    ws_c.send_message(&conv, "still here?", "cat-1").await;
    let err = ws_c.recv_frame("error", WAIT).await;
    assert_eq!(err["code"], "not_participant", "{err}");
    assert_eq!(err["ref"], "cat-1", "{err}");
    let history = api
        .get(&format!("/api/v1/conversations/{conv}/messages"), cat.t())
        .await;
    assert_eq!(history.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_receiving_at_once_embedded() {
    a_removed_member_stops_receiving_at_once(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_on_another_node_stops_receiving_at_once() {
    a_removed_member_stops_receiving_at_once(Mode::ScaleOut).await;
}

async fn an_added_member_starts_receiving_on_an_open_socket(mode: Mode) {
    let d = Deployment::start(mode, &quick(&[])).await;
    let api = d.api(0);
    let owner = api.register("Olivia").await;
    let ben = api.register("Ben").await;
    let dan = api.register("Dan").await;
    let conv = cluster::group(&api, &owner, &[&ben]).await;
    let (mut ws_o, _) = WsConnect::all(&d.base(0), &owner.token)
        .open_ready("owner")
        .await;
    let (mut ws_d, hello) = WsConnect::all(&d.base(d.other(0)), &dan.token)
        .open_ready("dan")
        .await;
    assert_eq!(hello["conversations"], serde_json::json!([]), "{hello}");

    let added = api
        .post(
            &format!("/api/v1/conversations/{conv}/members"),
            owner.t(),
            serde_json::json!({"user_id": dan.id}),
        )
        .await;
    assert!(added.status.is_success(), "add: {:?}", added.body);
    let notice = ws_d.recv_frame("conversation", WAIT).await;
    assert_eq!(notice["event"], "member_added", "{notice}");
    let sent = ws_o.send_acked(&conv, "welcome", "w-1").await;
    let got = ws_d.recv_frame("message", WAIT).await;
    assert_eq!(got["message"]["id"], sent["message_id"], "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_member_starts_receiving_on_an_open_socket_embedded() {
    an_added_member_starts_receiving_on_an_open_socket(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_member_on_another_node_starts_receiving_on_an_open_socket() {
    an_added_member_starts_receiving_on_an_open_socket(Mode::ScaleOut).await;
}

/// Receipts go to the senders they concern: when Ben and Cat get Olivia's message, Olivia
/// hears `delivered` from both, and Ben and Cat hear nothing of each other's watermark (they
/// sent nothing it covers). Once Ben sends, Cat's delivery of it reaches Ben.
async fn receipts_reach_the_sender_not_every_member(mode: Mode) {
    let Team {
        d: _d,
        owner,
        ben,
        cat,
        conv,
        mut ws_o,
        mut ws_b,
        mut ws_c,
        ..
    } = team(mode).await;

    let ack = ws_o.send_acked(&conv, "from owner", "o-1").await;
    let seq = ack["seq"].as_i64().unwrap();
    ws_b.recv_frame("message", WAIT).await;
    ws_c.recv_frame("message", WAIT).await;
    let mut by = Vec::new();
    for _ in 0..2 {
        let d = ws_o.recv_frame("delivered", WAIT).await;
        assert_eq!(d["seq"], seq, "{d}");
        by.push(d["user_id"].as_str().unwrap().to_owned());
    }
    by.sort();
    let mut want = vec![ben.id.clone(), cat.id.clone()];
    want.sort();
    assert_eq!(by, want, "the sender hears from both recipients");
    let settle = Duration::from_millis(700);
    ws_b.expect_no_frame("delivered", settle).await;
    ws_c.expect_no_frame("delivered", Duration::ZERO).await;

    ws_b.send_acked(&conv, "from ben", "b-1").await;
    ws_c.recv_frame("message", WAIT).await;
    ws_o.recv_frame("message", WAIT).await;
    let to_ben: Vec<String> = [
        ws_b.recv_frame("delivered", WAIT).await,
        ws_b.recv_frame("delivered", WAIT).await,
    ]
    .iter()
    .map(|d| d["user_id"].as_str().unwrap().to_owned())
    .collect();
    assert!(
        to_ben.contains(&cat.id) && to_ben.contains(&owner.id),
        "{to_ben:?}"
    );
    ws_c.expect_no_frame("delivered", settle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_the_sender_not_every_member_embedded() {
    receipts_reach_the_sender_not_every_member(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_the_sender_not_every_member_across_nodes() {
    receipts_reach_the_sender_not_every_member(Mode::ScaleOut).await;
}
