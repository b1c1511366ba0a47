//! The orchestrator: provision, connect, run the scenario, drain, verify, report.

use crate::cli::{Args, Scenario, UsageError};
use crate::client::{run_client, ClientOutcome, ClientPlan, Histos, Phase, Shared, Stats};
use crate::metrics;
use crate::procstat::{self, Machine};
use crate::provision::{self, ProvisionError, Rest};
use crate::report::{
    Connections, MetricsScrape, Percentiles, Report, Resources, RunSetup, Storm, TableReads,
    Traffic,
};
use crate::track::{audit, MemberView};
use adapters_postgres::{table_activity, TableActivity};
use server::config::DatabaseTarget;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

/// Sends a client may have queued (while offline, say) before the dispatcher skips it.
const SEND_QUEUE: usize = 64;
/// How often the orchestrator looks at the counters while waiting.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait (on top of the connect timeout, as the check reconnects) for every client
/// to finish its final `sync` and close.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Slack on top of the run's own phases before the whole run is abandoned.
const RUN_SLACK: Duration = Duration::from_secs(120);

/// A run that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Bad arguments.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Provisioning failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The server does not answer.
    #[error("the server at {0} does not answer /healthz: {1}")]
    Unreachable(String, String),
    /// Start-up of the generator itself failed.
    #[error("{0}")]
    Setup(String),
    /// The run overran its own bound.
    #[error("the run did not finish within {0:?}; abandoned")]
    Overran(Duration),
}

/// The longest a run of `args` may take, all phases included.
pub fn run_bound(args: &Args) -> Duration {
    args.connect_timeout * 3
        + args.duration
        + args.drain_timeout
        + args.settle
        + JOIN_TIMEOUT
        + RUN_SLACK
}

/// Runs the scenario `args` describe, bounded by [`run_bound`].
pub async fn run(args: Args) -> Result<Report, LoadError> {
    args.validate()?;
    let bound = run_bound(&args);
    tokio::time::timeout(bound, run_unbounded(args))
        .await
        .map_err(|_| LoadError::Overran(bound))?
}

