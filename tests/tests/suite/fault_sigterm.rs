//! SIGTERM of a real node process (embedded mode) while clients send: `/readyz` turns 503
//! before any socket closes, every socket is closed with 1001, every send the node had
//! received is answered (`message_sent` or `error`) before that close, what was acked is
//! stored, and the process exits within its shutdown bound. The figures are printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster;
use e2e::ws::{WsClient, WsConnect};
use e2e::{Api, Backend, NodeProcess, TestStore, TestUser};
use futures_util::future::join_all;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `realtime.close_grace` of the nodes here (the default).
const CLOSE_GRACE: Duration = Duration::from_millis(2000);
/// `realtime.presence_grace` of the nodes here.
const PRESENCE_GRACE: Duration = Duration::from_millis(300);

/// How long a graceful shutdown may take at most (docs/architecture.md, "Shutdown"): the
/// sessions' answers and closes (2 × close grace + 1 s), the receipt flush (close grace),
/// the presence clean-up (presence grace + close grace), the HTTP server's stop (10 s).
fn shutdown_bound() -> Duration {
    CLOSE_GRACE * 4 + PRESENCE_GRACE + Duration::from_secs(11)
}

fn node_env(sockets: usize) -> Vec<(&'static str, String)> {
    vec![
        (
            "CHAT_REALTIME__CLOSE_GRACE_MS",
            CLOSE_GRACE.as_millis().to_string(),
        ),
        (
            "CHAT_REALTIME__PRESENCE_GRACE_MS",
            PRESENCE_GRACE.as_millis().to_string(),
        ),
        ("CHAT_REALTIME__MESSAGES_PER_SECOND", "100000".into()),
        ("CHAT_REALTIME__MESSAGE_BURST", "100000".into()),
        ("CHAT_REALTIME__UPGRADES_PER_SECOND", "100000".into()),
        ("CHAT_REALTIME__UPGRADE_BURST", "100000".into()),
        ("CHAT_REALTIME__MAX_SESSIONS_PER_USER", sockets.to_string()),
        ("CHAT_REALTIME__HEARTBEAT_INTERVAL_MS", "60000".into()),
    ]
}

/// A socket's sends and how they were answered before its close.
struct Outcome {
    label: String,
    close: Option<u16>,
    closed_at: Instant,
    sent: Vec<String>,
    acked: Vec<String>,
    refused: Vec<(String, String)>,
}

impl Outcome {
    fn unanswered(&self) -> Vec<&String> {
        let answered: HashSet<&String> = self
            .acked
            .iter()
            .chain(self.refused.iter().map(|(t, _)| t))
            .collect();
        self.sent.iter().filter(|t| !answered.contains(t)).collect()
    }
}

/// Reads the socket until the server closes it, sorting the answers to `sent`.
async fn until_closed(mut ws: WsClient, sent: Vec<String>) -> Outcome {
    let closed = ws.wait_closed(shutdown_bound()).await;
    let closed_at = Instant::now();
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for frame in ws.kept() {
        match frame["type"].as_str() {
            Some("message_sent") => acked.push(frame["temp_id"].as_str().unwrap().to_owned()),
            Some("error") => {
                if let Some(reference) = frame["ref"].as_str() {
                    let code = frame["code"].as_str().unwrap_or("").to_owned();
                    refused.push((reference.to_owned(), code));
                }
            }
            _ => {}
        }
    }
    Outcome {
        label: ws.label.clone(),
        close: closed.code,
        closed_at,
        sent,
        acked,
        refused,
    }
}

/// Registers `count` users, 16 at a time.
async fn register_many(api: &Api, count: usize) -> Vec<TestUser> {
    let mut users = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let batch = join_all(chunk.iter().map(|i| async move {
            let name = format!("User{i}");
            api.register(&name).await
        }))
        .await;
        users.extend(batch);
    }
    users
}

