//! Pools that fail fast: a PostgreSQL that stops answering turns store calls into errors
//! (`unavailable` to clients) within the configured timeouts, never calls that hang; and
//! once it answers again the same pool serves again by itself.
//!
//! The database "stops answering" behind a TCP relay the test controls: frozen, it keeps
//! every connection open and accepts new ones but passes no byte either way, which is what
//! a hung or SIGSTOPped server, or a network that drops packets, looks like to a client.
//! The real (shared) server behind it is never touched.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use adapters_postgres::testing::fresh_database;
use adapters_postgres::{PoolOptions, PostgresStorage};
use chrono::{SubsecRound, Utc};
use common::{message, user};
use domain::conversation::NewDirectConversation;
use domain::message::AppendOutcome;
use domain::ports::{ConversationStore, MessageStore, StoreHealth};
use domain::ConversationId;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every timeout of the pool under test.
const TIMEOUT: Duration = Duration::from_millis(500);

/// How much later than its timeout a call may fail: scheduling on a loaded machine, never
/// a hang (the relay stays frozen for far longer).
const SLACK: Duration = Duration::from_secs(3);

/// A TCP relay to `target` that can be frozen: no byte passes while it is.
struct Relay {
    port: u16,
    frozen: Arc<AtomicBool>,
}

impl Relay {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let target = target.to_owned();
        let flag = Arc::clone(&frozen);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let flag = Arc::clone(&flag);
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, Arc::clone(&flag)),
                        pump(server_read, client_write, flag),
                    );
                });
            }
        });
        Self { port, frozen }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, holding each chunk while the relay is frozen.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `url` with its host and port replaced by the relay's.
fn via_relay(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"));
    format!(
        "{scheme}://{}127.0.0.1:{port}/{path}",
        user.unwrap_or_default()
    )
}

/// The host and port `url` names.
fn target_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split_once('/').unwrap().0;
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, hp)| hp)
        .to_owned()
}

/// Runs `call`, which must fail, and answers how long it took; a call still running
/// after ten times the slack has hung, which fails the test.
async fn fails_in<T: std::fmt::Debug, E>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Duration {
    let started = Instant::now();
    let outcome = tokio::time::timeout(SLACK * 10, call)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {:?}", SLACK * 10));
    let took = started.elapsed();
    assert!(outcome.is_err(), "{what} succeeded: {:?}", outcome.ok());
    println!("{what}: failed after {took:?}");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_fails_calls_within_the_timeouts() {
    let url = fresh_database().await;
    let relay = Relay::start(&target_of(&url)).await;
    let store = PostgresStorage::connect_with(
        &via_relay(&url, relay.port),
        PoolOptions {
            size: 2,
            connect_timeout: TIMEOUT,
            acquire_timeout: TIMEOUT,
            query_timeout: TIMEOUT,
        },
    )
    .await
    .unwrap();
    let (a, b) = (user(&store).await, user(&store).await);
    let conversation = ConversationId::new();
    store
        .create_direct(&NewDirectConversation {
            id: conversation,
            created_by: a,
            other: b,
            created_at: Utc::now().trunc_subsecs(6),
        })
        .await
        .unwrap();
    let sent = store
        .append_messages(&[message(conversation, a, "before")])
        .await
        .unwrap();
    assert!(matches!(sent[..], [Ok(AppendOutcome::Created(_))]));

    relay.freeze(true);
    // On a pooled connection: the statement is written and no answer ever comes.
    let send = fails_in(
        "a send on a pooled connection",
        store.append_messages(&[message(conversation, a, "during")]),
    )
    .await;
    // The timed-out connection was closed, so these need new ones, which never open.
    let snapshot = fails_in("a session snapshot", store.session_snapshot(b)).await;
    let ping = fails_in("a health check", store.ping()).await;
    let resend = fails_in(
        "a resend",
        store.append_messages(&[message(conversation, a, "during")]),
    )
    .await;
    for took in [send, snapshot, ping, resend] {
        assert!(took < TIMEOUT * 2 + SLACK, "took {took:?}");
    }
    // A new pool against the hung database fails to start rather than waiting.
    fails_in(
        "connecting a new pool",
        PostgresStorage::connect_with(
            &via_relay(&url, relay.port),
            PoolOptions {
                size: 1,
                connect_timeout: TIMEOUT,
                acquire_timeout: TIMEOUT,
                query_timeout: TIMEOUT,
            },
        ),
    )
    .await;

    // Answering again: the same pool serves by itself, and the send that failed is
    // stored once when it is resent (it may or may not have been committed).
    relay.freeze(false);
    let mut outcome = None;
    for _ in 0..50 {
        match store
            .append_messages(&[message(conversation, a, "during")])
            .await
        {
            Ok(mut results) => {
                outcome = results.pop();
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let outcome = outcome.expect("the pool never served again");
    assert!(
        matches!(
            outcome,
            Ok(AppendOutcome::Created(_) | AppendOutcome::Replayed(_))
        ),
        "{outcome:?}"
    );
    let history = store.messages_after(conversation, 0, 10).await.unwrap();
    let keys: Vec<_> = history
        .iter()
        .filter_map(|m| m.client_msg_id.as_ref().map(|k| k.as_str().to_owned()))
        .collect();
    assert_eq!(keys, ["before", "during"]);
    store.ping().await.unwrap();
}
