//! The command line of `chat-loadgen`, and the checks that keep every run on loopback,
//! bounded in time and in count.

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Longest traffic phase a run may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);
/// Most clients (users and connections) one run may open.
pub const MAX_CLIENTS: usize = 250_000;
/// Highest total send rate one run may ask for, messages per second.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Most writer tasks of a `persist` run (each may hold a database connection).
pub const MAX_PERSIST_WRITERS: usize = 64;
/// Largest batch a `persist` writer may commit at once.
pub const MAX_PERSIST_BATCH: usize = 10_000;
/// Ephemeral ports usable per source address with the default `ip_local_port_range`
/// (32768-60999), less some slack for other sockets.
pub const DEFAULT_CONNS_PER_SOURCE: usize = 25_000;

/// What a run does once its clients are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Hold N connections for the duration; measure server memory per connection.
    Idle,
    /// N/2 direct conversations (pairs); both sides send; `--rate` messages/s in total.
    Direct,
    /// Groups of `--group-size`; every member sends; each message fans out to G-1 others.
    Group,
    /// Direct traffic, then every client drops its socket at half time and reconnects
    /// with `sync`; measures the time until each client has recovered.
    Storm,
    /// Storage only, no server and no WebSocket: N/2 pairs provisioned in the store,
    /// `--persist-writers` tasks append batches of up to `--persist-batch` messages with
    /// `MessageStore::append_messages`, as the server's group-commit batcher does.
    Persist,
}

impl Scenario {
    /// Whether the scenario sends messages.
    pub fn has_traffic(self) -> bool {
        !matches!(self, Scenario::Idle)
    }

    /// Whether the scenario talks to a server (`persist` only opens the store).
    pub fn needs_server(self) -> bool {
        !matches!(self, Scenario::Persist)
    }
}

/// `chat-loadgen`: load generator of the chat server (SPEC section 9). It only ever talks to
/// 127.0.0.1 and stops by itself.
#[derive(Debug, Clone, Parser)]
#[command(name = "chat-loadgen", version, about, long_about = None)]
pub struct Args {
    /// Scenario to run.
    #[arg(long, value_enum)]
    pub scenario: Scenario,

    /// The server, `127.0.0.1:PORT` (nothing but 127.0.0.1 is accepted).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_target)]
    pub target: SocketAddr,

    /// Other nodes of the same deployment (scale-out), comma-separated, 127.0.0.1 only:
    /// clients are spread round robin over `--target` and these, so the two members of a
    /// pair sit on different nodes. Provisioning and `/metrics` use `--target`.
    #[arg(long, value_delimiter = ',', value_parser = parse_target)]
    pub extra_targets: Vec<SocketAddr>,

    /// Clients: users provisioned and WebSocket connections opened (one per user).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,

    /// How long the traffic (or idle hold) lasts: `10`, `10s`, `500ms`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Total messages sent per second, over all clients (direct, group, storm, persist);
    /// persist also takes 0: as fast as the store commits.
    #[arg(long, default_value_t = 1_000.0)]
    pub rate: f64,

    /// Persist: concurrent writer tasks, each committing one batch at a time.
    #[arg(long, default_value_t = 4)]
    pub persist_writers: usize,

    /// Persist: most messages per `append_messages` call (the server's
    /// `realtime.commit_max_batch`).
    #[arg(long, default_value_t = 256)]
    pub persist_batch: usize,

    /// Members per group (group scenario).
    #[arg(long, default_value_t = 10)]
    pub group_size: usize,

    /// Message content length in bytes (at least the timestamp it carries).
    #[arg(long, default_value_t = 32)]
    pub content_bytes: usize,

    /// The server's data directory (SQLite file `chat.db` and the generated `jwt_secret`).
    #[arg(long, env = "CHAT_DATA__DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The server's database (`sqlite:PATH` or `postgres://...` on 127.0.0.1);
    /// unset: `<data-dir>/chat.db`.
    #[arg(long, env = "CHAT_DATABASE__URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The server's JWT signing key; unset: read `<data-dir>/jwt_secret` (embedded mode).
    #[arg(long, env = "CHAT_AUTH__JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// `iss` of the minted tokens (the server's `auth.issuer`).
    #[arg(long, env = "CHAT_AUTH__ISSUER", default_value = "chat-server")]
    pub jwt_issuer: String,

