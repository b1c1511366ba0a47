//! Text a database would refuse (a NUL byte: PostgreSQL's `text` cannot hold one; a lone
//! UTF-16 surrogate: no string can) is refused at validation with 422 / `validation_failed`
//! on both backends and changes nothing; and bad sends mixed with good ones of other users
//! never cost the good ones their ack: each good one is acked and stored exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster;
use e2e::ws::{frame_type, WsClient, WsConnect, WAIT};
use e2e::{Api, Backend, TestApp, TestUser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const NUL: &str = "a\u{0}b";

fn assert_refused(reply: &e2e::Reply, status: StatusCode, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
    assert_eq!(reply.error_code(), code, "{what}: {:?}", reply.body);
}

async fn text_the_database_cannot_store_is_refused_at_validation_and_changes_nothing(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let alice = api.register("Alice").await;
    let bob = api.register("Bob").await;
    let direct = cluster::direct(&api, &alice, &bob).await;
    let group = cluster::group(&api, &alice, &[&bob]).await;
    let (mut ws, _) = WsConnect::all(&app.address, &alice.token)
        .open_ready("Alice")
        .await;
    let before = app.store.row_counts().await;

    let email = format!("nul{}@example.com", uuid::Uuid::new_v4().simple());
    let register = |email: String, name: &str| json!({"email": email, "password": "correct horse battery", "display_name": name});
    let reply = api
        .post("/api/v1/auth/register", None, register(email.clone(), NUL))
        .await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "display name",
    );
    let reply = api
        .post(
            "/api/v1/auth/register",
            None,
            register(format!("a\u{0}{email}"), "Nul"),
        )
        .await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "email",
    );
    let reply = api
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": format!("{}\u{0}", alice.email), "password": alice.password}),
        )
        .await;
    assert_refused(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "login email",
    );

    let reply = api
        .post(
            "/api/v1/conversations",
            alice.t(),
            json!({"type": "group", "participant_ids": [bob.id], "title": format!("T{NUL}")}),
        )
        .await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "new title",
    );
    let reply = api
        .patch(
            &format!("/api/v1/conversations/{group}"),
            alice.t(),
            json!({"title": NUL}),
        )
        .await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "rename",
    );

    let messages = format!("/api/v1/conversations/{direct}/messages");
    let reply = api
        .post(
            &messages,
            alice.t(),
            json!({"content": NUL, "temp_id": "rest-nul"}),
        )
        .await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "REST send",
    );
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("content:"),
        "{:?}",
        reply.body
    );
    // A lone surrogate (a string cut in the middle of an emoji) is valid JSON syntax.
    let reply = api
        .send(
            Method::POST,
            &messages,
            alice.t(),
            Some(br#"{"content":"cut \ud83d","temp_id":"rest-surrogate"}"#.to_vec()),
        )
        .await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "surrogate",
    );
    let reply = api.get("/api/v1/users/search?q=bo%00b", alice.t()).await;
    assert_refused(
        &reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "search",
    );

    ws.send_message(&direct, NUL, "ws-nul").await;
    let error = ws_error(&mut ws, "ws-nul").await;
    assert_eq!(error["code"], "validation_failed", "{error}");
    ws.send_text(format!(
        r#"{{"type":"message","conversation_id":"{direct}","content":"\udc00","temp_id":"ws-surrogate"}}"#
    ))
    .await;
    let error = ws_error(&mut ws, "ws-surrogate").await;
    assert_eq!(error["code"], "validation_failed", "{error}");

    // The session is still healthy, and nothing of the above was stored.
    ws.send_acked(&direct, "fine", "ws-fine").await;
    let mut after = app.store.row_counts().await;
    *after.get_mut("messages").unwrap() -= 1;
    assert_eq!(after, before, "a refused request changed nothing");
}

/// Waits for the `error` frame about `temp_id`; panics on its ack.
async fn ws_error(ws: &mut WsClient, temp_id: &str) -> Value {
    let frame = ws
        .recv_where(&format!("the answer to {temp_id}"), WAIT, |f| {
            (frame_type(f) == "error" && f["ref"] == temp_id)
                || (frame_type(f) == "message_sent" && f["temp_id"] == temp_id)
        })
        .await;
    assert_eq!(frame_type(&frame), "error", "{temp_id} was acked: {frame}");
    frame
}

#[tokio::test]
async fn on_sqlite_text_the_database_cannot_store_is_refused_at_validation_and_changes_nothing() {
    text_the_database_cannot_store_is_refused_at_validation_and_changes_nothing(Backend::Sqlite)
        .await;
}

