//! Protocol edges over real sockets to a real node process: frames that break RFC 6455
//! (reserved bits set, a fragmented ping) close with 1002 and write no ERROR line into the
//! node's log, which samples them at INFO while the metrics count every one; the `Origin`
//! check compares scheme, host and port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::ws::{Refused, WsConnect};
use e2e::{Backend, NodeProcess, TestStore};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);

/// A WebSocket opened by hand, so the test can write frames no client library would.
struct RawSocket {
    tcp: TcpStream,
    read: Vec<u8>,
}

/// What the server sent: a data frame's opcode and payload, or its close code.
#[derive(Debug, PartialEq, Eq)]
enum ServerSaid {
    Frame(u8, Vec<u8>),
    Close(Option<u16>),
    /// The TCP connection ended with no close frame.
    Eof,
}

impl RawSocket {
    async fn open(port: u16, token: &str) -> Self {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut socket = Self {
            tcp,
            read: Vec::new(),
        };
        let head_end = loop {
            if let Some(i) = socket.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                socket.fill().await > 0,
                "the server closed during the upgrade"
            );
        };
        let head = String::from_utf8_lossy(&socket.read[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        socket.read.drain(..head_end);
        socket
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, self.tcp.read(&mut chunk))
            .await
            .expect("the server said something in time")
            .unwrap_or(0);
        self.read.extend_from_slice(&chunk[..n]);
        n
    }

    /// Writes one masked frame with this first byte (FIN, RSV bits, opcode).
    async fn send_raw(&mut self, first: u8, payload: &[u8]) {
        let mask = [0x11u8, 0x22, 0x33, 0x44];
        let mut frame = vec![first, 0x80 | u8::try_from(payload.len()).unwrap()];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// The next thing the server sent.
    async fn next(&mut self) -> ServerSaid {
        loop {
            if let Some((said, used)) = parse_server_frame(&self.read) {
                self.read.drain(..used);
                return said;
            }
            if self.fill().await == 0 {
                return ServerSaid::Eof;
            }
        }
    }

    /// Skips frames until the close (or the end of the connection).
    async fn close_code(&mut self) -> ServerSaid {
        loop {
            match self.next().await {
                ServerSaid::Frame(..) => continue,
                end => return end,
            }
        }
    }
}

/// One unmasked server frame at the start of `buf`, and the bytes it took.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerSaid, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, start) = match buf[1] & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let payload = buf.get(start..start + len)?.to_vec();
    let said = if opcode == 0x8 {
        ServerSaid::Close(
            (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
        )
    } else {
        ServerSaid::Frame(opcode, payload)
    };
    Some((said, start + len))
}

fn is_hello(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text).is_ok_and(|f| f["type"] == "hello")
}

fn error_lines(logs: &str) -> Vec<&str> {
    logs.lines().filter(|l| l.contains("ERROR")).collect()
}

const LOGGED: &str = "client broke the WebSocket protocol";