/// Every acked temp_id is stored once (the content is the temp_id), read back from a node
/// started again on the same data.
async fn assert_acked_are_stored_once(
    store: &TestStore,
    conversations: &[(String, TestUser)],
    acked: &HashSet<String>,
) -> usize {
    let node = NodeProcess::start(store, &[]).await;
    let api = node.api();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for (conversation, member) in conversations {
        for message in cluster::history(&api, member, conversation).await {
            let content = message["content"].as_str().unwrap().to_owned();
            *stored.entry(content).or_default() += 1;
        }
    }
    for temp_id in acked {
        assert_eq!(
            stored.get(temp_id).copied(),
            Some(1),
            "{temp_id} was acked before the close: stored exactly once"
        );
    }
    assert!(stored.values().all(|n| *n == 1), "no message stored twice");
    stored.len()
}

/// A `message` frame whose content is its temp_id.
fn message_frame(conversation: &str, temp_id: &str) -> String {
    e2e::traffic::message_frame(conversation, temp_id, temp_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_received_before_sigterm_is_answered_before_the_1001_close() {
    const SENDERS: usize = 8;
    const BURST: usize = 1000;
    let store = TestStore::new(Backend::Sqlite).await;
    let mut node = NodeProcess::start(&store, &node_env(10)).await;
    let api = node.api();
    let users = register_many(&api, SENDERS * 2).await;
    let mut conversations = Vec::new();
    let mut sockets = Vec::new();
    for (i, pair) in users.chunks(2).enumerate() {
        let conversation = cluster::direct(&api, &pair[0], &pair[1]).await;
        let (ws, _) = WsConnect::all(&node.address, &pair[0].token)
            .open_ready(&format!("sender {i}"))
            .await;
        conversations.push((conversation.clone(), pair[1].clone()));
        sockets.push((ws, conversation));
    }

    // Each sender pipelines a burst, and the signal follows right after: much of the burst
    // is still in the node's socket buffers (read or not) when it decides to close.
    let bursts = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (mut ws, c))| async move {
            let sent: Vec<String> = (0..BURST).map(|k| format!("s{i}-{k}")).collect();
            ws.pipeline(sent.iter().map(|t| message_frame(&c, t)).collect())
                .await;
            (ws, sent)
        });
    let written = join_all(bursts).await;
    let signalled = Instant::now();
    node.sigterm().await;
    let outcomes = join_all(
        written
            .into_iter()
            .map(|(ws, sent)| tokio::spawn(until_closed(ws, sent))),
    )
    .await;
    let exit = node.wait_exit(shutdown_bound()).await;
    let exited_after = signalled.elapsed();

    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.unwrap()).collect();
    let sent: usize = outcomes.iter().map(|o| o.sent.len()).sum();
    let acked: HashSet<String> = outcomes.iter().flat_map(|o| o.acked.clone()).collect();
    let refused: usize = outcomes.iter().map(|o| o.refused.len()).sum();
    println!(
        "SIGTERM after a burst: {SENDERS} sockets, {sent} sends written, {} acked, {refused} \
         answered with an error, exit after {exited_after:?} ({exit})",
        acked.len()
    );
    for o in &outcomes {
        assert_eq!(o.close, Some(1001), "{}: closed 1001", o.label);
        let unanswered = o.unanswered();
        assert!(
            unanswered.is_empty(),
            "{}: {} of {} sends not answered before the close, from {:?}",
            o.label,
            unanswered.len(),
            o.sent.len(),
            unanswered.first()
        );
        for (temp_id, code) in &o.refused {
            assert_eq!(code, "unavailable", "{}: {temp_id} refused", o.label);
        }
    }
    assert!(exit.success(), "clean exit: {exit}");
    assert!(
        !acked.is_empty(),
        "some sends were committed before the close"
    );
    assert_acked_are_stored_once(&store, &conversations, &acked).await;
}

