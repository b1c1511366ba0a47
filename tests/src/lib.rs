//! Harness of the end-to-end suite: real servers on random ports, each with its own data
//! directory (SQLite) or its own PostgreSQL database, driven over real HTTP.
//!
//! Two ways to run a server:
//! - [`TestApp::spawn`]: in this test process (fast; most tests);
//! - [`NodeProcess::start`]: the `chat-node` binary as a separate process, which a test can
//!   stop, restart or kill -9.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod rows;
pub mod services;
pub mod tokens;
pub mod traffic;
pub mod ws;

use protocol::rest::{AuthResponse, LoginRequest, RegisterRequest};
use protocol::ErrorBody;
use reqwest::StatusCode;
use serde_json::Value;
use server::config::{Secret, Settings};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tempfile::TempDir;

/// Which storage a server under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded: an SQLite file in a fresh temporary data directory.
    Sqlite,
    /// A brand-new PostgreSQL database on the local server.
    Postgres,
}

impl Backend {
    /// Both backends, for tests that must hold on each.
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// Where a test's data lives, shared by every server the test starts on it.
pub struct TestStore {
    /// The backend.
    pub backend: Backend,
    /// The data directory (SQLite file, JWT secret).
    pub data_dir: TempDir,
    /// The PostgreSQL URL, for `Backend::Postgres`.
    pub database_url: Option<String>,
}

impl TestStore {
    /// A fresh, empty store.
    pub async fn new(backend: Backend) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(adapters_postgres::testing::fresh_database().await),
        };
        Self {
            backend,
            data_dir,
            database_url,
        }
    }

    /// Test settings pointing at this store.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_tests(self.data_dir.path());
        settings.database.url = self.database_url.as_deref().map(Secret::new);
        settings
    }

    /// Test settings (as [`Settings::for_tests`]) plus `tuning`, read the way the server reads
    /// its config files, so a key the server does not know yet is ignored rather than a
    /// compile error.
    pub fn tuned_settings(&self, tuning: &[(&str, String)]) -> Settings {
        let mut values: Vec<(String, String)> = vec![
            ("http.addr".into(), "127.0.0.1:0".into()),
            (
                "data.dir".into(),
                self.data_dir.path().display().to_string(),
            ),
            (
                "auth.jwt_secret".into(),
                "test-secret-test-secret-test-secret!".into(),
            ),
            ("auth.argon2_memory_kib".into(), "64".into()),
            ("auth.argon2_iterations".into(), "1".into()),
            ("auth.login_attempts_per_minute".into(), "10000".into()),
            ("auth.login_burst".into(), "10000".into()),
            ("auth.registrations_per_minute".into(), "10000".into()),
            ("auth.registration_burst".into(), "10000".into()),
            ("log.level".into(), "warn".into()),
        ];
        if let Some(url) = &self.database_url {
            values.push(("database.url".into(), url.clone()));
        }
        values.extend(tuning.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let dir = self
            .data_dir
            .path()
            .join(format!("tuned-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("config dir");
        std::fs::write(dir.join("default.toml"), cluster::render_toml(&values)).expect("config");
        Settings::load_from(&dir).expect("tuned settings load")
    }

    /// The SQLite file of an embedded store.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.path().join("chat.db")
    }

    /// Rows in every table, to prove a refused request changed nothing.
    pub async fn row_counts(&self) -> rows::RowCounts {
        match &self.database_url {
            Some(url) => rows::postgres(url).await,
            None => rows::sqlite(&self.sqlite_path()).await,
        }
    }
}

/// A server running inside the test process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// The port it listens on.
    pub port: u16,
    /// Its store.
    pub store: TestStore,
    /// A client with no cookies and short timeouts.
    pub client: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    /// A server with test settings on a fresh store.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server with test settings, changed by `tweak`, on a fresh store.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let store = TestStore::new(backend).await;
        Self::spawn_on(store, tweak).await
    }

    /// A server on an existing store (to restart on the same data).
    pub async fn spawn_on(store: TestStore, tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = store.settings();
        tweak(&mut settings);
        let app = server::startup::Application::build(settings)
            .await
            .expect("the server starts");
        let port = app.port();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            store,
            client: client(),
            server,
        }
    }

    /// A server on a fresh store with test settings plus `tuning` (dotted keys such as
    /// `realtime.heartbeat_interval_ms`, see [`cluster::keys`]); keys the server does not
    /// know are ignored, as in a config file.
    pub async fn spawn_tuned(backend: Backend, tuning: &[(&str, String)]) -> Self {
        let store = TestStore::new(backend).await;
        let settings = store.tuned_settings(tuning);
        Self::spawn_on(store, |s| *s = settings).await
    }

    /// A server on `storage`, opened by the test (so it can look at the storage's own
    /// counters), with test settings plus `tuning`. `store` names where the data lives.
    pub async fn spawn_with_storage(
        store: TestStore,
        storage: std::sync::Arc<dyn domain::ports::Storage>,
        tuning: &[(&str, String)],
    ) -> Self {
        let settings = store.tuned_settings(tuning);
        let app = server::startup::Application::build_with_storage(settings, storage)
            .expect("the server starts");
        let port = app.port();
        let server = tokio::spawn(app.run_until_stopped());
        Self {
            address: format!("http://127.0.0.1:{port}"),
            port,
            store,
            client: client(),
            server,
        }
    }

    /// Stops the server and hands back its store.
    pub async fn stop(self) -> TestStore {
        self.server.abort();
        let _ = self.server.await;
        self.store
    }

    /// A request builder against this server.
    pub fn api(&self) -> Api {
        Api {
            base: self.address.clone(),
            client: self.client.clone(),
        }
    }
}