async fn logging_node(store: &TestStore, logs_per_minute: u32) -> NodeProcess {
    NodeProcess::start_logging(
        store,
        &[
            ("CHAT_LOG__LEVEL", "info".into()),
            (
                "CHAT_REALTIME__PROTOCOL_ERROR_LOGS_PER_MINUTE",
                logs_per_minute.to_string(),
            ),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_with_reserved_bits_set_is_closed_with_1002_and_logs_no_error() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = logging_node(&store, 10).await;
    let a = node.api().register("Alice").await;
    let cases: [(&str, u8); 3] = [
        ("RSV1 on a text frame", 0x80 | 0x40 | 0x1),
        ("RSV2 on a ping", 0x80 | 0x20 | 0x9),
        ("RSV3 on a binary frame", 0x80 | 0x10 | 0x2),
    ];
    for (what, first) in cases {
        let mut ws = RawSocket::open(node.port, &a.token).await;
        let hello = ws.next().await;
        assert!(
            matches!(&hello, ServerSaid::Frame(0x1, text) if is_hello(text)),
            "{what}: {hello:?}"
        );
        ws.send_raw(first, b"{\"type\":\"ping\"}").await;
        assert_eq!(
            ws.close_code().await,
            ServerSaid::Close(Some(1002)),
            "{what}"
        );
    }
    let logs = node.logs();
    assert_eq!(error_lines(&logs), Vec::<&str>::new(), "no ERROR line");
    assert_eq!(logs.matches(LOGGED).count(), cases.len(), "{logs}");
    let counted = node
        .api()
        .metric_with("chat_ws_protocol_errors_total", "code=\"1002\"")
        .await;
    assert_eq!(counted, Some(cases.len() as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_ping_is_closed_with_1002_and_logs_no_error() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = logging_node(&store, 10).await;
    let a = node.api().register("Alice").await;
    let mut ws = RawSocket::open(node.port, &a.token).await;
    // A ping without FIN: control frames must not be fragmented (RFC 6455 section 5.5).
    ws.send_raw(0x09, b"p").await;
    assert_eq!(ws.close_code().await, ServerSaid::Close(Some(1002)));
    // A fragmented text message with a ping between its fragments is fine.
    let mut ws = RawSocket::open(node.port, &a.token).await;
    ws.send_raw(0x01, b"{\"type\":").await;
    ws.send_raw(0x89, b"between").await;
    ws.send_raw(0x80, b"\"ping\"}").await;
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match ws.next().await {
            ServerSaid::Frame(0x1, text) if is_hello(&text) => {}
            ServerSaid::Frame(opcode, payload) => answers.push((opcode, payload)),
            end => panic!("closed: {end:?}"),
        }
    }
    assert_eq!(
        answers,
        vec![
            (0xA, b"between".to_vec()),
            (0x1, b"{\"type\":\"pong\"}".to_vec())
        ]
    );
    let logs = node.logs();
    assert_eq!(error_lines(&logs), Vec::<&str>::new(), "no ERROR line");
    assert_eq!(logs.matches(LOGGED).count(), 1, "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_protocol_errors_is_logged_a_few_times_and_counted_every_time() {
    const BAD: usize = 12;
    const LINES: u32 = 3;
    let store = TestStore::new(Backend::Sqlite).await;
    let node = logging_node(&store, LINES).await;
    let a = node.api().register("Alice").await;
    for i in 0..BAD {
        let mut ws = RawSocket::open(node.port, &a.token).await;
        // Alternately a fragmented ping and reserved bits.
        let first = if i % 2 == 0 { 0x09 } else { 0x80 | 0x40 | 0x1 };
        ws.send_raw(first, b"x").await;
        assert_eq!(ws.close_code().await, ServerSaid::Close(Some(1002)), "#{i}");
    }
    let logs = node.logs();
    assert_eq!(error_lines(&logs), Vec::<&str>::new(), "no ERROR line");
    assert_eq!(
        logs.matches(LOGGED).count(),
        LINES as usize,
        "at most {LINES} lines a minute: {logs}"
    );
    let counted = node
        .api()
        .metric_with("chat_ws_protocol_errors_total", "code=\"1002\"")
        .await;
    assert_eq!(counted, Some(BAD as f64), "every one counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_http_gets_400_and_logs_no_error() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = logging_node(&store, 10).await;
    for garbage in [&b"GARBAGE\r\n\r\n"[..], b"GET / HTTP/1.1\r\nHost x\r\n\r\n"] {
        let mut tcp = TcpStream::connect(("127.0.0.1", node.port)).await.unwrap();
        tcp.write_all(garbage).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    let logs = node.logs();
    assert_eq!(error_lines(&logs), Vec::<&str>::new(), "no ERROR line");
}

/// The upgrade's answer to `origin` on a node.
async fn upgrade_with(
    node: &NodeProcess,
    token: &str,
    headers: &[(&str, &str)],
) -> Result<(), u16> {
    let mut connect = WsConnect::all(&node.address, token);
    for (name, value) in headers {
        connect = connect.header(name, value);
    }
    match connect.try_open("origin check").await {
        Ok(_) => Ok(()),
        Err(Refused::Status(status)) => Err(status),
        Err(other) => panic!("{headers:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_origin_is_not_a_plain_http_servers_own_and_a_listed_one_needs_its_scheme() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = NodeProcess::start(
        &store,
        &[(
            "CHAT_HTTP__ALLOWED_ORIGINS",
            "https://app.example.com".into(),
        )],
    )
    .await;
    let a = node.api().register("Alice").await;
    let port = node.port;
    let own = format!("http://127.0.0.1:{port}");
    let https_own = format!("https://127.0.0.1:{port}");
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    for (origin, expected) in [
        (own.as_str(), Ok(())),
        (https_own.as_str(), Err(403)),
        (other_port.as_str(), Err(403)),
        ("https://app.example.com", Ok(())),
        ("https://app.example.com:443", Ok(())),
        ("http://app.example.com", Err(403)),
        ("https://app.example.com:8443", Err(403)),
    ] {
        assert_eq!(
            upgrade_with(&node, &a.token, &[("origin", origin)]).await,
            expected,
            "Origin: {origin}"
        );
    }
    // A client talking to the node directly cannot claim a TLS proxy in front.
    assert_eq!(
        upgrade_with(
            &node,
            &a.token,
            &[("origin", &https_own), ("x-forwarded-proto", "https")]
        )
        .await,
        Err(403)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_follows_the_same_origin_rule() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node = NodeProcess::start(
        &store,
        &[(
            "CHAT_HTTP__ALLOWED_ORIGINS",
            "https://app.example.com".into(),
        )],
    )
    .await;
    let client = e2e::client();
    let own = format!("http://127.0.0.1:{}", node.port);
    let https_own = format!("https://127.0.0.1:{}", node.port);
    for (origin, allowed) in [
        (own.as_str(), true),
        (https_own.as_str(), false),
        ("https://app.example.com", true),
        ("http://app.example.com", false),
    ] {
        let preflight = client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/v1/users/me", node.address),
            )
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        let granted = preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            granted.as_deref() == Some(origin),
            allowed,
            "Origin {origin}: {} {granted:?}",
            preflight.status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_tls_proxy_the_https_origin_is_the_servers_own() {
    let store = TestStore::new(Backend::Sqlite).await;
    let node =
        NodeProcess::start(&store, &[("CHAT_HTTP__TRUST_FORWARDED_FOR", "true".into())]).await;
    let a = node.api().register("Alice").await;
    let port = node.port;
    let https_own = format!("https://127.0.0.1:{port}");
    let own = format!("http://127.0.0.1:{port}");
    let proxied = |origin: &str| {
        vec![
            ("origin", origin.to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
        ]
    };
    for (headers, expected) in [
        (proxied(&https_own), Ok(())),
        (proxied(&own), Err(403)),
        (vec![("origin", https_own.clone())], Err(403)),
        (vec![("origin", own.clone())], Ok(())),
    ] {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            upgrade_with(&node, &a.token, &refs).await,
            expected,
            "{headers:?}"
        );
    }
}
