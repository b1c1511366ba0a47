//! One WebSocket session: from the accepted socket to its close.
//!
//! On open: the session cap (presence, 1008), the user's channel and every conversation
//! subscribed (routed in the hub and referenced in pub/sub), THEN the snapshot read and `hello`
//! sent, so anything committed meanwhile is either in the snapshot or arrives live.
//!
//! Then one task serves the socket: client frames, events the hub queued for it, send
//! acknowledgements (in send order), heartbeats and the token's expiry. Each conversation has
//! an [`OrderedFeed`]: live messages come out in seq order exactly once; a hole is fetched
//! from storage; a `sync` below the feed's position replays through the feed, page by page,
//! while live messages wait behind the replay.
//!
//! Every error a frame causes is answered with an `error` frame; only the conditions of
//! `docs/protocol.md` close the session.

use super::frames::{self, FrameError};
use super::socket::{self, CloseCode, CloseReason, Incoming, ReadError, Reader, Writer};
use crate::auth::{Claims, TokenVerifier};
use crate::state::AppState;
use actix_web::web;
use bytestring::ByteString;
use chrono::{DateTime, Utc};
use domain::conversation::ConversationState;
use domain::delivery::OrderedFeed;
use domain::message::AppendOutcome;
use domain::realtime::{Event, OpenSessionError, SessionId, Topic};
use domain::services::{ChatError, HistoryPage, MessageView, SendCommand};
use domain::user::User;
use domain::{ConversationId, MessageId, UserId};
use governor::{DefaultDirectRateLimiter, Quota};
use protocol::client::{ClientFrame, OwnStatus, SendFrame, SyncFrame};
use protocol::server::{SyncState, Watermarks};
use protocol::{ErrorCode, ServerFrame};
use realtime::envelope::Kind;
use realtime::hub::{Backlog, CloseSignal, Delivery, Inbound, Registration, CLOSE_SLOW_CONSUMER};
use realtime::metrics::{unix_micros_now, Transport};
use realtime::settings::RealtimeSettings;
use realtime::wire;
use realtime::Realtime;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

/// Close: normal.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close: the server is going away (shutdown, or the client went silent).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close: a frame that breaks the WebSocket protocol (RFC 6455).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close: a text frame that is not UTF-8.
pub const CLOSE_NOT_UTF8: u16 = 1007;
/// Close: too many sessions of the user.
pub const CLOSE_POLICY: u16 = 1008;
/// Close: a frame over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close: the server cannot serve the session (storage or Redis down at open).
pub const CLOSE_UNAVAILABLE: u16 = 1011;
/// Close: invalid or expired token.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close: not a participant (or no such conversation).
pub const CLOSE_NOT_PARTICIPANT: u16 = 4003;

/// What an accepted socket brings to its session.
pub struct Opening {
    /// The token's claims; `None` when it was missing or invalid.
    pub claims: Option<Claims>,
    /// The conversation of `/ws/chat/{id}`.
    pub scope: Option<ConversationId>,
    /// The services.
    pub state: web::Data<AppState>,
    /// For in-band `auth` renewals.
    pub verifier: TokenVerifier,
}

/// How serving ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The client closed (answer its close) or the socket is gone.
    Gone,
}

/// Why a frame handler stopped: an answer for the client (`Storage`: one caused by a storage
/// failure, counted in the metrics), or the end of the session.
enum Fault {
    Frame(FrameError),
    Storage(FrameError),
    End(End),
}

impl Fault {
    /// Attaches the offending frame's `temp_id` to the answer.
    fn with_reference(self, reference: Option<String>) -> Self {
        match self {
            Self::Frame(e) => Self::Frame(e.with_reference(reference)),
            Self::Storage(e) => Self::Storage(e.with_reference(reference)),
            end @ Self::End(_) => end,
        }
    }
}

