//! kill -9 of Redis in the middle of traffic, a long outage (longer than the presence
//! lease), then Redis started again on the same port, empty (no persistence): the nodes
//! resubscribe and register their live sessions again by themselves, the receiver gets
//! every message, nothing acknowledged is lost, a resend with the same `temp_id` is stored
//! once, sends during the outage are answered at once (never hang), and a third user sees
//! the connected users online again. Two nodes on a PostgreSQL and a Redis of the test's
//! own (never the machine's shared ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment};
use e2e::services::PrivateServices;
use e2e::traffic::{
    assert_holds_all, assert_stored, check_stored, in_order_once, live_then_sync, wait_presence,
    Ledger, Reader,
};
use e2e::ws::{WsClient, WsConnect, WAIT};
use e2e::{Api, TestUser};
use std::time::Duration;
use tokio::time::Instant;

/// Presence lease of the nodes: the outage lasts longer.
const LEASE_TTL_MS: u64 = 1500;
/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_millis(3000);
/// Messages per burst, and bursts before the kill / after the restart.
const BURST: usize = 10;
const BURSTS_BEFORE: usize = 6;
const BURSTS_AFTER: usize = 6;

/// Two nodes on the test's own services: A (node 0) writes to B in `conv`; B and C (node 1)
/// keep reading (so their heartbeats are answered); all three are in `team`, where C
/// watches presence. Everyone is online when [`Scene::start`] returns.
struct Scene {
    d: Deployment,
    api: Api,
    a: TestUser,
    b: TestUser,
    c: TestUser,
    conv: String,
    team: String,
    ws_a: WsClient,
    reader_b: Reader,
    reader_c: Reader,
}