/// The soft limit on open files of this process (which the node inherits).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_a_node_holding_1000_websockets_answers_every_send_and_closes_each_1001() {
    const USERS: usize = 200;
    const SOCKETS_PER_USER: usize = 5;
    const SOCKETS: usize = USERS * SOCKETS_PER_USER;
    // The test holds the client ends, the node the server ends, plus files of their own.
    if let Some(limit) = open_files_limit() {
        assert!(
            limit >= SOCKETS as u64 + 500,
            "this test needs {} open files per process, the limit is {limit}: raise `ulimit -n`",
            SOCKETS + 500
        );
    }
    let store = TestStore::new(Backend::Sqlite).await;
    let mut node = NodeProcess::start(&store, &node_env(SOCKETS_PER_USER)).await;
    let api = node.api();
    let users = register_many(&api, USERS).await;
    let mut conversations = Vec::new();
    let mut conversation_of = HashMap::new();
    for pair in users.chunks(2) {
        let conversation = cluster::direct(&api, &pair[0], &pair[1]).await;
        conversation_of.insert(pair[0].id.clone(), conversation.clone());
        conversation_of.insert(pair[1].id.clone(), conversation.clone());
        conversations.push((conversation, pair[1].clone()));
    }
    let mut sockets = Vec::with_capacity(SOCKETS);
    for (u, user) in users.iter().enumerate() {
        let opened = join_all((0..SOCKETS_PER_USER).map(|s| {
            let connect = WsConnect::all(&node.address, &user.token);
            async move {
                let label = format!("user {u} socket {s}");
                connect.open_ready(&label).await
            }
        }))
        .await;
        for (ws, _hello) in opened {
            sockets.push((ws, conversation_of[&user.id].clone()));
        }
    }
    assert_eq!(sockets.len(), SOCKETS);
    let ready = api.get("/readyz", None).await;
    assert_eq!(
        ready.status, 200,
        "ready before the signal: {:?}",
        ready.body
    );

    // 3 or 4 sends on every socket, 3,500 in all, written just before the signal.
    let bursts = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (mut ws, c))| async move {
            let count = 3 + i % 2;
            let mut sent = Vec::with_capacity(count);
            for k in 0..count {
                let temp_id = format!("w{i}-{k}");
                ws.send_text(message_frame(&c, &temp_id)).await;
                sent.push(temp_id);
            }
            (ws, sent)
        });
    let written = join_all(bursts).await;
    let signalled = Instant::now();
    node.sigterm().await;

    // Readiness: by the time the first socket is closed, /readyz already says 503.
    let first_close = Arc::new(tokio::sync::Notify::new());
    let readyz = {
        let first_close = first_close.clone();
        let api = api.clone();
        tokio::spawn(async move {
            first_close.notified().await;
            api.get("/readyz", None).await.status
        })
    };
    let tasks = written.into_iter().map(|(ws, sent)| {
        let first_close = first_close.clone();
        tokio::spawn(async move {
            let outcome = until_closed(ws, sent).await;
            first_close.notify_one();
            outcome
        })
    });
    let outcomes: Vec<Outcome> = join_all(tasks)
        .await
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    let readiness_at_first_close = readyz.await.unwrap();
    let exit = node.wait_exit(shutdown_bound()).await;
    let exited_after = signalled.elapsed();

    let sent: usize = outcomes.iter().map(|o| o.sent.len()).sum();
    let acked: HashSet<String> = outcomes.iter().flat_map(|o| o.acked.clone()).collect();
    let refused: usize = outcomes.iter().map(|o| o.refused.len()).sum();
    let unanswered: usize = outcomes.iter().map(|o| o.unanswered().len()).sum();
    let closed_1001 = outcomes.iter().filter(|o| o.close == Some(1001)).count();
    let last_close = outcomes
        .iter()
        .map(|o| o.closed_at.duration_since(signalled))
        .max()
        .unwrap();
    println!(
        "SIGTERM with {SOCKETS} sockets: {closed_1001} closed 1001 (the last {last_close:?} \
         after the signal), {sent} sends, {} acked, {refused} answered with an error, \
         {unanswered} unanswered; /readyz at the first close: {readiness_at_first_close}; \
         exit after {exited_after:?} ({exit}; bound {:?})",
        acked.len(),
        shutdown_bound()
    );
    assert_eq!(
        readiness_at_first_close, 503,
        "/readyz 503 before the closes"
    );
    assert_eq!(closed_1001, SOCKETS, "every socket closed 1001");
    assert_eq!(unanswered, 0, "every send answered before its close");
    assert_eq!(sent, 3_500);
    assert!(exit.success(), "clean exit: {exit}");
    assert!(exited_after <= shutdown_bound());
    assert_acked_are_stored_once(&store, &conversations, &acked).await;
}
