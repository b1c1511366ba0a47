//! One simulated client: a WebSocket on `/ws` from a chosen loopback source address, sending
//! when the dispatcher says so, counting what it receives, recovering with `sync` when its
//! socket drops, and checking with a final `sync` that nothing acked is missing.

use crate::track::{Arrival, ConvLog, MemberView, SeqSet};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::server::{types, ConversationSnapshot, SyncState, MESSAGE_FRAME_PREFIX};
use protocol::{ClientFrame, ServerFrame};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

type Ws = WebSocketStream<TcpStream>;

/// Longest wait for a TCP connect, a handshake, or the `hello` after it.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the final verification `sync` of one client.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the close handshake at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Prefix of every message content: `lg:<send time, µs since the run began>:<padding>`.
const CONTENT_PREFIX: &str = "lg:";

/// Where the run is; every client follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected, sending when told.
    Run,
    /// Drop the socket now (the instant of the storm), reconnect, `sync`, go on sending.
    Storm(Instant),
    /// No more sends; keep receiving.
    Drain,
    /// Final `sync` of every conversation, then close.
    Verify,
    /// Close.
    Close,
}

/// Counters shared by every client (relaxed atomics: only read for the report and for
/// the orchestrator's waits).
#[derive(Debug, Default)]
pub struct Stats {
    /// Sockets open now.
    pub open: AtomicU64,
    /// Most sockets open at once.
    pub peak_open: AtomicU64,
    /// Clients that got their first `hello`.
    pub ready: AtomicU64,
    /// Clients that never connected.
    pub failed: AtomicU64,
    /// Upgrades answered 429 (retried after `Retry-After`).
    pub throttled: AtomicU64,
    /// Messages sent (distinct `temp_id`s).
    pub sent: AtomicU64,
    /// Messages re-sent with their `temp_id` after a reconnect.
    pub resent: AtomicU64,
    /// Distinct messages acked (`message_sent`).
    pub acked: AtomicU64,
    /// Sends answered by an `error` frame instead of an ack.
    pub send_failed: AtomicU64,
    /// Others' messages received live, first time.
    pub delivered: AtomicU64,
    /// Others' messages received first through a `sync` replay.
    pub replayed: AtomicU64,
    /// Deliveries the acked messages call for (members - 1 each).
    pub expected: AtomicU64,
    /// Clients recovered after the storm.
    pub storm_recovered: AtomicU64,
    /// Reconnects not asked for (the server closed or the socket failed).
    pub unplanned_reconnects: AtomicU64,
    /// Clients that saw the drain begin: they take no more sends, and every send they took
    /// before is counted in `sent` (the drain is only judged once all ready clients saw it,
    /// or a send taken just as it began could be missed and its ack cut off by the verify).
    pub drain_seen: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Latency histograms in µs, sharded so clients on different threads rarely wait.
#[derive(Debug)]
pub struct Histos {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Histos {
    const SHARDS: usize = 16;

    /// Empty histograms (1 µs .. 1 h, 3 significant digits).
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        let shards = (0..Self::SHARDS)
            .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3).map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self { shards })
    }

    /// Records `micros` (clamped into range) in the shard of `key`.
    pub fn record(&self, key: usize, micros: u64) {
        if let Some(shard) = self.shards.get(key % Self::SHARDS) {
            if let Ok(mut h) = shard.lock() {
                h.saturating_record(micros.max(1));
            }
        }
    }

    /// All shards added up.
    pub fn merged(&self) -> Option<Histogram<u64>> {
        let mut out: Option<Histogram<u64>> = None;
        for shard in &self.shards {
            let Ok(h) = shard.lock() else { continue };
            match &mut out {
                None => out = Some(h.clone()),
                Some(total) => {
                    let _ = total.add(&*h);
                }
            }
        }
        out
    }
}

