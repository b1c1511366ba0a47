//! The message lifecycle over real HTTP, on both storage backends: edits, deletions,
//! reactions, replies' previews, `?around=` history, and every refusal (issue 12).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Api, Backend, Reply, TestApp, TestUser};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const THUMBS: &str = "\u{1F44D}";
/// Woman technologist: woman, zero width joiner, laptop.
const CODER: &str = "\u{1F469}\u{200D}\u{1F4BB}";

/// `raw` with every byte percent-encoded, as a client puts an emoji in a path.
fn encoded(raw: &str) -> String {
    raw.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn messages_path(conversation: &str) -> String {
    format!("/api/v1/conversations/{conversation}/messages")
}

fn message_path(conversation: &str, message: &str) -> String {
    format!("{}/{message}", messages_path(conversation))
}

fn reaction_path(conversation: &str, message: &str, emoji: &str) -> String {
    format!(
        "{}/reactions/{}",
        message_path(conversation, message),
        encoded(emoji)
    )
}

async fn put(api: &Api, path: &str, user: &TestUser) -> Reply {
    api.send(Method::PUT, path, user.t(), None).await
}

async fn group(api: &Api, owner: &TestUser, members: &[&TestUser]) -> String {
    let ids: Vec<&str> = members.iter().map(|m| m.id.as_str()).collect();
    let created = api
        .post(
            "/api/v1/conversations",
            owner.t(),
            json!({"type": "group", "participant_ids": ids, "title": "Team"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

async fn direct(api: &Api, a: &TestUser, b: &TestUser) -> String {
    let created = api
        .post(
            "/api/v1/conversations",
            a.t(),
            json!({"type": "direct", "participant_ids": [b.id]}),
        )
        .await;
    assert!(created.status.is_success(), "{:?}", created.body);
    created.body["id"].as_str().unwrap().to_owned()
}

/// Sends `content` (a reply to `reply_to` if given): the message as answered.
async fn send(
    api: &Api,
    conversation: &str,
    user: &TestUser,
    content: &str,
    reply_to: Option<&str>,
) -> Value {
    let reply = api
        .post(
            &messages_path(conversation),
            user.t(),
            json!({"content": content, "reply_to": reply_to}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    reply.body
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

/// The history `user` reads, newest first, by message id.
async fn history(api: &Api, conversation: &str, user: &TestUser) -> Vec<Value> {
    let reply = api
        .get(
            &format!("{}?limit=100", messages_path(conversation)),
            user.t(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    reply.body.as_array().unwrap().clone()
}

async fn in_history(api: &Api, conversation: &str, user: &TestUser, message: &str) -> Value {
    history(api, conversation, user)
        .await
        .into_iter()
        .find(|m| m["id"] == message)
        .unwrap_or_else(|| panic!("{message} not in the history"))
}

fn refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.error_code(), code, "{:?}", reply.body);
}

async fn lifecycle_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let (alice, bob, carol, dave) = (
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Carol").await,
        api.register("Dave").await,
    );
    let team = group(&api, &alice, &[&bob, &carol]).await;
    let elsewhere = direct(&api, &alice, &bob).await;
    let foreign = id(&send(&api, &elsewhere, &alice, "in another conversation", None).await);

    let hello = id(&send(&api, &team, &bob, "hello", None).await);
    let draft = send(&api, &team, &alice, "first draft", None).await;
    let draft_id = id(&draft);
    assert_eq!(draft["change_seq"], 0);
    assert_eq!(draft["reactions"], json!([]));

    // Alice edits her own message: 200, the message as she now reads it.
    let edited = api
        .patch(
            &message_path(&team, &draft_id),
            alice.t(),
            json!({"content": "final"}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.body);
    assert_eq!(edited.body["content"], "final");
    assert_eq!(edited.body["id"], draft_id.as_str());
    assert!(edited.body["edited_at"].is_string(), "{:?}", edited.body);
    let change = edited.body["change_seq"].as_i64().unwrap();
    assert!(change > 0);
    // The same content again changes nothing.
    let again = api
        .patch(
            &message_path(&team, &draft_id),
            alice.t(),
            json!({"content": "final"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["change_seq"], change);
    assert_eq!(again.body["edited_at"], edited.body["edited_at"]);

    // Refused edits, and nothing changes.
    let patch = |user: &TestUser, message: &str, content: &str| {
        let (api, path, token) = (
            api.clone(),
            message_path(&team, message),
            user.token.clone(),
        );
        let content = content.to_owned();
        async move {
            api.patch(&path, Some(&token), json!({"content": content}))
                .await
        }
    };
    refused(
        &patch(&bob, &draft_id, "hijacked").await,
        StatusCode::FORBIDDEN,
        "not_sender",
    );
    refused(
        &patch(&alice, &draft_id, "   ").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    refused(
        &patch(&alice, &draft_id, &"x".repeat(4_001)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    refused(
        &patch(&alice, &foreign, "moved").await,
        StatusCode::NOT_FOUND,
        "message_not_found",
    );
    refused(
        &patch(&alice, "not-a-uuid", "moved").await,
        StatusCode::NOT_FOUND,
        "message_not_found",
    );
    let bad_conversation = api
        .patch(
            &message_path("not-a-uuid", &draft_id),
            alice.t(),
            json!({"content": "x"}),
        )
        .await;
    refused(&bad_conversation, StatusCode::FORBIDDEN, "not_participant");

    // Everyone's history and conversation list show the edited version.
    let seen = in_history(&api, &team, &bob, &draft_id).await;
    assert_eq!(seen["content"], "final");
    assert_eq!(seen["change_seq"], change);
    assert_eq!(seen["edited_at"], edited.body["edited_at"]);
    let list = api.get("/api/v1/conversations", carol.t()).await;
    let listed = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == team.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["last_message"]["id"], draft_id.as_str());
    assert_eq!(listed["last_message"]["content"], "final");

    // Reactions: on, again (idempotent), by others, off, off again.
    let thumbs = reaction_path(&team, &draft_id, THUMBS);
    let on = put(&api, &thumbs, &bob).await;
    assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    assert_eq!(on.body["message_id"], draft_id.as_str());
    assert_eq!(
        on.body["reactions"],
        json!([{"emoji": THUMBS, "count": 1, "user_ids": [bob.id], "me": true}])
    );
    let on_change = on.body["change_seq"].as_i64().unwrap();
    assert!(on_change > change);
    let twice = put(&api, &thumbs, &bob).await;
    assert_eq!(twice.status, StatusCode::OK);
    assert_eq!(twice.body["change_seq"], on_change);
    assert_eq!(twice.body["reactions"], on.body["reactions"]);
    let by_carol = put(&api, &thumbs, &carol).await;
    assert_eq!(
        by_carol.body["reactions"],
        json!([{"emoji": THUMBS, "count": 2, "user_ids": [bob.id, carol.id], "me": true}])
    );
    let coder = put(&api, &reaction_path(&team, &draft_id, CODER), &alice).await;
    assert_eq!(coder.status, StatusCode::OK, "{:?}", coder.body);
    assert_eq!(
        coder.body["reactions"],
        json!([
            {"emoji": THUMBS, "count": 2, "user_ids": [bob.id, carol.id], "me": false},
            {"emoji": CODER, "count": 1, "user_ids": [alice.id], "me": true},
        ])
    );
    let off = api.delete(&thumbs, bob.t()).await;
    assert_eq!(off.status, StatusCode::OK, "{:?}", off.body);
    assert_eq!(
        off.body["reactions"][0],
        json!({"emoji": THUMBS, "count": 1, "user_ids": [carol.id], "me": false})
    );
    let off_change = off.body["change_seq"].as_i64().unwrap();
    let off_again = api.delete(&thumbs, bob.t()).await;
    assert_eq!(off_again.status, StatusCode::OK);
    assert_eq!(off_again.body["change_seq"], off_change);
    refused(
        &put(&api, &reaction_path(&team, &draft_id, "lol"), &bob).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    refused(
        &put(&api, &reaction_path(&team, &foreign, THUMBS), &alice).await,
        StatusCode::NOT_FOUND,
        "message_not_found",
    );
    // History shows the reactions as each reader sees them; the list's last message none.
    let for_carol = in_history(&api, &team, &carol, &draft_id).await;
    assert_eq!(for_carol["change_seq"], off_change);
    assert_eq!(
        for_carol["reactions"],
        json!([
            {"emoji": THUMBS, "count": 1, "user_ids": [carol.id], "me": true},
            {"emoji": CODER, "count": 1, "user_ids": [alice.id], "me": false},
        ])
    );
    let list = api.get("/api/v1/conversations", carol.t()).await;
    let listed = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == team.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["last_message"]["reactions"], json!([]));

    // A reply carries the original's preview, in its answer and in history.
    let answer = send(&api, &team, &carol, "hello to you", Some(&hello)).await;
    let answer_id = id(&answer);
    assert_eq!(
        answer["reply_preview"],
        json!({"id": hello, "sender_id": bob.id, "content": "hello", "content_type": "text",
            "deleted": false})
    );
    assert_eq!(
        in_history(&api, &team, &alice, &answer_id).await["reply_preview"],
        answer["reply_preview"]
    );
    assert!(in_history(&api, &team, &alice, &draft_id).await["reply_preview"].is_null());

    // Deletion: a plain member cannot delete another's; the group's owner can.
    put(&api, &reaction_path(&team, &hello, THUMBS), &carol).await;
    refused(
        &api.delete(&message_path(&team, &hello), carol.t()).await,
        StatusCode::FORBIDDEN,
        "not_sender",
    );
    assert_eq!(
        in_history(&api, &team, &bob, &hello).await["content"],
        "hello"
    );
    let tomb = api.delete(&message_path(&team, &hello), alice.t()).await;
    assert_eq!(tomb.status, StatusCode::OK, "{:?}", tomb.body);
    assert_eq!(tomb.body["content"], "");
    assert_eq!(tomb.body["deleted_by"], alice.id.as_str());
    assert!(tomb.body["deleted_at"].is_string());
    assert_eq!(tomb.body["reactions"], json!([]));
    let tomb_change = tomb.body["change_seq"].as_i64().unwrap();
    let tomb_again = api.delete(&message_path(&team, &hello), bob.t()).await;
    assert_eq!(tomb_again.status, StatusCode::OK);
    assert_eq!(tomb_again.body["change_seq"], tomb_change);
    assert_eq!(tomb_again.body["deleted_by"], alice.id.as_str());
    // The tombstone in history, its reactions gone; the reply's preview says deleted.
    let seen = in_history(&api, &team, &carol, &hello).await;
    assert_eq!(
        (&seen["content"], &seen["deleted_by"], &seen["reactions"]),
        (&json!(""), &json!(alice.id), &json!([]))
    );
    assert_eq!(seen["seq"], tomb.body["seq"]);
    assert_eq!(
        in_history(&api, &team, &carol, &answer_id).await["reply_preview"],
        json!({"id": hello, "sender_id": bob.id, "content": "", "content_type": "text",
            "deleted": true})
    );
    // A tombstone is neither edited nor reacted to.
    refused(
        &patch(&bob, &hello, "back").await,
        StatusCode::CONFLICT,
        "message_deleted",
    );
    refused(
        &put(&api, &reaction_path(&team, &hello, THUMBS), &bob).await,
        StatusCode::CONFLICT,
        "message_deleted",
    );
    // A sender deletes their own.
    let own = api
        .delete(&message_path(&team, &answer_id), carol.t())
        .await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    assert_eq!(own.body["deleted_by"], carol.id.as_str());
    refused(
        &api.delete(&message_path(&team, &foreign), alice.t()).await,
        StatusCode::NOT_FOUND,
        "message_not_found",
    );

    // An outsider gets 403 not_participant on every route, and changes nothing.
    let outsider = [
        api.patch(
            &message_path(&team, &draft_id),
            dave.t(),
            json!({"content": "x"}),
        )
        .await,
        api.delete(&message_path(&team, &draft_id), dave.t()).await,
        put(&api, &reaction_path(&team, &draft_id, THUMBS), &dave).await,
        api.delete(&reaction_path(&team, &draft_id, THUMBS), dave.t())
            .await,
        api.get(
            &format!("{}?around={draft_id}", messages_path(&team)),
            dave.t(),
        )
        .await,
        api.patch(
            &message_path(&uuid::Uuid::now_v7().to_string(), &draft_id),
            alice.t(),
            json!({"content": "x"}),
        )
        .await,
    ];
    for reply in &outsider {
        refused(reply, StatusCode::FORBIDDEN, "not_participant");
    }
    let unchanged = in_history(&api, &team, &alice, &draft_id).await;
    assert_eq!(unchanged["content"], "final");
    assert_eq!(unchanged["change_seq"], off_change);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_reactions_and_replies_over_rest_on_sqlite() {
    lifecycle_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_deletions_reactions_and_replies_over_rest_on_postgres() {
    lifecycle_flow(Backend::Postgres).await;
}

async fn around_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let (a, b) = (api.register("Ann").await, api.register("Ben").await);
    let c = direct(&api, &a, &b).await;
    let mut ids = Vec::new();
    for i in 1..=20 {
        ids.push(id(&send(&api, &c, &a, &format!("m{i}"), None).await));
    }
    let seqs = |reply: &Reply| -> Vec<i64> {
        reply
            .body
            .as_array()
            .unwrap_or_else(|| panic!("{:?}", reply.body))
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let path = messages_path(&c);
    // Around seq 10, ten a page: four older, the target, five newer, newest first.
    let page = api
        .get(&format!("{path}?around={}&limit=10", ids[9]), b.t())
        .await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    assert_eq!(seqs(&page), (6..=15).rev().collect::<Vec<_>>());
    // Near the end, older ones fill the page; near the start, newer ones.
    let late = api
        .get(&format!("{path}?around={}&limit=6", ids[18]), b.t())
        .await;
    assert_eq!(seqs(&late), (15..=20).rev().collect::<Vec<_>>());
    let early = api
        .get(&format!("{path}?around={}&limit=6", ids[0]), b.t())
        .await;
    assert_eq!(seqs(&early), (1..=6).rev().collect::<Vec<_>>());
    // The default page holds everything here.
    let all = api.get(&format!("{path}?around={}", ids[4]), b.t()).await;
    assert_eq!(seqs(&all), (1..=20).rev().collect::<Vec<_>>());
    // An unknown or malformed target is 404; with another cursor, 422; a bad limit, 422.
    for target in [uuid::Uuid::now_v7().to_string(), "nope".to_owned()] {
        refused(
            &api.get(&format!("{path}?around={target}"), b.t()).await,
            StatusCode::NOT_FOUND,
            "message_not_found",
        );
    }
    for other in [format!("before={}", ids[3]), "after_seq=2".to_owned()] {
        refused(
            &api.get(&format!("{path}?around={}&{other}", ids[9]), b.t())
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    }
    refused(
        &api.get(&format!("{path}?around={}&limit=0", ids[9]), b.t())
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_around_a_message_on_sqlite() {
    around_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_around_a_message_on_postgres() {
    around_flow(Backend::Postgres).await;
}

async fn window_and_rate_flow(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.limits.edit_window_secs = 1;
        s.realtime.changes_per_second = server::config::nonzero::u32(1);
        s.realtime.change_burst = server::config::nonzero::u32(3);
    })
    .await;
    let api = app.api();
    let (a, b) = (api.register("Ann").await, api.register("Ben").await);
    let c = direct(&api, &a, &b).await;
    let m = id(&send(&api, &c, &a, "soon too old", None).await);
    let path = message_path(&c, &m);

    // Within the window: edited.
    let edited = api.patch(&path, a.t(), json!({"content": "fixed"})).await;
    assert_eq!(edited.status, StatusCode::OK, "{:?}", edited.body);
    // Past it (one second): 409, and the content stays.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    refused(
        &api.patch(&path, a.t(), json!({"content": "too late"}))
            .await,
        StatusCode::CONFLICT,
        "edit_window_closed",
    );
    assert_eq!(in_history(&api, &c, &b, &m).await["content"], "fixed");

    // Ann's burst of 3 changes is spent (the edit, the refused edit, this reaction
    // may have been refilled by one): keep changing until 429, which names its wait.
    let thumbs = reaction_path(&c, &m, THUMBS);
    let mut limited = None;
    for _ in 0..5 {
        let reply = put(&api, &thumbs, &a).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(reply);
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    let limited = limited.expect("a 429 within five rapid changes of a burst of 3");
    refused(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Ben's own budget is untouched.
    let by_ben = api.delete(&reaction_path(&c, &m, THUMBS), b.t()).await;
    assert_eq!(by_ben.status, StatusCode::OK, "{:?}", by_ben.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edit_window_closes_and_changes_are_rate_limited_on_sqlite() {
    window_and_rate_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edit_window_closes_and_changes_are_rate_limited_on_postgres() {
    window_and_rate_flow(Backend::Postgres).await;
}

/// Statements counted by the adapter once its counter stopped moving (the server's
/// background work, such as a receipt flush, done).
async fn settled(storage: &adapters_postgres::PostgresStorage) -> u64 {
    let mut last = storage.statements_executed();
    let mut quiet = 0;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let now = storage.statements_executed();
        if now == last {
            quiet += 1;
            if quiet == 8 {
                return now;
            }
        } else {
            quiet = 0;
            last = now;
        }
    }
    panic!("the statement counter never settled");
}

/// What one history page costs PostgreSQL, counted by the adapter: the same for 5 messages
/// as for 50, however many of them have reactions or reply to messages off the page (one
/// statement for the page's reactions, one for its replies' originals), and a page of
/// messages never changed nor replying costs nothing more than before issue 12.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_page_costs_a_fixed_number_of_statements_on_postgres() {
    use std::sync::Arc;
    let store = e2e::TestStore::new(Backend::Postgres).await;
    let storage =
        adapters_postgres::PostgresStorage::connect(store.database_url.as_deref().unwrap(), 8)
            .await
            .unwrap();
    let app =
        TestApp::spawn_with_storage(store, Arc::new(storage.clone()), &e2e::cluster::quick(&[]))
            .await;
    let api = app.api();
    let (a, b) = (api.register("Ann").await, api.register("Ben").await);
    let c = direct(&api, &a, &b).await;
    let mut ids: Vec<String> = Vec::new();
    for i in 1..=60_usize {
        let reply_to = (i > 10 && i % 5 == 0).then(|| ids[i % 10].clone());
        let sent = send(&api, &c, &a, &format!("m{i}"), reply_to.as_deref()).await;
        ids.push(id(&sent));
    }
    let path = messages_path(&c);
    let cost = |query: String| {
        let (api, path, storage, token) =
            (api.clone(), path.clone(), storage.clone(), b.token.clone());
        async move {
            // Once to move Ben's delivered watermark, then counted.
            assert_eq!(
                api.get(&format!("{path}?{query}"), Some(&token))
                    .await
                    .status,
                StatusCode::OK
            );
            let before = settled(&storage).await;
            let page = api.get(&format!("{path}?{query}"), Some(&token)).await;
            assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
            (settled(&storage).await - before, page.body)
        }
    };

    // Nothing changed yet, and 56 to 59 reply to nothing: the page reads the conversation,
    // the `before` cursor's message and the page, as before issue 12.
    let (plain, plain_page) = cost(format!("before={}&limit=4", ids[59])).await;
    assert_eq!(plain_page.as_array().unwrap().len(), 4);
    assert_eq!(plain, 3, "a page of messages never changed nor replying");

    // Reactions on the newest messages and on some older ones, originals deleted.
    for i in [20, 30, 55, 56, 57, 59] {
        let on = put(&api, &reaction_path(&c, &ids[i - 1], THUMBS), &b).await;
        assert_eq!(on.status, StatusCode::OK, "{:?}", on.body);
    }
    for i in [6, 58] {
        let gone = api.delete(&message_path(&c, &ids[i - 1]), a.t()).await;
        assert_eq!(gone.status, StatusCode::OK, "{:?}", gone.body);
    }
    let (small, small_page) = cost("limit=5".to_owned()).await;
    let (large, large_page) = cost("limit=50".to_owned()).await;
    assert_eq!(small_page.as_array().unwrap().len(), 5);
    assert_eq!(large_page.as_array().unwrap().len(), 50);
    let replies = large_page
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["reply_preview"].is_object())
        .count();
    assert_eq!(replies, 10, "{large_page}");
    assert!(large_page
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["reply_preview"]["deleted"] == true));
    assert_eq!(small_page[0]["reply_preview"]["id"], ids[0].as_str());
    assert_eq!(small_page[1]["reactions"][0]["me"], true);
    // The conversation, the page, its reactions, its replies' originals: 4, for 5 as for 50.
    assert_eq!(
        (small, large),
        (4, 4),
        "statements for a page of 5 and of 50"
    );
}
