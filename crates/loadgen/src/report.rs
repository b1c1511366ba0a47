//! The result of a run: one serialisable struct, printed as a table or written as JSON.

use crate::cli::Scenario;
use crate::procstat::Machine;
use crate::track::Audit;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Percentiles of a latency histogram, in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when empty or absent).
    pub fn of(h: Option<&Histogram<u64>>) -> Self {
        match h {
            Some(h) if !h.is_empty() => Self {
                count: h.len(),
                p50_us: h.value_at_quantile(0.50),
                p95_us: h.value_at_quantile(0.95),
                p99_us: h.value_at_quantile(0.99),
                max_us: h.max(),
                mean_us: h.mean(),
            },
            _ => Self::default(),
        }
    }
}

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub struct RunSetup {
    /// Scenario.
    pub scenario: Scenario,
    /// Id naming the run's users.
    pub run_id: String,
    /// The server.
    pub target: String,
    /// `sqlite` or `postgres`.
    pub storage: String,
    /// Clients asked for.
    pub clients: usize,
    /// Members per conversation.
    pub conversation_size: usize,
    /// Conversations created.
    pub conversations: usize,
    /// Total send rate asked for, messages/s.
    pub rate: f64,
    /// Length of the traffic (or idle hold), s.
    pub duration_s: f64,
    /// Source addresses used.
    pub source_addrs: Vec<String>,
    /// Seconds spent inserting users.
    pub users_s: f64,
    /// Seconds spent creating conversations over REST.
    pub conversations_s: f64,
    /// Seconds until every client was connected (or gave up).
    pub connect_s: f64,
}

/// Connections.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Connections {
    /// Clients that connected and got `hello`.
    pub ready: u64,
    /// Clients that never did.
    pub failed: u64,
    /// Most sockets open at once.
    pub peak: u64,
    /// Upgrades refused with 429 (then retried).
    pub throttled: u64,
    /// Reconnects the run did not ask for.
    pub unplanned_reconnects: u64,
}

/// Traffic counted over the traffic window (`window_s`), and in total.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Traffic {
    /// Length of the window the rates are over, s.
    pub window_s: f64,
    /// Sends the dispatcher scheduled.
    pub scheduled: u64,
    /// Scheduled sends dropped because the client's queue was full (it was offline or slow).
    pub skipped: u64,
    /// Messages sent in the window.
    pub sent: u64,
    /// Messages acked (committed) in the window.
    pub acked: u64,
    /// Live first deliveries to recipients in the window.
    pub delivered: u64,
    /// Sent per second.
    pub sent_per_s: f64,
    /// Persisted (acked) per second.
    pub persisted_per_s: f64,
    /// Deliveries per second.
    pub deliveries_per_s: f64,
    /// Messages sent, whole run.
    pub sent_total: u64,
    /// Acked, whole run.
    pub acked_total: u64,
    /// Re-sent after reconnects (same `temp_id`).
    pub resent_total: u64,
    /// Refused by an `error` frame.
    pub send_failed_total: u64,
    /// Delivered live, whole run.
    pub delivered_total: u64,
    /// First received through a `sync` replay, whole run.
    pub replayed_total: u64,
    /// Deliveries the acked messages called for.
    pub expected_deliveries: u64,
    /// Sent but never acked nor refused at the end.
    pub unacked_at_end: u64,
    /// Seconds the drain took (until every acked message reached every member).
    pub drain_s: f64,
    /// Whether the drain completed before its timeout.
    pub drained: bool,
}

/// The storm's recovery.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Storm {
    /// Clients that dropped.
    pub dropped: u64,
    /// Clients that reconnected and finished their `sync`.
    pub recovered: u64,
    /// Drop -> recovered, per client.
    pub recovery: Percentiles,
}