/// A `reqwest` client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A thin JSON client for one server.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The HTTP client.
    pub client: reqwest::Client,
}

/// A request body of the protocol as the JSON value [`Api::post`] sends.
pub fn body(request: &impl serde::Serialize) -> Value {
    serde_json::to_value(request).expect("a request body serialises")
}

/// An id the helpers were given (as the server wrote it), as the protocol's types carry it.
pub fn uuid(id: &str) -> uuid::Uuid {
    id.parse()
        .unwrap_or_else(|e| panic!("{id:?} is not a UUID: {e}"))
}

/// A response: status and JSON body (`Value::Null` for an empty or non-JSON body).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Parsed body.
    pub body: Value,
}

/// An error answer's body is the protocol crate's [`ErrorBody`], exactly (its code one of
/// [`protocol::ErrorCode`]'s): it parses as one and writes back to the same JSON.
fn check_error_body(body: &Value) {
    let typed: ErrorBody = serde_json::from_value(body.clone()).unwrap_or_else(|e| {
        panic!("an error body that is not a protocol::ErrorBody ({e}): {body}")
    });
    let again = serde_json::to_value(&typed).expect("an ErrorBody serializes");
    assert_eq!(
        &again, body,
        "the error body is not what protocol::ErrorBody writes"
    );
}

impl Reply {
    /// `error.code` of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl Api {
    /// An API for another base URL (another node).
    pub fn at(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client: client(),
        }
    }

    /// Sends a request with an optional bearer token and raw body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.as_u16() >= 400 && body.get("error").is_some() {
            check_error_body(&body);
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GET with an optional token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// POST a JSON value.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            token,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// PATCH a JSON value.
    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(
            reqwest::Method::PATCH,
            path,
            token,
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    /// The text of `/metrics`: one snapshot of every series.
    pub async fn metrics_text(&self) -> String {
        let resp = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics");
        resp.text().await.expect("metrics body")
    }

    /// The value of a Prometheus metric on `/metrics` (summed over its label sets), or
    /// `None` when the server does not expose it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        let mut found = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or_default().trim();
            if metric == name {
                let value: f64 = value.trim().parse().expect("a metric value");
                found = Some(found.unwrap_or(0.0) + value);
            }
        }
        found
    }

    /// The value of one series of a Prometheus metric: the one whose labels include
    /// `label` (say `code="1002"`), or `None` when there is no such series.
    pub async fn metric_with(&self, name: &str, label: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(series, _)| {
                series.split('{').next() == Some(name)
                    && series
                        .split_once('{')
                        .is_some_and(|(_, labels)| labels.contains(label))
            })
            .map(|(_, value)| value.trim().parse().expect("a metric value"))
    }

    /// Registers a user named `name` with a unique email; panics unless 201.
    pub async fn register(&self, name: &str) -> TestUser {
        let local: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        let email = format!(
            "{}-{}@example.com",
            local.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let password = "correct horse battery staple";
        let reply = self
            .post(
                "/api/v1/auth/register",
                None,
                body(&RegisterRequest {
                    email,
                    password: password.to_owned(),
                    display_name: name.to_owned(),
                }),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "register {name}: {:?}",
            reply.body
        );
        TestUser::from_auth(&reply.body, password)
    }

    /// Logs in; panics unless 200.
    pub async fn login(&self, email: &str, password: &str) -> TestUser {
        let reply = self
            .post(
                "/api/v1/auth/login",
                None,
                body(&LoginRequest {
                    email: email.to_owned(),
                    password: password.to_owned(),
                }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "login: {:?}", reply.body);
        TestUser::from_auth(&reply.body, password)
    }
}

/// A registered user and its tokens.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Password.
    pub password: String,
    /// Display name.
    pub display_name: String,
    /// Access token.
    pub token: String,
    /// Refresh token.
    pub refresh_token: String,
}

impl TestUser {
    fn from_auth(body: &Value, password: &str) -> Self {
        let auth: AuthResponse = serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a protocol::rest::AuthResponse ({e}): {body}"));
        Self {
            id: auth.user.id.to_string(),
            email: auth.user.email,
            password: password.to_owned(),
            display_name: auth.user.display_name,
            token: auth.access_token,
            refresh_token: auth.refresh_token,
        }
    }