impl From<FrameError> for Fault {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

impl From<End> for Fault {
    fn from(e: End) -> Self {
        Self::End(e)
    }
}

impl From<ChatError> for Fault {
    fn from(e: ChatError) -> Self {
        if matches!(e, ChatError::Storage(_)) {
            Self::Storage(e.into())
        } else {
            Self::Frame(e.into())
        }
    }
}

/// A seq of a conversation's feed: a message frame to write, or the session's own message,
/// acknowledged with `message_sent` instead.
enum Item {
    Message {
        frame: ByteString,
        seq: i64,
        id: MessageId,
        sender: UserId,
        /// Fetched from storage: fetching already counted as delivery.
        fetched: bool,
        /// A live message: when its send reached the server and when it was published after
        /// its commit (Unix µs, from the envelope header), for the latency metrics.
        sent_at: Option<i64>,
        committed_at: Option<i64>,
    },
    Acked,
}

/// One conversation as this session follows it.
struct Feed {
    order: OrderedFeed<Item>,
    /// The feed started here without writing anything up to it (the `hello` snapshot or
    /// the join): a `sync` below it may rewind while nothing was written since.
    base: i64,
    /// The client is paging through a `sync`: its hole is the client's to fill.
    syncing: bool,
    /// Set while the feed is still exactly as the `hello` snapshot started it (until its
    /// first `sync` that is not answered from it): see [`ChatSession::current_answer`].
    fresh: Option<Fresh>,
}

/// What a feed started from the `hello` snapshot knows without asking storage.
struct Fresh {
    /// The snapshot's watermarks (what `hello` said).
    watermarks: Watermarks,
    /// [`realtime::hub::Hub::resubscriptions`] just before the snapshot was read.
    resubscriptions: u64,
}

/// The answer to a send, in the order the session sent them.
struct Ack {
    conversation: ConversationId,
    temp_id: Option<String>,
    result: Result<AppendOutcome, ChatError>,
    /// When the `message` frame was received, for the send -> ack latency metric.
    received: std::time::Instant,
}

/// A send queued for its commit, waiting for the answer.
struct InFlight {
    conversation: ConversationId,
    temp_id: Option<String>,
    received: std::time::Instant,
    answer: oneshot::Receiver<Result<AppendOutcome, ChatError>>,
}

impl InFlight {
    /// The answer, once it came; a batcher that dropped the send is a storage failure.
    fn ack(
        self,
        result: Result<Result<AppendOutcome, ChatError>, oneshot::error::RecvError>,
    ) -> Ack {
        Ack {
            conversation: self.conversation,
            temp_id: self.temp_id,
            result: result.unwrap_or_else(|_| {
                Err(ChatError::Storage(domain::StorageError::msg(
                    "the commit batcher stopped",
                )))
            }),
            received: self.received,
        }
    }
}

/// The answer of the oldest send in flight, when it comes (`None`: none in flight). Sends
/// are answered in the order they were sent. Cancel-safe: an answer not taken stays.
async fn next_ack(in_flight: &mut VecDeque<InFlight>) -> Option<Ack> {
    let result = (&mut in_flight.front_mut()?.answer).await;
    Some(in_flight.pop_front()?.ack(result))
}

/// At shutdown, how many bytes a session reads past what it had read when the close was
/// decided: enough for whatever a client had sent by then (the kernel's receive queue), and
/// a bound on a client that keeps sending.
const SHUTDOWN_READ_LIMIT: usize = 1 << 20;

/// Runs a session to its end.
///
/// An idle connection's memory is mostly the future it waits in, and a future is as large as
/// the largest state it may be in: what only opening and closing need (the opening, the
/// checks, the close) lives in boxes that are freed once passed, so the waiting state holds
/// little more than the session itself.
pub fn run(opening: Opening, ws: Writer, stream: Reader) -> impl Future<Output = ()> {
    let admitted = Box::pin(admit(opening, ws, stream));
    async move {
        let Some((mut session, mut stream, conversations)) = admitted.await else {
            return;
        };
        let end = match Box::pin(session.open(conversations)).await {
            Ok(()) => session.serve(&mut stream).await,
            Err(end) => end,
        };
        let grace = session.realtime.settings.close_grace;
        Box::pin(session.finish(end, &mut stream)).await;
        Box::pin(socket::drain(stream, grace)).await;
    }
}

/// The session of an accepted socket, registered in the hub, with the conversations it
/// serves (read once here for `/ws`: presence announces to them and the session subscribes
/// them); `None` (the socket closed) for a bad token, too many sessions of the user, or
/// presence or storage unavailable.
async fn admit(
    opening: Opening,
    ws: Writer,
    stream: Reader,
) -> Option<(ChatSession, Reader, Vec<ConversationId>)> {
    let grace = opening.state.realtime.settings.close_grace;
    let Some(claims) = opening.claims else {
        close(
            ws,
            stream,
            CLOSE_UNAUTHORIZED,
            "invalid or expired token",
            grace,
        )
        .await;
        return None;
    };
    let user = claims.user_id();
    let realtime = opening.state.realtime.clone();
    let (conversations, opened) = match opening.scope {
        Some(scope) => (vec![scope], realtime.presence.session_opened(user).await),
        None => match realtime.ports.conversations.conversation_ids(user).await {
            Ok(ids) => {
                let opened = realtime.presence.session_opened_in(user, &ids).await;
                (ids, opened)
            }
            Err(e) => {
                realtime.metrics.storage_error();
                tracing::warn!(error = %e, "conversations unavailable at session open");
                close(ws, stream, CLOSE_UNAVAILABLE, "service unavailable", grace).await;
                return None;
            }
        },
    };
    match opened {
        Ok(_) => {
            if let Some(grace) = realtime.grace.get() {
                grace.reopened(user);
            }
        }
        Err(OpenSessionError::TooManySessions) => {
            close(ws, stream, CLOSE_POLICY, "too many sessions", grace).await;
            return None;
        }
        Err(OpenSessionError::Unavailable(e)) => {
            tracing::warn!(error = %e, "presence unavailable: session refused");
            close(ws, stream, CLOSE_UNAVAILABLE, "service unavailable", grace).await;
            return None;
        }
    }
    let settings = &realtime.settings;
    let backlog = backlog(settings);
    let (queue, inbound) = mpsc::channel(backlog.capacity());
    let signal = Arc::new(CloseSignal::default());
    let id = SessionId::new();
    realtime.hub.register(Registration {
        session: id,
        user,
        scope: opening.scope,
        queue,
        backlog,
        close: signal.clone(),
    });
    realtime.metrics.session_opened();
    let typing_quota =
        Quota::per_second(settings.typing_per_second).allow_burst(settings.typing_burst);
    let typing_limiter = realtime.throttles.direct(typing_quota);
    let session = ChatSession {
        id,
        user,
        scope: opening.scope,
        expiry: Box::pin(tokio::time::sleep_until(deadline(claims.expires_at()))),
        state: opening.state,
        verifier: opening.verifier,
        realtime,
        ws,
        signal,
        inbound,
        feeds: HashMap::new(),
        subscribed: HashSet::new(),
        away: false,
        in_flight: VecDeque::new(),
        closing: None,
        sending: HashMap::new(),
        unacked: HashSet::new(),
        typing_limiter,
        typing_in: Vec::new(),
        held: None,
        overflowed: HashSet::new(),
        presence_seen: HashMap::new(),
        gaps: Vec::new(),
        gaps_due: None,
    };
    Some((session, stream, conversations))
}

/// How far behind a session may fall (`realtime.outbound_queue_frames`,
/// `realtime.slow_consumer_grace`): what the hub judges it by, and what it drains to.
fn backlog(settings: &RealtimeSettings) -> Backlog {
    Backlog {
        limit: settings.outbound_queue_frames.get(),
        grace: settings.slow_consumer_grace,
    }
}

/// Closes a socket that never became a session.
async fn close(mut ws: Writer, stream: Reader, code: u16, reason: &'static str, grace: Duration) {
    let _ = tokio::time::timeout(grace, ws.close(close_frame(code, reason))).await;
    socket::drain(stream, grace).await;
}

fn close_frame(code: u16, reason: &'static str) -> Option<CloseReason> {
    Some(CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    })
}

/// The instant of a wall-clock time, for timers.
fn deadline(at: DateTime<Utc>) -> Instant {
    let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Instant::now() + left
}

struct ChatSession {
    id: SessionId,
    user: UserId,
    scope: Option<ConversationId>,
    expiry: Pin<Box<Sleep>>,
    state: web::Data<AppState>,
    verifier: TokenVerifier,
    realtime: Arc<Realtime>,
    ws: Writer,
    signal: Arc<CloseSignal>,
    inbound: mpsc::Receiver<Inbound>,
    feeds: HashMap<ConversationId, Feed>,
    /// Topics this session holds a pub/sub reference to.
    subscribed: HashSet<Topic>,
    away: bool,
    /// Sends queued for their commit, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Set at shutdown, while the session answers what it read before its close: writes
    /// are no longer cut short by the close signal, only bounded by this deadline.
    closing: Option<Instant>,
    /// Sends of this session awaiting their commit, per conversation. A hole no larger than
    /// that is most likely this session's own messages (the peer's next one can overtake our
    /// ack): its fetch waits for the acks, which fill it without a storage read and without
    /// echoing our own messages back to us.
    sending: HashMap<ConversationId, u32>,
    /// The `temp_id`s of those sends: a gap fetch that finds one of them committed (its ack
    /// not yet here) passes it silently, as its ack will, instead of echoing it back.
    unacked: HashSet<(ConversationId, String)>,
    typing_limiter: DefaultDirectRateLimiter,
    /// Conversations where this session started a typing lease that it has not ended yet:
    /// its send there, or its close, ends the lease. A session that never typed costs the
    /// typing store nothing when it sends or closes.
    typing_in: Vec<ConversationId>,
    /// Live messages held after `hello` until the client's first frame (or the hold time).
    held: Option<Vec<Delivery>>,
    /// Conversations whose held messages did not all fit: fetched when the hold ends.
    overflowed: HashSet<ConversationId>,
    /// The last presence frame written per user, so copies from other topics are skipped.
    presence_seen: HashMap<UserId, ByteString>,
    /// Conversations with a hole seen live that our own sends do not explain, fetched at
    /// `gaps_due` if still open (`realtime.gap_grace`).
    gaps: Vec<ConversationId>,
    gaps_due: Option<Instant>,
}

