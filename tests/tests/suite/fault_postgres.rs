//! kill -9 of PostgreSQL in the middle of traffic (the postmaster and every backend), then
//! PostgreSQL started again on the same port and data: sends while it is down are answered
//! `unavailable` at once and never acknowledged, the nodes serve again by themselves (no
//! restart), nothing acknowledged is lost, and a resend with the same `temp_id` is stored
//! once. Two nodes on a PostgreSQL and a Redis of the test's own (never the machine's
//! shared ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment};
use e2e::services::PrivateServices;
use e2e::traffic::{
    answer_of, assert_holds_all, assert_stored, check_stored, in_order_once, live_then_sync,
    Answer, Ledger, Reader,
};
use e2e::ws::{WsConnect, WAIT};
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_millis(3000);
/// Messages per burst, and bursts before the kill / after the restart.
const BURST: usize = 10;
const BURSTS_BEFORE: usize = 6;
const BURSTS_AFTER: usize = 6;
/// Sends written just before the kill: several small commit batches are in flight.
const IN_FLIGHT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_postgres_mid_traffic_answers_unavailable_and_resumes_by_itself() {
    let mut services = PrivateServices::start().await;
    let d = Deployment::scale_out_on(
        services.store(),
        &services.redis.url(),
        &quick(&[(keys::COMMIT_MAX_BATCH, "16")]),
        2,
    )
    .await;
    let api = d.api(1);
    let a = api.register("Alice").await;
    let b = api.register("Bob").await;
    let conv = cluster::direct(&api, &a, &b).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A on node 0")
        .await;
    let (ws_b, _) = WsConnect::all(&d.base(1), &b.token)
        .open_ready("B on node 1")
        .await;
    let reader_b = Reader::spawn(ws_b);

    let mut ledger = Ledger::default();
    for _ in 0..BURSTS_BEFORE {
        ledger.burst(&mut ws_a, &conv, "k", BURST, WAIT).await;
    }
    // One more burst, and the kill while it is being committed.
    let in_flight: Vec<String> = (0..IN_FLIGHT)
        .map(|i| format!("k-{}", ledger.sent.len() + i))
        .collect();
    for key in &in_flight {
        let content = format!("m{}", key.trim_start_matches("k-"));
        ws_a.send_message(&conv, &content, key).await;
        ledger.sent.push((key.clone(), content));
    }
    services.pg.kill9().await;
    let killed = Instant::now();
    for key in &in_flight {
        let answer = answer_of(&mut ws_a, key, WAIT).await;
        ledger.record(key, &answer, killed.elapsed());
    }
    let acked_in_flight = in_flight
        .iter()
        .filter(|k| ledger.acked.contains_key(*k))
        .count();

    // Sends while PostgreSQL is down: each answered `unavailable`, fast, none acked.
    let mut during = Ledger::default();
    let mut sent_during = 0;
    while killed.elapsed() < OUTAGE {
        let first = ledger.sent.len() + during.sent.len();
        let keys: Vec<String> = (first..first + BURST).map(|n| format!("k-{n}")).collect();
        let sent_at = Instant::now();
        for key in &keys {
            let content = format!("m{}", key.trim_start_matches("k-"));
            ws_a.send_message(&conv, &content, key).await;
            during.sent.push((key.clone(), content));
        }
        for key in &keys {
            let answer = answer_of(&mut ws_a, key, Duration::from_secs(10)).await;
            assert!(
                matches!(&answer, Answer::Refused(code) if code == "unavailable"),
                "{key} sent while PostgreSQL is down was answered {answer:?}"
            );
            during.record(key, &answer, sent_at.elapsed());
        }
        sent_during += BURST;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rest = api
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            a.t(),
            json!({"content": "over REST while down", "temp_id": "rest-down"}),
        )
        .await;
    assert_eq!(
        (rest.status, rest.error_code()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        "a REST send while PostgreSQL is down"
    );
    let slowest_during = during.slowest_answer;
    ledger.sent.append(&mut during.sent);
    for (code, n) in &during.refused {
        *ledger.refused.entry(code.clone()).or_default() += n;
    }

    services.pg.restart().await;
    let restarted = Instant::now();
    // The same nodes, no restart: the client resends what was not acknowledged until it
    // is; the pools reconnect by themselves.
    ledger
        .resend_unacked(&mut ws_a, &conv, 100, Duration::from_millis(100))
        .await;
    let resumed = restarted.elapsed();
    for _ in 0..BURSTS_AFTER {
        ledger.burst(&mut ws_a, &conv, "k", BURST, WAIT).await;
    }
    ledger
        .resend_unacked(&mut ws_a, &conv, 50, Duration::from_millis(200))
        .await;
    let sent = ledger.sent.len();

    let stored = check_stored(&api, &b, &conv, &ledger).await;
    let top = sent as i64;
    let (mut ws_b, read_b) = reader_b.stop().await;
    assert!(
        ws_b.closed().is_none(),
        "B's socket closed: {:?}",
        ws_b.closed()
    );
    let (live, from_sync) = live_then_sync(&mut ws_b, &read_b, &conv, top, &[]).await;

    println!(
        "[fault_postgres] sent {sent} ({acked_in_flight} of {IN_FLIGHT} in flight at the kill \
         acked, {sent_during} during the {OUTAGE:?} outage, all answered unavailable within \
         {slowest_during:?}), acked {}, refused {:?}, resent {}, stored {}, duplicates {}, \
         gaps {}, lost {}, every resend acked {resumed:?} after the restart, receiver live {} \
         (missing live {}), receiver's own sync {}",
        ledger.acked.len(),
        ledger.refused,
        ledger.retries,
        stored.stored,
        stored.duplicates,
        stored.gaps,
        stored.lost.len(),
        live.len(),
        top as usize - live.iter().collect::<HashSet<_>>().len(),
        from_sync.len(),
    );

    assert_stored("the conversation", &stored, sent);
    assert!(
        slowest_during < Duration::from_secs(5),
        "a send while PostgreSQL was down waited {slowest_during:?} for its answer"
    );
    assert!(in_order_once(&live), "live messages in order, each once");
    assert_holds_all("the receiver", &[&live, &from_sync], top);
    drop(d);
    drop(services);
}
