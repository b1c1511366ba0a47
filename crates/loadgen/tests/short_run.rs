//! A short benchmark on the test build, as a correctness check only: the server runs in
//! this process (embedded SQLite in a temporary directory), the load generator runs `direct`
//! and `storm` for about two seconds with a few dozen clients, and the run must complete with
//! counts that match and nothing duplicated, missing or lost. `persist` runs without a
//! server, once on SQLite and once on a fresh PostgreSQL database (PostgreSQL must be
//! running: that test fails, with how to start it, rather than skip). No figure is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use loadgen::clap::Parser;
use loadgen::cli::Args;
use loadgen::report::Report;
use server::config::Settings;
use server::startup::Application;

const SECRET: &str = "test-secret-test-secret-test-secret!";

async fn start_server(dir: &std::path::Path) -> std::net::SocketAddr {
    let mut settings = Settings::for_tests(dir);
    settings.auth.jwt_secret = Some(server::config::Secret::new(SECRET));
    let app = Application::build(settings).await.expect("server starts");
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped());
    addr
}

async fn run(scenario: &str, addr: std::net::SocketAddr, dir: &std::path::Path) -> Report {
    let target = addr.to_string();
    let data_dir = dir.to_str().unwrap();
    let args = Args::try_parse_from([
        "chat-loadgen",
        "--scenario",
        scenario,
        "--target",
        &target,
        "--clients",
        "24",
        "--duration",
        "2s",
        "--rate",
        "200",
        "--data-dir",
        data_dir,
        "--jwt-secret",
        SECRET,
        "--connect-timeout",
        "30s",
        "--drain-timeout",
        "15s",
    ])
    .unwrap();
    let report = loadgen::run::run(args).await.expect("the run completes");
    println!("{}", report.table());
    report
}

fn assert_consistent(report: &Report) {
    let t = &report.traffic;
    let a = &report.correctness;
    assert_eq!(report.connections.ready, 24, "every client connected");
    assert_eq!(report.connections.failed, 0);
    assert_eq!(report.unverified_clients, 0, "every final sync completed");
    assert!(t.sent_total > 0, "something was sent");
    assert_eq!(
        t.sent_total,
        t.acked_total + t.send_failed_total,
        "every send acked or refused"
    );
    assert_eq!(
        t.send_failed_total, 0,
        "nothing refused: {:?}",
        report.errors
    );
    assert_eq!(t.unacked_at_end, 0);
    assert_eq!(a.acked_messages, t.acked_total, "acks counted once each");
    assert_eq!(
        t.delivered_total + t.replayed_total,
        t.expected_deliveries,
        "each acked message reached the other member exactly once"
    );
    assert!(t.drained, "the drain completed");
    assert_eq!(
        (a.duplicates, a.gaps, a.acked_but_lost),
        (0, 0, 0),
        "duplicates / gaps / acked-but-lost"
    );
    assert!(report.correct());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_and_storm_complete_with_nothing_duplicated_missing_or_lost() {
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(dir.path()).await;

    let direct = run("direct", addr, dir.path()).await;
    assert_consistent(&direct);
    assert!(direct.delivery_latency.count > 0);

    let storm = run("storm", addr, dir.path()).await;
    assert_consistent(&storm);
    let recovery = storm.storm.expect("a storm section");
    assert_eq!(recovery.dropped, 24);
    assert_eq!(recovery.recovered, 24, "every client recovered");
    assert_eq!(recovery.recovery.count, 24);
}

/// A loopback port nothing listens on: `persist` must not need (or contact) a server.
fn unused_target() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}

async fn run_persist(store: &[&str], rate: &str) -> Report {
    let target = unused_target();
    let mut argv = vec![
        "chat-loadgen",
        "--scenario",
        "persist",
        "--target",
        &target,
        "--clients",
        "24",
        "--duration",
        "1500ms",
        "--rate",
        rate,
        "--persist-writers",
        "4",
        "--persist-batch",
        "64",
    ];
    argv.extend_from_slice(store);
    let args = Args::try_parse_from(argv).unwrap();
    let report = loadgen::run::run(args).await.expect("the run completes");
    println!("{}", report.table());
    report
}

fn assert_persist_consistent(report: &Report, storage: &str) {
    let p = report.persist.expect("a persist section");
    let t = &report.traffic;
    let a = &report.correctness;
    assert_eq!(report.setup.storage, storage);
    assert_eq!(report.setup.conversations, 12);
    assert!(p.created > 0, "something was persisted");
    assert_eq!(report.errors, Default::default(), "no errors");
    assert_eq!(
        (p.failed_commits, p.rejected, p.replayed),
        (0, 0, 0),
        "failed commits / rejected / replayed"
    );
    assert_eq!(
        t.sent_total, p.created,
        "every message appended was created"
    );
    assert_eq!(t.acked_total, p.created);
    assert_eq!(
        t.scheduled, t.sent_total,
        "every send handed out was appended"
    );
    assert!(p.commits > 0 && p.messages_per_commit_max <= 64, "{p:?}");
    assert_eq!(p.commit_latency.count, p.commits, "one latency per commit");
    assert_eq!(p.stored, p.created, "read back exactly what was acked");
    assert_eq!(p.stored_not_acked, 0);
    assert_eq!(a.acked_messages, p.created);
    assert_eq!(a.members_checked, 12, "every conversation read back");
    assert_eq!(report.unverified_clients, 0);
    assert_eq!(
        (a.duplicates, a.gaps, a.acked_but_lost),
        (0, 0, 0),
        "duplicates / gaps / acked-but-lost"
    );
    assert!(!report.metrics.available, "no /metrics scraped");
    assert_eq!(report.resources.server_pid, None, "no server looked for");
    assert!(report.correct());
    let json = serde_json::to_value(report).unwrap();
    assert_eq!(json["setup"]["scenario"], "persist");
    assert_eq!(json["persist"]["created"], p.created);
    assert_eq!(json["persist"]["commit_latency"]["count"], p.commits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_on_sqlite_reads_back_exactly_what_was_acked() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let report = run_persist(&["--data-dir", data_dir], "0").await;
    assert_persist_consistent(&report, "sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persist_on_postgres_reads_back_exactly_what_was_acked() {
    // Panics with how to start PostgreSQL when it is not reachable: never skipped.
    let url = adapters_postgres::testing::fresh_database().await;
    let report = run_persist(&["--database-url", &url], "4000").await;
    assert_persist_consistent(&report, "postgres");
}
