//! The documented load-balancer deployment (`docs/deployment.md`): Debian's nginx, run as
//! this test's own process with `deploy/nginx/chat.conf.template` filled in, in front of two
//! `chat-node` processes on PostgreSQL and Redis. Two users land on different nodes through
//! the one nginx listener (no sticky sessions), talk over REST and WebSockets through it,
//! and the nodes key their per-IP limits on the real client address that nginx forwards,
//! never on one a client wrote itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::cluster::{self, quick, Deployment};
use e2e::ws::{WsClient, WsConnect, WAIT};
use e2e::{crate_path, free_port, Api};
use reqwest::StatusCode;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The site configuration the deployment guide shows.
const TEMPLATE: &str = "deploy/nginx/chat.conf.template";
/// Login attempts per client IP (and per account) a node allows at once in this test.
const LOGIN_BURST: u32 = 3;

/// Distinct clients on loopback: nginx and the nodes see them as different peers.
const ALICE_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BOB_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const DIRECT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_through_nginx_spans_both_nodes_with_real_client_ips() {
    let mut tuning = quick(&[]);
    tuning.extend([
        ("http.trust_forwarded_for", "true".to_owned()),
        // nginx reaches the nodes from 127.0.0.1; the test's clients use other addresses.
        ("http.trusted_proxies", "127.0.0.1".to_owned()),
        ("auth.login_burst", LOGIN_BURST.to_string()),
        ("auth.login_attempts_per_minute", "1".to_owned()),
    ]);
    let mut d = Deployment::scale_out(&tuning, 2).await;
    let nodes = [d.api(0), d.api(1)];
    let proxy = Nginx::start(&[d.base(0), d.base(1)]).await;
    let api = Api::at(&proxy.base);

    // REST through the proxy.
    let ready = api.get("/readyz", None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "/readyz through nginx: {ready:?}"
    );
    let alice = api.register("Alice").await;
    let bob = api.register("Bob").await;
    let conv = cluster::direct(&api, &alice, &bob).await;

    // WebSocket upgrades through the proxy, as a browser on the proxy's origin makes them
    // (the nodes check Origin against the Host nginx passes on).
    let (mut ws_alice, _) = WsConnect::all(&proxy.base, &alice.token)
        .origin(&proxy.base)
        .from_address(ALICE_IP)
        .open_ready("Alice through nginx")
        .await;
    let alice_node = node_holding_the_one_session(&nodes).await;
    let (mut ws_bob, _) = WsConnect::all(&proxy.base, &bob.token)
        .origin(&proxy.base)
        .from_address(BOB_IP)
        .open_ready("Bob through nginx")
        .await;
    let sessions = node_sessions(&nodes).await;
    assert_eq!(
        sessions,
        [1.0, 1.0],
        "nginx sent Bob's socket to the node without one (Alice is on node {alice_node}): \
         sessions per node {sessions:?}"
    );
    println!("Alice's socket is on node {alice_node}, Bob's on the other; sessions {sessions:?}");

    // Live both ways, across the two nodes.
    ws_alice
        .send_acked(&conv, "hello from behind nginx", "a-1")
        .await;
    expect_message(&mut ws_bob, "hello from behind nginx").await;
    cluster::send_rest(&api, &bob, &conv, "a REST reply through nginx", "b-1").await;
    expect_message(&mut ws_alice, "a REST reply through nginx").await;

    // The nodes key per-IP limits on the client nginx saw: Alice's address runs out of
    // login attempts on both nodes (nginx spreads REST calls over them: a burst each),
    // whatever X-Forwarded-For she writes herself...
    let through_alice = reqwest_from(ALICE_IP);
    let burst = LOGIN_BURST as usize;
    let mut statuses = Vec::new();
    let exhausted = |statuses: &[StatusCode]| {
        let allowed = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        allowed == 2 * burst
            && statuses.len() >= burst
            && statuses[statuses.len() - burst..]
                .iter()
                .all(|s| *s == StatusCode::TOO_MANY_REQUESTS)
    };
    while !exhausted(&statuses) {
        assert!(
            statuses.len() < 10 * burst,
            "Alice's attempts through nginx never ran out: {statuses:?}"
        );
        let forged = format!("198.51.100.{}", statuses.len() + 1);
        let status = failed_login(&through_alice, &proxy.base, Some(&forged)).await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "login through nginx: {status}"
        );
        statuses.push(status);
        let allowed = statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count();
        assert!(
            allowed <= 2 * burst,
            "more than a burst per node let through: {statuses:?}"
        );
    }
    // ...while Bob's address, behind the same nginx peer (127.0.0.1), still may try.
    let through_bob = reqwest_from(BOB_IP);
    let bob_try = failed_login(&through_bob, &proxy.base, None).await;
    assert_eq!(
        bob_try,
        StatusCode::UNAUTHORIZED,
        "another client behind the same proxy is not throttled with Alice"
    );
    // A client that reaches a node directly is not a trusted proxy: its header is ignored
    // and it is throttled on its own address after one burst, however it varies the header.
    let direct = reqwest_from(DIRECT_IP);
    let direct_after = failed_logins_until_429(&direct, &d.base(0)).await;
    assert_eq!(
        direct_after, LOGIN_BURST as usize,
        "a forged X-Forwarded-For from a non-proxy peer counted as another client"
    );
    println!(
        "logins through nginx from one address: {statuses:?}; direct: 429 after {direct_after}"
    );
    let node_ports = [d.node_mut(0).port, d.node_mut(1).port];

    // SIGTERM of Bob's node: its socket closes with 1001 and Bob reconnects through the
    // same listener to the node still up (nginx passes over the draining or stopped one).
    let bob_node = 1 - alice_node;
    assert!(d.node_mut(bob_node).terminate().await, "a clean exit");
    let closed = ws_bob.wait_closed(WAIT).await;
    assert_eq!(closed.code, Some(1001), "{closed:?}");
    let (mut ws_bob, _) = WsConnect::all(&proxy.base, &bob.token)
        .from_address(BOB_IP)
        .open_ready("Bob through nginx again")
        .await;
    wait_for_sessions(&nodes[alice_node], 2.0).await;
    ws_alice
        .send_acked(&conv, "still here after the restart", "a-2")
        .await;
    expect_message(&mut ws_bob, "still here after the restart").await;

    // The access log (a WebSocket's line is written when it closes) names both nodes and
    // never the token of a WebSocket URL.
    let log = proxy.access_log();
    assert!(log.contains("\"GET /ws\" 101"), "{log}");
    for (node, port) in node_ports.iter().enumerate() {
        assert!(
            log.contains(&format!("127.0.0.1:{port}")),
            "node {node}: {log}"
        );
    }
    assert!(
        !log.contains(&bob.token) && !log.contains("token="),
        "a token reached the access log"
    );
}

