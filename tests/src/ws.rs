//! A WebSocket test client speaking `docs/protocol.md`: connect to `/ws` or `/ws/chat/{id}`
//! (token in the query or a Bearer header, with or without an `Origin`), send frames, and
//! receive them with a bounded wait and a clear failure message.
//!
//! Frames received while waiting for another kind are kept, in order, for later calls
//! ([`WsClient::recv_frame`]); [`WsClient::next_frame`] and [`WsClient::collect_for`] see
//! them first.

use crate::uuid;
use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, ServerFrame};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long "at once" may take on a loaded two-core test machine.
pub const WAIT: Duration = Duration::from_secs(5);

/// How a connection is opened: which endpoint, which credentials, which headers.
#[derive(Debug, Clone)]
pub struct WsConnect {
    url: String,
    headers: Vec<(String, String)>,
    small_receive_buffer: bool,
    local_address: Option<std::net::IpAddr>,
    any_frames: bool,
}

/// Why an upgrade did not give a socket.
#[derive(Debug)]
pub enum Refused {
    /// The server answered the upgrade with this HTTP status.
    Status(u16),
    /// Any other failure (connection refused, reset, bad handshake).
    Other(String),
}

impl WsConnect {
    /// `GET /ws?token=...` on the server at `base` (`http://127.0.0.1:PORT`).
    pub fn all(base: &str, token: &str) -> Self {
        Self::path(base, &format!("/ws?token={token}"))
    }

    /// `GET /ws/chat/{conversation}?token=...` (seed 000's endpoint).
    pub fn chat(base: &str, conversation: &str, token: &str) -> Self {
        Self::path(base, &format!("/ws/chat/{conversation}?token={token}"))
    }

    /// Any path (and query) on the server at `base`, with no credentials.
    pub fn path(base: &str, path_and_query: &str) -> Self {
        let origin = base.trim_end_matches('/');
        let ws = origin
            .strip_prefix("http://")
            .map(|rest| format!("ws://{rest}"))
            .unwrap_or_else(|| origin.to_owned());
        Self {
            url: format!("{ws}{path_and_query}"),
            headers: Vec::new(),
            small_receive_buffer: false,
            local_address: None,
            any_frames: false,
        }
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Adds an `Origin` header, as a browser would.
    pub fn origin(self, origin: &str) -> Self {
        self.header("origin", origin)
    }

    /// Adds any header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Accepts any JSON object with a `type` from the server, not only protocol frames: for
    /// this library's own tests against a scripted server.
    #[cfg(test)]
    fn any_frames(mut self) -> Self {
        self.any_frames = true;
        self
    }

    /// Shrinks the socket's kernel receive buffer, so a client that does not read fills
    /// the server's outbound queue after a few frames instead of megabytes.
    pub fn small_receive_buffer(mut self) -> Self {
        self.small_receive_buffer = true;
        self
    }

    /// Connects from this local address (any of 127.0.0.0/8 on loopback), so a server or
    /// proxy sees distinct clients.
    pub fn from_address(mut self, ip: std::net::IpAddr) -> Self {
        self.local_address = Some(ip);
        self
    }

    /// Opens the socket; panics (naming `label`) unless the upgrade succeeds.
    pub async fn open(self, label: &str) -> WsClient {
        let url = redact(&self.url);
        match self.try_open(label).await {
            Ok(client) => client,
            Err(refused) => panic!("{label}: WebSocket upgrade to {url} failed: {refused:?}"),
        }
    }

    /// Opens the socket and waits for its `hello`; panics unless both happen.
    pub async fn open_ready(self, label: &str) -> (WsClient, Value) {
        let mut client = self.open(label).await;
        let hello = client.recv_frame("hello", WAIT).await;
        (client, hello)
    }

    /// Opens the socket, or tells why the server refused.
    pub async fn try_open(self, label: &str) -> Result<WsClient, Refused> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| Refused::Other(e.to_string()))?;
        for (name, value) in &self.headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName =
                name.parse().map_err(|_| Refused::Other(name.clone()))?;
            let value = HeaderValue::from_str(value).map_err(|e| Refused::Other(e.to_string()))?;
            request.headers_mut().insert(name, value);
        }
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| Refused::Other("no host".into()))?;
        let addr = tokio::net::lookup_host(&host)
            .await
            .map_err(|e| Refused::Other(e.to_string()))?
            .next()
            .ok_or_else(|| Refused::Other(format!("{host} does not resolve")))?;
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| Refused::Other(e.to_string()))?;
        if let Some(ip) = self.local_address {
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| Refused::Other(e.to_string()))?;
        }
        if self.small_receive_buffer {
            socket
                .set_recv_buffer_size(4096)
                .map_err(|e| Refused::Other(e.to_string()))?;
        }
        let tcp = socket
            .connect(addr)
            .await
            .map_err(|e| Refused::Other(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| Refused::Other(e.to_string()))?;
        // The client accepts anything the server sends: limits are the server's to enforce.
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        match tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await {
            Ok((stream, _response)) => Ok(WsClient {
                label: label.to_owned(),
                stream,
                pending: VecDeque::new(),
                closed: None,
                any_frames: self.any_frames,
            }),
            Err(WsError::Http(response)) => Err(Refused::Status(response.status().as_u16())),
            Err(other) => Err(Refused::Other(other.to_string())),
        }
    }
}

