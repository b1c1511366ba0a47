//! One WebSocket session: from the accepted socket to its close.
//!
//! On open: the session cap (presence, 1008), the user's channel and every conversation
//! subscribed (routed in the hub and referenced in pub/sub), THEN the snapshot read and `hello`
//! sent, so anything committed meanwhile is either in the snapshot or arrives live.
//!
//! Then one task serves the socket: client frames, events the hub queued for it, send
//! acknowledgements (in send order), heartbeats and the token's expiry. What the session
//! decides is [`SessionState`]'s (no I/O, unit-tested in `realtime`): each conversation has
//! a feed where live messages come out in seq order exactly once; a hole is fetched from
//! storage; a `sync` below the feed's position replays through the feed, page by page, while
//! live messages wait behind the replay. This shell does the I/O the state asks for, in order.
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
use domain::message::AppendOutcome;
use domain::realtime::{Event, OpenSessionError, SessionId, Topic};
use domain::services::{ChatError, HistoryPage, SendCommand};
use domain::user::User;
use domain::{ConversationId, MessageId, UserId};
use governor::{DefaultDirectRateLimiter, Quota};
use protocol::client::{ClientFrame, OwnStatus, SendFrame, SyncFrame};
use protocol::server::SyncState;
use protocol::{ErrorCode, ServerFrame};
use realtime::changes::ChangeRefused;
use realtime::envelope::Kind;
use realtime::hub::{Backlog, CloseSignal, Delivery, Inbound, Registration, CLOSE_SLOW_CONSUMER};
use realtime::metrics::{unix_micros_now, Transport};
use realtime::send::{QueuedSend, SendRefused, Via};
use realtime::session::{
    change_frame, message_frame, ChangeSync, Gap, Limits, Membership, Refusal, Release,
    SessionState, SyncPlan,
};
use realtime::settings::RealtimeSettings;
use realtime::wire;
use realtime::Realtime;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
/// A change a frame asks for (`edit`, `delete`, `react`).
enum Change {
    Edit(MessageId, String),
    Delete(MessageId),
    React(MessageId, String, bool),
}

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

/// The answer to a send, in the order the session sent them.
struct Ack {
    temp_id: Option<String>,
    result: Result<AppendOutcome, ChatError>,
    queued: QueuedSend,
}

/// A send queued for its commit, waiting for the answer.
struct InFlight {
    temp_id: Option<String>,
    queued: QueuedSend,
}

impl InFlight {
    fn ack(self, result: Result<AppendOutcome, ChatError>) -> Ack {
        Ack {
            temp_id: self.temp_id,
            result,
            queued: self.queued,
        }
    }
}