impl ChatSession {
    // ------------------------------------------------------------------ open

    /// Subscribes the user's own topic and `ids` (the conversations it serves, as `admit`
    /// read them), all in one batch, then sends `hello`.
    async fn open(&mut self, ids: Vec<ConversationId>) -> Result<(), End> {
        let unavailable = End::Close(CLOSE_UNAVAILABLE, "service unavailable");
        // First the topics...
        let topics: Vec<Topic> = std::iter::once(Topic::User(self.user))
            .chain(ids.iter().copied().map(Topic::Conversation))
            .collect();
        self.subscribe(&topics)
            .await
            .map_err(|_| unavailable.clone())?;
        // ...then, subscribed, the snapshot: what is committed from now on arrives live.
        let resubscriptions = self.realtime.hub.resubscriptions();
        let (account, snapshot) = self.snapshot().await?;
        let now: HashSet<ConversationId> = snapshot.iter().map(|s| s.conversation_id).collect();
        let joined_meanwhile: Vec<Topic> = now
            .iter()
            .filter(|c| !ids.contains(c))
            .map(|c| Topic::Conversation(*c))
            .collect();
        self.subscribe(&joined_meanwhile)
            .await
            .map_err(|_| unavailable.clone())?;
        for c in ids.iter().filter(|c| !now.contains(c)) {
            self.unsubscribe(Topic::Conversation(*c)).await;
        }
        let max_pending = self.realtime.settings.outbound_queue_frames.get().max(64);
        let mut conversations = Vec::with_capacity(snapshot.len());
        for state in &snapshot {
            let last_seq = state.last_seq;
            let entry = wire::snapshot(state);
            self.feeds.insert(
                state.conversation_id,
                Feed {
                    order: OrderedFeed::new(last_seq, max_pending),
                    base: last_seq,
                    syncing: false,
                    fresh: Some(Fresh {
                        watermarks: entry.watermarks,
                        resubscriptions,
                    }),
                },
            );
            // Messages of this user not yet read by everyone are at most `last_seq`: the
            // receipts that can concern them come through, the others' do not.
            let floor = if state.peer_read_seq < last_seq {
                last_seq
            } else {
                0
            };
            self.realtime
                .hub
                .receipt_floor(self.id, state.conversation_id, floor);
            conversations.push(entry);
        }
        let opened = conversations.len();
        let hello = ServerFrame::Hello {
            user: wire::user(&account),
            session_id: self.id.0,
            server_time: Utc::now(),
            heartbeat_interval_ms: u64::try_from(
                self.realtime.settings.heartbeat_interval.as_millis(),
            )
            .unwrap_or(u64::MAX),
            conversations,
        };
        self.write(wire::encode(&hello), false).await?;
        if !self.realtime.settings.sync_hold.is_zero() {
            self.held = Some(Vec::new());
        }
        tracing::debug!(session = %self.id, conversations = opened, "session open");
        Ok(())
    }

