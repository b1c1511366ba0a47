//! Storage down: a send over WebSocket or REST answers `unavailable`, is not acknowledged and
//! leaves nothing behind; once storage is back, the client's retry with the same `temp_id`
//! is committed exactly once and delivered once. Two nodes on PostgreSQL + Redis; the test's
//! own database is cut off (ALLOW_CONNECTIONS false, backends terminated), nobody else's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use e2e::cluster::{self, quick, Deployment, Mode};
use e2e::ws::{frame_type, WsConnect, WAIT};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Connects to the server's maintenance database, next to the test's own.
async fn admin(database_url: &str) -> (AsyncPgConnection, String) {
    let (server, name) = database_url.rsplit_once('/').unwrap();
    let conn = AsyncPgConnection::establish(&format!("{server}/postgres"))
        .await
        .expect("PostgreSQL maintenance database reachable");
    (conn, name.to_owned())
}

async fn cut_off(database_url: &str) {
    let (mut conn, name) = admin(database_url).await;
    diesel::sql_query(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"))
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn restore(database_url: &str) {
    let (mut conn, name) = admin(database_url).await;
    diesel::sql_query(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_storage_down_a_send_is_unavailable_and_its_retry_lands_once() {
    let d = Deployment::start(Mode::ScaleOut, &quick(&[])).await;
    let api = d.api(0);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token).open_ready("A").await;
    let (mut ws_b, _) = WsConnect::all(&d.base(1), &b.token).open_ready("B").await;
    let url = d.database_url().unwrap().to_owned();

    cut_off(&url).await;
    ws_a.send_message(&conv, "while down", "k-down").await;
    let answer = ws_a
        .recv_where("an answer to k-down", Duration::from_secs(15), |f| {
            f["temp_id"] == "k-down" || f["ref"] == "k-down"
        })
        .await;
    assert_eq!(
        frame_type(&answer),
        "error",
        "no ack while storage is down: {answer}"
    );
    assert_eq!(answer["code"], "unavailable", "{answer}");
    let rest = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            a.t(),
            json!({"content": "rest while down", "temp_id": "k-rest"}),
        )
        .await;
    assert_eq!(
        (rest.status, rest.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    // Both failures are counted on the node that saw them.
    let errors = api.metric("chat_storage_errors_total").await;
    assert!(
        errors.is_some_and(|e| e >= 2.0),
        "chat_storage_errors_total {errors:?} after a WebSocket and a REST send failed"
    );
    // The session is still usable: a ping is answered.
    ws_a.send_json(&json!({"type": "ping"})).await;
    ws_a.recv_frame("pong", WAIT).await;
    ws_b.expect_no_frame("message", Duration::from_millis(300))
        .await;

    restore(&url).await;
    // The client retries with the same temp_ids until storage answers (pools reconnect).
    let mut ack = None;
    for _ in 0..50 {
        ws_a.send_message(&conv, "while down", "k-down").await;
        let f = ws_a
            .recv_where("an answer to the retry", WAIT, |f| {
                f["temp_id"] == "k-down" || f["ref"] == "k-down"
            })
            .await;
        if frame_type(&f) == "message_sent" {
            ack = Some(f);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ack = ack.expect("the retry is acknowledged once storage is back");
    assert_eq!(
        ack["seq"], 1,
        "nothing half-done took a seq while storage was down"
    );
    let delivered = ws_b.recv_frame("message", WAIT).await;
    assert_eq!(delivered["message"]["id"], ack["message_id"]);
    ws_b.expect_no_frame("message", Duration::from_millis(500))
        .await;
    let again = ws_a.send_acked(&conv, "while down", "k-down").await;
    assert_eq!(
        again["message_id"], ack["message_id"],
        "a later retry is a replay"
    );
    let history = cluster::history(&api, &b, &conv).await;
    assert_eq!(history.len(), 1, "exactly one message: {history:?}");
    assert_eq!(history[0]["content"], "while down");
}