/// What every client shares: the clock, the counters and histograms.
#[derive(Debug)]
pub struct Shared {
    /// Time zero of the run: send timestamps are µs since it.
    pub base: Instant,
    /// Client socket settings (small read buffer).
    pub ws_config: WebSocketConfig,
    /// Content length of sent messages.
    pub content_bytes: usize,
    /// Handshakes in flight at once.
    pub connect_permits: Semaphore,
    /// Longest a client keeps trying to connect (or reconnect).
    pub connect_timeout: Duration,
    /// Counters.
    pub stats: Stats,
    /// Send -> receive latency, per recipient, live deliveries only.
    pub delivery_latency: Histos,
    /// Send -> `message_sent` latency (first attempts only).
    pub ack_latency: Histos,
    /// Storm: drop -> recovered latency, per client.
    pub recovery: Histos,
    /// Errors by kind (low cardinality: `connect:timeout`, `frame:rate_limited`...).
    pub errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    /// µs since the run began.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: impl Into<String>) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind.into()).or_default() += 1;
        }
    }
}

/// Who a client is and what it takes part in.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Index of the client in the run.
    pub index: usize,
    /// Its user.
    pub user_id: Uuid,
    /// Its access token.
    pub token: String,
    /// Source address of its socket.
    pub source: Ipv4Addr,
    /// The node it connects to (127.0.0.1 only; checked before any client exists).
    pub target: SocketAddr,
    /// Its conversations, each with its member count.
    pub conversations: Vec<(Uuid, usize)>,
    /// The conversation it sends to, if it sends.
    pub send_to: Option<Uuid>,
}

/// What a client reports when it is done.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// Index of the client.
    pub index: usize,
    /// Whether it connected at all.
    pub ready: bool,
    /// Whether its final `sync` completed.
    pub verified: bool,
    /// What it held of each conversation.
    pub views: Vec<MemberView>,
    /// Seqs acked to it, per conversation.
    pub acked: Vec<(Uuid, BTreeSet<u64>)>,
    /// Messages it sent that were never acked nor refused.
    pub unacked: u64,
}

/// Why a connection attempt failed.
#[derive(Debug)]
enum ConnectError {
    /// 429: wait this long.
    Throttled(Duration),
    /// Anything else, by kind (for the error table).
    Failed(String),
}

#[derive(Debug)]
struct Lost;

#[derive(Debug, Clone, Copy)]
enum SyncPurpose {
    /// Reconnected after losing the socket at `since` (`storm`: the planned drop).
    Recovery { since: Instant, storm: bool },
    /// The final check.
    Verify,
}

#[derive(Debug)]
struct Pending {
    conversation: Uuid,
    content: String,
    sent_us: u64,
    attempts: u32,
    order: u64,
}

/// A `message` frame, parsed on the fast path: only the fields this client reads (the
/// protocol's `ServerFrame::Message` carries the whole message).
#[derive(Deserialize)]
struct MessageFrame {
    message: IncomingMessage,
}

#[derive(Deserialize)]
struct IncomingMessage {
    conversation_id: Uuid,
    seq: u64,
    sender_id: Uuid,
    content: String,
}

impl From<protocol::rest::MessageDto> for IncomingMessage {
    fn from(m: protocol::rest::MessageDto) -> Self {
        Self {
            conversation_id: m.conversation_id,
            seq: seq_of(m.seq),
            sender_id: m.sender_id,
            content: m.content,
        }
    }
}

/// The `type` of a server frame, read without parsing the rest.
#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
}

/// The frames this client acts on; the others (receipts, typing, presence...) are skipped
/// once their `type` is read.
const READ_FRAMES: [&str; 5] = [
    types::HELLO,
    types::MESSAGE,
    types::MESSAGE_SENT,
    types::SYNC_DONE,
    types::ERROR,
];