    /// `aud` of the minted tokens (the server's `auth.audience`).
    #[arg(long, env = "CHAT_AUTH__AUDIENCE", default_value = "chat")]
    pub jwt_audience: String,

    /// The server's process id, for its RSS and CPU time; unset: the process listening on
    /// the target port (found through /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Source addresses of the client sockets, comma-separated, all in 127.0.0.0/8;
    /// unset: 127.0.0.1, 127.0.0.2, ... one per `--conns-per-source` clients.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<Ipv4Addr>,

    /// Connections per source address before the next one is used.
    #[arg(long, default_value_t = DEFAULT_CONNS_PER_SOURCE)]
    pub conns_per_source: usize,

    /// WebSocket handshakes in flight at once (at start and in the storm).
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,

    /// Longest wait for all clients to connect (and, in the storm, to recover).
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Longest wait, after the traffic stops, for every acked message to reach every member.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// PostgreSQL: the run must start on a brand-new database (every hot table empty and
    /// never analyzed, so whatever plans the server's connections hold were made on empty
    /// tables, as on a new deployment) and the generator adds nothing before the measured
    /// traffic (no warm-up, no ANALYZE). Refused when the database is not fresh. The report
    /// then gives how the hot tables were read (`pg_stat_user_tables`): sequential and
    /// index scans, rows read and inserted, whether autovacuum analyzed them meanwhile.
    /// `crates/loadgen/scripts/fresh-direct.sh` makes such a database per run.
    #[arg(long)]
    pub fresh_database: bool,

    /// Idle: wait this long after the last connection before reading the server's RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Users inserted and conversations created concurrently during provisioning.
    #[arg(long, default_value_t = 64)]
    pub provision_concurrency: usize,

    /// Capacity of each client socket's WebSocket read buffer, in bytes (it is allocated
    /// up front, so it is the generator's memory per connection).
    #[arg(long, default_value_t = 4_096)]
    pub ws_read_buffer: usize,
}

/// A run that must not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(msg: impl Into<String>) -> Result<(), UsageError> {
    Err(UsageError(msg.into()))
}

