//! WebSocket sessions of the real server (embedded mode, in process) over real sockets: the
//! upgrade checks, the session lifecycle and the frames of `docs/protocol.md`. The adversarial
//! multi-node suite is in `tests/` (package `e2e`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use server::config::Settings;
use server::startup::Application;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

struct Running {
    base: String,
    ws: String,
    client: reqwest::Client,
    _data: tempfile::TempDir,
}

async fn spawn_app(configure: impl FnOnce(&mut Settings)) -> Running {
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(data.path());
    settings.realtime.heartbeat_interval = std::time::Duration::from_secs(1);
    configure(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("the server builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    Running {
        base: format!("http://127.0.0.1:{port}"),
        ws: format!("ws://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        _data: data,
    }
}

impl Running {
    /// Registers a user; `(id, token)`.
    async fn user(&self, name: &str) -> (String, String) {
        let email = format!(
            "{}-{}@example.com",
            name.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let body: Value = self
            .client
            .post(format!("{}/api/v1/auth/register", self.base))
            .json(&json!({"email": email, "password": "correct horse", "display_name": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            body["user"]["id"].as_str().unwrap().to_owned(),
            body["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// A socket on `/ws`, with TCP_NODELAY as browsers set it.
    async fn connect(&self, token: &str) -> Socket {
        let addr = self.ws.trim_start_matches("ws://").to_owned();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let url = format!("{}/ws?token={token}", self.ws);
        let (socket, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        socket
    }
}

async fn next_frame(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .expect("the socket is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_and_the_connection_ends_at_once() {
    let app = spawn_app(|_| {}).await;
    let (_, token) = app.user("Alice").await;
    let mut socket = app.connect(&token).await;
    assert_eq!(next_frame(&mut socket).await["type"], "hello");
    socket
        .send(Message::Text(json!({"type":"ping"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_frame(&mut socket).await["type"], "pong");
    let started = std::time::Instant::now();
    socket.close(None).await.unwrap();
    // The server answers the close and then closes the TCP connection, which is what the
    // client waits for.
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the server never closed the connection");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "closing took {:?}",
        started.elapsed()
    );
}

impl Running {
    /// A direct conversation of the holder of `token` with `other`; its id.
    async fn direct(&self, token: &str, other: &str) -> String {
        let body: Value = self
            .client
            .post(format!("{}/api/v1/conversations", self.base))
            .bearer_auth(token)
            .json(&json!({"type": "direct", "participant_ids": [other]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
            .parse()
            .unwrap()
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next frame of `kind`, skipping others.
async fn frame_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let frame = next_frame(socket).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// The close code the server ends the socket with.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("the socket ends in time");
        match next {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_accepted_then_closed_with_4001() {
    let app = spawn_app(|_| {}).await;
    let mut socket = app.connect("not-a-token").await;
    assert_eq!(close_code(&mut socket).await, Some(4001));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_acknowledged_after_commit_and_fanned_out_to_the_other_member() {
    let app = spawn_app(|_| {}).await;
    let (_, alice) = app.user("Alice").await;
    let (bob_id, bob) = app.user("Bob").await;
    let conversation = app.direct(&alice, &bob_id).await;
    let mut a = app.connect(&alice).await;
    let mut b = app.connect(&bob).await;
    let hello = frame_of(&mut a, "hello").await;
    assert_eq!(hello["conversations"][0]["conversation_id"], conversation);
    assert_eq!(hello["conversations"][0]["last_seq"], 0);
    frame_of(&mut b, "hello").await;
    send(
        &mut a,
        json!({"type":"message","conversation_id":conversation,"content":"Hello!","temp_id":"t-1"}),
    )
    .await;
    let ack = frame_of(&mut a, "message_sent").await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["temp_id"].as_str()),
        (Some(1), Some("t-1"))
    );
    let got = frame_of(&mut b, "message").await;
    assert_eq!(got["message"]["content"], "Hello!");
    assert_eq!(got["message"]["id"], ack["message_id"]);
    // B's live session got it: A hears it was delivered without B acknowledging anything.
    let delivered = frame_of(&mut a, "delivered").await;
    assert_eq!(delivered["user_id"], bob_id);
    assert_eq!(delivered["seq"], 1);
    assert_eq!(app.metric("chat_messages_committed_total").await, 1.0);
    assert!(app.metric("chat_messages_out_total").await >= 1.0);
    assert_eq!(app.metric("chat_sessions").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_frame_is_answered_with_an_error_and_the_session_stays_usable() {
    let app = spawn_app(|_| {}).await;
    let (_, alice) = app.user("Alice").await;
    let mut a = app.connect(&alice).await;
    frame_of(&mut a, "hello").await;
    a.send(Message::Text("{nope".into())).await.unwrap();
    assert_eq!(frame_of(&mut a, "error").await["code"], "invalid_json");
    send(&mut a, json!({"type":"dance"})).await;
    assert_eq!(frame_of(&mut a, "error").await["code"], "unknown_type");
    let foreign = uuid::Uuid::new_v4();
    send(
        &mut a,
        json!({"type":"message","conversation_id":foreign,"content":"hi","temp_id":"t-9"}),
    )
    .await;
    let refused = frame_of(&mut a, "error").await;
    assert_eq!(refused["code"], "not_participant");
    assert_eq!(refused["ref"], "t-9");
    send(&mut a, json!({"type":"ping"})).await;
    frame_of(&mut a, "pong").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_the_limit_closes_the_session_with_1009() {
    let app =
        spawn_app(|s| s.realtime.max_frame_bytes = server::config::nonzero::usize(1024)).await;
    let (_, alice) = app.user("Alice").await;
    let mut a = app.connect(&alice).await;
    frame_of(&mut a, "hello").await;
    let content = "x".repeat(2048);
    send(&mut a, json!({"type":"message","content":content})).await;
    assert_eq!(close_code(&mut a).await, Some(1009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_turns_readiness_off_and_closes_sockets_with_1001() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::for_tests(data.path());
    settings.realtime.presence_grace = std::time::Duration::from_millis(50);
    let app = Application::build(settings).await.unwrap();
    let port = app.port();
    let shutdown = app.shutdown_handle();
    let served = tokio::spawn(app.run_until_stopped());
    let running = Running {
        base: format!("http://127.0.0.1:{port}"),
        ws: format!("ws://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        _data: data,
    };
    let (_, alice) = running.user("Alice").await;
    let mut a = running.connect(&alice).await;
    frame_of(&mut a, "hello").await;
    shutdown.trigger();
    let mut readiness = Vec::new();
    for _ in 0..100 {
        let ready = running
            .client
            .get(format!("{}/readyz", running.base))
            .send()
            .await
            .map(|r| r.status().as_u16());
        readiness.push(ready.as_ref().ok().copied());
        if ready.as_ref().is_ok_and(|s| *s == 503) || ready.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        readiness.contains(&Some(503)),
        "readiness never went 503: {readiness:?}"
    );
    assert_eq!(close_code(&mut a).await, Some(1001));
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// A masked client frame (RFC 6455 5.3), as a browser sends it.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mask = [7u8, 1, 9, 3];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads until `pattern` appears in what came (or the connection closes), within 5 s.
async fn read_until(tcp: &mut tokio::net::TcpStream, pattern: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut chunk = [0u8; 4096];
        while !got.windows(pattern.len()).any(|w| w == pattern) {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_with_the_upgrade_request_are_served() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(|_| {}).await;
    let (_, token) = app.user("Early").await;
    let addr = app.ws.trim_start_matches("ws://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The request and a ping frame in one write: the frame is read with the request.
    let mut bytes = upgrade_request(&format!("/ws?token={token}")).into_bytes();
    bytes.extend(masked(0x1, br#"{"type":"ping"}"#));
    tcp.write_all(&bytes).await.unwrap();
    let got = read_until(&mut tcp, b"pong").await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the accept key of RFC 6455's example: {text}"
    );
    assert!(text.contains("\"hello\""), "{text}");
    assert!(
        text.contains("\"pong\""),
        "the early ping was answered: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_a_path_without_a_websocket_is_404_and_a_plain_get_is_400() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(|_| {}).await;
    let addr = app.ws.trim_start_matches("ws://").to_owned();
    for path in ["/healthz", "/ws/", "/ws/chat/a/b"] {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(upgrade_request(path).as_bytes())
            .await
            .unwrap();
        let got = read_until(&mut tcp, b"\"not_found\"").await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 404"), "{path}: {text}");
        assert!(text.to_lowercase().contains("connection: close"), "{text}");
    }
    let plain = app
        .client
        .get(format!("{}/ws", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400, "not an upgrade");
    let healthz = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200, "plain requests still reach the app");
}
