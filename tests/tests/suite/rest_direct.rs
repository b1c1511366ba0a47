//! The direct-conversation flow over real HTTP, on both storage backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn direct_conversation_flow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;

    // A opens a direct conversation with B; asking again (either way round) gives the same one.
    let created = api
        .post(
            "/api/v1/conversations",
            a.t(),
            json!({"type": "direct", "participant_ids": [b.id]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let conv = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["type"], "direct");
    assert_eq!(created.body["participants"].as_array().unwrap().len(), 2);
    let again = api
        .post(
            "/api/v1/conversations",
            a.t(),
            json!({"type": "direct", "participant_ids": [b.id]}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], conv.as_str());
    let reverse = api
        .post(
            "/api/v1/conversations",
            b.t(),
            json!({"type": "direct", "participant_ids": [a.id]}),
        )
        .await;
    assert_eq!(reverse.status, StatusCode::OK);
    assert_eq!(reverse.body["id"], conv.as_str());

    // A sends three messages; a retried temp_id gives the same message, not a fourth.
    let path = format!("/api/v1/conversations/{conv}/messages");
    let mut sent = Vec::new();
    for (i, text) in ["Hello!", "How are you?", "Still there?"]
        .iter()
        .enumerate()
    {
        let reply = api
            .post(
                &path,
                a.t(),
                json!({"content": text, "content_type": "text", "temp_id": format!("t-{i}")}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        assert_eq!(reply.body["seq"], i as i64 + 1);
        assert_eq!(reply.body["sender_id"], a.id.as_str());
        assert_eq!(reply.body["status"], "sent");
        sent.push(reply.body);
    }
    let retry = api
        .post(
            &path,
            a.t(),
            json!({"content": "Hello!", "content_type": "text", "temp_id": "t-0"}),
        )
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body["id"], sent[0]["id"]);
    assert_eq!(retry.body["seq"], 1);

    // Before B reads anything: B has 3 unread, A none.
    let unread_b = api.get("/api/v1/unread", b.t()).await;
    assert_eq!(unread_b.body["total"], 3);
    assert_eq!(
        unread_b.body["conversations"][0]["conversation_id"],
        conv.as_str()
    );
    assert_eq!(unread_b.body["conversations"][0]["unread_count"], 3);
    assert_eq!(api.get("/api/v1/unread", a.t()).await.body["total"], 0);

    // B pages history newest first, two at a time; fetching counts as delivery.
    let page1 = api.get(&format!("{path}?limit=2"), b.t()).await;
    assert_eq!(page1.status, StatusCode::OK);
    let seqs = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&page1.body), vec![3, 2]);
    let oldest = page1.body[1]["id"].as_str().unwrap();
    let page2 = api
        .get(&format!("{path}?before={oldest}&limit=2"), b.t())
        .await;
    assert_eq!(seqs(&page2.body), vec![1]);
    let after = api
        .get(&format!("{path}?after_seq=1&limit=50"), b.t())
        .await;
    assert_eq!(seqs(&after.body), vec![2, 3]);

    // A now sees its messages delivered (B fetched them), not read.
    let seen_by_a = api.get(&format!("{path}?limit=50"), a.t()).await;
    assert!(
        seen_by_a
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "delivered"),
        "{:?}",
        seen_by_a.body
    );

    // B reads up to the second message: one left unread.
    let read = api
        .post(
            &format!("/api/v1/conversations/{conv}/read"),
            b.t(),
            json!({"last_read_message_id": sent[1]["id"]}),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["unread_count"], 1);
    assert_eq!(api.get("/api/v1/unread", b.t()).await.body["total"], 1);

    // Watermarks as each side sees them.
    let details = api
        .get(&format!("/api/v1/conversations/{conv}"), a.t())
        .await;
    let member = |id: &str| {
        details.body["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["user_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(member(&b.id)["delivered_seq"], 3);
    assert_eq!(member(&b.id)["read_seq"], 2);
    assert_eq!(member(&a.id)["read_seq"], 3);
    assert_eq!(details.body["last_seq"], 3);
    let statuses: Vec<String> = api
        .get(&format!("{path}?after_seq=0"), a.t())
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(statuses, vec!["read", "read", "delivered"]);

    // B replies: sending moves B's own read watermark to the reply (so seq 3 counts as read
    // too: unread is last_seq - read_seq); A has one unread.
    let reply = api
        .post(
            &path,
            b.t(),
            json!({"content": "Hi back!", "temp_id": "b-1"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body["seq"], 4);
    assert_eq!(api.get("/api/v1/unread", a.t()).await.body["total"], 1);
    assert_eq!(api.get("/api/v1/unread", b.t()).await.body["total"], 0);

    // The conversation list shows the newest message and unread count for each side.
    let list_a = api.get("/api/v1/conversations", a.t()).await;
    assert_eq!(list_a.status, StatusCode::OK);
    assert_eq!(list_a.body.as_array().unwrap().len(), 1);
    assert_eq!(list_a.body[0]["last_message"]["content"], "Hi back!");
    assert_eq!(list_a.body[0]["unread_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_conversation_works_end_to_end_on_sqlite() {
    direct_conversation_flow(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_conversation_works_end_to_end_on_postgres() {
    direct_conversation_flow(Backend::Postgres).await;
}