#[test]
fn the_deployment_guide_shows_the_files_in_deploy_verbatim() {
    let guide = std::fs::read_to_string(repo_path("docs/deployment.md")).expect("the guide");
    for file in [
        TEMPLATE,
        "deploy/nginx/nginx.conf",
        "deploy/chat-server.service",
        "deploy/compose.yaml",
        "Dockerfile",
    ] {
        let text = std::fs::read_to_string(repo_path(file)).expect(file);
        assert!(
            guide.contains(text.trim_end()),
            "docs/deployment.md must show {file} as it is (copy it in again)"
        );
    }
}

#[test]
fn the_operator_files_set_only_settings_that_exist() {
    let known = documented_keys();
    for file in [
        "deploy/compose.yaml",
        "deploy/chat-server.env.example",
        "deploy/chat-server.service",
        "Dockerfile",
    ] {
        let text = std::fs::read_to_string(repo_path(file)).expect(file);
        let names = chat_variables(&text);
        assert!(!names.is_empty(), "{file} sets no CHAT_ variable");
        for name in names {
            // Settings are CHAT_SECTION__KEY; others (CHAT_CONFIG_DIR, compose's and the
            // nginx template's own variables) are not keys.
            if !name.contains("__") {
                continue;
            }
            let key = name
                .trim_start_matches("CHAT_")
                .to_lowercase()
                .replacen("__", ".", 1);
            assert!(
                known.contains(&key),
                "{file} sets {name}, but config/default.toml has no key {key}"
            );
        }
    }
}

/// Every `section.key` of `config/default.toml`, the commented-out ones (no default) too.
fn documented_keys() -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string(repo_path("config/default.toml")).expect("default.toml");
    let mut section = String::new();
    let mut keys = std::collections::BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let assignment = line.strip_prefix("# ").unwrap_or(line);
        if let Some((key, _)) = assignment.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !section.is_empty() {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    keys
}

/// The `CHAT_...` names a file sets (`NAME=` or `NAME:`), comments aside.
fn chat_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for (at, _) in line.match_indices("CHAT_") {
            let name: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let rest = &line[at + name.len()..];
            if rest.starts_with('=') || rest.starts_with(':') {
                names.push(name);
            }
        }
    }
    names
}

/// A path from the repository root.
fn repo_path(rel: &str) -> PathBuf {
    crate_path("..").join(rel)
}

