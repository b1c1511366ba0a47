//! Private PostgreSQL and Redis servers for the fault tests: each test starts its own
//! processes on free ports with temporary data directories, kills them with -9 by PID,
//! starts them again on the same port and data, and stops them when dropped. The shared
//! servers of the machine (5432, 6379) are never touched.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (CI), `initdb` and
//! `postgres` run as the `postgres` user (uid and gid set at exec, no wrapper process, so
//! the PID killed is the server's own), on a data directory owned by it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a (re)started server may take to accept work.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Up to `times` tries of `attempt`, `pause` apart; whether one succeeded.
async fn attempts(times: usize, pause: Duration, mut attempt: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..times {
        if attempt().await {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    false
}

/// Waits for a server just spawned into `child`: `true` once `ready` says it answers,
/// `false` if it exited first (its port was taken, say; `child` is then `None`). Panics,
/// with its log, if it does neither within [`READY_WITHIN`].
async fn until_ready(
    child: &mut Option<Child>,
    poll: Duration,
    what: &str,
    log: &Path,
    ready: impl AsyncFn() -> bool,
) -> bool {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if let Some(running) = child.as_mut() {
            if let Ok(Some(_)) = running.try_wait() {
                *child = None;
                return false;
            }
        }
        if ready().await {
            return true;
        }
        tokio::time::sleep(poll).await;
    }
    panic!(
        "{what} was not ready within {READY_WITHIN:?}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The uid and gid to run PostgreSQL as: `None` when not root (run as ourselves).
fn postgres_identity() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("`id {}` failed: {e}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "`id {}` gave no number ({}); as root the private PostgreSQL needs a \
                     `postgres` user",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    if id(&["-u"]) != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

/// The directory of `initdb` and `postgres`: `CHAT_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn postgres_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CHAT_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install \
             postgresql, or set CHAT_TEST_PG_BIN to the directory of initdb and postgres)"
        )
    })
}

/// Sends SIGKILL to `pids` in one `kill` call (so none outlives the others by much).
fn sigkill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The PIDs whose parent is `parent` (from `/proc`).
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let _state = fields.next();
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Whether `pid` is gone (or a zombie, which holds nothing).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// A PostgreSQL and a Redis of one test, the fault tests' deployment.
pub struct PrivateServices {
    /// The test's PostgreSQL.
    pub pg: PrivatePostgres,
    /// The test's Redis.
    pub redis: PrivateRedis,
}

impl PrivateServices {
    /// Both servers, ready.
    pub async fn start() -> Self {
        Self {
            pg: PrivatePostgres::start().await,
            redis: PrivateRedis::start().await,
        }
    }

    /// A store on the private PostgreSQL, with a data directory of its own.
    pub fn store(&self) -> crate::TestStore {
        crate::TestStore {
            backend: crate::Backend::Postgres,
            data_dir: tempfile::tempdir().expect("temp dir"),
            database_url: Some(self.pg.url()),
        }
    }
}

/// A PostgreSQL server of one test: its own data directory and port.
pub struct PrivatePostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    identity: Option<(u32, u32)>,
    child: Option<Child>,
}