#[tokio::test]
async fn on_postgres_text_the_database_cannot_store_is_refused_at_validation_and_changes_nothing() {
    text_the_database_cannot_store_is_refused_at_validation_and_changes_nothing(Backend::Postgres)
        .await;
}

const SENDERS: usize = 10;
const GOOD_PER_SENDER: usize = 40;
const BAD: usize = 20;

/// Ten users pipeline 40 good sends each over their sockets while an eleventh pipelines 20
/// sends with a NUL, all at once into one group, so they share commit batches; and a few
/// REST sends, good and bad, join them.
async fn bad_sends_among_good_ones_never_cost_the_good_ones_their_ack(backend: Backend) {
    let app = TestApp::spawn_tuned(backend, &cluster::quick(&[])).await;
    let api = app.api();
    let owner = api.register("Owner").await;
    let mut senders: Vec<TestUser> = Vec::new();
    for i in 0..SENDERS {
        senders.push(api.register(&format!("Sender{i}")).await);
    }
    let mallory = api.register("Mallory").await;
    let mut members: Vec<&TestUser> = senders.iter().collect();
    members.push(&mallory);
    let group = cluster::group(&api, &owner, &members).await;

    let mut sockets = Vec::new();
    for (i, user) in senders.iter().enumerate() {
        let (ws, _) = WsConnect::all(&app.address, &user.token)
            .open_ready(&format!("sender {i}"))
            .await;
        sockets.push(ws);
    }
    let (mut bad_ws, _) = WsConnect::all(&app.address, &mallory.token)
        .open_ready("Mallory")
        .await;

    // Everything is written before any answer is read.
    for round in 0..GOOD_PER_SENDER {
        for (i, ws) in sockets.iter_mut().enumerate() {
            ws.send_message(
                &group,
                &format!("good {i}-{round}"),
                &format!("g-{i}-{round}"),
            )
            .await;
        }
        if round < BAD {
            bad_ws
                .send_message(&group, &format!("bad{NUL}{round}"), &format!("b-{round}"))
                .await;
        }
    }
    let rest = tokio::join!(
        rest_send(&api, &senders[0], &group, "good over REST", "r-good"),
        rest_send(&api, &mallory, &group, NUL, "r-bad"),
    );
    assert_eq!(rest.0.status, StatusCode::CREATED, "{:?}", rest.0.body);
    assert_refused(
        &rest.1,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        "REST NUL",
    );

    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    for (i, ws) in sockets.iter_mut().enumerate() {
        for round in 0..GOOD_PER_SENDER {
            let temp_id = format!("g-{i}-{round}");
            let ack = ws.ack(&temp_id).await;
            acked.insert(temp_id, ack["seq"].as_i64().unwrap());
        }
    }
    for round in 0..BAD {
        let error = ws_error(&mut bad_ws, &format!("b-{round}")).await;
        assert_eq!(error["code"], "validation_failed", "{error}");
    }

    let stored = cluster::history(&api, &owner, &group).await;
    let contents: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        stored.len(),
        SENDERS * GOOD_PER_SENDER + 1,
        "every good send stored, nothing else"
    );
    let unique: BTreeSet<&str> = contents.iter().copied().collect();
    assert_eq!(unique.len(), contents.len(), "each stored once");
    assert!(
        contents.iter().all(|c| !c.contains('\u{0}')),
        "no NUL stored"
    );
    for m in &stored {
        if let Some(temp_id) = m["temp_id"].as_str().filter(|t| t.starts_with("g-")) {
            assert_eq!(acked[temp_id], m["seq"].as_i64().unwrap(), "{temp_id}");
        }
    }
    let largest = api.metric("chat_commit_batch_size_max").await.unwrap();
    assert!(
        largest > 1.0,
        "the sends shared commit batches (largest {largest})"
    );
    println!(
        "{backend:?}: {} good sends acked and stored once, {BAD} bad ones refused; largest \
         commit batch {largest}",
        acked.len() + 1
    );
}

async fn rest_send(
    api: &Api,
    user: &TestUser,
    conversation: &str,
    content: &str,
    temp_id: &str,
) -> e2e::Reply {
    api.post(
        &format!("/api/v1/conversations/{conversation}/messages"),
        user.t(),
        json!({"content": content, "temp_id": temp_id}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_bad_sends_among_good_ones_never_cost_the_good_ones_their_ack() {
    bad_sends_among_good_ones_never_cost_the_good_ones_their_ack(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_bad_sends_among_good_ones_never_cost_the_good_ones_their_ack() {
    bad_sends_among_good_ones_never_cost_the_good_ones_their_ack(Backend::Postgres).await;
}