/// The answer of the oldest send in flight, when it comes (`None`: none in flight). Sends
/// are answered in the order they were sent. Cancel-safe: an answer not taken stays.
async fn next_ack(in_flight: &mut VecDeque<InFlight>) -> Option<Ack> {
    let result = in_flight.front_mut()?.queued.outcome().await;
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
    let core = SessionState::new(
        user,
        opening.scope,
        Limits {
            max_pending: settings.outbound_queue_frames.get().max(64),
            gap_grace: settings.gap_grace,
            hold: !settings.sync_hold.is_zero(),
        },
    );
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
        subscribed: HashSet::new(),
        in_flight: VecDeque::new(),
        closing: None,
        typing_limiter,
        in_hand: 0,
        core,
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
    /// Topics this session holds a pub/sub reference to.
    subscribed: HashSet<Topic>,
    /// Sends queued for their commit, oldest first (their state is in `core`).
    in_flight: VecDeque<InFlight>,
    /// Set at shutdown, while the session answers what it read before its close: writes
    /// are no longer cut short by the close signal, only bounded by this deadline.
    closing: Option<Instant>,
    typing_limiter: DefaultDirectRateLimiter,
    /// Frames decided but not yet handed to [`Self::write`] (the rest of a fetched page, of
    /// a release, of the held messages): they wait for the client as much as the queue's,
    /// so a stalled write counts them ([`realtime::Hub::stalled`]).
    in_hand: usize,
    /// Everything the session decides: feeds, held messages, pending acks, typing leases,
    /// presence, holes.
    core: SessionState,
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
        let (account, snapshot, encrypted) = self.snapshot().await?;
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
        let mut conversations = Vec::with_capacity(snapshot.len());
        for state in &snapshot {
            let (entry, floor) = self.core.follow_snapshot(state, resubscriptions);
            self.realtime
                .hub
                .receipt_floor(self.id, state.conversation_id, floor);
            conversations.push(entry);
        }
        for c in encrypted {
            self.core.encryption_on(c);
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
        self.core.hello_sent();
        tracing::debug!(session = %self.id, conversations = opened, "session open");
        Ok(())
    }

    /// The account, the state of every conversation the session serves and those of them
    /// that are end-to-end encrypted: one storage read on `/ws` (`session_snapshot`); on
    /// `/ws/chat/{id}`, that conversation read whole (membership checked, 4003 otherwise),
    /// its encryption and the account.
    async fn snapshot(&self) -> Result<(User, Vec<ConversationState>, Vec<ConversationId>), End> {
        let unavailable = |e: &dyn std::fmt::Display| {
            self.realtime.metrics.storage_error();
            tracing::warn!(error = %e, "snapshot unavailable at session open");
            End::Close(CLOSE_UNAVAILABLE, "service unavailable")
        };
        let unknown_user = || End::Close(CLOSE_UNAUTHORIZED, "unknown user");
        let Some(scope) = self.scope else {
            return match self.state.conversations.session_snapshot(self.user).await {
                Ok(Some(snapshot)) => {
                    Ok((snapshot.user, snapshot.conversations, snapshot.encrypted))
                }
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
        let encrypted = match self.state.encryption.state_of(scope).await {
            Ok(encryption) => encryption.map(|e| e.conversation_id).into_iter().collect(),
            Err(e) => return Err(unavailable(&e)),
        };
        match self.state.accounts.me(self.user).await {
            Ok(user) => Ok((user, vec![state], encrypted)),
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
            let gaps_due = self.core.gaps_due();
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
                () = &mut hold, if self.core.holding() => self.release_hold().await,
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
        let mut text: ByteString = text.into();
        // A frame with attachments carries their links unsigned (one frame for every
        // member): sign them for this session's user.
        if realtime::links::may_need_signing(&text) {
            if let Some(signed) = self.state.links.sign_frame(&text, self.user, Utc::now()) {
                text = ByteString::from(signed);
            }
        }
        self.ws.queue_text(text).map_err(|_| End::Gone)?;
        self.realtime.metrics.frame_out(message);
        if let Some(deadline) = self.closing {
            return match tokio::time::timeout_at(deadline, self.ws.flush()).await {
                Ok(written) => written.map_err(|_| End::Gone),
                // Still queued: the close writes it, within its own grace.
                Err(_) => Ok(()),
            };
        }
        // A write that waits a whole grace with more than the limit queued behind it is a
        // slow consumer even when no more events come to be judged by (the hub's rule).
        let grace = self
            .realtime
            .settings
            .slow_consumer_grace
            .max(Duration::from_millis(1));
        let flush = self.ws.flush();
        tokio::pin!(flush);
        // Most writes complete at once: they neither arm a timer nor make the session's
        // future (one per connection, idle ones too) larger by one; the timer is boxed.
        if let std::task::Poll::Ready(written) = futures_util::poll!(&mut flush) {
            return written.map_err(|_| End::Gone);
        }
        let mut stall = Box::pin(tokio::time::sleep(grace));
        loop {
            tokio::select! {
                biased;
                code = self.signal.wait() => return Err(End::Close(code, close_reason(code))),
                written = &mut flush => return written.map_err(|_| End::Gone),
                () = &mut stall => {
                    self.realtime.hub.stalled(self.id, self.in_hand);
                    stall.as_mut().reset(Instant::now() + grace);
                }
            }
        }
    }

    /// Writes `frames` in order, counting the ones still to come as in hand.
    async fn write_all(&mut self, frames: Vec<ByteString>, message: bool) -> Result<(), End> {
        self.in_hand += frames.len();
        for frame in frames {
            self.in_hand -= 1;
            self.write(frame, message).await?;
        }
        Ok(())
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
                self.core.typed(c, typing.is_typing);
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
                if away != self.core.away() {
                    self.realtime
                        .presence
                        .set_away(self.user, away)
                        .await
                        .map_err(|e| unavailable(&e))?;
                    self.core.set_away(away);
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
            ClientFrame::Edit(edit) => {
                let message = MessageId::from_uuid(edit.message_id);
                let change = Change::Edit(message, edit.content);
                self.on_change(edit.request_id, edit.conversation_id, change)
                    .await
            }
            ClientFrame::Delete(delete) => {
                let change = Change::Delete(MessageId::from_uuid(delete.message_id));
                self.on_change(delete.request_id, delete.conversation_id, change)
                    .await
            }
            ClientFrame::React(react) => {
                let message = MessageId::from_uuid(react.message_id);
                let change = Change::React(message, react.emoji, react.add);
                self.on_change(react.request_id, react.conversation_id, change)
                    .await
            }
        }
    }

    /// An `edit`, `delete` or `react` frame, in a conversation the session follows. Its copy
    /// comes back through the conversation's topic (with its change number), as it reaches
    /// every other session; a refusal is an `error` frame whose `ref` is the `request_id`.
    async fn on_change(
        &mut self,
        reference: Option<String>,
        named: Option<uuid::Uuid>,
        change: Change,
    ) -> Result<(), Fault> {
        let with_ref = |e: Fault| e.with_reference(reference.clone());
        let c = self
            .followed(named)
            .map_err(|e| with_ref(Fault::Frame(e)))?;
        let (rt, lifecycle, user) = (&self.realtime, &self.state.lifecycle, self.user);
        let done = match change {
            Change::Edit(m, content) => rt.edit(lifecycle, user, c, m, &content).await.map(drop),
            Change::Delete(m) => rt.delete(lifecycle, user, c, m).await.map(drop),
            Change::React(m, emoji, add) => {
                rt.react(lifecycle, user, c, m, &emoji, add).await.map(drop)
            }
        };
        done.map_err(|refused| {
            with_ref(match refused {
                ChangeRefused::RateLimited(_) => {
                    Fault::Frame(FrameError::rate_limited("edits, deletions and reactions"))
                }
                ChangeRefused::Chat(e) => Fault::from(e),
            })
        })
    }

    /// The conversation a frame names (see [`SessionState::conversation_of`]).
    fn conversation_of(&self, named: Option<uuid::Uuid>) -> Result<ConversationId, FrameError> {
        self.core
            .conversation_of(named.map(ConversationId::from_uuid))
            .map_err(refused)
    }

    /// ... and the session must follow it (see [`SessionState::followed_of`]).
    fn followed(&self, named: Option<uuid::Uuid>) -> Result<ConversationId, FrameError> {
        self.core
            .followed_of(named.map(ConversationId::from_uuid))
            .map_err(refused)
    }

    async fn on_send(&mut self, send: SendFrame) -> Result<(), Fault> {
        let temp_id = send.temp_id.clone();
        let with_ref = |e: Fault| e.with_reference(temp_id.clone());
        let c = match self.conversation_of(send.conversation_id) {
            Ok(c) => c,
            Err(e) => {
                // Counted as a message in, like every send frame, before it is refused.
                self.realtime.metrics.message_in(Transport::Ws);
                return Err(with_ref(Fault::Frame(e)));
            }
        };
        let cmd = SendCommand {
            sender: self.user,
            conversation_id: c,
            content: send.content,
            content_type: send.content_type,
            temp_id: send.temp_id,
            reply_to: send.reply_to.map(MessageId::from_uuid),
            // Known without a read where the session follows it (see `SessionState`).
            encrypted: self.core.follows(c).then(|| self.core.encrypted(c)),
            attachment_ids: send
                .attachment_ids
                .iter()
                .copied()
                .map(domain::AttachmentId::from_uuid)
                .collect(),
        };
        // Queued now, in frame order (commit order); answered when committed.
        let queued = self
            .realtime
            .queue_send(cmd, self.via(c))
            .await
            .map_err(|refused| {
                with_ref(match refused {
                    SendRefused::RateLimited(_) => {
                        Fault::Frame(FrameError::rate_limited("messages"))
                    }
                    SendRefused::Chat(e) => Fault::from(e),
                })
            })?;
        self.core.send_queued(c, temp_id.as_deref());
        self.in_flight.push_back(InFlight { temp_id, queued });
        Ok(())
    }

    /// How a send of this session to `c` reaches the batcher: a conversation it follows is
    /// one its user is a member of (a removal reaches the session on the conversation's
    /// topic and ends the following), so no membership read per send.
    fn via(&self, c: ConversationId) -> Via {
        Via::Ws {
            session: self.id,
            member: self.core.follows(c),
        }
    }

    async fn on_ack(&mut self, ack: Ack) -> Result<(), End> {
        let conversation = ack.queued.conversation;
        self.core
            .send_answered(conversation, ack.temp_id.as_deref());
        self.answer_send(ack).await?;
        // A hole that waited for this ack and is still there was someone else's: fetch it,
        // unless it fills meanwhile (another sender's message of the same commit may reach
        // us over pub/sub just after our ack).
        self.gap_seen(conversation).await
    }

    async fn answer_send(&mut self, ack: Ack) -> Result<(), End> {
        let Ack {
            temp_id,
            result,
            queued,
        } = ack;
        let conversation = queued.conversation;
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
                let typing_end = self
                    .realtime
                    .sent(&queued, &outcome, self.via(conversation));
                // This session has its own message: its feed moves past it silently.
                let release = self.core.own_committed(conversation, seq);
                self.write_release(conversation, release).await?;
                // Only where this session holds a lease: one that never typed costs the
                // typing store nothing. Not awaited: the session goes on meanwhile.
                if let Some(typing_end) = typing_end {
                    if self.core.typing_ended_by_send(conversation) {
                        tokio::spawn(typing_end.run());
                    }
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
        let cursors = sync
            .cursors
            .iter()
            .map(|(id, cursor)| (ConversationId::from_uuid(*id), *cursor));
        let wanted = self.core.sync_targets(cursors).map_err(refused)?;
        if let Some((_, bad)) = sync.changes.iter().find(|(_, cursor)| **cursor < 0) {
            return Err(FrameError::validation(
                "changes",
                format!("must not be negative (got {bad})"),
            )
            .into());
        }
        if sync.changes.keys().any(|c| !sync.cursors.contains_key(c)) {
            return Err(FrameError::validation(
                "changes",
                "every conversation must also be in cursors",
            )
            .into());
        }
        let mut done = BTreeMap::new();
        for (c, cursor) in wanted {
            let Some(mut state) = self.sync_one(c, cursor).await? else {
                continue;
            };
            if let Some(&after) = sync.changes.get(&c.as_uuid()) {
                if state.has_more {
                    // Messages first: the changes wait for the last page of them.
                    state.last_change = Some(after);
                } else if let Some((last_change, more)) = self.sync_changes(c, after).await? {
                    state.last_change = Some(last_change);
                    state.has_more = more;
                }
            }
            done.insert(c.as_uuid(), state);
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

    /// Replays one page of `c` after `cursor` (as [`SessionState::plan_sync`] plans it);
    /// `None` when the conversation is no longer followed (the session just left it).
    async fn sync_one(
        &mut self,
        c: ConversationId,
        cursor: i64,
    ) -> Result<Option<SyncState>, Fault> {
        let page_size = self.realtime.settings.sync_page_size.get();
        let resubscriptions = self.realtime.hub.resubscriptions();
        let (cursor, continued) = match self.core.plan_sync(c, cursor, resubscriptions) {
            SyncPlan::Current(state) => return Ok(Some(state)),
            SyncPlan::NotFollowed => return Ok(None),
            SyncPlan::Before {
                after,
                upper,
                limit,
                position,
            } => {
                let limit = limit.min(page_size);
                let page = self.fetch(c, after, limit).await?;
                let full = page.messages.len() as u32 >= limit;
                let mut last = after;
                let shown: Vec<_> = page
                    .messages
                    .iter()
                    .filter(|v| v.message.seq <= upper)
                    .collect();
                self.in_hand += shown.len();
                for view in shown {
                    last = view.message.seq;
                    self.in_hand -= 1;
                    self.write(message_frame(view), true).await?;
                }
                self.announce_fetched(c, &page);
                let more = full && last < upper;
                return Ok(Some(SyncState {
                    last_seq: if more { last } else { position },
                    has_more: more,
                    last_change: None,
                    watermarks: wire::watermarks(&page.state),
                }));
            }
            SyncPlan::Through {
                cursor,
                release,
                continued,
            } => {
                self.write_release(c, release).await?;
                (cursor, continued)
            }
        };
        let page = self.fetch(c, cursor, page_size).await?;
        let has_more = page.messages.len() as u32 >= page_size;
        // As read with the page, after the subscription: later moves come live (see
        // `SessionState::plan_sync`), so no second read for them.
        let watermarks = wire::watermarks(&page.state);
        self.announce_fetched(c, &page);
        let Some(release) = self.core.sync_page(c, &page.messages, has_more) else {
            return Ok(None);
        };
        self.write_release(c, release).await?;
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
        let last_seq = self.core.position(c).unwrap_or(cursor);
        Ok(Some(SyncState {
            last_seq,
            has_more,
            last_change: None,
            watermarks,
        }))
    }

    /// Replays a page of `c`'s changes after the client's change cursor `after`, as
    /// [`SessionState::plan_change_sync`] plans it: the change cursor to answer and whether
    /// more remain. `None`: no longer followed.
    async fn sync_changes(
        &mut self,
        c: ConversationId,
        after: i64,
    ) -> Result<Option<(i64, bool)>, Fault> {
        let after = match self.core.plan_change_sync(c, after) {
            None => return Ok(None),
            Some(ChangeSync::Current {
                last_change,
                release,
            }) => {
                self.write_all(release, false).await?;
                return Ok(Some((last_change, false)));
            }
            Some(ChangeSync::Replay { after }) => after,
        };
        let page_size = self.realtime.settings.sync_page_size.get();
        let page = self.fetch_changes(c, after, page_size).await?;
        let full = page.len() >= page_size as usize;
        let Some(replayed) = self.core.changes_replayed(c, after, page, full) else {
            return Ok(None);
        };
        self.write_all(replayed.frames, false).await?;
        if !replayed.has_more && self.core.changes_overflowed(c) {
            self.catch_up_changes(c).await?;
        }
        Ok(Some((replayed.last_change, replayed.has_more)))
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
                for c in self.core.followed() {
                    self.catch_up(c).await?;
                    self.catch_up_changes(c).await?;
                }
                return Ok(());
            }
            Inbound::Event(delivery) => delivery,
        };
        match delivery.header.kind {
            Kind::Message | Kind::Change => match self.core.hold(delivery) {
                Some(delivery) => self.offer_held(delivery).await,
                None => Ok(()),
            },
            Kind::Conversation => self.on_conversation(delivery).await,
            Kind::Presence => {
                // A user's presence is published on each conversation they are in: a session
                // sharing several with them hears it once.
                if let Some(user) = delivery.header.user {
                    if !self.core.presence_is_new(user, &delivery.frame) {
                        return Ok(());
                    }
                }
                self.write(delivery.frame.clone(), false).await
            }
            _ => self.write(delivery.frame.clone(), false).await,
        }
    }

    /// Lets the live messages held since `hello` through, into their feeds.
    async fn release_hold(&mut self) -> Result<(), End> {
        let Some((held, overflowed)) = self.core.release_hold() else {
            return Ok(());
        };
        self.in_hand += held.len();
        for delivery in held {
            self.in_hand -= 1;
            self.offer_held(delivery).await?;
        }
        for c in overflowed {
            self.catch_up(c).await?;
            self.catch_up_changes(c).await?;
        }
        Ok(())
    }

    /// A live message or change, past the hold, into its feed.
    async fn offer_held(&mut self, delivery: Delivery) -> Result<(), End> {
        if delivery.header.kind == Kind::Change {
            self.offer_change(delivery).await
        } else {
            self.offer_live(delivery).await
        }
    }

    /// A live edit, deletion or reaction into its conversation's change feed.
    async fn offer_change(&mut self, delivery: Delivery) -> Result<(), End> {
        let Some((c, frames)) = self.core.offer_change(&delivery) else {
            return Ok(());
        };
        self.write_all(frames, false).await?;
        match self.core.change_gap_seen(c, Instant::now()) {
            Gap::FetchNow => self.fill_change_gaps(c).await,
            Gap::Later | Gap::Nothing => Ok(()),
        }
    }

    /// Fetches the changes of `c` that live ones wait behind.
    async fn fill_change_gaps(&mut self, c: ConversationId) -> Result<(), End> {
        while let Some(after) = self.core.change_hole(c) {
            self.realtime.metrics.gap_fetch();
            let page_size = self.realtime.settings.sync_page_size.get();
            if self.fetch_changes_into_feed(c, after, page_size).await? == 0 {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Fetches every change of `c` after its change position (pub/sub reconnected, a held
    /// change dropped, or the session just joined), page by page.
    async fn catch_up_changes(&mut self, c: ConversationId) -> Result<(), End> {
        let page_size = self.realtime.settings.sync_page_size.get();
        while let Some(after) = self.core.change_position(c) {
            if self.fetch_changes_into_feed(c, after, page_size).await? < page_size as usize {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One page of changes after `after` into `c`'s change feed: how many storage had
    /// (0 also when it failed: the next event tries again).
    async fn fetch_changes_into_feed(
        &mut self,
        c: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<usize, End> {
        let page = match self.fetch_changes(c, after, limit).await {
            Ok(page) => page,
            Err(ChatError::NotParticipant) => {
                self.leave(c).await;
                return Ok(0);
            }
            Err(e) => {
                self.realtime.metrics.storage_error();
                tracing::warn!(error = %e, "fetching changes failed; retrying at the next event");
                return Ok(0);
            }
        };
        let read = page.len();
        let Some(frames) = self.core.changes_fetched(c, page) else {
            return Ok(0);
        };
        self.write_all(frames, false).await?;
        Ok(read)
    }

    /// The changes of `c` after change `after`, as frames for this session's user.
    async fn fetch_changes(
        &self,
        c: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, ByteString)>, ChatError> {
        let views = self
            .state
            .lifecycle
            .changed_views(self.user, c, after, limit)
            .await?;
        Ok(views
            .iter()
            .map(|v| (v.message.change_seq, ByteString::from(change_frame(v))))
            .collect())
    }

    async fn offer_live(&mut self, delivery: Delivery) -> Result<(), End> {
        let Some((c, release)) = self.core.offer_live(&delivery) else {
            // Not a message of a conversation followed here.
            return Ok(());
        };
        self.write_release(c, release).await?;
        self.gap_seen(c).await
    }

    /// Writes what a feed let through; records delivery of the newest message of others.
    async fn write_release(&mut self, c: ConversationId, release: Release) -> Result<(), End> {
        self.in_hand += release.messages.len();
        for message in release.messages {
            self.in_hand -= 1;
            let measured = message.measured();
            self.write(message.frame, true).await?;
            if measured {
                self.realtime.metrics.live_message_written(
                    unix_micros_now(),
                    message.sent_at,
                    message.committed_at,
                );
            }
        }
        if let Some((seq, id)) = release.delivered {
            self.realtime.receipts.delivered(c, self.user, seq, id);
        }
        Ok(())
    }

    /// A live event may have left a hole in `c`'s feed: fetched now, later, or not (see
    /// [`SessionState::gap_seen`]).
    async fn gap_seen(&mut self, c: ConversationId) -> Result<(), End> {
        match self.core.gap_seen(c, Instant::now()) {
            Gap::FetchNow => self.fill_gaps(c).await,
            Gap::Later | Gap::Nothing => Ok(()),
        }
    }

    /// The holes whose grace has passed: fetched if still open.
    async fn fetch_due_gaps(&mut self) -> Result<(), End> {
        for c in self.core.take_due_gaps() {
            self.fill_gaps(c).await?;
            self.fill_change_gaps(c).await?;
        }
        Ok(())
    }

    /// Fetches the holes of `c`'s feed from storage (unless the client is paging a `sync`).
    async fn fill_gaps(&mut self, c: ConversationId) -> Result<(), End> {
        let page_size = self.realtime.settings.sync_page_size.get();
        let mut fetched = false;
        loop {
            let Some((after, limit)) = self.core.hole_to_fetch(c, page_size) else {
                if fetched && self.core.hole_filled(c) {
                    // Messages beyond the hole may have been dropped from a full feed (or
                    // never arrived): whatever storage has after the position comes too.
                    return self.catch_up(c).await;
                }
                return Ok(());
            };
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
            let Some(before) = self.core.catch_up_from(c) else {
                return Ok(());
            };
            if !self.fetch_into_feed(c, before, page_size).await? {
                return Ok(());
            }
            let now = self.core.position(c).unwrap_or(before);
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
        let Some(release) = self.core.fetched(c, &page.messages) else {
            return Ok(false);
        };
        let moved = !release.is_empty();
        self.write_release(c, release).await?;
        Ok(moved)
    }

    async fn on_conversation(&mut self, delivery: Delivery) -> Result<(), End> {
        let header = delivery.header.clone();
        self.write(delivery.frame.clone(), false).await?;
        match self.core.conversation_event(&header) {
            Membership::Unchanged => Ok(()),
            Membership::Joined {
                conversation: c,
                base,
            } => {
                // The hub already routes it here.
                if let Err(e) = self.subscribe(&[Topic::Conversation(c)]).await {
                    tracing::warn!(error = %e, "subscribing a joined conversation failed");
                }
                self.realtime.hub.receipt_floor(self.id, c, base);
                self.catch_up(c).await?;
                self.catch_up_changes(c).await
            }
            Membership::Left {
                conversation: c,
                close,
            } => {
                self.unsubscribe(Topic::Conversation(c)).await;
                if close {
                    return Err(End::Close(CLOSE_NOT_PARTICIPANT, "no longer a participant"));
                }
                Ok(())
            }
        }
    }

    /// Stops following `c`.
    async fn leave(&mut self, c: ConversationId) {
        self.core.leave(c);
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
        let leases = self.core.typing_leases();
        if !leases.is_empty() {
            if let Err(e) = realtime.typing.session_closed(self.user, leases).await {
                tracing::warn!(error = %e, "ending typing leases at close failed");
            }
        }
        match realtime
            .presence
            .session_closed(self.user, self.core.away())
            .await
        {
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
            let answered = match pending.queued.try_outcome() {
                Some(result) => self.answer_send(pending.ack(result)).await,
                None => {
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

/// The `error` frame of a conversation the session may not act in.
fn refused(refusal: Refusal) -> FrameError {
    match refusal {
        Refusal::NotParticipant => FrameError::not_participant(),
        Refusal::ConversationRequired => FrameError::validation("conversation_id", "is required"),
        Refusal::NegativeCursor => FrameError::validation("cursors", "must not be negative"),
    }
}

fn unavailable(error: &dyn std::fmt::Display) -> Fault {
    tracing::warn!(error = %error, "real-time backend failed during a frame");
    Fault::Frame(FrameError::unavailable())
}