/// Waits until the two nodes hold one session between them; the index of the one holding it.
async fn node_holding_the_one_session(nodes: &[Api; 2]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = node_sessions(nodes).await;
        if now == [1.0, 0.0] || now == [0.0, 1.0] {
            return usize::from(now[1] == 1.0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected one session on one node, found {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `node` reports `count` open sessions.
async fn wait_for_sessions(node: &Api, count: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = node.metric("chat_sessions").await;
        if now == Some(count) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {count} sessions, found {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn node_sessions(nodes: &[Api; 2]) -> [f64; 2] {
    let mut out = [0.0; 2];
    for (i, node) in nodes.iter().enumerate() {
        out[i] = node.metric("chat_sessions").await.expect("chat_sessions");
    }
    out
}

async fn expect_message(ws: &mut WsClient, content: &str) {
    let frame = ws
        .recv_where(&format!("message {content:?}"), WAIT, |f| {
            f["type"] == "message" && f["message"]["content"] == content
        })
        .await;
    assert_eq!(frame["message"]["content"], content);
}

/// An HTTP client whose connections come from `ip`.
fn reqwest_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A login with an unknown email (so the per-account bucket is always fresh), optionally
/// with a forged `X-Forwarded-For`; its status.
async fn failed_login(client: &reqwest::Client, base: &str, forged: Option<&str>) -> StatusCode {
    let email = format!("nobody-{}@example.com", uuid::Uuid::new_v4().simple());
    let mut request = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "wrong password"}));
    if let Some(forged) = forged {
        request = request.header("x-forwarded-for", forged);
    }
    request.send().await.expect("login sent").status()
}

/// Failed logins, each with another forged `X-Forwarded-For`, until one gets 429; how many
/// got 401 before it.
async fn failed_logins_until_429(client: &reqwest::Client, base: &str) -> usize {
    for attempt in 0..4 * LOGIN_BURST as usize {
        let forged = format!("198.51.100.{}", attempt + 1);
        let status = failed_login(client, base, Some(&forged)).await;
        match status {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => return attempt,
            other => panic!("login attempt {attempt}: {other}"),
        }
    }
    panic!(
        "no 429 after {} attempts from one address: its forged X-Forwarded-For was believed",
        4 * LOGIN_BURST
    );
}

/// nginx as a process of this test: its own prefix, configuration, pid, logs and temp
/// paths in a temporary directory, on a free port, in the foreground (`daemon off`).
struct Nginx {
    /// `http://127.0.0.1:PORT`
    base: String,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Nginx {
    /// Starts nginx with the guide's site configuration in front of `nodes`.
    async fn start(nodes: &[String; 2]) -> Self {
        let binary = nginx_binary();
        let dir = tempfile::tempdir().expect("nginx dir");
        // Workers run unprivileged when nginx starts as root: let them reach their paths.
        set_mode(dir.path(), 0o755);
        let port = free_port();
        let authority = |base: &str| base.trim_start_matches("http://").to_owned();
        let access_log = dir.path().join("access.log");
        let site = render(
            &std::fs::read_to_string(repo_path(TEMPLATE)).expect(TEMPLATE),
            &[
                ("CHAT_NODE_1", authority(&nodes[0])),
                ("CHAT_NODE_2", authority(&nodes[1])),
                ("CHAT_LISTEN", format!("127.0.0.1:{port}")),
                ("CHAT_ACCESS_LOG", access_log.display().to_string()),
            ],
        );
        std::fs::write(dir.path().join("chat.conf"), site).expect("site config");
        std::fs::write(dir.path().join("nginx.conf"), main_config(dir.path())).expect("config");
        // Output to a file, not the test's pipes: a worker outliving the test would hold them.
        let output = std::fs::File::create(dir.path().join("output.log")).expect("output log");
        let mut child = std::process::Command::new(&binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("output log"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self { base, dir, child };
            }
            if let Ok(Some(status)) = child.try_wait() {
                let read =
                    |name| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
                panic!(
                    "nginx exited ({status}) before listening on {port}:\n{}{}",
                    read("output.log"),
                    read("error.log")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not listen on {port} within 5 s");
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM, so the master stops its workers (after a SIGKILL of the master they would
    /// live on); SIGKILL if it has not exited within 5 s.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The main configuration around the site file: everything nginx writes stays in `dir`.
fn main_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   include {d}/chat.conf;\n\
         }}\n"
    )
}

/// `template` with each `${NAME}` replaced, as `envsubst` would; panics on one left over.
fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    let config: String = out
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    assert!(
        !config.contains("${"),
        "a placeholder of {TEMPLATE} was not filled in"
    );
    out
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Debian's nginx: found, or installed with apt-get when this test runs as root.
fn nginx_binary() -> PathBuf {
    let found = || {
        ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(path) = found() {
        return path;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "nginx is not installed and this test is not root: `apt-get install -y nginx` \
         (Debian's package; the test starts its own process, not the service)"
    );
    eprintln!("nginx is missing: installing Debian's package");
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed = apt(&["install", "-y", "-qq", "nginx"])
        || (apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "nginx"]));
    assert!(installed, "apt-get install -y nginx failed");
    found().expect("nginx installed but not found in /usr/sbin")
}
