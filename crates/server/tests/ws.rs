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
    settings.realtime.heartbeat_interval_ms = 1_000;
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
