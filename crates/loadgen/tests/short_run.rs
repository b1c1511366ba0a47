//! A short benchmark on the test build, as a correctness check only: the server runs in
//! this process (embedded SQLite in a temporary directory), the load generator runs `direct`
//! and `storm` for about two seconds with a few dozen clients, and the run must complete with
//! counts that match and nothing duplicated, missing or lost. No figure is asserted.

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