impl PrivatePostgres {
    /// `initdb` (trust auth, user `postgres`) and a server on a free port, ready for
    /// connections when this returns.
    pub async fn start() -> Self {
        let bin = postgres_bin_dir();
        let identity = postgres_identity();
        let dir = tempfile::Builder::new()
            .prefix("chat-pg-")
            .tempdir()
            .expect("temp dir");
        if let Some((uid, gid)) = identity {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("chown the data directory to postgres");
        }
        let mut pg = Self {
            port: 0,
            dir,
            bin,
            identity,
            child: None,
        };
        let started = Instant::now();
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A port found free can be taken before the server binds it: then try another.
        let up = attempts(5, Duration::ZERO, async || {
            pg.port = crate::free_port();
            pg.spawn_and_wait().await
        })
        .await;
        assert!(up, "the private PostgreSQL did not start: {}", pg.log());
        eprintln!(
            "[services] private PostgreSQL on port {} ready in {:?}",
            pg.port,
            started.elapsed()
        );
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the server's own maintenance
    /// database, which a test may use as its store (the server is the test's alone).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// kill -9 of the postmaster and every process it forked (backends, checkpointer...),
    /// by PID, in one signal; waits until they are gone.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("PostgreSQL is running");
        let postmaster = child.id();
        let mut pids = children_of(postmaster);
        pids.insert(0, postmaster);
        sigkill(&pids);
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pids.iter().all(|p| is_gone(*p)) {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL processes {pids:?} still alive 10 s after kill -9"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the server again on the same port and data directory (crash recovery);
    /// returns once it accepts connections.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9");
        // Right after a kill the old shared memory may still look in use for a moment.
        let up = attempts(20, Duration::from_millis(250), async || {
            self.spawn_and_wait().await
        })
        .await;
        assert!(up, "the private PostgreSQL did not restart: {}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.stdin(Stdio::null()).env_remove("PGDATA");
        if let Some((uid, gid)) = self.identity {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Spawns the server and waits for it to accept connections; `false` if it exited.
    async fn spawn_and_wait(&mut self) -> bool {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("postgres log");
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                // Durability against a killed process needs no fsync: what was written
                // is in the kernel's cache, which the kill does not touch.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "max_connections=60",
            ])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        let url = self.url();
        let what = format!("the private PostgreSQL on port {}", self.port);
        let log = self.dir.path().join("postgres.log");
        until_ready(
            &mut self.child,
            Duration::from_millis(50),
            &what,
            &log,
            async || accepts_queries(&url).await,
        )
        .await
    }
}

async fn accepts_queries(url: &str) -> bool {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    match AsyncPgConnection::establish(url).await {
        Ok(mut conn) => conn.batch_execute("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let postmaster = child.id();
            let mut pids = children_of(postmaster);
            pids.insert(0, postmaster);
            sigkill(&pids);
            let _ = child.wait();
        }
    }
}

/// A Redis server of one test: its own port, no persistence (a restart comes back empty,
/// as a cache without persistence does).
pub struct PrivateRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    /// A `redis-server` on a free port, answering `PING` when this returns.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("chat-redis-")
            .tempdir()
            .expect("temp dir");
        let mut redis = Self {
            port: 0,
            dir,
            child: None,
        };
        let up = attempts(5, Duration::ZERO, async || {
            redis.port = crate::free_port();
            redis.spawn_and_wait().await
        })
        .await;
        assert!(up, "the private Redis did not start: {}", redis.log());
        redis
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// kill -9 by PID; waits until it is gone.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("Redis is running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGSTOP by PID: Redis keeps its port and connections but answers nothing (a hung
    /// server), until [`PrivateRedis::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT: a paused Redis answers again (keys whose TTL passed meanwhile are gone).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("Redis is running").id();
        let status = Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Starts Redis again on the same port, empty; returns once it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart after kill9");
        let up = attempts(20, Duration::from_millis(100), async || {
            self.spawn_and_wait().await
        })
        .await;
        assert!(up, "the private Redis did not restart: {}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }

    async fn spawn_and_wait(&mut self) -> bool {
        let log = self.dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile"])
            .arg(&log)
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server does not start ({e}); install redis-server"));
        self.child = Some(child);
        let port = self.port;
        let what = format!("the private Redis on port {port}");
        until_ready(
            &mut self.child,
            Duration::from_millis(20),
            &what,
            &log,
            async || pong(port).await,
        )
        .await
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL works on a stopped process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a Redis on `port` answers `PING` with `+PONG`.
async fn pong(port: u16) -> bool {
    let Ok(Ok(mut tcp)) = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    if tcp.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), tcp.read_exact(&mut buf)).await,
        Ok(Ok(_)) if &buf == b"+PONG\r\n"
    )
}