impl Args {
    /// Refuses runs that are unbounded, pointless or aimed anywhere but loopback.
    pub fn validate(&self) -> Result<(), UsageError> {
        for target in self.targets() {
            ensure_loopback_target(target)?;
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return usage(format!("--clients must be 1..={MAX_CLIENTS}"));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return usage(format!(
                "--duration must be more than 0 and at most {}s",
                MAX_DURATION.as_secs()
            ));
        }
        for (name, d) in [
            ("--connect-timeout", self.connect_timeout),
            ("--drain-timeout", self.drain_timeout),
            ("--settle", self.settle),
        ] {
            if d > MAX_DURATION {
                return usage(format!(
                    "{name} must be at most {}s",
                    MAX_DURATION.as_secs()
                ));
            }
        }
        if self.connect_timeout.is_zero() {
            return usage("--connect-timeout must be more than 0");
        }
        match self.scenario {
            Scenario::Idle => {}
            Scenario::Direct | Scenario::Storm | Scenario::Persist => {
                if self.clients < 2 || !self.clients.is_multiple_of(2) {
                    return usage(
                        "direct, storm and persist pair clients: --clients must be even, >= 2",
                    );
                }
            }
            Scenario::Group => {
                if self.group_size < 2 || self.group_size > self.clients {
                    return usage("--group-size must be 2..=--clients");
                }
                if !self.clients.is_multiple_of(self.group_size) {
                    return usage("--clients must be a multiple of --group-size");
                }
            }
        }
        if self.scenario == Scenario::Persist {
            if !(self.rate >= 0.0 && self.rate <= MAX_RATE) {
                return usage(format!(
                    "--rate must be 0 (as fast as possible) to {MAX_RATE} for persist"
                ));
            }
            if self.persist_writers == 0 || self.persist_writers > MAX_PERSIST_WRITERS {
                return usage(format!(
                    "--persist-writers must be 1..={MAX_PERSIST_WRITERS}"
                ));
            }
            if self.persist_batch == 0 || self.persist_batch > MAX_PERSIST_BATCH {
                return usage(format!("--persist-batch must be 1..={MAX_PERSIST_BATCH}"));
            }
            let max_chars = domain::Limits::default().max_content_chars;
            if self.content_bytes > max_chars {
                return usage(format!(
                    "--content-bytes must be at most {max_chars} (the server's default limit)"
                ));
            }
        } else if self.scenario.has_traffic() && !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return usage(format!("--rate must be more than 0 and at most {MAX_RATE}"));
        }
        if self.conns_per_source == 0 || self.conns_per_source > 64_000 {
            return usage("--conns-per-source must be 1..=64000");
        }
        if self.connect_concurrency == 0 || self.provision_concurrency == 0 {
            return usage("--connect-concurrency and --provision-concurrency must be >= 1");
        }
        if self.ws_read_buffer < 256 {
            return usage("--ws-read-buffer must be at least 256 bytes");
        }
        for addr in &self.source_addrs {
            if !addr.is_loopback() {
                return usage(format!("source address {addr} is not in 127.0.0.0/8"));
            }
        }
        let sources = self.source_addrs().len();
        if sources.saturating_mul(self.conns_per_source) < self.clients {
            return usage(format!(
                "{} clients need more source addresses than {sources} x {} connections",
                self.clients, self.conns_per_source
            ));
        }
        if let Some(url) = &self.database_url {
            ensure_local_database_url(url)?;
        }
        if self.fresh_database {
            let postgres = self
                .database_url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
            if !postgres || !self.scenario.has_traffic() || !self.scenario.needs_server() {
                return usage(
                    "--fresh-database needs a server scenario with traffic (direct, group, \
                     storm) and --database-url postgres://...",
                );
            }
        }
        Ok(())
    }

    /// Every node clients connect to: `--target` first.
    pub fn targets(&self) -> Vec<SocketAddr> {
        std::iter::once(self.target)
            .chain(self.extra_targets.iter().copied())
            .collect()
    }

    /// The source address of each block of `--conns-per-source` clients.
    pub fn source_addrs(&self) -> Vec<Ipv4Addr> {
        if !self.source_addrs.is_empty() {
            return self.source_addrs.clone();
        }
        let needed = self.clients.div_ceil(self.conns_per_source.max(1)).max(1);
        // 127.0.0.1 .. 127.0.0.254, then 127.0.1.1 ...: all routed to `lo` on Linux.
        (0..needed)
            .map(|i| {
                let i = u32::try_from(i).unwrap_or(u32::MAX);
                let host = (i / 254) * 256 + (i % 254) + 1;
                Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + host)
            })
            .collect()
    }

    /// The source address of client `index`.
    pub fn source_for(sources: &[Ipv4Addr], per_source: usize, index: usize) -> Ipv4Addr {
        let block = index / per_source.max(1);
        sources
            .get(block)
            .or_else(|| sources.last())
            .copied()
            .unwrap_or(Ipv4Addr::LOCALHOST)
    }
}

/// Only 127.0.0.1 is a target.
pub fn ensure_loopback_target(addr: SocketAddr) -> Result<(), UsageError> {
    if addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return usage(format!(
            "refusing target {addr}: chat-loadgen only ever targets 127.0.0.1"
        ));
    }
    Ok(())
}