/// Hides the `token=` value of a URL, so a failing test does not print a token.
fn redact(url: &str) -> String {
    match url.split_once("token=") {
        Some((head, _)) => format!("{head}token=<redacted>"),
        None => url.to_owned(),
    }
}

/// How a socket ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The close code, when the server sent a close frame.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
}

/// One received item: a JSON frame, or the end of the socket.
enum Received {
    Frame(Value),
    Closed(Closed),
}

/// An open WebSocket to a server under test.
pub struct WsClient {
    /// Names the client in failure messages ("alice on node 1").
    pub label: String,
    stream: WebSocketStream<TcpStream>,
    pending: VecDeque<Value>,
    closed: Option<Closed>,
    /// See [`WsConnect::any_frames`].
    any_frames: bool,
}

/// The `type` of a frame, or `""`.
pub fn frame_type(frame: &Value) -> &str {
    frame["type"].as_str().unwrap_or("")
}

/// A short description of frames for failure messages: their types, in order.
pub fn describe<'a>(frames: impl IntoIterator<Item = &'a Value>) -> String {
    let types: Vec<&str> = frames.into_iter().map(frame_type).collect();
    format!("{types:?}")
}

impl WsClient {
    /// Sends a JSON value as one text frame.
    pub async fn send_json(&mut self, frame: &Value) {
        self.send_text(frame.to_string()).await;
    }

    /// Sends a client frame of the protocol.
    pub async fn send_frame(&mut self, frame: &ClientFrame) {
        self.send_text(frame.to_json()).await;
    }

    /// Sends a raw text frame (for malformed frames).
    pub async fn send_text(&mut self, text: String) {
        let label = self.label.clone();
        self.stream
            .send(Message::text(text))
            .await
            .unwrap_or_else(|e| panic!("{label}: send failed: {e}"));
    }

    /// Sends text frames back to back, flushed once at the end: they reach the server in a
    /// few large writes, as a client pipelining a burst would.
    pub async fn pipeline(&mut self, texts: Vec<String>) {
        let label = self.label.clone();
        for text in texts {
            self.stream
                .feed(Message::text(text))
                .await
                .unwrap_or_else(|e| panic!("{label}: send failed: {e}"));
        }
        self.stream
            .flush()
            .await
            .unwrap_or_else(|e| panic!("{label}: flush failed: {e}"));
    }

    /// Sends a text frame and reports whether the socket took it (a closed socket may not).
    pub async fn try_send_text(&mut self, text: String) -> bool {
        self.stream.send(Message::text(text)).await.is_ok()
    }

    /// Sends a `message` frame.
    pub async fn send_message(&mut self, conversation: &str, content: &str, temp_id: &str) {
        let frame = ClientFrame::message(uuid(conversation), content, temp_id);
        self.send_frame(&frame).await;
    }

    /// Sends a `message` and waits for its `message_sent` (matched by `temp_id`); panics on
    /// an `error` with that `ref`, or on timeout. Other frames are kept.
    pub async fn send_acked(&mut self, conversation: &str, content: &str, temp_id: &str) -> Value {
        self.send_message(conversation, content, temp_id).await;
        self.ack(temp_id).await
    }

    /// Waits for the `message_sent` of `temp_id`; panics on an `error` about it.
    pub async fn ack(&mut self, temp_id: &str) -> Value {
        let frame = self
            .recv_where(&format!("message_sent for {temp_id}"), WAIT, |f| {
                (frame_type(f) == "message_sent" && f["temp_id"] == temp_id)
                    || (frame_type(f) == "error" && f["ref"] == temp_id)
            })
            .await;
        assert_eq!(
            frame_type(&frame),
            "message_sent",
            "{}: send of {temp_id} refused: {frame}",
            self.label
        );
        frame
    }