    /// The access token, for `Api` calls.
    pub fn t(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// How a starting node turned out.
enum Health {
    Up,
    Exited,
    TimedOut,
}

/// Polls `/healthz` for up to 10 s, noticing a node that exited (a port taken meanwhile).
async fn wait_healthy(address: &str, child: &mut tokio::process::Child) -> Health {
    let client = client();
    for _ in 0..200 {
        if let Ok(resp) = client.get(format!("{address}/healthz")).send().await {
            if resp.status().is_success() {
                return Health::Up;
            }
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Health::Exited;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Health::TimedOut
}

/// A free port on 127.0.0.1 (bound and released; a tiny race is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A server node running as a separate `chat-node` process.
pub struct NodeProcess {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    /// Its port.
    pub port: u16,
    child: tokio::process::Child,
    log: Option<PathBuf>,
}

impl NodeProcess {
    /// Starts a node with test-friendly settings on `store`, plus `env` overrides (an empty
    /// value removes the variable), and waits
    /// until `/healthz` answers.
    pub async fn start(store: &TestStore, env: &[(&str, String)]) -> Self {
        Self::spawn(store, env, None).await
    }

    /// Like [`NodeProcess::start`], with the node's stderr (its logs) written to a file
    /// that [`NodeProcess::logs`] reads.
    pub async fn start_logging(store: &TestStore, env: &[(&str, String)]) -> Self {
        let path = store
            .data_dir
            .path()
            .join(format!("node-{}.log", uuid::Uuid::new_v4().simple()));
        Self::spawn(store, env, Some(path)).await
    }

    /// Everything the node logged so far (only for [`NodeProcess::start_logging`]).
    pub fn logs(&self) -> String {
        let path = self.log.as_ref().expect("started with start_logging");
        std::fs::read_to_string(path).expect("node log")
    }

    async fn spawn(store: &TestStore, env: &[(&str, String)], log: Option<PathBuf>) -> Self {
        // A port found free can be taken by someone else before the node binds it: then the
        // node exits at once and we try another port.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Self::command(store, env, log.as_deref(), port)
                .spawn()
                .expect("chat-node starts");
            let address = format!("http://127.0.0.1:{port}");
            match wait_healthy(&address, &mut child).await {
                Health::Up => {
                    return Self {
                        address,
                        port,
                        child,
                        log,
                    }
                }
                Health::Exited => continue,
                Health::TimedOut => {
                    panic!("node on port {port} did not become healthy within 10 s")
                }
            }
        }
        panic!("no node could bind a free port in 5 attempts (see its output above)");
    }

    fn command(
        store: &TestStore,
        env: &[(&str, String)],
        log: Option<&Path>,
        port: u16,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(node_binary());
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CHAT_CONFIG_DIR", store.data_dir.path().join("no-config"))
            .env("CHAT_HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("CHAT_DATA__DIR", store.data_dir.path())
            .env(
                "CHAT_AUTH__JWT_SECRET",
                "test-secret-test-secret-test-secret!",
            )
            .env("CHAT_AUTH__ARGON2_MEMORY_KIB", "64")
            .env("CHAT_AUTH__ARGON2_ITERATIONS", "1")
            .env("CHAT_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "10000")
            .env("CHAT_AUTH__LOGIN_BURST", "10000")
            .env("CHAT_AUTH__REGISTRATIONS_PER_MINUTE", "10000")
            .env("CHAT_AUTH__REGISTRATION_BURST", "10000")
            .env("CHAT_LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        match log {
            Some(path) => {
                // The server logs to stdout (tracing's default); panics go to stderr.
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("node log file");
                let copy = file.try_clone().expect("node log file");
                cmd.stdout(Stdio::from(copy)).stderr(Stdio::from(file));
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        if let Some(url) = &store.database_url {
            cmd.env("CHAT_DATABASE__URL", url);
        }
        // An empty value removes the variable (e.g. no JWT secret: embedded mode makes one).
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        cmd
    }

    /// A JSON client for this node.
    pub fn api(&self) -> Api {
        Api::at(&self.address)
    }

    /// Sends SIGKILL without waiting (for clean-up in `Drop`).
    pub fn start_kill(&mut self) {
        let _ = self.child.start_kill();
    }

    /// SIGKILL: the process dies at once, with no clean-up.
    pub async fn kill9(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited successfully.
    pub async fn terminate(&mut self) -> bool {
        self.sigterm().await;
        self.wait_exit(Duration::from_secs(30)).await.success()
    }

    /// Sends SIGTERM and returns at once (the node shuts down meanwhile).
    pub async fn sigterm(&self) {
        let pid = self.child.id().expect("running");
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the node did not exit within {timeout:?}"))
            .expect("wait")
    }
}

/// The `chat-node` binary. Cargo builds a package's binaries before its integration tests
/// and puts them beside the `deps` folder the test executables run from.
pub fn node_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let bin = dir.join("chat-node");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (or `-p e2e`), which builds it",
        bin.display()
    );
    bin
}

/// The path of a fixture or other file under this crate.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