async fn run_unbounded(args: Args) -> Result<Report, LoadError> {
    if !args.scenario.needs_server() {
        // Storage only: no /healthz, no /metrics, no server pid.
        return crate::persist::run(args).await;
    }
    let machine = Machine::describe();
    let rest = Rest::new(args.target)?;
    rest.get_text("/healthz")
        .await
        .map_err(|e| LoadError::Unreachable(args.target.to_string(), e.to_string()))?
        .ok_or_else(|| LoadError::Unreachable(args.target.to_string(), "404".into()))?;
    let own_pid = std::process::id();
    let server_pid = args
        .server_pid
        .or_else(|| procstat::pid_listening_on(args.target.port()));
    let metrics_before = scrape(&rest).await;

    // Provisioning.
    let target = provision::database_target(&args)?;
    let secret = provision::jwt_secret(&args, &target)?;
    let fresh_start = match (&target, args.fresh_database) {
        (DatabaseTarget::Postgres(url), true) => Some(fresh_tables(url.expose()).await?),
        _ => None,
    };
    let started = Instant::now();
    let store = provision::open_store(
        &target,
        u32::try_from(args.provision_concurrency.min(16)).unwrap_or(16),
    )
    .await?;
    let run_id = provision::new_run_id();
    let users = provision::insert_users(
        store.clone(),
        &run_id,
        args.clients,
        args.provision_concurrency,
    )
    .await?;
    drop(store);
    let users_s = started.elapsed().as_secs_f64();
    let users = provision::mint_tokens(
        &secret,
        &args.jwt_issuer,
        &args.jwt_audience,
        run_bound(&args) + Duration::from_secs(600),
        &users,
    )?;
    let plan = match args.scenario {
        Scenario::Idle => Vec::new(),
        Scenario::Direct | Scenario::Storm | Scenario::Persist => {
            provision::plan_pairs(args.clients)
        }
        Scenario::Group => provision::plan_groups(args.clients, args.group_size),
    };
    let started = Instant::now();
    let conv_ids = rest
        .create_conversations(
            &users,
            &plan,
            args.scenario == Scenario::Group,
            args.provision_concurrency,
        )
        .await?;
    let conversations_s = started.elapsed().as_secs_f64();

    // Who is in what.
    let sources = args.source_addrs();
    let targets = args.targets();
    let mut member_of: Vec<Vec<(Uuid, usize)>> = vec![Vec::new(); args.clients];
    for (members, id) in plan.iter().zip(&conv_ids) {
        for &m in members {
            if let Some(list) = member_of.get_mut(m) {
                list.push((*id, members.len()));
            }
        }
    }
    let plans: Vec<ClientPlan> = users
        .iter()
        .zip(member_of)
        .enumerate()
        .map(|(index, (user, conversations))| ClientPlan {
            index,
            user_id: user.id,
            token: user.token.clone(),
            source: Args::source_for(&sources, args.conns_per_source, index),
            target: targets
                .get(index % targets.len())
                .copied()
                .unwrap_or(args.target),
            send_to: conversations.first().map(|(id, _)| *id),
            conversations,
        })
        .collect();

    let histos = || Histos::new().map_err(|e| LoadError::Setup(e.to_string()));
    let shared = Arc::new(Shared {
        base: Instant::now(),
        ws_config: WebSocketConfig::default()
            .read_buffer_size(args.ws_read_buffer)
            .max_message_size(None)
            .max_frame_size(None),
        content_bytes: args.content_bytes,
        connect_permits: Semaphore::new(args.connect_concurrency),
        connect_timeout: args.connect_timeout,
        stats: Stats::default(),
        delivery_latency: histos()?,
        ack_latency: histos()?,
        recovery: histos()?,
        errors: Mutex::new(BTreeMap::new()),
    });

    let rss_before = server_pid.and_then(procstat::rss_kib);
    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let mut senders = Vec::new();
    let mut tasks = Vec::with_capacity(plans.len());
    let started = Instant::now();
    for plan in plans {
        let (tx, rx) = mpsc::channel(SEND_QUEUE);
        if plan.send_to.is_some() {
            senders.push(tx);
        }
        let shared = shared.clone();
        let phase = phase_rx.clone();
        tasks.push(tokio::spawn(async move {
            run_client(plan, &shared, phase, rx).await
        }));
    }
    drop(phase_rx);
    let stats = &shared.stats;
    let everyone = args.clients as u64;
    wait_until(
        started + args.connect_timeout + Duration::from_secs(15),
        || get(&stats.ready) + get(&stats.failed) >= everyone,
    )
    .await;
    let connect_s = started.elapsed().as_secs_f64();

    // The measured window.
    let cpu = |pid: Option<u32>| pid.and_then(procstat::cpu_seconds);
    let (server_cpu0, own_cpu0) = (cpu(server_pid), cpu(Some(own_pid)));
    let rss_after;
    let cpu_end;
    let mut traffic = Traffic::default();
    let mut storm = None;
    if args.scenario == Scenario::Idle {
        sleep(args.settle).await;
        rss_after = server_pid.and_then(procstat::rss_kib);
        sleep(args.duration.saturating_sub(args.settle)).await;
        traffic.window_s = args.duration.max(args.settle).as_secs_f64();
        cpu_end = (cpu(server_pid), cpu(Some(own_pid)));
    } else {
        let window = Instant::now();
        let (sent0, acked0, delivered0) =
            (get(&stats.sent), get(&stats.acked), get(&stats.delivered));
        let dispatcher = tokio::spawn(dispatch(senders, args.rate, args.duration));
        if args.scenario == Scenario::Storm {
            sleep(args.duration / 2).await;
            let dropped = get(&stats.ready);
            let _ = phase_tx.send(Phase::Storm(Instant::now()));
            let storm_deadline = Instant::now() + args.connect_timeout;
            wait_until(storm_deadline, || get(&stats.storm_recovered) >= dropped).await;
            storm = Some(Storm {
                dropped,
                ..Storm::default()
            });
        }
        let (scheduled, skipped) = dispatcher.await.unwrap_or((0, 0));
        traffic.window_s = window.elapsed().as_secs_f64();
        traffic.scheduled = scheduled;
        traffic.skipped = skipped;
        traffic.sent = get(&stats.sent) - sent0;
        traffic.acked = get(&stats.acked) - acked0;
        traffic.delivered = get(&stats.delivered) - delivered0;
        rss_after = server_pid.and_then(procstat::rss_kib);
        cpu_end = (cpu(server_pid), cpu(Some(own_pid)));
        let _ = phase_tx.send(Phase::Drain);
        let drain = Instant::now();
        traffic.drained = wait_until(drain + args.drain_timeout, || {
            get(&stats.drain_seen) >= get(&stats.ready)
                && get(&stats.sent) <= get(&stats.acked) + get(&stats.send_failed)
                && get(&stats.delivered) + get(&stats.replayed) >= get(&stats.expected)
        })
        .await;
        traffic.drain_s = drain.elapsed().as_secs_f64();
    }
    let (server_cpu1, own_cpu1) = cpu_end;
    let held = get(&stats.ready);

    // Verify (or just close) and collect.
    let _ = phase_tx.send(if args.scenario.has_traffic() {
        Phase::Verify
    } else {
        Phase::Close
    });
    let outcomes = join_all(tasks, args.connect_timeout + JOIN_TIMEOUT, &shared).await;
    // A client that did not finish left no outcome: its checks are missing, not passed.
    let missing = (args.clients as u64).saturating_sub(outcomes.len() as u64);
    let metrics_after = scrape(&rest).await;
    let fresh_database = match (&target, fresh_start) {
        (DatabaseTarget::Postgres(url), Some(start)) => {
            Some(table_reads(url.expose(), &start).await?)
        }
        _ => None,
    };

    // Accounting.
    let mut acked: HashMap<Uuid, BTreeSet<u64>> = HashMap::new();
    let mut views: Vec<MemberView> = Vec::new();
    let mut unverified = missing;
    let mut unacked = 0;
    for outcome in outcomes {
        if outcome.ready && !outcome.verified && args.scenario.has_traffic() {
            unverified += 1;
        }
        unacked += outcome.unacked;
        for (conv, seqs) in outcome.acked {
            acked.entry(conv).or_default().extend(seqs);
        }
        views.extend(outcome.views);
    }
    let correctness = audit(&acked, &views);

    let window = traffic.window_s.max(1e-9);
    traffic.sent_per_s = traffic.sent as f64 / window;
    traffic.persisted_per_s = traffic.acked as f64 / window;
    traffic.deliveries_per_s = traffic.delivered as f64 / window;
    traffic.sent_total = get(&stats.sent);
    traffic.acked_total = get(&stats.acked);
    traffic.resent_total = get(&stats.resent);
    traffic.send_failed_total = get(&stats.send_failed);
    traffic.delivered_total = get(&stats.delivered);
    traffic.replayed_total = get(&stats.replayed);
    traffic.expected_deliveries = get(&stats.expected);
    traffic.unacked_at_end = unacked;
    if let Some(storm) = &mut storm {
        storm.recovered = get(&stats.storm_recovered);
        storm.recovery = Percentiles::of(shared.recovery.merged().as_ref());
    }
    let per_connection = match (rss_before, rss_after) {
        (Some(b), Some(a)) if held > 0 => Some(a.saturating_sub(b) * 1024 / held),
        _ => None,
    };
    let resources = Resources {
        server_pid,
        server_in_process: server_pid == Some(own_pid),
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        server_rss_per_connection_bytes: per_connection,
        server_cpu_s: server_cpu0.zip(server_cpu1).map(|(a, b)| b - a),
        generator_cpu_s: own_cpu0.zip(own_cpu1).map(|(a, b)| b - a),
        generator_rss_kib: procstat::rss_kib(own_pid),
    };
    let metrics = match (metrics_before, metrics_after) {
        (before, Some(after)) => {
            let delta = metrics::delta(&before.unwrap_or_default(), &after);
            MetricsScrape {
                available: true,
                latency: metrics::latencies(&delta),
                delta,
            }
        }
        _ => MetricsScrape::default(),
    };
    let errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    Ok(Report {
        machine,
        load_average_end: procstat::load_average(),
        setup: RunSetup {
            scenario: args.scenario,
            run_id,
            target: targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            storage: match target {
                DatabaseTarget::Sqlite(_) => "sqlite".into(),
                DatabaseTarget::Postgres(_) => "postgres".into(),
            },
            clients: args.clients,
            conversation_size: plan.first().map_or(0, Vec::len),
            conversations: conv_ids.len(),
            rate: if args.scenario.has_traffic() {
                args.rate
            } else {
                0.0
            },
            duration_s: args.duration.as_secs_f64(),
            source_addrs: sources
                .iter()
                .take(args.clients.div_ceil(args.conns_per_source))
                .map(ToString::to_string)
                .collect(),
            users_s,
            conversations_s,
            connect_s,
        },
        connections: Connections {
            ready: held,
            failed: get(&stats.failed),
            peak: get(&stats.peak_open),
            throttled: get(&stats.throttled),
            unplanned_reconnects: get(&stats.unplanned_reconnects),
        },
        traffic,
        delivery_latency: Percentiles::of(shared.delivery_latency.merged().as_ref()),
        ack_latency: Percentiles::of(shared.ack_latency.merged().as_ref()),
        storm,
        persist: None,
        fresh_database,
        correctness,
        unverified_clients: unverified,
        errors,
        resources,
        metrics,
    })
}