    /// Sends `sync` for `cursors` (conversation id -> last seq held) and collects the
    /// replayed `message` frames up to `sync_done`. Other frames are kept.
    pub async fn sync(&mut self, cursors: &[(&str, i64)]) -> SyncPage {
        let frame = ClientFrame::sync(cursors.iter().map(|(c, s)| (uuid(c), *s)));
        self.send_frame(&frame).await;
        let mut messages = Vec::new();
        let deadline = Instant::now() + WAIT * 2;
        loop {
            let frame = self
                .recv_where_until("message or sync_done", deadline, |f| {
                    matches!(frame_type(f), "message" | "sync_done")
                })
                .await;
            if frame_type(&frame) == "sync_done" {
                return SyncPage {
                    messages,
                    done: frame,
                };
            }
            messages.push(frame);
        }
    }

    /// Syncs one conversation from `after_seq` through every page (`has_more`), and returns
    /// every `message` frame received meanwhile (replayed or live), in arrival order. Each
    /// next page starts after the highest seq held (the page's end, or a live message past it).
    pub async fn sync_all(&mut self, conversation: &str, after_seq: i64) -> Vec<Value> {
        let mut cursor = after_seq;
        let mut all = Vec::new();
        for _ in 0..10_000 {
            let page = self.sync(&[(conversation, cursor)]).await;
            let entry = &page.done["conversations"][conversation];
            let has_more = entry["has_more"].as_bool().unwrap_or_else(|| {
                panic!(
                    "{}: sync_done without has_more for {conversation}: {}",
                    self.label, page.done
                )
            });
            let page_last = entry["last_seq"].as_i64().unwrap_or_else(|| {
                panic!(
                    "{}: sync_done without last_seq for {conversation}: {}",
                    self.label, page.done
                )
            });
            // Live messages may have come past the page meanwhile: the next cursor is the
            // highest seq held, as a client that tracks what it has would send.
            let held = page
                .messages
                .iter()
                .filter(|m| m["message"]["conversation_id"] == conversation)
                .filter_map(|m| m["message"]["seq"].as_i64())
                .max()
                .unwrap_or(cursor);
            all.extend(page.messages);
            if !has_more {
                return all;
            }
            assert!(
                page_last > cursor,
                "{}: sync page did not move the cursor past {cursor}: {}",
                self.label,
                page.done
            );
            cursor = page_last.max(held);
        }
        panic!("{}: sync never ended", self.label)
    }

    /// Sends `{"type":"typing",...}`.
    pub async fn typing(&mut self, conversation: &str, is_typing: bool) {
        self.send_frame(&ClientFrame::typing(uuid(conversation), is_typing))
            .await;
    }

    /// Sends `{"type":"read",...}`.
    pub async fn read(&mut self, conversation: &str, message_id: &str) {
        self.send_frame(&ClientFrame::read(uuid(conversation), uuid(message_id)))
            .await;
    }

