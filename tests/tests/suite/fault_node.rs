//! kill -9 of one of two nodes in the middle of traffic: its clients reconnect to the other
//! node and resend what was not acknowledged with the same `temp_id`; every acknowledged
//! message is stored once, gap-free, every receiver ends up with every message exactly once
//! (live, plus its own `sync` after a reconnect), and a user of the dead node who does not
//! come back is offline for others within the presence lease. On a PostgreSQL and a Redis
//! of the test's own (never the machine's shared ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, keys, quick, Deployment};
use e2e::services::PrivateServices;
use e2e::traffic::{
    assert_holds_all, assert_stored, check_stored, contiguous, in_order_once, live_then_sync,
    presence_of, seqs_in, wait_presence, Ledger, Reader,
};
use e2e::ws::{WsConnect, WAIT};
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

const LEASE_TTL_MS: u64 = 1500;
const GRACE_MS: u64 = 300;
const BURST: usize = 10;
const BURSTS_BEFORE: usize = 5;
const BURSTS_AFTER: usize = 5;
/// Sends A writes just before its node dies.
const IN_FLIGHT: usize = 100;
/// Of those, acknowledged before the kill.
const ACKED_BEFORE_KILL: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_traffic_clients_resend_elsewhere_and_nothing_is_lost() {
    let services = PrivateServices::start().await;
    let (ttl, grace) = (LEASE_TTL_MS.to_string(), GRACE_MS.to_string());
    let mut d = Deployment::scale_out_on(
        services.store(),
        &services.redis.url(),
        &quick(&[
            (keys::NODE_LEASE_TTL_MS, &ttl),
            (keys::PRESENCE_GRACE_MS, &grace),
            (keys::COMMIT_MAX_BATCH, "16"),
        ]),
        2,
    )
    .await;
    let api = d.api(1);
    // A sends to B, D sends to E; A, E and F are on node 0, which dies; F never comes back;
    // C watches presence from node 1.
    let [a, b, c, dd, e, f] = [
        api.register("Alice").await,
        api.register("Bob").await,
        api.register("Carol").await,
        api.register("Dave").await,
        api.register("Erin").await,
        api.register("Frank").await,
    ];
    let ab = cluster::direct(&api, &a, &b).await;
    let de = cluster::direct(&api, &dd, &e).await;
    let team = cluster::group(&api, &c, &[&a, &e, &f]).await;
    let (mut ws_a, _) = WsConnect::all(&d.base(0), &a.token)
        .open_ready("A on node 0")
        .await;
    let (ws_e, _) = WsConnect::all(&d.base(0), &e.token)
        .open_ready("E on node 0")
        .await;
    let (ws_f, _) = WsConnect::all(&d.base(0), &f.token)
        .open_ready("F on node 0")
        .await;
    let (ws_b, _) = WsConnect::all(&d.base(1), &b.token)
        .open_ready("B on node 1")
        .await;
    let (mut ws_d, _) = WsConnect::all(&d.base(1), &dd.token)
        .open_ready("D on node 1")
        .await;
    let (ws_c, _) = WsConnect::all(&d.base(1), &c.token)
        .open_ready("C on node 1")
        .await;
    let readers = [ws_e, ws_f, ws_b, ws_c].map(Reader::spawn);
    let all_online = [
        (a.id.as_str(), "online"),
        (e.id.as_str(), "online"),
        (f.id.as_str(), "online"),
    ];
    assert!(
        wait_presence(&api, &c, &team, &all_online, WAIT)
            .await
            .is_some(),
        "everyone online before the kill"
    );

    let (mut from_a, mut from_d) = (Ledger::default(), Ledger::default());
    for _ in 0..BURSTS_BEFORE {
        from_a.burst(&mut ws_a, &ab, "a", BURST, WAIT).await;
        from_d.burst(&mut ws_d, &de, "d", BURST, WAIT).await;
    }
    // A pipelines a burst and its node dies while it is being committed (once the first
    // few are acknowledged).
    let first_in_flight = from_a.sent.len();
    for n in first_in_flight..first_in_flight + IN_FLIGHT {
        let (key, content) = (format!("a-{n}"), format!("m{n}"));
        ws_a.send_message(&ab, &content, &key).await;
        from_a.sent.push((key, content));
    }
    let early = ws_a
        .ack(&format!("a-{}", first_in_flight + ACKED_BEFORE_KILL - 1))
        .await;
    d.kill9(0).await;
    let killed = Instant::now();
    ws_a.wait_closed(WAIT).await;
    let acks: Vec<(String, i64)> = ws_a
        .kept()
        .filter(|f| f["type"] == "message_sent")
        .map(|f| {
            (
                f["temp_id"].as_str().unwrap().to_owned(),
                f["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let early = (
        early["temp_id"].as_str().unwrap().to_owned(),
        early["seq"].as_i64().unwrap(),
    );
    for (key, seq) in std::iter::once(&early).chain(&acks) {
        from_a.record(key, &e2e::traffic::Answer::Acked(*seq), Duration::ZERO);
    }
    // Committed at the kill but never acknowledged: their resend is a replay.
    let committed_unacked = cluster::history(&api, &b, &ab)
        .await
        .iter()
        .filter(|m| {
            !from_a
                .acked
                .contains_key(m["temp_id"].as_str().unwrap_or_default())
        })
        .count();
    let acked_in_flight = from_a.acked.len().saturating_sub(BURSTS_BEFORE * BURST);
    let [reader_e, reader_f, reader_b, reader_c] = readers;
    let (mut ws_e, mut read_e) = reader_e.stop().await;
    let (mut ws_f, _) = reader_f.stop().await;
    // Node 0's sockets die with it (frames read before the end are E's too).
    ws_e.wait_closed(WAIT).await;
    ws_f.wait_closed(WAIT).await;
    read_e.extend(ws_e.kept().cloned());
    let e_before = seqs_in(&read_e, &de);

    // D keeps writing to E while E is away.
    for _ in 0..2 {
        from_d.burst(&mut ws_d, &de, "d", BURST, WAIT).await;
    }
    // A's and E's clients reconnect to node 1; A resends everything not acknowledged.
    let (mut ws_a, _) = WsConnect::all(&d.base(1), &a.token)
        .open_ready("A reconnected to node 1")
        .await;
    let reconnected = killed.elapsed();
    from_a
        .resend_unacked(&mut ws_a, &ab, 20, Duration::from_millis(200))
        .await;
    let resent = killed.elapsed();
    let (mut ws_e, _) = WsConnect::all(&d.base(1), &e.token)
        .open_ready("E reconnected to node 1")
        .await;
    let e_cursor = contiguous(&e_before);
    let e_synced = e2e::ws::seqs(&ws_e.sync_all(&de, e_cursor).await);
    let reader_e = Reader::spawn(ws_e);

    // F never comes back: offline for C within the lease (plus the reaper's cadence and the
    // grace); A and E, back on node 1, online.
    let bound = Duration::from_millis(LEASE_TTL_MS + GRACE_MS) + Duration::from_secs(3);
    let f_offline = wait_presence(
        &api,
        &c,
        &team,
        &[(f.id.as_str(), "offline")],
        bound.saturating_sub(killed.elapsed()),
    )
    .await
    .map(|_| killed.elapsed());
    let back_online = wait_presence(
        &api,
        &c,
        &team,
        &[(a.id.as_str(), "online"), (e.id.as_str(), "online")],
        WAIT,
    )
    .await;

    for _ in 0..BURSTS_AFTER {
        from_a.burst(&mut ws_a, &ab, "a", BURST, WAIT).await;
        from_d.burst(&mut ws_d, &de, "d", BURST, WAIT).await;
    }
    from_a
        .resend_unacked(&mut ws_a, &ab, 20, Duration::from_millis(200))
        .await;
    from_d
        .resend_unacked(&mut ws_d, &de, 20, Duration::from_millis(200))
        .await;

    let stored_ab = check_stored(&api, &b, &ab, &from_a).await;
    let stored_de = check_stored(&api, &e, &de, &from_d).await;
    let (top_ab, top_de) = (from_a.sent.len() as i64, from_d.sent.len() as i64);
    let (mut ws_b, read_b) = reader_b.stop().await;
    let (mut ws_e, read_e_after) = reader_e.stop().await;
    let (_ws_c, read_c) = reader_c.stop().await;
    assert!(
        ws_b.closed().is_none(),
        "B's socket closed: {:?}",
        ws_b.closed()
    );
    let (b_live, b_synced) = live_then_sync(&mut ws_b, &read_b, &ab, top_ab, &[]).await;
    let e_held: Vec<i64> = e_before.iter().chain(&e_synced).copied().collect();
    let (e_live_after, e_synced_after) =
        live_then_sync(&mut ws_e, &read_e_after, &de, top_de, &e_held).await;
    let f_offline_event = read_c.iter().any(|fr| {
        fr["type"] == "presence" && fr["user_id"] == f.id.as_str() && fr["status"] == "offline"
    });
    let now = presence_of(&api, &c, &team).await;

    println!(
        "[fault_node] A sent {} ({acked_in_flight} of {IN_FLIGHT} in flight acked before the \
         kill, {committed_unacked} more committed but unacknowledged), acked {}, resent {} \
         (A reconnected {reconnected:?} and every resend acked {resent:?} after the kill), \
         stored {}, duplicates {}, gaps {}, lost {}; B live {} (missing live {}), B's own \
         sync {}; D sent {}, stored {}, duplicates {}, gaps {}, lost {}; E live before the \
         kill {}, synced after reconnecting {}, then live {} and synced {}; F offline for C \
         after {f_offline:?} (bound {bound:?}, event seen: {f_offline_event}), A and E \
         online again after {back_online:?}",
        top_ab,
        from_a.acked.len(),
        from_a.retries,
        stored_ab.stored,
        stored_ab.duplicates,
        stored_ab.gaps,
        stored_ab.lost.len(),
        b_live.len(),
        top_ab as usize - b_live.iter().collect::<HashSet<_>>().len(),
        b_synced.len(),
        top_de,
        stored_de.stored,
        stored_de.duplicates,
        stored_de.gaps,
        stored_de.lost.len(),
        e_before.len(),
        e_synced.len(),
        e_live_after.len(),
        e_synced_after.len(),
    );

    assert_stored("A -> B", &stored_ab, top_ab as usize);
    assert_stored("D -> E", &stored_de, top_de as usize);
    assert!(
        in_order_once(&b_live),
        "B: live messages in order, each once"
    );
    assert_holds_all("B", &[&b_live, &b_synced], top_ab);
    assert!(
        in_order_once(&e_before),
        "E before the kill: in order, each once"
    );
    assert!(
        e_synced.first().is_none_or(|s| *s == e_cursor + 1) && in_order_once(&e_synced),
        "E's sync starts after its cursor {e_cursor}, in order: {e_synced:?}"
    );
    assert_holds_all(
        "E",
        &[&e_before, &e_synced, &e_live_after, &e_synced_after],
        top_de,
    );
    assert!(
        f_offline.is_some_and(|t| t <= bound),
        "F (on the dead node, not back) offline for others within {bound:?}: {f_offline:?}; \
         presence now {now:?}"
    );
    assert!(
        back_online.is_some(),
        "A and E online again on node 1: {now:?}"
    );
    assert_eq!(
        now.get(&f.id).map(String::as_str),
        Some("offline"),
        "F stays offline"
    );
    drop(d);
    drop(services);
}