/// A seq as this client counts it (seqs are never negative).
fn seq_of(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

/// A cursor as the protocol carries it.
fn cursor_of(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// The send time carried by a content this generator wrote.
pub fn sent_at_us(content: &str) -> Option<u64> {
    content
        .strip_prefix(CONTENT_PREFIX)?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// A content of `len` bytes (or just the timestamp, if longer) carrying `sent_us`.
pub fn content_for(sent_us: u64, len: usize) -> String {
    let mut content = format!("{CONTENT_PREFIX}{sent_us}:");
    while content.len() < len {
        content.push('x');
    }
    content
}

struct Client<'a> {
    plan: ClientPlan,
    shared: &'a Shared,
    convs: HashMap<Uuid, ConvLog>,
    members: HashMap<Uuid, usize>,
    acked: HashMap<Uuid, BTreeSet<u64>>,
    pending: HashMap<String, Pending>,
    sync: Option<SyncPurpose>,
    next_msg: u64,
    ready: bool,
    verified: bool,
    before_final: Option<HashMap<Uuid, SeqSet>>,
}

/// Runs one client until the phase says close (or it cannot connect in time).
pub async fn run_client(
    plan: ClientPlan,
    shared: &Shared,
    mut phase: watch::Receiver<Phase>,
    mut sends: mpsc::Receiver<()>,
) -> ClientOutcome {
    let mut c = Client::new(plan, shared);
    let Some(mut ws) = c.open().await else {
        Stats::add(&shared.stats.failed, 1);
        return c.outcome();
    };
    c.ready = true;
    Stats::add(&shared.stats.ready, 1);
    // Nothing to sync on a first connection: speak at once, so the server does not hold
    // live messages for a `sync` that will not come (`realtime.sync_hold`).
    if c.speak(&mut ws).await.is_err() {
        c.drop_socket(ws);
        match c.recover(Instant::now(), false).await {
            Some(next) => ws = next,
            None => return c.outcome(),
        }
    }
    let mut stormed = false;
    let mut saw_drain = false;
    let mut sends_open = true;
    loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Storm(at) if !stormed => {
                stormed = true;
                // Lost, not closed: a reset, no close frame, and no TIME_WAIT left holding
                // this source address's ports for the reconnect.
                let _ = ws.get_ref().set_zero_linger();
                c.drop_socket(ws);
                match c.recover(at, true).await {
                    Some(next) => ws = next,
                    None => return c.outcome(),
                }
                continue;
            }
            Phase::Verify => {
                // The check runs on a fresh session: on the old one, frames still queued
                // for it would be replayed too, and a repeat could not be told from a
                // duplicate.
                c.snapshot_before_final();
                c.close(ws).await;
                if let Some(mut fresh) = c.open().await {
                    c.verify(&mut fresh).await;
                    c.close(fresh).await;
                } else {
                    shared.error("verify:cannot_reconnect");
                }
                return c.outcome();
            }
            Phase::Close => {
                c.close(ws).await;
                return c.outcome();
            }
            Phase::Drain if !saw_drain => {
                saw_drain = true;
                Stats::add(&shared.stats.drain_seen, 1);
            }
            Phase::Run | Phase::Storm(_) | Phase::Drain => {}
        }
        let can_send = sends_open
            && matches!(current, Phase::Run | Phase::Storm(_))
            && c.sync.is_none()
            && c.plan.send_to.is_some();
        let lost = tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    c.close(ws).await;
                    return c.outcome();
                }
                false
            }
            frame = ws.next() => match frame {
                Some(Ok(msg)) => c.on_frame(&mut ws, msg).await.is_err(),
                Some(Err(e)) => {
                    shared.error(format!("socket:{}", ws_error_kind(&e)));
                    true
                }
                None => true,
            },
            token = sends.recv(), if can_send => match token {
                Some(()) => c.send_new(&mut ws).await.is_err(),
                None => {
                    sends_open = false;
                    false
                }
            },
        };
        if lost {
            // Not asked for: reconnect and recover as a real client would.
            c.drop_socket(ws);
            if matches!(*phase.borrow(), Phase::Close) {
                return c.outcome();
            }
            Stats::add(&shared.stats.unplanned_reconnects, 1);
            match c.recover(Instant::now(), false).await {
                Some(next) => ws = next,
                None => return c.outcome(),
            }
        }
    }
}