    /// The next item from the socket before `deadline`, or `None` on timeout.
    async fn receive(&mut self, deadline: Instant) -> Option<Received> {
        if let Some(closed) = &self.closed {
            return Some(Received::Closed(closed.clone()));
        }
        loop {
            let next = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            let closed = match next {
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap_or_else(|e| {
                        panic!("{}: the server sent non-JSON {text:?}: {e}", self.label)
                    });
                    assert!(
                        frame.is_object() && frame["type"].is_string(),
                        "{}: a server frame without a type: {frame}",
                        self.label
                    );
                    if !self.any_frames {
                        check_protocol(&self.label, &frame);
                    }
                    return Some(Received::Frame(frame));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    panic!("{}: the server sent a binary frame {bytes:?}", self.label)
                }
                // Pings are answered by the library; pongs need nothing.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(frame))) => Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                },
                Some(Err(e)) => Closed {
                    code: None,
                    reason: format!("socket error: {e}"),
                },
                None => Closed {
                    code: None,
                    reason: "stream ended".into(),
                },
            };
            self.closed = Some(closed.clone());
            return Some(Received::Closed(closed));
        }
    }

    /// The next frame of any type (kept ones first), or `None` if none came within `timeout`.
    /// Panics if the socket closed.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        match self.receive(Instant::now() + timeout).await {
            None => None,
            Some(Received::Frame(frame)) => Some(frame),
            Some(Received::Closed(closed)) => {
                panic!("{}: the socket closed: {closed:?}", self.label)
            }
        }
    }

    /// The first frame of type `ty` (kept ones first); other frames are kept for later, in
    /// order. Panics after `timeout`, or if the socket closes.
    pub async fn recv_frame(&mut self, ty: &str, timeout: Duration) -> Value {
        self.recv_where(ty, timeout, |f| frame_type(f) == ty).await
    }

    /// The first frame matching `wanted` (described by `what`); others are kept.
    pub async fn recv_where(
        &mut self,
        what: &str,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        self.recv_where_until(what, Instant::now() + timeout, wanted)
            .await
    }

    async fn recv_where_until(
        &mut self,
        what: &str,
        deadline: Instant,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(at) = self.pending.iter().position(&wanted) {
            if let Some(frame) = self.pending.remove(at) {
                return frame;
            }
        }
        loop {
            match self.receive(deadline).await {
                Some(Received::Frame(frame)) if wanted(&frame) => return frame,
                Some(Received::Frame(frame)) => self.pending.push_back(frame),
                Some(Received::Closed(closed)) => panic!(
                    "{}: the socket closed ({closed:?}) while waiting for {what}; kept: {}",
                    self.label,
                    describe(&self.pending)
                ),
                None => panic!(
                    "{}: no {what} within the wait; kept meanwhile: {:?}",
                    self.label, self.pending
                ),
            }
        }
    }

    /// Every frame (kept ones first) arriving within `period`; stops early if the socket
    /// closes (see [`WsClient::closed`]).
    pub async fn collect_for(&mut self, period: Duration) -> Vec<Value> {
        let deadline = Instant::now() + period;
        let mut frames: Vec<Value> = self.pending.drain(..).collect();
        while let Some(Received::Frame(frame)) = self.receive(deadline).await {
            frames.push(frame);
        }
        frames
    }

    /// Frames of type `ty` arriving within `period` (kept ones included); others are kept.
    pub async fn collect_type_for(&mut self, ty: &str, period: Duration) -> Vec<Value> {
        let all = self.collect_for(period).await;
        let (wanted, others): (Vec<Value>, Vec<Value>) =
            all.into_iter().partition(|f| frame_type(f) == ty);
        self.pending.extend(others);
        wanted
    }

    /// Asserts that no frame of type `ty` arrives within `period` (nor is kept); others are kept.
    pub async fn expect_no_frame(&mut self, ty: &str, period: Duration) {
        let unexpected = self.collect_type_for(ty, period).await;
        assert!(
            unexpected.is_empty(),
            "{}: expected no {ty} frame, got {unexpected:?}",
            self.label
        );
    }

    /// Waits for the socket to close and asserts the close code; frames before it are kept.
    pub async fn expect_close(&mut self, code: u16, timeout: Duration) -> Closed {
        let closed = self.wait_closed(timeout).await;
        assert_eq!(
            closed.code,
            Some(code),
            "{}: closed with {closed:?}, expected code {code}; frames before: {}",
            self.label,
            describe(&self.pending)
        );
        closed
    }

    /// Waits for the socket to close (any code); frames before it are kept.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Closed {
        let deadline = Instant::now() + timeout;
        loop {
            match self.receive(deadline).await {
                Some(Received::Frame(frame)) => self.pending.push_back(frame),
                Some(Received::Closed(closed)) => return closed,
                None => panic!(
                    "{}: still open after {timeout:?}; frames meanwhile: {}",
                    self.label,
                    describe(&self.pending)
                ),
            }
        }
    }

    /// Whether the socket is open after `period` of reading (frames read are kept).
    pub async fn still_open_after(&mut self, period: Duration) -> Option<Closed> {
        let deadline = Instant::now() + period;
        loop {
            match self.receive(deadline).await {
                Some(Received::Frame(frame)) => self.pending.push_back(frame),
                Some(Received::Closed(closed)) => return Some(closed),
                None => return None,
            }
        }
    }

    /// How the socket ended, once it has.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.as_ref()
    }

    /// Frames received and kept, not yet consumed.
    pub fn kept(&self) -> impl Iterator<Item = &Value> {
        self.pending.iter()
    }

    /// Removes and returns the first kept frame matching `wanted`, if any.
    pub fn take_kept(&mut self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let at = self.pending.iter().position(wanted)?;
        self.pending.remove(at)
    }

    /// Drops every kept frame.
    pub fn forget_kept(&mut self) {
        self.pending.clear();
    }

    /// Closes the socket normally (1000) and waits briefly for the server's answer.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Done once the server's close frame is back (the TCP close may follow later).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(message)) = self.stream.next().await {
                if message.is_close() {
                    break;
                }
            }
        })
        .await;
    }

    /// Drops the TCP connection without a close frame (a client that vanished).
    pub fn vanish(self) {
        drop(self);
    }
}