fn get(counter: &AtomicU64) -> u64 {
    Stats::get(counter)
}

/// Polls `done` until it holds (`true`) or `deadline` passes (`false`).
async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL).await;
    }
}

/// Hands out `rate` sends per second for `duration`, round robin over `senders`; a sender
/// whose queue is full is skipped (counted). Answers (scheduled, skipped).
pub async fn dispatch(senders: Vec<mpsc::Sender<()>>, rate: f64, duration: Duration) -> (u64, u64) {
    if senders.is_empty() {
        sleep(duration).await;
        return (0, 0);
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (mut scheduled, mut skipped, mut next) = (0u64, 0u64, 0usize);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed().min(duration);
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while scheduled < due {
            if let Some(sender) = senders.get(next % senders.len()) {
                if sender.try_send(()).is_err() {
                    skipped += 1;
                }
            }
            next = next.wrapping_add(1);
            scheduled += 1;
        }
        if elapsed >= duration {
            return (scheduled, skipped);
        }
    }
}

async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<ClientOutcome>>,
    limit: Duration,
    shared: &Shared,
) -> Vec<ClientOutcome> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(tasks.len());
    for mut task in tasks {
        match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(Ok(outcome)) => out.push(outcome),
            Ok(Err(_)) => shared.error("client:panicked"),
            Err(_) => {
                task.abort();
                shared.error("client:did_not_finish");
            }
        }
    }
    out
}

