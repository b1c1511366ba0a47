//! Data survives a restart in embedded mode, with a separate server process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, NodeProcess, TestStore};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_accounts_survive_a_restart_in_embedded_mode() {
    let store = TestStore::new(Backend::Sqlite).await;
    // No JWT secret given: embedded mode makes one and keeps it in the data directory,
    // so tokens issued before the restart still work after it.
    let env = [("CHAT_AUTH__JWT_SECRET", String::new())];
    let mut node = NodeProcess::start(&store, &env).await;
    let api = node.api();
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = api
        .post(
            "/api/v1/conversations",
            a.t(),
            json!({"type": "direct", "participant_ids": [b.id]}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/conversations/{conv}/messages");
    let sent = api
        .post(
            &path,
            a.t(),
            json!({"content": "remember me", "temp_id": "k1"}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED);
    assert!(node.terminate().await, "clean exit on SIGTERM");

    let node = NodeProcess::start(&store, &env).await;
    let api = node.api();
    let history = api.get(&path, b.t()).await;
    assert_eq!(
        history.status,
        StatusCode::OK,
        "the old token still works: {:?}",
        history.body
    );
    assert_eq!(history.body[0]["content"], "remember me");
    // The idempotency key survived too: the retry is a replay.
    let retry = api
        .post(
            &path,
            a.t(),
            json!({"content": "remember me", "temp_id": "k1"}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body["id"], sent.body["id"]);
    // And login still works against the stored hash.
    api.login(&a.email, &a.password).await;
}