/// One `sync` answer: the replayed messages and the `sync_done` frame.
#[derive(Debug)]
pub struct SyncPage {
    /// `message` frames received before `sync_done` (replayed, or live meanwhile).
    pub messages: Vec<Value>,
    /// The `sync_done` frame.
    pub done: Value,
}

/// The `hello` snapshot of one conversation.
pub fn hello_conversation<'a>(hello: &'a Value, conversation: &str) -> &'a Value {
    hello["conversations"]
        .as_array()
        .and_then(|list| list.iter().find(|c| c["conversation_id"] == conversation))
        .unwrap_or_else(|| panic!("hello has no snapshot of {conversation}: {hello}"))
}

/// The `seq`s of `message` frames, in order.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| {
            m["message"]["seq"]
                .as_i64()
                .unwrap_or_else(|| panic!("a message frame without seq: {m}"))
        })
        .collect()
}

/// Message frames grouped by conversation, seqs in arrival order.
pub fn seqs_by_conversation(messages: &[Value]) -> BTreeMap<String, Vec<i64>> {
    let mut by: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for m in messages {
        let conv = m["message"]["conversation_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        by.entry(conv)
            .or_default()
            .push(m["message"]["seq"].as_i64().unwrap_or(-1));
    }
    by
}

/// Every frame the server sends is one of the protocol crate's [`ServerFrame`]s, exactly:
/// it parses as one, and writing that back gives the same JSON (no field the type does not
/// know, none missing, no other spelling). The tests read frames as JSON values, so they see
/// what a client in any language sees; this keeps the protocol crate the wire's one
/// definition.
fn check_protocol(label: &str, frame: &Value) {
    let typed: ServerFrame = serde_json::from_value(frame.clone())
        .unwrap_or_else(|e| panic!("{label}: not a protocol::ServerFrame ({e}): {frame}"));
    let again = serde_json::to_value(&typed)
        .unwrap_or_else(|e| panic!("{label}: a ServerFrame does not serialize ({e})"));
    assert_eq!(
        &again, frame,
        "{label}: the frame is not what protocol::ServerFrame writes"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    /// A scripted server: sends `frames`, echoes one client frame back, then closes with `code`.
    async fn scripted(frames: Vec<Value>, code: u16) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            for f in frames {
                ws.send(Message::text(f.to_string())).await.unwrap();
            }
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                ws.send(Message::Text(t)).await.unwrap();
            }
            ws.send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "bye".into(),
            })))
            .await
            .unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn frames_skipped_while_waiting_are_kept_in_order_and_the_close_code_is_seen() {
        let base = scripted(
            vec![
                json!({"type": "hello"}),
                json!({"type": "typing", "n": 1}),
                json!({"type": "message", "message": {"seq": 1}}),
                json!({"type": "typing", "n": 2}),
            ],
            4009,
        )
        .await;
        let (mut ws, hello) = WsConnect::all(&base, "t")
            .any_frames()
            .open_ready("c")
            .await;
        assert_eq!(hello["type"], "hello");
        let m = ws.recv_frame("message", WAIT).await;
        assert_eq!(m["message"]["seq"], 1);
        assert_eq!(ws.next_frame(WAIT).await.unwrap()["n"], 1);
        assert_eq!(ws.next_frame(WAIT).await.unwrap()["n"], 2);
        ws.send_json(&json!({"type": "ping"})).await;
        assert_eq!(ws.recv_frame("ping", WAIT).await["type"], "ping");
        let closed = ws.expect_close(4009, WAIT).await;
        assert_eq!(closed.reason, "bye");
    }

    #[tokio::test]
    #[should_panic(expected = "not a protocol::ServerFrame")]
    async fn a_frame_that_is_not_a_protocol_frame_fails_the_test() {
        let base = scripted(vec![json!({"type": "hello"})], 1000).await;
        let mut ws = WsConnect::all(&base, "t").open("c").await;
        ws.next_frame(WAIT).await;
    }

    #[tokio::test]
    #[should_panic(expected = "no message within the wait")]
    async fn a_frame_that_never_comes_fails_after_the_timeout_with_what_came_instead() {
        let base = scripted(vec![json!({"type": "hello"})], 1000).await;
        let mut ws = WsConnect::all(&base, "t").any_frames().open("c").await;
        ws.recv_frame("message", Duration::from_millis(200)).await;
    }

    #[test]
    fn a_token_in_the_url_is_not_printed() {
        assert_eq!(
            redact("ws://h/ws?token=abc.def"),
            "ws://h/ws?token=<redacted>"
        );
    }
}