/// The `persist` scenario: commits straight to the store, no server.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Persist {
    /// Writer tasks, each committing one batch at a time.
    pub writers: usize,
    /// Most messages per commit asked for (`--persist-batch`).
    pub max_batch: usize,
    /// From the first send due until the last commit returned, s.
    pub window_s: f64,
    /// Messages acked as created.
    pub created: u64,
    /// Created per second over the window: messages durably persisted/s.
    pub persisted_per_s: f64,
    /// `append_messages` calls that returned results.
    pub commits: u64,
    /// Commits per second over the window.
    pub commits_per_s: f64,
    /// Messages per commit, mean.
    pub messages_per_commit_mean: f64,
    /// Messages per commit, largest.
    pub messages_per_commit_max: u64,
    /// Commits that failed (nothing of them written).
    pub failed_commits: u64,
    /// Messages answered `Replayed` (every key is new: never expected).
    pub replayed: u64,
    /// Messages rejected (key reused, conversation not found).
    pub rejected: u64,
    /// Per-commit latency (the `append_messages` call).
    pub commit_latency: Percentiles,
    /// Messages read back with `messages_after` afterwards (distinct seqs).
    pub stored: u64,
    /// Of them, messages never acked as created (a failed commit that wrote something).
    pub stored_not_acked: u64,
    /// Seconds the read-back took.
    pub verify_s: f64,
}

/// Memory and CPU of the server and of the generator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    /// The server's pid, if known.
    pub server_pid: Option<u32>,
    /// The server runs inside the generator's process (tests): its RSS includes the generator.
    pub server_in_process: bool,
    /// Server RSS before the clients connected, KiB.
    pub server_rss_before_kib: Option<u64>,
    /// Server RSS with every client connected (after the settle time), KiB.
    pub server_rss_after_kib: Option<u64>,
    /// (after - before) / connections held, bytes.
    pub server_rss_per_connection_bytes: Option<u64>,
    /// Server CPU seconds during the traffic (or idle hold) window.
    pub server_cpu_s: Option<f64>,
    /// Generator CPU seconds during the same window.
    pub generator_cpu_s: Option<f64>,
    /// Generator RSS at the end, KiB.
    pub generator_rss_kib: Option<u64>,
}

/// The server's `/metrics`, read before and after.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricsScrape {
    /// `/metrics` answered.
    pub available: bool,
    /// What each series moved by over the run.
    pub delta: BTreeMap<String, f64>,
    /// The server's latency histograms over the run (`chat_*_latency_seconds`), by series.
    pub latency: BTreeMap<String, crate::metrics::ServerLatency>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// /proc/loadavg when the run ended.
    pub load_average_end: String,
    /// The run.
    pub setup: RunSetup,
    /// Connections.
    pub connections: Connections,
    /// Traffic.
    pub traffic: Traffic,
    /// Send -> receive, per recipient, live deliveries.
    pub delivery_latency: Percentiles,
    /// Send -> ack.
    pub ack_latency: Percentiles,
    /// The storm, when the scenario was `storm`.
    pub storm: Option<Storm>,
    /// The store's figures, when the scenario was `persist`.
    pub persist: Option<Persist>,
    /// Duplicates, gaps, acked-but-lost.
    pub correctness: Audit,
    /// Clients whose final `sync` did not complete, or that did not finish at all (their
    /// checks are then missing, and the run is not counted correct).
    pub unverified_clients: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Memory and CPU.
    pub resources: Resources,
    /// The server's own metrics.
    pub metrics: MetricsScrape,
    /// The hot tables of a `--fresh-database` run, as PostgreSQL's statistics saw them.
    pub fresh_database: Option<Vec<TableReads>>,
}

/// How one hot table was read over a `--fresh-database` run (it started empty and never
/// analyzed): from `pg_stat_user_tables` at the start and at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TableReads {
    /// The table.
    pub table: String,
    /// Rows at the end.
    pub rows: i64,
    /// Sequential scans over the run (plans gone bad read whole tables this way).
    pub seq_scans: i64,
    /// Rows those sequential scans read.
    pub seq_rows_read: i64,
    /// Index scans over the run.
    pub index_scans: i64,
    /// Rows inserted over the run.
    pub inserted: i64,
    /// Whether the planner had statistics of it by the end (autovacuum analyzed it).
    pub analyzed_by_end: bool,
}