impl Scene {
    async fn start(services: &PrivateServices) -> Self {
        let ttl = LEASE_TTL_MS.to_string();
        let d = Deployment::scale_out_on(
            services.store(),
            &services.redis.url(),
            &quick(&[(keys::NODE_LEASE_TTL_MS, &ttl)]),
            2,
        )
        .await;
        let api = d.api(1);
        let a = api.register("Alice").await;
        let b = api.register("Bob").await;
        let c = api.register("Carol").await;
        let conv = cluster::direct(&api, &a, &b).await;
        let team = cluster::group(&api, &a, &[&b, &c]).await;
        let (ws_a, _) = WsConnect::all(&d.base(0), &a.token)
            .open_ready("A on node 0")
            .await;
        let (ws_b, _) = WsConnect::all(&d.base(1), &b.token)
            .open_ready("B on node 1")
            .await;
        let (ws_c, _) = WsConnect::all(&d.base(1), &c.token)
            .open_ready("C on node 1")
            .await;
        let (reader_b, reader_c) = (Reader::spawn(ws_b), Reader::spawn(ws_c));
        let everyone_online = [
            (a.id.as_str(), "online"),
            (b.id.as_str(), "online"),
            (c.id.as_str(), "online"),
        ];
        assert!(
            wait_presence(&api, &c, &team, &everyone_online, WAIT)
                .await
                .is_some(),
            "everyone online before the fault"
        );
        Self {
            d,
            api,
            a,
            b,
            c,
            conv,
            team,
            ws_a,
            reader_b,
            reader_c,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_redis_mid_traffic_loses_nothing_and_presence_is_right_again() {
    let mut services = PrivateServices::start().await;
    let Scene {
        d,
        api,
        a,
        b,
        c,
        conv,
        team,
        mut ws_a,
        reader_b,
        reader_c,
    } = Scene::start(&services).await;
    let everyone_online = [
        (a.id.as_str(), "online"),
        (b.id.as_str(), "online"),
        (c.id.as_str(), "online"),
    ];

    let mut ledger = Ledger::default();
    for _ in 0..BURSTS_BEFORE {
        ledger.burst(&mut ws_a, &conv, "k", BURST, WAIT).await;
    }
    let acked_before = ledger.acked.len();

    services.redis.kill9().await;
    let killed = Instant::now();
    // Sends while Redis is down: committed to PostgreSQL but not published, so answered
    // `unavailable` (the retry is a replay); what matters is that each is answered, fast.
    let mut during = 0;
    while killed.elapsed() < OUTAGE {
        ledger.burst(&mut ws_a, &conv, "k", BURST, WAIT).await;
        during += BURST;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answered_during = ledger.slowest_answer;
    services.redis.restart().await;
    let restarted = Instant::now();

    // Presence: both nodes find their registration gone (Redis came back empty) and
    // register their live sessions again, without any client doing anything.
    let presence_back = wait_presence(
        &api,
        &c,
        &team,
        &everyone_online,
        Duration::from_millis(LEASE_TTL_MS) + Duration::from_secs(10),
    )
    .await;

    // The sender resends every unacknowledged message with its temp_id until acked.
    ledger
        .resend_unacked(&mut ws_a, &conv, 50, Duration::from_millis(200))
        .await;
    let resent_acked = restarted.elapsed();
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
    let (ws_c, read_c) = reader_c.stop().await;
    assert!(
        ws_b.closed().is_none(),
        "B's socket closed: {:?}",
        ws_b.closed()
    );
    assert!(
        ws_c.closed().is_none(),
        "C's socket closed: {:?}",
        ws_c.closed()
    );
    let (live, from_sync) = live_then_sync(&mut ws_b, &read_b, &conv, top, &[]).await;
    // Presence events C got after the restart (the restore announces them again; C's
    // node may still have been resubscribing, so they are reported, not required).
    let online_events = read_c
        .iter()
        .filter(|f| f["type"] == "presence" && f["status"] == "online")
        .count();
    let after_restart_live = live
        .iter()
        .filter(|s| **s > (acked_before + during) as i64)
        .count();

    println!(
        "[fault_redis] sent {sent} ({during} during the {OUTAGE:?} outage), acked {}, \
         refused {:?}, unanswered {}, resent {}, stored {}, duplicates {}, gaps {}, lost {}, \
         receiver live {} (after the restart {after_restart_live}), receiver's own sync {}, \
         slowest answer during the outage {answered_during:?}, presence right again {:?} \
         after the restart ({online_events} online events seen by C in all), every resend acked \
         {resent_acked:?} after the restart",
        ledger.acked.len(),
        ledger.refused,
        ledger.unanswered,
        ledger.retries,
        stored.stored,
        stored.duplicates,
        stored.gaps,
        stored.lost.len(),
        live.len(),
        from_sync.len(),
        presence_back,
    );

    assert_stored("the conversation", &stored, sent);
    assert!(
        answered_during < Duration::from_secs(5),
        "sends during the outage waited {answered_during:?} for an answer"
    );
    assert!(
        presence_back.is_some(),
        "the connected users are not online again after Redis came back empty"
    );
    assert!(in_order_once(&live), "live messages in order, each once");
    assert!(
        after_restart_live >= BURST * BURSTS_AFTER,
        "the receiver's node resubscribed: messages after the restart arrive live \
         ({after_restart_live})"
    );
    assert_holds_all("the receiver", &[&live, &from_sync], top);
    drop(d);
    drop(services);
}

/// Redis stops answering (SIGSTOP) for longer than the presence lease while connections stay
/// open: sends are answered `unavailable` within the Redis command timeout (never hung),
/// and once Redis answers again (the nodes' leases expired meanwhile) sends are acked,
/// nothing acked is lost, and presence is right again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_fails_sends_fast_and_presence_recovers() {
    let services = PrivateServices::start().await;
    let Scene {
        d,
        api,
        a,
        b,
        c,
        conv,
        team,
        mut ws_a,
        reader_b,
        reader_c,
    } = Scene::start(&services).await;
    let everyone_online = [
        (a.id.as_str(), "online"),
        (b.id.as_str(), "online"),
        (c.id.as_str(), "online"),
    ];
    let mut ledger = Ledger::default();
    for _ in 0..3 {
        ledger.burst(&mut ws_a, &conv, "k", BURST, WAIT).await;
    }

    services.redis.pause();
    let paused = Instant::now();
    ledger.slowest_answer = Duration::ZERO;
    let mut during = 0;
    // One send at a time: each waits for one publish (a burst would queue several commit
    // batches, each publish waiting its own timeout).
    while paused.elapsed() < OUTAGE {
        ledger
            .burst(&mut ws_a, &conv, "k", 1, Duration::from_secs(15))
            .await;
        during += 1;
    }
    let slowest_during = ledger.slowest_answer;
    let unanswered = ledger.unanswered;
    let refused = ledger.refused.clone();
    services.redis.resume();
    let resumed = Instant::now();
    let presence_back = wait_presence(
        &api,
        &c,
        &team,
        &everyone_online,
        Duration::from_millis(LEASE_TTL_MS) + Duration::from_secs(10),
    )
    .await;
    ledger
        .resend_unacked(&mut ws_a, &conv, 50, Duration::from_millis(200))
        .await;
    let resent_acked = resumed.elapsed();

    let stored = check_stored(&api, &b, &conv, &ledger).await;
    let (ws_b, _) = reader_b.stop().await;
    let (ws_c, _) = reader_c.stop().await;
    println!(
        "[fault_redis paused] {during} sends while Redis answered nothing for {OUTAGE:?}: \
         refused {refused:?}, unanswered {unanswered}, slowest answer {slowest_during:?}; after \
         SIGCONT presence right again {presence_back:?}, every resend acked {resent_acked:?}; \
         stored {} of {}, duplicates {}, gaps {}, lost {}",
        stored.stored,
        ledger.sent.len(),
        stored.duplicates,
        stored.gaps,
        stored.lost.len(),
    );
    assert_eq!(unanswered, 0, "every send answered while Redis hung");
    // The Redis command timeout is 2 s (connect and response): one reconnection attempt
    // and one command at most.
    assert!(
        slowest_during < Duration::from_secs(5),
        "a send waited {slowest_during:?} on a Redis that answers nothing"
    );
    assert!(
        presence_back.is_some(),
        "the connected users are not online again after Redis answered again"
    );
    assert_stored("the conversation", &stored, ledger.sent.len());
    assert!(ws_b.closed().is_none() && ws_c.closed().is_none());
    drop(d);
    drop(services);
}