    /// The account and the state of every conversation the session serves: one storage
    /// read on `/ws` (`session_snapshot`); on `/ws/chat/{id}`, that conversation read
    /// whole (membership checked, 4003 otherwise) and the account.
    async fn snapshot(&self) -> Result<(User, Vec<ConversationState>), End> {
        let unavailable = |e: &dyn std::fmt::Display| {
            self.realtime.metrics.storage_error();
            tracing::warn!(error = %e, "snapshot unavailable at session open");
            End::Close(CLOSE_UNAVAILABLE, "service unavailable")
        };
        let unknown_user = || End::Close(CLOSE_UNAUTHORIZED, "unknown user");
        let Some(scope) = self.scope else {
            return match self.state.conversations.session_snapshot(self.user).await {
                Ok(Some(snapshot)) => Ok((snapshot.user, snapshot.conversations)),
                Ok(None) => Err(unknown_user()),
                Err(e) => Err(unavailable(&e)),
            };
        };
        let not_participant = || {
            End::Close(
                CLOSE_NOT_PARTICIPANT,
                "not a participant of this conversation",
            )
        };
        let state = match self.state.conversations.get(self.user, scope).await {
            Ok(details) => details.state_of(self.user).ok_or_else(not_participant)?,
            Err(ChatError::NotParticipant) => return Err(not_participant()),
            Err(e) => return Err(unavailable(&e)),
        };
        match self.state.accounts.me(self.user).await {
            Ok(user) => Ok((user, vec![state])),
            Err(domain::services::AuthError::UnknownUser) => Err(unknown_user()),
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Routes `topics` to this session and takes a pub/sub reference to each not held yet.
    async fn subscribe(&mut self, topics: &[Topic]) -> Result<(), domain::realtime::RealtimeError> {
        let new: Vec<Topic> = topics
            .iter()
            .copied()
            .filter(|t| !self.subscribed.contains(t))
            .collect();
        for topic in &new {
            self.realtime.hub.route(self.id, *topic);
        }
        // Concurrently: the Redis adapter confirms a whole batch with one SUBSCRIBE.
        let pubsub = &self.realtime.pubsub;
        let results =
            futures_util::future::join_all(new.iter().map(|t| pubsub.subscribe(*t))).await;
        let mut first_error = None;
        for (topic, result) in new.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    self.subscribed.insert(topic);
                }
                Err(e) => {
                    self.realtime.metrics.pubsub_error();
                    tracing::warn!(error = %e, %topic, "subscription failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops routing `topic` here and drops this session's reference to it.
    async fn unsubscribe(&mut self, topic: Topic) {
        self.realtime.hub.unroute(self.id, topic);
        if self.subscribed.remove(&topic) {
            if let Err(e) = self.realtime.pubsub.unsubscribe(topic).await {
                self.realtime.metrics.pubsub_error();
                tracing::warn!(error = %e, %topic, "unsubscribe failed");
            }
        }
    }

    // ------------------------------------------------------------------ serve

    async fn serve(&mut self, stream: &mut Reader) -> End {
        let interval = self
            .realtime
            .settings
            .heartbeat_interval
            .max(Duration::from_millis(1));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let hold = tokio::time::sleep(self.realtime.settings.sync_hold);
        tokio::pin!(hold);
        loop {
            let gaps_due = self.gaps_due;
            let step = tokio::select! {
                biased;
                code = self.signal.wait() => Err(End::Close(code, close_reason(code))),
                inbound = self.inbound.recv() => match inbound {
                    Some(inbound) => {
                        if self.inbound.len() <= backlog(&self.realtime.settings).limit {
                            self.signal.drained();
                        }
                        self.on_inbound(inbound).await
                    }
                    None => Err(End::Gone),
                },
                Some(ack) = next_ack(&mut self.in_flight), if !self.in_flight.is_empty() => {
                    Box::pin(self.on_ack(ack)).await
                }
                message = stream.recv() => {
                    last_heard = Instant::now();
                    Box::pin(self.on_client(message)).await
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() >= interval * 2 {
                        Err(End::Close(CLOSE_GOING_AWAY, "no heartbeat"))
                    } else {
                        self.ws.ping(b"").await.map_err(|_| End::Gone)
                    }
                }
                () = &mut self.expiry => Err(End::Close(CLOSE_UNAUTHORIZED, "token expired")),
                () = &mut hold, if self.held.is_some() => self.release_hold().await,
                () = until(gaps_due), if gaps_due.is_some() => Box::pin(self.fetch_due_gaps()).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Writes a frame; waits for a slow client only until the session is asked to close (a
    /// slow client's write may wait for ever; the close must not). The frame is queued
    /// first, so even then it goes out, before the close frame: an answer the session
    /// decided on is never dropped. While closing at shutdown, the wait is bounded by the
    /// closing deadline instead.
    async fn write(&mut self, text: impl Into<ByteString>, message: bool) -> Result<(), End> {
        self.ws.queue_text(text).map_err(|_| End::Gone)?;
        self.realtime.metrics.frame_out(message);
        if let Some(deadline) = self.closing {
            return match tokio::time::timeout_at(deadline, self.ws.flush()).await {
                Ok(written) => written.map_err(|_| End::Gone),
                // Still queued: the close writes it, within its own grace.
                Err(_) => Ok(()),
            };
        }
        tokio::select! {
            biased;
            code = self.signal.wait() => Err(End::Close(code, close_reason(code))),
            written = self.ws.flush() => written.map_err(|_| End::Gone),
        }
    }

    async fn write_error(&mut self, error: FrameError) -> Result<(), End> {
        self.write(error.to_frame(), false).await
    }

    // ------------------------------------------------------------------ client frames

    async fn on_client(&mut self, message: Option<Result<Incoming, ReadError>>) -> Result<(), End> {
        match message {
            None => Err(End::Gone),
            Some(Err(e)) => Err(self.protocol_end(&e)),
            Some(Ok(Incoming::Text(text))) => {
                let result = match frames::parse(&text) {
                    Ok(frame) => self.on_frame(frame).await,
                    Err(e) => Err(Fault::Frame(e)),
                };
                self.answer_fault(result).await?;
                // The client has spoken (its `sync`, if it had one, is in): live messages flow.
                self.release_hold().await
            }
            Some(Ok(Incoming::Binary(_))) => {
                self.write_error(FrameError::invalid_json(
                    "binary frames are not supported: send JSON text",
                ))
                .await
            }
            Some(Ok(Incoming::Ping(bytes))) => self.ws.pong(&bytes).await.map_err(|_| End::Gone),
            Some(Ok(Incoming::Pong(_))) => Ok(()),
            Some(Ok(Incoming::Close(_))) => Err(End::Close(CLOSE_NORMAL, "bye")),
        }
    }

    /// Answers what handling a frame went wrong with (an `error` frame), or ends the session.
    async fn answer_fault(&mut self, result: Result<(), Fault>) -> Result<(), End> {
        match result {
            Ok(()) => Ok(()),
            Err(Fault::Frame(e)) => self.write_error(e).await,
            Err(Fault::Storage(e)) => {
                self.realtime.metrics.storage_error();
                self.write_error(e).await
            }
            Err(Fault::End(end)) => Err(end),
        }
    }

    /// How a broken client stream ends the session: 1002 for a frame that breaks RFC 6455,
    /// 1007 for text that is not UTF-8, 1009 for a frame over the limit. The client's fault,
    /// not the server's: counted, and logged at INFO at most
    /// `realtime.protocol_error_logs_per_minute` times a minute (a client must not be able to
    /// fill the log).
    fn protocol_end(&self, error: &ReadError) -> End {
        let (code, reason, what) = match error {
            ReadError::TooBig => (
                CLOSE_TOO_BIG,
                "frame too large",
                "frame over the size limit",
            ),
            ReadError::NotUtf8 => (
                CLOSE_NOT_UTF8,
                "text frames must be UTF-8",
                "text not UTF-8",
            ),
            ReadError::Protocol(what) => (CLOSE_PROTOCOL, "protocol error", *what),
            ReadError::Io(e) => {
                tracing::debug!(session = %self.id, error = %e, "socket failed");
                return End::Gone;
            }
        };
        self.realtime.metrics.protocol_error(code);
        if self.realtime.client_errors.admit() {
            tracing::info!(
                session = %self.id,
                user = %self.user,
                code,
                error = what,
                "client broke the WebSocket protocol: closing its session"
            );
        }
        End::Close(code, reason)
    }

    async fn on_frame(&mut self, frame: ClientFrame) -> Result<(), Fault> {
        match frame {
            ClientFrame::Message(send) => self.on_send(send).await,
            ClientFrame::Typing(typing) => {
                let c = self.followed(typing.conversation_id)?;
                if self.typing_limiter.check().is_err() {
                    return Err(FrameError::rate_limited("typing events").into());
                }
                self.realtime
                    .typing
                    .typing(c, self.user, typing.is_typing)
                    .await
                    .map_err(|e| unavailable(&e))?;
                self.typing_in.retain(|t| *t != c);
                if typing.is_typing {
                    self.typing_in.push(c);
                }
                Ok(())
            }
            ClientFrame::Read(read) => {
                let c = self.followed(read.conversation_id)?;
                let message = self
                    .state
                    .messages
                    .message_of(self.user, c, domain::MessageId::from_uuid(read.message_id))
                    .await?;
                self.realtime
                    .receipts
                    .read(c, self.user, message.seq, message.id, Utc::now());
                Ok(())
            }
            ClientFrame::Delivered(delivered) => {
                let c = self.followed(delivered.conversation_id)?;
                let message = self
                    .state
                    .messages
                    .message_of(
                        self.user,
                        c,
                        domain::MessageId::from_uuid(delivered.message_id),
                    )
                    .await?;
                self.realtime
                    .receipts
                    .delivered(c, self.user, message.seq, message.id);
                Ok(())
            }
            ClientFrame::Sync(sync) => self.on_sync(sync).await,
            ClientFrame::Presence(presence) => {
                let away = presence.status == OwnStatus::Away;
                if away != self.away {
                    self.realtime
                        .presence
                        .set_away(self.user, away)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    self.away = away;
                }
                Ok(())
            }
            ClientFrame::Auth(auth) => {
                let claims = self
                    .verifier
                    .verify(&auth.token)
                    .ok()
                    .filter(|c| c.user_id() == self.user)
                    .ok_or_else(|| {
                        FrameError::new(
                            ErrorCode::Unauthorized,
                            "invalid or expired token; the session keeps its expiry",
                        )
                    })?;
                let expires_at = claims.expires_at();
                self.expiry.as_mut().reset(deadline(expires_at));
                self.write(wire::encode(&ServerFrame::AuthOk { expires_at }), false)
                    .await?;
                Ok(())
            }
            ClientFrame::Ping => Ok(self.write(wire::encode(&ServerFrame::Pong), false).await?),
        }
    }

    /// The conversation a frame names: the session's own on `/ws/chat/{id}` (where it may be
    /// omitted), and one the session follows.
    fn conversation_of(&self, named: Option<uuid::Uuid>) -> Result<ConversationId, FrameError> {
        let named = named.map(ConversationId::from_uuid);
        match (self.scope, named) {
            (Some(scope), None) => Ok(scope),
            (Some(scope), Some(c)) if c == scope => Ok(c),
            (Some(_), Some(_)) => Err(FrameError::not_participant()),
            (None, Some(c)) => Ok(c),
            (None, None) => Err(FrameError::validation("conversation_id", "is required")),
        }
    }

    /// [`Self::conversation_of`], and the session must follow it (be a member).
    fn followed(&self, named: Option<uuid::Uuid>) -> Result<ConversationId, FrameError> {
        let c = self.conversation_of(named)?;
        if self.feeds.contains_key(&c) {
            Ok(c)
        } else {
            Err(FrameError::not_participant())
        }
    }

    async fn on_send(&mut self, send: SendFrame) -> Result<(), Fault> {
        let received = std::time::Instant::now();
        self.realtime.metrics.message_in(Transport::Ws);
        let temp_id = send.temp_id.clone();
        let with_ref = |e: Fault| e.with_reference(temp_id.clone());
        let c = self
            .conversation_of(send.conversation_id)
            .map_err(|e| with_ref(Fault::Frame(e)))?;
        if self
            .realtime
            .throttles
            .messages
            .check_key(&self.user)
            .is_err()
        {
            return Err(with_ref(Fault::Frame(FrameError::rate_limited("messages"))));
        }
        let cmd = SendCommand {
            sender: self.user,
            conversation_id: c,
            content: send.content,
            content_type: send.content_type,
            temp_id: send.temp_id,
            reply_to: send.reply_to.map(MessageId::from_uuid),
        };
        // A conversation this session follows is one its user is a member of (a removal
        // reaches the session on the conversation's topic and ends the following): no
        // membership read per send.
        let messages = &self.state.messages;
        let prepared = if self.feeds.contains_key(&c) {
            messages.prepare_member_send(cmd).await
        } else {
            messages.prepare_send(cmd).await
        }
        .map_err(|e| with_ref(Fault::from(e)))?;
        // Queued now, in frame order (commit order); answered when committed.
        let answer: oneshot::Receiver<_> = self
            .realtime
            .batcher
            .enqueue(prepared, Some(self.id))
            .await
            .map_err(|e| with_ref(Fault::from(e)))?;
        *self.sending.entry(c).or_default() += 1;
        if let Some(t) = &temp_id {
            self.unacked.insert((c, t.clone()));
        }
        self.in_flight.push_back(InFlight {
            conversation: c,
            temp_id,
            received,
            answer,
        });
        Ok(())
    }

    async fn on_ack(&mut self, ack: Ack) -> Result<(), End> {
        let conversation = ack.conversation;
        if let Some(t) = &ack.temp_id {
            self.unacked.remove(&(conversation, t.clone()));
        }
        if let Some(pending) = self.sending.get_mut(&conversation) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                self.sending.remove(&conversation);
            }
        }
        self.answer_send(ack).await?;
        // A hole that waited for this ack and is still there was someone else's: fetch it,
        // unless it fills meanwhile (another sender's message of the same commit may reach
        // us over pub/sub just after our ack).
        self.gap_seen(conversation).await
    }

    async fn answer_send(&mut self, ack: Ack) -> Result<(), End> {
        let Ack {
            conversation,
            temp_id,
            result,
            received,
        } = ack;
        match result {
            Ok(outcome) => {
                let message = outcome.message();
                let frame = ServerFrame::MessageSent {
                    conversation_id: conversation.as_uuid(),
                    message_id: message.id.as_uuid(),
                    temp_id,
                    seq: message.seq,
                    created_at: message.created_at,
                };
                let seq = message.seq;
                self.write(wire::encode(&frame), false).await?;
                self.realtime
                    .metrics
                    .send_acked(Transport::Ws, received.elapsed());
                // This session has its own message: its feed moves past it silently.
                if let Some(feed) = self.feeds.get_mut(&conversation) {
                    let ready = feed.order.offer(seq, Item::Acked);
                    self.write_items(conversation, ready).await?;
                }
                let typed = self.typing_in.iter().position(|t| *t == conversation);
                if let (AppendOutcome::Created(_), Some(i)) = (&outcome, typed) {
                    self.typing_in.swap_remove(i);
                    let typing = self.realtime.typing.clone();
                    let user = self.user;
                    tokio::spawn(async move {
                        if let Err(e) = typing.message_sent(conversation, user).await {
                            tracing::warn!(error = %e, "typing stop after a send failed");
                        }
                    });
                }
                Ok(())
            }
            Err(e) => {
                self.write_error(FrameError::from(e).with_reference(temp_id))
                    .await
            }
        }
    }

    // ------------------------------------------------------------------ sync

    async fn on_sync(&mut self, sync: SyncFrame) -> Result<(), Fault> {
        let mut wanted = Vec::with_capacity(sync.cursors.len());
        for (id, cursor) in &sync.cursors {
            if *cursor < 0 {
                return Err(FrameError::validation("cursors", "must not be negative").into());
            }
            let c = ConversationId::from_uuid(*id);
            if !self.feeds.contains_key(&c) || self.scope.is_some_and(|s| s != c) {
                return Err(FrameError::not_participant().into());
            }
            wanted.push((c, *cursor));
        }
        let mut done = BTreeMap::new();
        for (c, cursor) in wanted {
            if let Some(state) = self.sync_one(c, cursor).await? {
                done.insert(c.as_uuid(), state);
            }
        }
        self.write(
            wire::encode(&ServerFrame::SyncDone {
                conversations: done,
            }),
            false,
        )
        .await?;
        Ok(())
    }

    /// Replays one page of `c` after `cursor`; `None` when the conversation is no longer
    /// followed (the session just left it).
    async fn sync_one(
        &mut self,
        c: ConversationId,
        cursor: i64,
    ) -> Result<Option<SyncState>, Fault> {
        if let Some(state) = self.current_answer(c, cursor) {
            return Ok(Some(state));
        }
        let page_size = self.realtime.settings.sync_page_size.get();
        let Some(feed) = self.feeds.get_mut(&c) else {
            return Ok(None);
        };
        // This sync reads storage and moves the feed: the snapshot answers no more.
        feed.fresh = None;
        // A page after another one of the same replay (`has_more` before).
        let continued = feed.syncing;
        let position = feed.order.delivered_up_to();
        if cursor < feed.base && position != feed.base {
            // The client lacks messages from before this connection's live stream began, and
            // live ones were already written: replay the missing range outside the feed, so
            // nothing comes twice (after the live ones, which the client orders by seq).
            let upper = feed.base;
            let limit = u32::try_from(upper - cursor)
                .unwrap_or(u32::MAX)
                .min(page_size);
            let page = self.fetch(c, cursor, limit).await?;
            let full = page.messages.len() as u32 >= limit;
            let mut last = cursor;
            for view in page.messages.iter().filter(|v| v.message.seq <= upper) {
                last = view.message.seq;
                self.write(message_frame(view), true).await?;
            }
            self.announce_fetched(c, &page);
            let more = full && last < upper;
            return Ok(Some(SyncState {
                last_seq: if more { last } else { position },
                has_more: more,
                watermarks: wire::watermarks(&page.state),
            }));
        }
        // What this connection wrote past the base is the client's (in flight, if not yet
        // read): a cursor among it continues from the feed's position.
        let cursor = if cursor >= feed.base && cursor < position {
            position
        } else {
            cursor
        };
        // Nothing written past the cursor: move the feed there (back, or forward past what
        // the client holds) and replay through it, so live messages wait behind the replay.
        let ready = feed.order.reposition(cursor);
        feed.base = cursor;
        self.write_items(c, ready).await?;
        let page = self.fetch(c, cursor, page_size).await?;
        let has_more = page.messages.len() as u32 >= page_size;
        // As read with the page, after the subscription: later moves come live (see
        // `current_answer`), so no second read for them.
        let watermarks = wire::watermarks(&page.state);
        self.announce_fetched(c, &page);
        let items = fetched_items(&page.messages);
        let Some(feed) = self.feeds.get_mut(&c) else {
            return Ok(None);
        };
        feed.syncing = has_more;
        let ready = feed.order.fill(items);
        self.write_items(c, ready).await?;
        if !has_more {
            self.fill_gaps(c).await?;
            // Between the pages of a longer replay, live messages queued behind it (and may
            // have overflowed the feed) and catch-ups were skipped (`syncing`): whatever
            // storage has past the position now comes too. A replay of one page needs none:
            // the page is everything storage had after the cursor (fewer than a page), no
            // live message was offered while this frame was handled (one task), and what
            // was committed after the read comes live (subscribed since the open).
            if continued {
                self.catch_up(c).await?;
            }
        }
        let last_seq = self
            .feeds
            .get(&c)
            .map_or(cursor, |f| f.order.delivered_up_to());
        Ok(Some(SyncState {
            last_seq,
            has_more,
            watermarks,
        }))
    }

    /// The answer to a `sync` of `c` from `cursor` when the cursor is already current,
    /// without reading storage: `None` when it is not (known to be) current.
    ///
    /// Current means: the cursor is where the `hello` snapshot started the feed (`base`,
    /// the snapshot's `last_seq`), nothing was written past it (the position is still the
    /// base), nothing waits in the feed for a hole, no `sync` paged it since, no held live
    /// message of it was dropped, and pub/sub has not lost events since the snapshot. Then
    /// storage has nothing after the cursor that this session will not also get live: the
    /// session subscribed to the conversation before it read the snapshot, so every later
    /// commit is published to it (and comes through the feed in seq order, after this
    /// `sync_done`, exactly as if a fetch had found it first). A fetch would find nothing
    /// or only those.
    ///
    /// The watermarks are the snapshot's (what `hello` said), not re-read. That is as good
    /// as reading them again: the snapshot was read after the subscription, so every
    /// receipt committed since is published after its commit and reaches this session live
    /// (before or after this `sync_done`) whenever it concerns this user (the hub's receipt
    /// routing: a move covering a message of the user, or the user's own read); the moves
    /// it does not forward are those the client does not need, whichever `sync_done` came
    /// first. A live receipt may thus be newer than these values; watermarks only move
    /// forward and clients keep the highest they were told (`docs/protocol.md`).
    fn current_answer(&self, c: ConversationId, cursor: i64) -> Option<SyncState> {
        let feed = self.feeds.get(&c)?;
        let fresh = feed.fresh.as_ref()?;
        let current = cursor == feed.base
            && feed.order.delivered_up_to() == feed.base
            && !feed.order.has_pending()
            && !feed.syncing
            && !self.overflowed.contains(&c)
            && self.realtime.hub.resubscriptions() == fresh.resubscriptions;
        current.then_some(SyncState {
            last_seq: cursor,
            has_more: false,
            watermarks: fresh.watermarks,
        })
    }

    async fn fetch(
        &self,
        c: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<HistoryPage, ChatError> {
        self.state
            .messages
            .history_after(self.user, c, after, limit)
            .await
    }

    /// Fetching moved the user's delivered watermark: tell the conversation.
    fn announce_fetched(&self, c: ConversationId, page: &HistoryPage) {
        let Some(now) = &page.delivered else { return };
        let seq = now.delivered_seq.max(now.read_seq);
        let Some(view) = page.messages.iter().find(|v| v.message.seq == seq) else {
            return;
        };
        let event = Event::Delivered {
            conversation_id: c,
            message_id: view.message.id,
            seq,
            since_seq: 0,
            user_id: self.user,
        };
        let realtime = self.realtime.clone();
        tokio::spawn(async move { realtime.announce(Topic::Conversation(c), event).await });
    }

    // ------------------------------------------------------------------ live events

    async fn on_inbound(&mut self, inbound: Inbound) -> Result<(), End> {
        let delivery = match inbound {
            Inbound::Resync => {
                let conversations: Vec<ConversationId> = self.feeds.keys().copied().collect();
                for c in conversations {
                    self.catch_up(c).await?;
                }
                return Ok(());
            }
            Inbound::Event(delivery) => delivery,
        };
        match delivery.header.kind {
            Kind::Message => {
                if let Some(held) = &mut self.held {
                    if held.len() < self.realtime.settings.outbound_queue_frames.get().max(64) {
                        held.push(delivery);
                    } else if let Some(c) = delivery.header.conversation {
                        // Dropped: fetched from storage when the hold ends.
                        self.overflowed.insert(c);
                    }
                    return Ok(());
                }
                self.offer_live(delivery).await
            }
            Kind::Conversation => self.on_conversation(delivery).await,
            Kind::Presence => {
                // A user's presence is published on each conversation they are in: a session
                // sharing several with them hears it once.
                if let Some(user) = delivery.header.user {
                    if self.presence_seen.get(&user) == Some(&delivery.frame) {
                        return Ok(());
                    }
                    self.presence_seen.insert(user, delivery.frame.clone());
                }
                self.write(delivery.frame.clone(), false).await
            }
            _ => self.write(delivery.frame.clone(), false).await,
        }
    }

    /// Lets the live messages held since `hello` through, into their feeds.
    async fn release_hold(&mut self) -> Result<(), End> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        for delivery in held {
            self.offer_live(delivery).await?;
        }
        for c in std::mem::take(&mut self.overflowed) {
            self.catch_up(c).await?;
        }
        Ok(())
    }

    async fn offer_live(&mut self, delivery: Delivery) -> Result<(), End> {
        let header = &delivery.header;
        let (Some(c), Some(seq), Some(id), Some(sender)) = (
            header.conversation,
            header.seq,
            header.message_id,
            header.user,
        ) else {
            return Ok(());
        };
        let Some(feed) = self.feeds.get_mut(&c) else {
            // Not (or no longer) followed here.
            return Ok(());
        };
        let ready = feed.order.offer(
            seq,
            Item::Message {
                frame: delivery.frame.clone(),
                seq,
                id,
                sender,
                fetched: false,
                sent_at: header.sent_at,
                committed_at: header.committed_at,
            },
        );
        self.write_items(c, ready).await?;
        self.gap_seen(c).await
    }

    /// Writes what a feed let through; records delivery of the newest message of others.
    async fn write_items(&mut self, c: ConversationId, items: Vec<Item>) -> Result<(), End> {
        let mut delivered = None;
        for item in items {
            if let Item::Message {
                frame,
                seq,
                id,
                sender,
                fetched,
                sent_at,
                committed_at,
            } = item
            {
                self.write(frame, true).await?;
                if !fetched && (sent_at.is_some() || committed_at.is_some()) {
                    self.realtime.metrics.live_message_written(
                        unix_micros_now(),
                        sent_at,
                        committed_at,
                    );
                }
                if sender != self.user && !fetched {
                    delivered = Some((seq, id));
                }
            }
        }
        if let Some((seq, id)) = delivered {
            self.realtime.receipts.delivered(c, self.user, seq, id);
        }
        Ok(())
    }

    /// A live event may have left a hole in `c`'s feed: one our own unacknowledged sends do
    /// not explain is fetched once `realtime.gap_grace` passed, if it is still open then
    /// (at once with no grace).
    async fn gap_seen(&mut self, c: ConversationId) -> Result<(), End> {
        let grace = self.realtime.settings.gap_grace;
        if grace.is_zero() {
            return self.fill_gaps(c).await;
        }
        let Some(feed) = self.feeds.get(&c) else {
            return Ok(());
        };
        let Some((after, up_to)) = feed.order.missing() else {
            return Ok(());
        };
        if feed.syncing || self.own_sends_explain(c, after, up_to) || self.gaps.contains(&c) {
            return Ok(());
        }
        self.gaps.push(c);
        self.gaps_due.get_or_insert_with(|| Instant::now() + grace);
        Ok(())
    }

    /// Whether the hole `(after, up_to]` of `c` is (most likely) this session's own sends
    /// awaiting their ack: it is no larger than they are, and their acks fill it. A larger
    /// one holds someone else's message.
    fn own_sends_explain(&self, c: ConversationId, after: i64, up_to: i64) -> bool {
        up_to - after <= i64::from(self.sending.get(&c).copied().unwrap_or(0))
    }

    /// The holes whose grace has passed: fetched if still open.
    async fn fetch_due_gaps(&mut self) -> Result<(), End> {
        self.gaps_due = None;
        for c in std::mem::take(&mut self.gaps) {
            self.fill_gaps(c).await?;
        }
        Ok(())
    }

    /// Fetches the holes of `c`'s feed from storage (unless the client is paging a `sync`).
    async fn fill_gaps(&mut self, c: ConversationId) -> Result<(), End> {
        let page_size = i64::from(self.realtime.settings.sync_page_size.get());
        let mut fetched = false;
        loop {
            let Some(feed) = self.feeds.get(&c) else {
                return Ok(());
            };
            if feed.syncing {
                return Ok(());
            }
            let Some((after, up_to)) = feed.order.missing() else {
                if fetched {
                    // Messages beyond the hole may have been dropped from a full feed (or
                    // never arrived): whatever storage has after the position comes too.
                    return self.catch_up(c).await;
                }
                return Ok(());
            };
            if self.own_sends_explain(c, after, up_to) {
                return Ok(());
            }
            let limit = u32::try_from((up_to - after).clamp(1, page_size)).unwrap_or(1);
            self.realtime.metrics.gap_fetch();
            if !self.fetch_into_feed(c, after, limit).await? {
                return Ok(());
            }
            fetched = true;
        }
    }

    /// Fetches what may have been missed after the feed's position (pub/sub reconnected, or
    /// the session just joined), page by page.
    async fn catch_up(&mut self, c: ConversationId) -> Result<(), End> {
        let page_size = self.realtime.settings.sync_page_size.get();
        loop {
            let Some(feed) = self.feeds.get(&c) else {
                return Ok(());
            };
            if feed.syncing {
                return Ok(());
            }
            let after = feed.order.delivered_up_to();
            let before = after;
            if !self.fetch_into_feed(c, after, page_size).await? {
                return Ok(());
            }
            let now = self
                .feeds
                .get(&c)
                .map_or(before, |f| f.order.delivered_up_to());
            if now - before < i64::from(page_size) {
                return Ok(());
            }
        }
    }

    /// One page after `after` into `c`'s feed; `false` when nothing came (or it failed:
    /// the next event tries again).
    async fn fetch_into_feed(
        &mut self,
        c: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<bool, End> {
        let page = match self.fetch(c, after, limit).await {
            Ok(page) => page,
            Err(ChatError::NotParticipant) => {
                self.leave(c).await;
                return Ok(false);
            }
            Err(e) => {
                self.realtime.metrics.storage_error();
                tracing::warn!(error = %e, "fetching a gap failed; retrying at the next event");
                return Ok(false);
            }
        };
        if page.messages.is_empty() {
            return Ok(false);
        }
        self.announce_fetched(c, &page);
        let user = self.user;
        let unacked = &self.unacked;
        let items = fetched_items(&page.messages)
            .into_iter()
            .zip(&page.messages)
            .map(|((seq, item), view)| {
                let m = &view.message;
                let ours = m.sender_id == user
                    && m.client_msg_id
                        .as_ref()
                        .is_some_and(|t| unacked.contains(&(c, t.clone())));
                (seq, if ours { Item::Acked } else { item })
            })
            .collect::<Vec<_>>();
        let Some(feed) = self.feeds.get_mut(&c) else {
            return Ok(false);
        };
        let ready = feed.order.fill(items);
        let moved = !ready.is_empty();
        self.write_items(c, ready).await?;
        Ok(moved)
    }

    async fn on_conversation(&mut self, delivery: Delivery) -> Result<(), End> {
        let header = delivery.header.clone();
        self.write(delivery.frame.clone(), false).await?;
        let Some(c) = header.conversation else {
            return Ok(());
        };
        if header.joined == Some(self.user)
            && !self.feeds.contains_key(&c)
            && self.scope.is_none_or(|s| s == c)
        {
            // The hub already routes it here; take a pub/sub reference and follow it from
            // the join on, then fetch whatever was committed before the subscription held.
            if let Err(e) = self.subscribe(&[Topic::Conversation(c)]).await {
                tracing::warn!(error = %e, "subscribing a joined conversation failed");
            }
            let base = header.seq.unwrap_or(0);
            // A member who was in it before may have sent messages up to `base`.
            self.realtime.hub.receipt_floor(self.id, c, base);
            let max_pending = self.realtime.settings.outbound_queue_frames.get().max(64);
            self.feeds.insert(
                c,
                Feed {
                    order: OrderedFeed::new(base, max_pending),
                    base,
                    syncing: false,
                    fresh: None,
                },
            );
            self.catch_up(c).await?;
        } else if header.left == Some(self.user) {
            self.leave(c).await;
            if self.scope == Some(c) {
                return Err(End::Close(CLOSE_NOT_PARTICIPANT, "no longer a participant"));
            }
        }
        Ok(())
    }

    /// Stops following `c`.
    async fn leave(&mut self, c: ConversationId) {
        self.feeds.remove(&c);
        self.unsubscribe(Topic::Conversation(c)).await;
    }

    // ------------------------------------------------------------------ close

    async fn finish(mut self, end: End, stream: &mut Reader) {
        let grace = self.realtime.settings.close_grace;
        if let End::Close(code, reason) = end {
            if code == CLOSE_GOING_AWAY && self.signal.code() == Some(CLOSE_GOING_AWAY) {
                Box::pin(self.answer_what_was_read(stream, grace)).await;
            }
            let closing = self.ws.close(close_frame(code, reason));
            let _ = tokio::time::timeout(grace, closing).await;
            if code == CLOSE_SLOW_CONSUMER {
                tracing::info!(session = %self.id, "slow consumer closed (4009)");
            }
        }
        let realtime = self.realtime.clone();
        realtime.hub.unregister(self.id);
        // Concurrently, as they subscribed: the Redis adapter drops a batch with one command.
        let topics: Vec<Topic> = std::mem::take(&mut self.subscribed).into_iter().collect();
        let pubsub = &realtime.pubsub;
        let results =
            futures_util::future::join_all(topics.iter().map(|t| pubsub.unsubscribe(*t))).await;
        for (topic, result) in topics.iter().zip(results) {
            if let Err(e) = result {
                realtime.metrics.pubsub_error();
                tracing::warn!(error = %e, %topic, "unsubscribe failed at close");
            }
        }
        if !self.typing_in.is_empty() {
            if let Err(e) = realtime
                .typing
                .session_closed(self.user, &self.typing_in)
                .await
            {
                tracing::warn!(error = %e, "ending typing leases at close failed");
            }
        }
        match realtime.presence.session_closed(self.user, self.away).await {
            Ok(true) => {
                if let Some(grace) = realtime.grace.get() {
                    grace.schedule(self.user);
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "presence unavailable at close"),
        }
        realtime.metrics.session_closed();
        tracing::debug!(session = %self.id, "session closed");
    }

    /// Shutdown: answers what the client sent before the close was decided, so the 1001
    /// close comes after an answer (`message_sent` or `error`) to every send the session
    /// read. Read means: every whole frame in the session's read buffer or already in the
    /// kernel's receive queue when the close begins (up to [`SHUTDOWN_READ_LIMIT`] more
    /// bytes); later frames are not read, and get no answer. Frames are handled as usual
    /// (sends are committed) for up to `grace`; a send whose commit is not confirmed by
    /// then is answered `unavailable` (not confirmed: resending it with the same `temp_id`
    /// gets the original ack if it was committed after all).
    async fn answer_what_was_read(&mut self, stream: &mut Reader, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.closing = Some(deadline);
        let mut limit = SHUTDOWN_READ_LIMIT;
        while let Some(message) = stream.try_recv(&mut limit) {
            if self.on_read_while_closing(message, deadline).await.is_err() {
                break;
            }
        }
        loop {
            match tokio::time::timeout_at(deadline, next_ack(&mut self.in_flight)).await {
                Ok(Some(ack)) => {
                    if self.answer_send(ack).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(_) => break,
            }
        }
        // Out of time: the commits not confirmed yet are answered all the same.
        for mut pending in std::mem::take(&mut self.in_flight) {
            let answered = match pending.answer.try_recv() {
                Ok(result) => self.answer_send(pending.ack(Ok(result))).await,
                Err(_) => {
                    let error = not_confirmed().with_reference(pending.temp_id);
                    self.write_error(error).await
                }
            };
            if answered.is_err() {
                return;
            }
        }
    }

    /// One message read while closing at shutdown: handled as usual until `deadline`; a
    /// send the deadline cuts short (or comes after it) is answered `unavailable`. `Err`:
    /// nothing more is to be read (the client closed, broke the protocol, or went).
    async fn on_read_while_closing(
        &mut self,
        message: Result<Incoming, ReadError>,
        deadline: Instant,
    ) -> Result<(), End> {
        let Ok(Incoming::Text(text)) = message else {
            return match tokio::time::timeout_at(deadline, self.on_client(Some(message))).await {
                Ok(handled) => handled,
                Err(_) => Ok(()),
            };
        };
        let frame = match frames::parse(&text) {
            Ok(frame) => frame,
            Err(e) => return self.write_error(e).await,
        };
        // A send's `temp_id` (itself optional), to answer it if time runs out.
        let send = match &frame {
            ClientFrame::Message(send) => Some(send.temp_id.clone()),
            _ => None,
        };
        if Instant::now() < deadline {
            if let Ok(result) = tokio::time::timeout_at(deadline, self.on_frame(frame)).await {
                return self.answer_fault(result).await;
            }
        }
        // Out of time. Only a send needs an answer.
        let Some(temp_id) = send else {
            return Ok(());
        };
        self.write_error(not_confirmed().with_reference(temp_id))
            .await
    }
}

/// The reason sent with a close code asked for from outside the session.
/// Resolves at `due` (never without one).
async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_SLOW_CONSUMER => "outbound queue overflow: reconnect and sync",
        CLOSE_GOING_AWAY => "server shutting down",
        CLOSE_NOT_PARTICIPANT => "no longer a participant",
        _ => "closed",
    }
}

/// The answer to a send at shutdown whose commit was not confirmed in time: it may or may
/// not be committed, so the client resends it with the same `temp_id` (to another node),
/// which answers the original if it was.
fn not_confirmed() -> FrameError {
    FrameError::new(
        ErrorCode::Unavailable,
        "the server is shutting down before this send was confirmed; resend it with the same temp_id",
    )
}

fn unavailable(error: &dyn std::fmt::Display) -> Fault {
    tracing::warn!(error = %error, "real-time backend failed during a frame");
    Fault::Frame(FrameError::unavailable())
}

/// The `message` frame of a stored message, with its status as storage knows it.
fn message_frame(view: &MessageView) -> String {
    wire::encode(&ServerFrame::Message {
        message: wire::message(view),
    })
}

fn fetched_items(views: &[MessageView]) -> Vec<(i64, Item)> {
    views
        .iter()
        .map(|view| {
            let m = &view.message;
            (
                m.seq,
                Item::Message {
                    frame: ByteString::from(message_frame(view)),
                    seq: m.seq,
                    id: m.id,
                    sender: m.sender_id,
                    fetched: true,
                    sent_at: None,
                    committed_at: None,
                },
            )
        })
        .collect()
}