async fn scrape(rest: &Rest) -> Option<metrics::Samples> {
    match rest.get_text("/metrics").await {
        Ok(Some(text)) => Some(metrics::parse(&text)),
        _ => None,
    }
}

/// `--fresh-database`: the hot tables' statistics at the start, refusing a database that is
/// not brand-new (a table with rows, or one the planner already has statistics of: plans
/// the server made then were not made on empty tables).
async fn fresh_tables(url: &str) -> Result<Vec<TableActivity>, LoadError> {
    let tables = table_activity(url)
        .await
        .map_err(|e| LoadError::Setup(format!("--fresh-database: {e}")))?;
    if let Some(stale) = tables.iter().find(|t| t.rows > 0 || t.analyzed) {
        return Err(LoadError::Setup(format!(
            "--fresh-database: table {} is not fresh ({} rows{}): start the server on a \
             newly created database (crates/loadgen/scripts/fresh-direct.sh does)",
            stale.table,
            stale.rows,
            if stale.analyzed { ", analyzed" } else { "" }
        )));
    }
    Ok(tables)
}

/// How each hot table was read since [`fresh_tables`].
async fn table_reads(url: &str, start: &[TableActivity]) -> Result<Vec<TableReads>, LoadError> {
    let end = table_activity(url)
        .await
        .map_err(|e| LoadError::Setup(format!("--fresh-database: {e}")))?;
    Ok(end
        .into_iter()
        .map(|e| {
            let s = start.iter().find(|s| s.table == e.table);
            let before = |f: fn(&TableActivity) -> i64| s.map_or(0, f);
            TableReads {
                rows: e.rows,
                seq_scans: e.seq_scan - before(|t| t.seq_scan),
                seq_rows_read: e.seq_tup_read - before(|t| t.seq_tup_read),
                index_scans: e.idx_scan - before(|t| t.idx_scan),
                inserted: e.inserted - before(|t| t.inserted),
                analyzed_by_end: e.analyzed,
                table: e.table,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_dispatcher_keeps_the_total_rate_round_robin_and_skips_full_queues() {
        let mut rxs = Vec::new();
        let mut txs = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = mpsc::channel(1_000);
            txs.push(tx);
            rxs.push(rx);
        }
        let (full_tx, _full_rx) = mpsc::channel(1);
        txs.push(full_tx);
        let (scheduled, skipped) = dispatch(txs, 500.0, Duration::from_secs(2)).await;
        assert_eq!(scheduled, 1_000);
        // The fifth sender takes one, then every later turn of it is skipped.
        assert_eq!(skipped, 199);
        for rx in &mut rxs {
            let mut n = 0;
            while rx.try_recv().is_ok() {
                n += 1;
            }
            assert_eq!(n, 200);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_end_when_the_condition_holds_or_the_deadline_passes() {
        let mut n = 0;
        assert!(
            wait_until(Instant::now() + Duration::from_secs(1), || {
                n += 1;
                n > 3
            })
            .await
        );
        assert!(!wait_until(Instant::now() + Duration::from_millis(100), || false).await);
    }

    #[test]
    fn every_run_has_a_bound() {
        use clap::Parser;
        let args = Args::try_parse_from(["chat-loadgen", "--scenario", "idle"]).unwrap();
        let bound = run_bound(&args);
        assert!(bound > args.duration && bound < Duration::from_secs(3_600));
    }
}