impl<'a> Client<'a> {
    fn new(plan: ClientPlan, shared: &'a Shared) -> Self {
        let convs = plan
            .conversations
            .iter()
            .map(|(id, _)| (*id, ConvLog::default()))
            .collect();
        let members = plan.conversations.iter().copied().collect();
        Self {
            plan,
            shared,
            convs,
            members,
            acked: HashMap::new(),
            pending: HashMap::new(),
            sync: None,
            next_msg: 0,
            ready: false,
            verified: false,
            before_final: None,
        }
    }

    /// Connects (retrying within the connect timeout) and waits for `hello`.
    async fn open(&mut self) -> Option<Ws> {
        let shared = self.shared;
        let deadline = Instant::now() + shared.connect_timeout;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = {
                let _permit = shared.connect_permits.acquire().await.ok()?;
                match self.connect_once().await {
                    Ok(mut ws) => match self.await_hello(&mut ws).await {
                        Ok(()) => Ok(ws),
                        Err(kind) => Err(ConnectError::Failed(kind)),
                    },
                    Err(e) => Err(e),
                }
            };
            let wait = match result {
                Ok(ws) => {
                    let open = self.shared.stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                    self.shared
                        .stats
                        .peak_open
                        .fetch_max(open, Ordering::Relaxed);
                    return Some(ws);
                }
                Err(ConnectError::Throttled(retry)) => {
                    Stats::add(&self.shared.stats.throttled, 1);
                    retry.clamp(Duration::from_millis(50), Duration::from_secs(2))
                }
                Err(ConnectError::Failed(kind)) => {
                    self.shared.error(format!("connect:{kind}"));
                    Duration::from_millis(100 * u64::from(attempt.min(10)))
                }
            };
            if Instant::now() + wait >= deadline {
                self.shared.error("connect:gave_up");
                return None;
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn connect_once(&self) -> Result<Ws, ConnectError> {
        let io = |e: std::io::Error| ConnectError::Failed(format!("io:{:?}", e.kind()));
        let socket = TcpSocket::new_v4().map_err(io)?;
        socket
            .bind(SocketAddr::new(self.plan.source.into(), 0))
            .map_err(io)?;
        let tcp = timeout(STEP_TIMEOUT, socket.connect(self.plan.target))
            .await
            .map_err(|_| ConnectError::Failed("tcp_timeout".into()))?
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let url = format!("ws://{}/ws?token={}", self.plan.target, self.plan.token);
        let handshake =
            tokio_tungstenite::client_async_with_config(url, tcp, Some(self.shared.ws_config));
        match timeout(STEP_TIMEOUT, handshake).await {
            Err(_) => Err(ConnectError::Failed("handshake_timeout".into())),
            Ok(Ok((ws, _response))) => Ok(ws),
            Ok(Err(WsError::Http(response))) => {
                let status = response.status().as_u16();
                if status == 429 {
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .unwrap_or(Duration::from_millis(200));
                    Err(ConnectError::Throttled(retry))
                } else {
                    Err(ConnectError::Failed(format!("http_{status}")))
                }
            }
            Ok(Err(e)) => Err(ConnectError::Failed(ws_error_kind(&e))),
        }
    }

    /// Reads until `hello`; records each conversation's `last_seq` from it.
    async fn await_hello(&mut self, ws: &mut Ws) -> Result<(), String> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| "hello_timeout".to_owned())?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ServerFrame::Hello { conversations, .. }) =
                        serde_json::from_str::<ServerFrame>(text.as_str())
                    {
                        self.on_hello(&conversations);
                        return Ok(());
                    }
                }
                Some(Ok(Message::Close(close))) => {
                    let code = close.map(|c| u16::from(c.code)).unwrap_or(1005);
                    return Err(format!("closed_{code}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ws_error_kind(&e)),
                None => return Err("closed_before_hello".to_owned()),
            }
        }
    }

    fn on_hello(&mut self, conversations: &[ConversationSnapshot]) {
        for entry in conversations {
            if let Some(log) = self.convs.get_mut(&entry.conversation_id) {
                log.saw_last_seq(seq_of(entry.last_seq));
            }
        }
    }

    fn drop_socket(&self, ws: Ws) {
        drop(ws);
        self.shared.stats.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Reconnects after losing the socket at `since`, then syncs what moved meanwhile.
    async fn recover(&mut self, since: Instant, storm: bool) -> Option<Ws> {
        let mut ws = self.open().await?;
        // `hello` told each conversation's last seq: sync those past what this client holds.
        let moved: Vec<Uuid> = self
            .convs
            .iter()
            .filter(|(_, log)| log.last_seq > log.seen.contiguous())
            .map(|(id, _)| *id)
            .collect();
        let purpose = SyncPurpose::Recovery { since, storm };
        match self.start_sync(&mut ws, purpose, moved).await {
            Ok(true) => {}
            Ok(false) => {
                let spoke = self.speak(&mut ws).await;
                if spoke.is_err() || self.recovered(&mut ws, since, storm).await.is_err() {
                    self.drop_socket(ws);
                    return None;
                }
            }
            Err(Lost) => {
                self.drop_socket(ws);
                return None;
            }
        }
        Some(ws)
    }

    /// A `ping`: the client's first frame when it has nothing to `sync`.
    async fn speak(&self, ws: &mut Ws) -> Result<(), Lost> {
        self.send_frame(ws, &ClientFrame::Ping).await
    }

    /// Sends `sync` for `conversations` from what this client holds; `false` if none.
    async fn start_sync(
        &mut self,
        ws: &mut Ws,
        purpose: SyncPurpose,
        conversations: Vec<Uuid>,
    ) -> Result<bool, Lost> {
        let mut cursors = Vec::new();
        for id in conversations {
            if let Some(log) = self.convs.get_mut(&id) {
                cursors.push((id, cursor_of(log.begin_sync())));
            }
        }
        if cursors.is_empty() {
            return Ok(false);
        }
        self.sync = Some(purpose);
        self.send_frame(ws, &ClientFrame::sync(cursors)).await?;
        Ok(true)
    }

    /// Recovery done: count it, then re-send what was never acked (same `temp_id`).
    async fn recovered(&mut self, ws: &mut Ws, since: Instant, storm: bool) -> Result<(), Lost> {
        if storm {
            let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.shared.recovery.record(self.plan.index, micros);
            Stats::add(&self.shared.stats.storm_recovered, 1);
        }
        let mut resend: Vec<(u64, String, Uuid, String)> = self
            .pending
            .iter_mut()
            .map(|(temp_id, p)| {
                p.attempts += 1;
                (p.order, temp_id.clone(), p.conversation, p.content.clone())
            })
            .collect();
        resend.sort_by_key(|(order, ..)| *order);
        for (_, temp_id, conversation, content) in resend {
            Stats::add(&self.shared.stats.resent, 1);
            self.send_message(ws, conversation, &temp_id, &content)
                .await?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, ws: &mut Ws, msg: Message) -> Result<(), Lost> {
        match msg {
            Message::Text(text) => self.on_text(ws, text.as_str()).await,
            Message::Close(close) => {
                let code = close.map(|c| u16::from(c.code)).unwrap_or(1005);
                self.shared.error(format!("closed_by_server:{code}"));
                Err(Lost)
            }
            _ => Ok(()),
        }
    }

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> Result<(), Lost> {
        // Fast path for the frame that dominates: a message.
        if text.starts_with(MESSAGE_FRAME_PREFIX) {
            if let Ok(frame) = serde_json::from_str::<MessageFrame>(text) {
                self.on_message(frame.message);
                return Ok(());
            }
        }
        let Ok(Kind { kind }) = serde_json::from_str::<Kind>(text) else {
            self.shared.error("frame:unparsable");
            return Ok(());
        };
        if !READ_FRAMES.contains(&kind) {
            return Ok(());
        }
        let frame = match serde_json::from_str::<ServerFrame>(text) {
            Ok(frame) => frame,
            Err(_) => {
                self.shared.error(match kind {
                    types::MESSAGE => "frame:bad_message",
                    types::MESSAGE_SENT => "frame:bad_message_sent",
                    _ => "frame:unparsable",
                });
                return Ok(());
            }
        };
        match frame {
            ServerFrame::Message { message } => {
                self.on_message(message.into());
                Ok(())
            }
            ServerFrame::MessageSent { temp_id, seq, .. } => {
                self.on_ack(temp_id.as_deref(), u64::try_from(seq).ok());
                Ok(())
            }
            ServerFrame::SyncDone { conversations } => self.on_sync_done(ws, &conversations).await,
            ServerFrame::Error {
                code, reference, ..
            } => {
                self.shared.error(format!("frame:{code}"));
                if let Some(reference) = reference {
                    if self.pending.remove(&reference).is_some() {
                        Stats::add(&self.shared.stats.send_failed, 1);
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn on_message(&mut self, message: IncomingMessage) {
        let now_us = self.shared.now_us();
        let Some(log) = self.convs.get_mut(&message.conversation_id) else {
            self.shared.error("frame:message_of_unknown_conversation");
            return;
        };
        log.saw_last_seq(message.seq);
        let cursor = log.sync_cursor();
        let in_sync = cursor.is_some();
        let arrival = log.on_message(message.seq);
        let own = message.sender_id == self.plan.user_id;
        if arrival == Arrival::Duplicate {
            // Which rule it broke, for the diagnosis of a failed run.
            let kind = match cursor {
                None => "live",
                Some(c) if message.seq <= c => "replay_at_or_below_cursor",
                Some(_) => "replayed_twice",
            };
            let whose = if own { "own" } else { "other" };
            self.shared.error(format!("duplicate:{kind}:{whose}"));
        }
        if arrival != Arrival::New || own {
            return;
        }
        if in_sync {
            Stats::add(&self.shared.stats.replayed, 1);
        } else {
            Stats::add(&self.shared.stats.delivered, 1);
            if let Some(sent) = sent_at_us(&message.content) {
                self.shared
                    .delivery_latency
                    .record(self.plan.index, now_us.saturating_sub(sent));
            }
        }
    }

    fn on_ack(&mut self, temp_id: Option<&str>, seq: Option<u64>) {
        let (Some(temp_id), Some(seq)) = (temp_id, seq) else {
            self.shared.error("frame:bad_message_sent");
            return;
        };
        let Some(pending) = self.pending.remove(temp_id) else {
            self.shared.error("frame:unexpected_message_sent");
            return;
        };
        if pending.attempts == 1 {
            let micros = self.shared.now_us().saturating_sub(pending.sent_us);
            self.shared.ack_latency.record(self.plan.index, micros);
        }
        if let Some(log) = self.convs.get_mut(&pending.conversation) {
            log.on_ack(seq);
        }
        if self
            .acked
            .entry(pending.conversation)
            .or_default()
            .insert(seq)
        {
            Stats::add(&self.shared.stats.acked, 1);
            let members = self
                .members
                .get(&pending.conversation)
                .copied()
                .unwrap_or(1);
            Stats::add(
                &self.shared.stats.expected,
                members.saturating_sub(1) as u64,
            );
        }
    }

    async fn on_sync_done(
        &mut self,
        ws: &mut Ws,
        conversations: &BTreeMap<Uuid, SyncState>,
    ) -> Result<(), Lost> {
        let Some(purpose) = self.sync else {
            self.shared.error("frame:unexpected_sync_done");
            return Ok(());
        };
        let mut more = Vec::new();
        for (id, entry) in conversations {
            let Some(log) = self.convs.get_mut(id) else {
                continue;
            };
            log.saw_last_seq(seq_of(entry.last_seq));
            if entry.has_more {
                // The next page starts after what this client holds (as the SDK does).
                let cursor = log.seen.contiguous();
                log.continue_sync(cursor);
                more.push((*id, cursor_of(cursor)));
            } else {
                log.end_sync();
            }
        }
        if !more.is_empty() {
            return self.send_frame(ws, &ClientFrame::sync(more)).await;
        }
        // A conversation the server did not answer for stays open; nothing more will come
        // for it, so end it too (what it lacks shows up as a gap).
        for log in self.convs.values_mut() {
            log.end_sync();
        }
        self.sync = None;
        match purpose {
            SyncPurpose::Recovery { since, storm } => self.recovered(ws, since, storm).await,
            SyncPurpose::Verify => {
                self.verified = true;
                Ok(())
            }
        }
    }

    async fn send_new(&mut self, ws: &mut Ws) -> Result<(), Lost> {
        let Some(conversation) = self.plan.send_to else {
            return Ok(());
        };
        self.next_msg += 1;
        let temp_id = format!("lg-{}-{}", self.plan.index, self.next_msg);
        let sent_us = self.shared.now_us();
        let content = content_for(sent_us, self.shared.content_bytes);
        self.pending.insert(
            temp_id.clone(),
            Pending {
                conversation,
                content: content.clone(),
                sent_us,
                attempts: 1,
                order: self.next_msg,
            },
        );
        Stats::add(&self.shared.stats.sent, 1);
        self.send_message(ws, conversation, &temp_id, &content)
            .await
    }

    async fn send_message(
        &self,
        ws: &mut Ws,
        conversation: Uuid,
        temp_id: &str,
        content: &str,
    ) -> Result<(), Lost> {
        self.send_frame(ws, &ClientFrame::message(conversation, content, temp_id))
            .await
    }

    async fn send_frame(&self, ws: &mut Ws, frame: &ClientFrame) -> Result<(), Lost> {
        match ws.send(Message::text(frame.to_json())).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.error(format!("send:{}", ws_error_kind(&e)));
                Err(Lost)
            }
        }
    }

    /// What this client holds before the final check.
    fn snapshot_before_final(&mut self) {
        self.before_final = Some(
            self.convs
                .iter()
                .map(|(id, log)| (*id, log.seen.clone()))
                .collect(),
        );
    }

    /// The final check: `sync` every conversation from what this client holds.
    async fn verify(&mut self, ws: &mut Ws) {
        let all: Vec<Uuid> = self.convs.keys().copied().collect();
        match self.start_sync(ws, SyncPurpose::Verify, all).await {
            Ok(true) => {}
            Ok(false) => {
                self.verified = true;
                return;
            }
            Err(Lost) => return,
        }
        let deadline = Instant::now() + VERIFY_TIMEOUT;
        while self.sync.is_some() {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => {
                    self.shared.error("verify:timeout");
                    return;
                }
                Ok(Some(Ok(msg))) => {
                    if self.on_frame(ws, msg).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Err(_)) | None) => {
                    self.shared.error("verify:socket_lost");
                    return;
                }
            }
        }
    }

    async fn close(&self, mut ws: Ws) {
        let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
        self.drop_socket(ws);
    }

    fn outcome(self) -> ClientOutcome {
        let before = self.before_final.unwrap_or_default();
        let views = self
            .convs
            .iter()
            .map(|(id, log)| MemberView {
                conversation: *id,
                before_final: before.get(id).cloned().unwrap_or_else(|| log.seen.clone()),
                after_final: log.seen.clone(),
                last_seq: log.last_seq,
                duplicates: log.duplicates,
                redundant: log.redundant,
            })
            .collect();
        ClientOutcome {
            index: self.plan.index,
            ready: self.ready,
            verified: self.verified,
            views,
            acked: self.acked.into_iter().collect(),
            unacked: self.pending.len() as u64,
        }
    }
}

/// A short, low-cardinality name of a WebSocket error.
fn ws_error_kind(e: &WsError) -> String {
    match e {
        WsError::ConnectionClosed => "connection_closed".into(),
        WsError::AlreadyClosed => "already_closed".into(),
        WsError::Io(io) => format!("io:{:?}", io.kind()),
        WsError::Protocol(_) => "protocol".into(),
        WsError::Capacity(_) => "capacity".into(),
        WsError::Http(r) => format!("http_{}", r.status().as_u16()),
        _ => "other".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn content_carries_its_send_time_and_has_the_asked_length() {
        let c = content_for(123_456, 40);
        assert_eq!(c.len(), 40);
        assert_eq!(sent_at_us(&c), Some(123_456));
        let short = content_for(9, 1);
        assert_eq!(short, "lg:9:");
        assert_eq!(sent_at_us(&short), Some(9));
        assert_eq!(sent_at_us("hello"), None);
    }

    #[test]
    fn frames_of_the_protocol_parse() {
        let msg = r#"{"type":"message","message":{"id":"0193a5b3-0000-7000-8000-000000000042","conversation_id":"0193a5b2-7c1e-7000-8000-00000000c001","seq":42,"sender_id":"0193a5b1-0000-7000-8000-0000000000b2","content":"lg:5:xx","content_type":"text","reply_to":null,"temp_id":"t","created_at":"2026-11-21T12:00:01.250000Z","edited_at":null,"deleted_at":null,"status":"sent"}}"#;
        let fast: MessageFrame = serde_json::from_str(msg).unwrap();
        assert_eq!(fast.message.seq, 42);
        assert!(msg.starts_with(MESSAGE_FRAME_PREFIX));
        let ServerFrame::Message { message } = serde_json::from_str(msg).unwrap() else {
            panic!("not a message");
        };
        let body = IncomingMessage::from(message);
        assert_eq!(sent_at_us(&body.content), Some(5));

        let err = r#"{"type":"error","code":"rate_limited","message":"too many","ref":"lg-1-2"}"#;
        assert_eq!(
            serde_json::from_str::<Kind>(err).unwrap().kind,
            types::ERROR
        );
        let ServerFrame::Error {
            code,
            message,
            reference,
        } = serde_json::from_str(err).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(code, "rate_limited");
        assert_eq!(reference.as_deref(), Some("lg-1-2"));
        assert_eq!(message, "too many");

        let ack = r#"{"type":"message_sent","conversation_id":"0193a5b2-7c1e-7000-8000-00000000c001","message_id":"0193a5b3-0000-7000-8000-000000000042","temp_id":"lg-1-2","seq":42,"created_at":"2026-11-21T12:00:01.250000Z"}"#;
        let ServerFrame::MessageSent { temp_id, seq, .. } = serde_json::from_str(ack).unwrap()
        else {
            panic!("not an ack");
        };
        assert_eq!((temp_id.as_deref(), seq), (Some("lg-1-2"), 42));

        let done = r#"{"type":"sync_done","conversations":{"0193a5b2-7c1e-7000-8000-00000000c001":{"last_seq":42,"has_more":false,"delivered_seq":42,"read_seq":41,"peer_delivered_seq":42,"peer_read_seq":40}}}"#;
        let ServerFrame::SyncDone { conversations } = serde_json::from_str(done).unwrap() else {
            panic!("not a sync_done");
        };
        assert_eq!(conversations.len(), 1);
    }

    #[test]
    fn histograms_merge_their_shards() {
        let h = Histos::new().unwrap();
        for i in 0..100u64 {
            h.record(i as usize, i * 10);
        }
        let merged = h.merged().unwrap();
        assert_eq!(merged.len(), 100);
        assert!(merged.max() >= 990);
    }
}