impl Report {
    /// Nothing duplicated, missing or lost, every client connected and verified, every
    /// send acked (`persist`: every conversation read back, nothing stored unacked).
    pub fn correct(&self) -> bool {
        self.correctness.clean()
            && self.connections.failed == 0
            && self.unverified_clients == 0
            && self.traffic.unacked_at_end == 0
            && self.persist.is_none_or(|p| p.stored_not_acked == 0)
    }

    /// The report as an aligned text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "  {k:<34} {v}");
        };
        row(
            "scenario",
            format!(
                "{:?} ({} clients, conversations of {}, {} storage, run {})",
                s.scenario, s.clients, s.conversation_size, s.storage, s.run_id
            )
            .to_lowercase(),
        );
        row(
            "machine",
            format!(
                "{} cpus, {} MiB, kernel {}, load {} -> {}",
                self.machine.cpus,
                self.machine.memory_mib,
                self.machine.kernel,
                self.machine.load_average,
                self.load_average_end
            ),
        );
        row(
            "setup (users / convs / connect)",
            format!(
                "{:.2} s / {:.2} s / {:.2} s",
                s.users_s, s.conversations_s, s.connect_s
            ),
        );
        let c = &self.connections;
        let no_server = self.persist.is_some();
        if no_server {
            row(
                "connections held (peak)",
                "none: persist opens no WebSocket and contacts no server".into(),
            );
            row("server RSS", "absent (no server)".into());
        } else {
            row(
                "connections held (peak)",
                format!(
                    "{} ready, {} failed, peak {}, {} throttled upgrades, {} unplanned reconnects",
                    c.ready, c.failed, c.peak, c.throttled, c.unplanned_reconnects
                ),
            );
        }
        let r = &self.resources;
        if let (Some(before), Some(after)) = (r.server_rss_before_kib, r.server_rss_after_kib) {
            row(
                "server RSS before / after",
                format!(
                    "{before} KiB / {after} KiB ({} bytes per connection{})",
                    r.server_rss_per_connection_bytes
                        .map_or("?".into(), |b| b.to_string()),
                    if r.server_in_process {
                        ", server in this process"
                    } else {
                        ""
                    }
                ),
            );
        }
        row(
            "cpu s (server / generator)",
            format!(
                "{} / {}",
                r.server_cpu_s
                    .map_or(if no_server { "absent" } else { "?" }.into(), |v| format!(
                        "{v:.2}"
                    )),
                r.generator_cpu_s.map_or("?".into(), |v| format!("{v:.2}"))
            ),
        );
        if let Some(p) = &self.persist {
            let rate = if s.rate > 0.0 {
                format!("{:.0} msg/s", s.rate)
            } else {
                "as fast as possible (rate 0)".into()
            };
            row("rate asked", format!("{rate} for {:.1} s", s.duration_s));
            row(
                "writers / batch",
                format!(
                    "{} writers, up to {} messages per append_messages",
                    p.writers, p.max_batch
                ),
            );
            row(
                "persisted (created)",
                format!(
                    "{:.0} msg/s  ({} in {:.2} s; {} replayed, {} rejected)",
                    p.persisted_per_s, p.created, p.window_s, p.replayed, p.rejected
                ),
            );
            row(
                "commits",
                format!(
                    "{:.0} /s  ({} commits, {} failed; messages per commit mean {:.1}, max {})",
                    p.commits_per_s,
                    p.commits,
                    p.failed_commits,
                    p.messages_per_commit_mean,
                    p.messages_per_commit_max
                ),
            );
            row("latency commit", latency(&p.commit_latency));
            row(
                "read back (messages_after)",
                format!(
                    "{} stored, {} stored but not acked, {} conversations, {:.2} s",
                    p.stored, p.stored_not_acked, self.correctness.members_checked, p.verify_s
                ),
            );
        } else if s.scenario.has_traffic() {
            let t = &self.traffic;
            row(
                "rate asked",
                format!("{:.0} msg/s for {:.1} s", s.rate, s.duration_s),
            );
            row(
                "sent / persisted (acked)",
                format!(
                    "{:.0} msg/s / {:.0} msg/s  ({} / {} in {:.1} s, {} skipped)",
                    t.sent_per_s, t.persisted_per_s, t.sent, t.acked, t.window_s, t.skipped
                ),
            );
            row(
                "deliveries",
                format!("{:.0} /s ({} live)", t.deliveries_per_s, t.delivered),
            );
            row(
                "totals",
                format!(
                    "sent {} acked {} resent {} refused {} delivered {} replayed {} expected {} unacked {}",
                    t.sent_total,
                    t.acked_total,
                    t.resent_total,
                    t.send_failed_total,
                    t.delivered_total,
                    t.replayed_total,
                    t.expected_deliveries,
                    t.unacked_at_end
                ),
            );
            row(
                "drain",
                format!(
                    "{:.2} s{}",
                    t.drain_s,
                    if t.drained { "" } else { " (timed out)" }
                ),
            );
            row("latency send->receive", latency(&self.delivery_latency));
            row("latency send->ack", latency(&self.ack_latency));
        }
        if let Some(storm) = &self.storm {
            row(
                "storm recovery",
                format!(
                    "{} of {} recovered; {}",
                    storm.recovered,
                    storm.dropped,
                    latency(&storm.recovery)
                ),
            );
        }
        if let Some(tables) = &self.fresh_database {
            for t in tables {
                row(
                    &format!("fresh db: {}", t.table),
                    format!(
                        "{} rows, {} inserted; {} seq scans ({} rows read), {} index scans; {}",
                        t.rows,
                        t.inserted,
                        t.seq_scans,
                        t.seq_rows_read,
                        t.index_scans,
                        if t.analyzed_by_end {
                            "analyzed by the end"
                        } else {
                            "never analyzed"
                        }
                    ),
                );
            }
        }
        let a = &self.correctness;
        row(
            "duplicates / gaps / acked-but-lost",
            format!(
                "{} / {} / {}  ({} acked messages, {} member views, {} unverified clients, {} redundant replays)",
                a.duplicates,
                a.gaps,
                a.acked_but_lost,
                a.acked_messages,
                a.members_checked,
                self.unverified_clients,
                a.redundant_replays
            ),
        );
        if self.errors.is_empty() {
            row("errors", "none".into());
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            row("errors", list.join(", "));
        }
        if no_server {
            row("/metrics", "absent (no server)".into());
        } else if self.metrics.available {
            for (series, latency) in &self.metrics.latency {
                row(
                    &crate::metrics::latency_label(series),
                    crate::metrics::latency_line(latency),
                );
            }
            let headline = crate::metrics::headline(&self.metrics.delta);
            row("/metrics series moved", headline.len().to_string());
            for (name, value) in headline.iter().take(40) {
                row(&format!("  {name}"), format!("{value}"));
            }
        } else {
            row("/metrics", "not served".into());
        }
        row(
            "verdict",
            if self.correct() {
                "OK".into()
            } else {
                "FAILED: see duplicates/gaps/lost, failed or unverified clients, unacked".into()
            },
        );
        out
    }
}