/// A PostgreSQL URL must name 127.0.0.1 or localhost; `sqlite:` paths are local anyway.
pub fn ensure_local_database_url(url: &str) -> Result<(), UsageError> {
    let url = url.trim();
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"));
    let Some(rest) = rest else {
        return Ok(());
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    if matches!(host, "127.0.0.1" | "localhost" | "::1") {
        Ok(())
    } else {
        // The URL is not echoed: it may hold a password.
        usage("refusing a database that is not on 127.0.0.1 or localhost")
    }
}

/// `127.0.0.1:PORT`, also written `http://127.0.0.1:PORT`, and nothing else.
pub fn parse_target(raw: &str) -> Result<SocketAddr, String> {
    let trimmed = raw
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    let addr: SocketAddr = trimmed
        .parse()
        .map_err(|_| format!("{raw:?} is not IP:PORT"))?;
    ensure_loopback_target(addr).map_err(|e| e.0)?;
    Ok(addr)
}

/// `10`, `10s`, `1.5s`, `500ms`, `2m`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, unit) = match raw.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration (10s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => value / 1_000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{raw:?}: unit must be ms, s or m")),
    };
    if !secs.is_finite() || !(0.0..=1e7).contains(&secs) {
        return Err(format!("{raw:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["chat-loadgen"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("arguments parse")
    }

    #[test]
    fn defaults_are_a_short_bounded_run_on_loopback() {
        let a = parse(&["--scenario", "direct"]);
        assert_eq!(a.target, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(a.clients, 100);
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.source_addrs(), vec![Ipv4Addr::LOCALHOST]);
        a.validate().unwrap();
    }

    #[test]
    fn a_fresh_database_run_needs_postgres_and_traffic_through_a_server() {
        let pg = "postgres://postgres@127.0.0.1:5432/fresh";
        let ok = parse(&[
            "--scenario",
            "direct",
            "--fresh-database",
            "--database-url",
            pg,
        ]);
        assert!(ok.fresh_database);
        ok.validate().unwrap();
        assert!(!parse(&["--scenario", "direct"]).fresh_database);
        for refused in [
            parse(&["--scenario", "direct", "--fresh-database"]),
            parse(&[
                "--scenario",
                "direct",
                "--fresh-database",
                "--database-url",
                "sqlite:/tmp/x.db",
            ]),
            parse(&[
                "--scenario",
                "idle",
                "--fresh-database",
                "--database-url",
                pg,
            ]),
            parse(&[
                "--scenario",
                "persist",
                "--fresh-database",
                "--database-url",
                pg,
            ]),
        ] {
            let err = refused.validate().unwrap_err().to_string();
            assert!(err.contains("--fresh-database"), "{err}");
        }
    }

    #[test]
    fn every_option_parses() {
        let a = parse(&[
            "--scenario",
            "group",
            "--target",
            "http://127.0.0.1:9000/",
            "--clients",
            "40",
            "--duration",
            "1500ms",
            "--rate",
            "250",
            "--group-size",
            "8",
            "--content-bytes",
            "100",
            "--data-dir",
            "/tmp/d",
            "--database-url",
            "postgres://u:pw@127.0.0.1:5432/chat",
            "--jwt-secret",
            "s",
            "--server-pid",
            "42",
            "--json",
            "out.json",
            "--source-addrs",
            "127.0.0.2,127.0.0.3",
            "--connect-timeout",
            "1m",
        ]);
        assert_eq!(a.scenario, Scenario::Group);
        assert_eq!(a.target.port(), 9000);
        assert_eq!(a.duration, Duration::from_millis(1500));
        assert_eq!(a.group_size, 8);
        assert_eq!(a.server_pid, Some(42));
        assert_eq!(
            a.source_addrs(),
            vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)]
        );
        assert_eq!(a.connect_timeout, Duration::from_secs(60));
        assert_eq!(a.targets().len(), 1);
        a.validate().unwrap();
        let b = parse(&[
            "--scenario",
            "direct",
            "--extra-targets",
            "127.0.0.1:8081,127.0.0.1:8082",
        ]);
        assert_eq!(b.targets()[2], "127.0.0.1:8082".parse().unwrap());
        let remote = [
            "chat-loadgen",
            "--scenario",
            "idle",
            "--extra-targets",
            "10.1.1.1:80",
        ];
        assert!(Args::try_parse_from(remote).is_err());
    }

    #[test]
    fn any_target_but_127_0_0_1_is_refused() {
        for target in [
            "10.0.0.1:8080",
            "192.168.1.2:80",
            "0.0.0.0:8080",
            "[::1]:8080",
            "127.0.0.2:8080",
            "example.com:80",
        ] {
            let argv = ["chat-loadgen", "--scenario", "idle", "--target", target];
            assert!(Args::try_parse_from(argv).is_err(), "{target} accepted");
        }
    }

    #[test]
    fn a_remote_database_or_source_address_is_refused() {
        let mut a = parse(&["--scenario", "idle"]);
        a.database_url = Some("postgres://u:secretpw@db.example.com/chat".into());
        let err = a.validate().unwrap_err();
        assert!(!err.0.contains("secretpw"), "{err}");
        for ok in [
            "postgres://postgres@127.0.0.1:5432/x",
            "postgresql://localhost/x",
            "postgres://u:p@[::1]:5432/x",
            "sqlite:/tmp/chat.db",
        ] {
            a.database_url = Some(ok.into());
            a.validate().unwrap();
        }
        a.database_url = None;
        a.source_addrs = vec![Ipv4Addr::new(10, 0, 0, 1)];
        assert!(a.validate().is_err());
    }

    #[test]
    fn runs_must_be_bounded_and_consistent() {
        let bad: &[&[&str]] = &[
            &["--scenario", "direct", "--clients", "3"],
            &["--scenario", "storm", "--clients", "0"],
            &[
                "--scenario",
                "group",
                "--clients",
                "10",
                "--group-size",
                "4",
            ],
            &[
                "--scenario",
                "group",
                "--clients",
                "10",
                "--group-size",
                "1",
            ],
            &["--scenario", "direct", "--duration", "0"],
            &["--scenario", "direct", "--duration", "2h"],
            &["--scenario", "direct", "--duration", "7200"],
            &["--scenario", "direct", "--rate", "0"],
            &["--scenario", "idle", "--clients", "1000000"],
            &[
                "--scenario",
                "idle",
                "--clients",
                "30",
                "--conns-per-source",
                "10",
                "--source-addrs",
                "127.0.0.1",
            ],
        ];
        for extra in bad {
            let mut argv = vec!["chat-loadgen"];
            argv.extend_from_slice(extra);
            let refused = match Args::try_parse_from(argv) {
                Ok(a) => a.validate().is_err(),
                Err(_) => true,
            };
            assert!(refused, "{extra:?} accepted");
        }
    }

    #[test]
    fn persist_takes_rate_zero_writers_and_a_batch_size() {
        let a = parse(&["--scenario", "persist"]);
        assert_eq!((a.persist_writers, a.persist_batch), (4, 256));
        assert!(!a.scenario.needs_server() && Scenario::Direct.needs_server());
        a.validate().unwrap();
        let b = parse(&[
            "--scenario",
            "persist",
            "--rate",
            "0",
            "--persist-writers",
            "8",
            "--persist-batch",
            "1000",
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/x",
        ]);
        assert_eq!((b.rate, b.persist_writers, b.persist_batch), (0.0, 8, 1000));
        b.validate().unwrap();
        let bad: &[&[&str]] = &[
            &["--clients", "5"],
            &["--rate", "-1"],
            &["--persist-writers", "0"],
            &["--persist-writers", "65"],
            &["--persist-batch", "0"],
            &["--persist-batch", "10001"],
            &["--content-bytes", "4001"],
            &["--database-url", "postgres://postgres@10.0.0.5:5432/x"],
        ];
        for extra in bad {
            let mut argv = vec!["chat-loadgen", "--scenario", "persist"];
            argv.extend_from_slice(extra);
            let refused = match Args::try_parse_from(argv) {
                Ok(a) => a.validate().is_err(),
                Err(_) => true,
            };
            assert!(refused, "{extra:?} accepted");
        }
    }

    #[test]
    fn many_clients_spread_over_enough_source_addresses() {
        let a = parse(&["--scenario", "idle", "--clients", "100000"]);
        let sources = a.source_addrs();
        assert_eq!(sources.len(), 4);
        assert_eq!(sources[3], Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(Args::source_for(&sources, 25_000, 0), Ipv4Addr::LOCALHOST);
        assert_eq!(
            Args::source_for(&sources, 25_000, 24_999),
            Ipv4Addr::LOCALHOST
        );
        assert_eq!(
            Args::source_for(&sources, 25_000, 25_000),
            Ipv4Addr::new(127, 0, 0, 2)
        );
        let b = parse(&[
            "--scenario",
            "idle",
            "--clients",
            "200000",
            "--conns-per-source",
            "700",
        ]);
        let many = b.source_addrs();
        assert_eq!(many.len(), 286);
        assert_eq!(many[253], Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(many[254], Ipv4Addr::new(127, 0, 1, 1));
        b.validate().unwrap();
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5s").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "x", "10h", "-1s", "1e30"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
