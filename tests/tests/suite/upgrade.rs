//! A deployment's database survives the upgrade: a database as the previous release left it
//! (its migrations only, its rows inserted by plain SQL) is migrated by the server at start
//! and its messages read back intact through the API.

use e2e::tokens::forge;
use e2e::{Backend, TestApp, TestStore};
use reqwest::StatusCode;
use serde_json::Value;

const ADA: &str = "018f0000-0000-7000-8000-00000000000a";
const BOB: &str = "018f0000-0000-7000-8000-00000000000b";
const CONVERSATION: &str = "018f0000-0000-7000-8000-0000000000c0";

async fn the_previous_releases_messages_read_back_through_the_api(backend: Backend) {
    let store = TestStore::new(backend).await;
    let store = match backend {
        Backend::Sqlite => {
            adapters_sqlite::testing::previous_release_database(&store.sqlite_path()).unwrap();
            store
        }
        Backend::Postgres => TestStore {
            database_url: Some(adapters_postgres::testing::previous_release_database().await),
            ..store
        },
    };
    // The server migrates at start.
    let app = TestApp::spawn_on(store, |_| {}).await;
    let api = app.api();
    let ada = forge(ADA, serde_json::json!({}));

    let page = api
        .get(
            &format!("/api/v1/conversations/{CONVERSATION}/messages?limit=50"),
            Some(&ada),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let messages = page.body.as_array().cloned().unwrap_or_default();
    let mut seen: Vec<(i64, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap(),
                m["sender_id"].as_str().unwrap(),
                m["content"].as_str().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (1, ADA, "hello"),
            (2, BOB, "hi Ada"),
            (3, ADA, "  multi\nline ünïcødé 🎉 "),
        ]
    );
    let by_seq = |seq: i64| -> &Value { messages.iter().find(|m| m["seq"] == seq).unwrap() };
    assert_eq!(by_seq(1)["temp_id"], "key-1");
    assert_eq!(
        by_seq(2)["reply_to"],
        "018f0000-0000-7000-8000-000000000001"
    );
    for m in &messages {
        assert!(m["edited_at"].is_null() && m["deleted_at"].is_null(), "{m}");
    }
    // Bob read 1 of Ada's 2: her first is read, the last delivered at most.
    assert_eq!(by_seq(1)["status"], "read");

    let list = api.get("/api/v1/conversations", Some(&ada)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let conversations = list.body.as_array().cloned().unwrap_or_default();
    assert_eq!(conversations.len(), 1, "{}", list.body);
    assert_eq!(conversations[0]["id"], CONVERSATION);
    assert_eq!(conversations[0]["last_message"]["seq"], 3);

    // And it takes new messages where the old ones end.
    let sent = api
        .post(
            &format!("/api/v1/conversations/{CONVERSATION}/messages"),
            Some(&ada),
            serde_json::json!({"content": "after the upgrade", "temp_id": "t-up"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    assert_eq!(sent.body["seq"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_messages_read_back_through_the_api_embedded() {
    the_previous_releases_messages_read_back_through_the_api(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_messages_read_back_through_the_api_on_postgres() {
    the_previous_releases_messages_read_back_through_the_api(Backend::Postgres).await;
}