fn latency(p: &Percentiles) -> String {
    if p.count == 0 {
        return "no samples".into();
    }
    format!(
        "p50 {} p95 {} p99 {} max {} (n={})",
        human_us(p.p50_us),
        human_us(p.p95_us),
        human_us(p.p99_us),
        human_us(p.max_us),
        p.count
    )
}

/// `850µs`, `12.3ms`, `2.10s`.
pub fn human_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sample() -> Report {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        Report {
            machine: Machine {
                cpus: 2,
                memory_mib: 24_000,
                kernel: "6.1".into(),
                open_files_limit: Some(20_000),
                local_port_range: Some("32768-60999".into()),
                load_average: "0.10 0.20 0.30".into(),
            },
            load_average_end: "1.00 0.50 0.40".into(),
            setup: RunSetup {
                scenario: Scenario::Direct,
                run_id: "abcd1234".into(),
                target: "127.0.0.1:8080".into(),
                storage: "sqlite".into(),
                clients: 10,
                conversation_size: 2,
                conversations: 5,
                rate: 100.0,
                duration_s: 2.0,
                source_addrs: vec!["127.0.0.1".into()],
                users_s: 0.1,
                conversations_s: 0.2,
                connect_s: 0.3,
            },
            connections: Connections {
                ready: 10,
                peak: 10,
                ..Connections::default()
            },
            traffic: Traffic {
                window_s: 2.0,
                sent: 200,
                acked: 200,
                delivered: 200,
                persisted_per_s: 100.0,
                drained: true,
                ..Traffic::default()
            },
            delivery_latency: Percentiles::of(Some(&h)),
            ack_latency: Percentiles::default(),
            storm: None,
            persist: None,
            correctness: Audit::default(),
            unverified_clients: 0,
            errors: BTreeMap::from([("frame:rate_limited".to_owned(), 3)]),
            resources: Resources::default(),
            metrics: MetricsScrape::default(),
            fresh_database: None,
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let p = sample().delivery_latency;
        assert_eq!(p.count, 1000);
        assert!((4_990..=5_010).contains(&p.p50_us), "{p:?}");
        assert!((9_890..=9_910).contains(&p.p99_us), "{p:?}");
        assert!(p.max_us >= 9_990);
        assert_eq!(Percentiles::of(None), Percentiles::default());
    }

    #[test]
    fn the_table_names_every_figure() {
        let table = sample().table();
        for needle in [
            "scenario",
            "direct (10 clients",
            "connections held",
            "persisted",
            "latency send->receive",
            "p99 9.9",
            "duplicates / gaps / acked-but-lost",
            "0 / 0 / 0",
            "frame:rate_limited=3",
            "/metrics",
            "verdict",
            "OK",
        ] {
            assert!(table.contains(needle), "{needle:?} missing from\n{table}");
        }
    }

    #[test]
    fn any_loss_fails_the_verdict() {
        let mut r = sample();
        assert!(r.correct());
        r.correctness.gaps = 1;
        assert!(!r.correct());
        assert!(r.table().contains("FAILED"));
        let mut r = sample();
        r.traffic.unacked_at_end = 1;
        assert!(!r.correct());
    }

    #[test]
    fn the_json_has_the_figures_by_name() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["setup"]["scenario"], "direct");
        assert_eq!(json["correctness"]["acked_but_lost"], 0);
        assert_eq!(json["delivery_latency"]["count"], 1000);
        assert_eq!(json["errors"]["frame:rate_limited"], 3);
        assert_eq!(json["machine"]["cpus"], 2);
    }

    #[test]
    fn the_servers_latency_histograms_get_one_line_each_and_a_place_in_the_json() {
        let mut r = sample();
        let delta = crate::metrics::parse(
            r#"chat_e2e_latency_seconds_bucket{le="0.002"} 60
chat_e2e_latency_seconds_bucket{le="0.01"} 100
chat_e2e_latency_seconds_bucket{le="+Inf"} 100
chat_e2e_latency_seconds_count 100
chat_messages_in_total{transport="ws"} 100
"#,
        );
        r.metrics = MetricsScrape {
            available: true,
            latency: crate::metrics::latencies(&delta),
            delta,
        };
        let table = r.table();
        assert!(
            table.contains("server e2e latency")
                && table.contains("p50 <= 2 ms, p99 <= 10 ms (n=100)"),
            "{table}"
        );
        assert!(table.contains("chat_messages_in_total{transport=\"ws\"}"));
        assert!(!table.contains("chat_e2e_latency_seconds_count"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        let e2e = &json["metrics"]["latency"]["chat_e2e_latency_seconds"];
        assert_eq!(e2e["count"], 100);
        assert_eq!(e2e["p50_le_s"], 0.002);
        assert_eq!(e2e["p99_le_s"], 0.01);
    }

    #[test]
    fn latencies_print_in_a_readable_unit() {
        assert_eq!(human_us(850), "850µs");
        assert_eq!(human_us(12_345), "12.35ms");
        assert_eq!(human_us(2_100_000), "2.10s");
    }
}
