//! A session's WebSocket after the upgrade: actix-ws on the bare upgraded socket.
//!
//! The connection leaves actix's HTTP/1 dispatcher at the upgrade ([`super::upgrade`]), so
//! the dispatcher's two 8 KiB buffers are gone; the session then speaks through actix-ws:
//! [`Writer`] sends through its `Session` (a channel of 32 messages into its response body
//! stream), [`Reader`] reads its `AggregatedMessageStream` (continuations put together). This
//! module is the shell between actix-ws and the `TcpStream`: [`SocketPayload`] feeds actix-ws's
//! decoder from the socket's reads (each chunk copied into a `Bytes` of its own size, so nothing
//! read stays in a 4 KiB buffer), and [`Pump`] writes its body stream to the socket. [`serve`]
//! runs a session and its pump in the connection's task.
//!
//! Both halves are cancel-safe: a text frame leaves the writer's queue only once actix-ws took
//! it, and what was read stays in actix-ws's stream, so frames are never cut or lost (a close
//! sent after a cancelled text frame follows the whole text frame).

use actix_http::body::{BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::ws::ProtocolError;
use actix_http::RequestHead;
use actix_web::FromRequest;
use actix_ws::{AggregatedMessage, AggregatedMessageStream};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{FutureExt, Stream};
use std::cell::Cell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use actix_http::ws::{CloseCode, CloseReason};

/// What a read takes from the socket at a time.
const READ_CHUNK: usize = 4096;

/// At most this many bytes are read in one turn of actix-ws's stream (it reads until the
/// socket has nothing more before it decodes): a client that keeps sending cannot make its
/// buffer grow without bound.
const READ_PER_TURN: usize = 16 * READ_CHUNK;

/// A whole message from the client (continuations put together), or a control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message (UTF-8 checked).
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
    /// A ping, to be answered with a pong of the same payload.
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// The client's close frame.
    Close(Option<CloseReason>),
}

/// Why the client's stream cannot go on.
#[derive(Debug)]
pub enum ReadError {
    /// A frame, or a message put together from continuations, over the size limit.
    TooBig,
    /// A text message that is not UTF-8.
    NotUtf8,
    /// A frame that breaks RFC 6455 (reserved bits set, a fragmented control frame,
    /// unmasked, bad opcode, a continuation out of place...): what it broke, for the log.
    Protocol(&'static str),
    /// The socket failed.
    Io(io::Error),
}

impl ReadError {
    /// A decoding failure. Decoding reads no socket, so even the codec's `Io` (how it
    /// reports reserved bits set) is the client breaking the protocol, not a broken socket.
    fn decoding(error: ProtocolError) -> Self {
        Self::Protocol(match error {
            ProtocolError::Overflow => return Self::TooBig,
            ProtocolError::UnmaskedFrame => "unmasked client frame",
            ProtocolError::MaskedFrame => "masked frame",
            ProtocolError::InvalidOpcode(_) | ProtocolError::BadOpCode => "unknown opcode",
            ProtocolError::InvalidLength(_) => "control frame payload over 125 bytes",
            ProtocolError::ContinuationNotStarted => "continuation without a first frame",
            ProtocolError::ContinuationStarted => "new message inside a fragmented one",
            ProtocolError::ContinuationFragment(_) => "fragmented control frame",
            ProtocolError::Io(_) => "reserved bits set or a bad close frame",
        })
    }
}

/// FIN, the RSV bits and the opcode: the first byte of every frame (RFC 6455 section 5.2).
const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const OPCODE: u8 = 0x0f;
/// Opcodes from 0x8 up are control frames, which must not be fragmented (section 5.5).
const FIRST_CONTROL_OPCODE: u8 = 0x8;

/// What the first byte of the next frame already tells, before the codec sees it: no
/// extension is ever negotiated, so a reserved bit set is an error (section 5.2), and a
/// control frame must have FIN set. The codec would report the first as an I/O error and
/// log the second at ERROR level, which any client could then fill the log with.
fn check_first_byte(first: u8) -> Result<(), ReadError> {
    if first & RSV != 0 {
        return Err(ReadError::Protocol(
            "reserved bits set without a negotiated extension",
        ));
    }
    if first & FIN == 0 && first & OPCODE >= FIRST_CONTROL_OPCODE {
        return Err(ReadError::Protocol("fragmented control frame"));
    }
    Ok(())
}

/// The socket is closed for writing: the session closed it, or the client went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A frame that breaks the protocol, found before the codec saw it.
#[derive(Debug)]
struct Violation(&'static str);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Violation {}

/// What an error of actix-ws's stream means. Its `ProtocolError::Io` stands for several
/// things, told apart by the error inside: the payload's (the socket failed, or
/// [`SocketPayload`] found a frame that breaks the protocol), text that is not UTF-8 (a
/// `Utf8Error`, or its message for a message put together from continuations), a message
/// over the continuation limit, or the codec's reserved bits.
fn read_error(error: ProtocolError) -> ReadError {
    let ProtocolError::Io(e) = error else {
        return ReadError::decoding(error);
    };
    if let Some(payload) = e.get_ref().and_then(|e| e.downcast_ref::<PayloadError>()) {
        if let PayloadError::Io(inner) = payload {
            if let Some(v) = inner.get_ref().and_then(|e| e.downcast_ref::<Violation>()) {
                return ReadError::Protocol(v.0);
            }
        }
        return ReadError::Io(e);
    }
    if e.get_ref().is_some_and(|e| e.is::<std::str::Utf8Error>()) {
        return ReadError::NotUtf8;
    }
    let message = e.to_string();
    if message.contains("utf-8") {
        ReadError::NotUtf8
    } else if message.contains("maximum continuation size") {
        ReadError::TooBig
    } else {
        ReadError::Protocol("reserved bits set or a bad close frame")
    }
}

/// Where each frame of the client's stream starts, so its first byte is checked before the
/// codec sees it (the codec logs a fragmented control frame at ERROR level).
#[derive(Default)]
struct Frames {
    header: [u8; 14],
    have: usize,
    payload_left: u64,
}

impl Frames {
    /// The offset in `bytes` of the first frame that breaks the protocol, and why.
    fn scan(&mut self, bytes: &[u8]) -> Option<(usize, &'static str)> {
        let mut i = 0;
        while i < bytes.len() {
            if self.payload_left > 0 {
                let left = usize::try_from(self.payload_left).unwrap_or(usize::MAX);
                let take = left.min(bytes.len() - i);
                i += take;
                self.payload_left -= take as u64;
                continue;
            }
            if self.have == 0 {
                if let Err(ReadError::Protocol(what)) = check_first_byte(bytes[i]) {
                    return Some((i, what));
                }
            }
            self.header[self.have] = bytes[i];
            self.have += 1;
            i += 1;
            if let Some((header, payload)) = header_len(&self.header[..self.have]) {
                if self.have == header {
                    self.have = 0;
                    self.payload_left = payload;
                }
            }
        }
        None
    }
}

/// A frame header's length and its payload's, once enough of it is known.
fn header_len(h: &[u8]) -> Option<(usize, u64)> {
    let second = *h.get(1)?;
    let len7 = second & 0x7f;
    let ext = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let payload = match len7 {
        126 => u64::from(u16::from_be_bytes(h.get(2..4)?.try_into().ok()?)),
        127 => u64::from_be_bytes(h.get(2..10)?.try_into().ok()?),
        n => u64::from(n),
    };
    Some((2 + ext + mask, payload))
}

/// The client's bytes, as the payload stream actix-ws decodes: read from the socket as they
/// come, each chunk copied to a `Bytes` of its own size. Each frame's first byte is checked
/// on the way ([`check_first_byte`]).
struct SocketPayload {
    io: Rc<OwnedReadHalf>,
    early: Option<Bytes>,
    /// `Some(limit)`: read only what the kernel already holds, at most `limit` bytes more,
    /// without waiting (a session closing at shutdown); `None`: wait for input.
    eager: Rc<Cell<Option<usize>>>,
    frames: Frames,
    /// A frame that breaks the protocol comes next (the bytes before it went on first).
    broken: Option<&'static str>,
    /// Bytes read since the stream last waited ([`READ_PER_TURN`]).
    turn: usize,
    done: bool,
}

fn violation(what: &'static str) -> PayloadError {
    PayloadError::Io(io::Error::new(io::ErrorKind::InvalidData, Violation(what)))
}

impl SocketPayload {
    fn checked(&mut self, data: Bytes) -> Poll<Option<Result<Bytes, PayloadError>>> {
        match self.frames.scan(&data) {
            None => Poll::Ready(Some(Ok(data))),
            Some((0, what)) => {
                self.done = true;
                Poll::Ready(Some(Err(violation(what))))
            }
            Some((at, what)) => {
                self.broken = Some(what);
                Poll::Ready(Some(Ok(data.slice(..at))))
            }
        }
    }
}

impl Stream for SocketPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(what) = this.broken.take() {
            this.done = true;
            return Poll::Ready(Some(Err(violation(what))));
        }
        if let Some(early) = this.early.take() {
            return this.checked(early);
        }
        let mut chunk = [0u8; READ_CHUNK];
        let tcp: &TcpStream = (*this.io).as_ref();
        if let Some(limit) = this.eager.get() {
            if limit == 0 {
                return Poll::Pending;
            }
            let want = limit.min(READ_CHUNK);
            let socket = socket2::SockRef::from(tcp);
            loop {
                match io::Read::read(&mut &*socket, &mut chunk[..want]) {
                    Ok(0) => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    Ok(n) => {
                        this.eager.set(Some(limit - n));
                        return this.checked(Bytes::copy_from_slice(&chunk[..n]));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(PayloadError::Io(e))));
                    }
                }
            }
        }
        if this.turn >= READ_PER_TURN {
            // Let actix-ws decode what it has; it is polled again at once.
            this.turn = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            let ready = tcp.poll_read_ready(cx);
            if ready.is_pending() {
                this.turn = 0;
            }
            if let Err(e) = ready!(ready) {
                this.done = true;
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            match tcp.try_read(&mut chunk) {
                Ok(0) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    this.turn += n;
                    return this.checked(Bytes::copy_from_slice(&chunk[..n]));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
    }
}

/// Puts an upgraded connection under actix-ws: `head` is the upgrade request (already
/// answered with the `101`), `early` what the client sent after it, already read.
pub fn split(
    io: TcpStream,
    early: BytesMut,
    max_message_bytes: usize,
    head: &RequestHead,
) -> io::Result<(Reader, Writer, Pump)> {
    let (reader, writer) = io.into_split();
    let reader = Rc::new(reader);
    let progress = Rc::new(Progress::default());
    let eager = Rc::new(Cell::new(None));
    let payload = SocketPayload {
        io: reader.clone(),
        early: (!early.is_empty()).then(|| early.freeze()),
        eager: eager.clone(),
        frames: Frames::default(),
        broken: None,
        turn: 0,
        done: false,
    };
    let payload: actix_http::BoxedPayloadStream = Box::pin(payload);
    let mut payload = actix_http::Payload::Stream { payload };
    // actix-ws starts from actix-web's request and payload types, which only actix-web's app
    // makes, or its `test` module: the request is made there from the upgrade's headers (for
    // the handshake `actix_ws::handle` answers again; its response head is not sent, only its
    // body is used) and dropped at once.
    let mut request = actix_web::test::TestRequest::get();
    for (name, value) in head.headers().iter() {
        request = request.append_header((name.clone(), value.clone()));
    }
    let request = request.to_http_request();
    let body = actix_web::web::Payload::from_request(&request, &mut payload)
        .now_or_never()
        .ok_or_else(|| io::Error::other("payload extraction pending"))?
        .map_err(|e| io::Error::other(e.to_string()))?;
    let (response, session, stream) =
        actix_ws::handle(&request, body).map_err(|e| io::Error::other(e.to_string()))?;
    drop(request);
    let stream = stream
        .max_frame_size(max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(max_message_bytes);
    Ok((
        Reader {
            stream,
            io: reader,
            eager,
        },
        Writer {
            session: Some(session),
            pending: VecDeque::new(),
            progress: progress.clone(),
        },
        Pump {
            body: response.into_body(),
            io: writer,
            progress,
        },
    ))
}

/// The client's half: actix-ws's message stream.
pub struct Reader {
    stream: AggregatedMessageStream,
    io: Rc<OwnedReadHalf>,
    eager: Rc<Cell<Option<usize>>>,
}

fn incoming(message: Result<AggregatedMessage, ProtocolError>) -> Result<Incoming, ReadError> {
    Ok(match message.map_err(read_error)? {
        AggregatedMessage::Text(text) => Incoming::Text(text),
        AggregatedMessage::Binary(bytes) => Incoming::Binary(bytes),
        AggregatedMessage::Ping(bytes) => Incoming::Ping(bytes),
        AggregatedMessage::Pong(bytes) => Incoming::Pong(bytes),
        AggregatedMessage::Close(reason) => Incoming::Close(reason),
    })
}

impl Reader {
    /// The client's next message; `None` when it closed the TCP connection.
    pub async fn recv(&mut self) -> Option<Result<Incoming, ReadError>> {
        self.stream.recv().await.map(incoming)
    }

    /// The next message among the bytes that have already reached this node, without
    /// waiting for more: those read, then those in the kernel's receive queue, read now
    /// without blocking (at most `limit` bytes more in all, so a client that keeps sending
    /// cannot keep this going). `None` when no whole message is there.
    ///
    /// For a session that is closing (shutdown): what the client sent before the close was
    /// decided is answered; what comes later is not read. The reads are the kernel's own,
    /// not tokio's `try_read`: that one answers `WouldBlock` without asking the kernel until
    /// the runtime has seen the socket's readiness event, so bytes that have arrived could be
    /// taken for none.
    pub fn try_recv(&mut self, limit: &mut usize) -> Option<Result<Incoming, ReadError>> {
        self.eager.set(Some(*limit));
        let next = self.stream.recv().now_or_never().flatten();
        *limit = self.eager.replace(None).unwrap_or(0);
        next.map(incoming)
    }
}

/// How far the pump has written what the writer handed to actix-ws, shared by the two.
///
/// actix-ws's `Session` returns once a message is in its channel (32 messages), and its body
/// stream takes everything in the channel each time it is polled: without waiting for the
/// pump, a slow client would have up to twice 32 frames held for it in this process besides the
/// hub's bounded queue, and would fall behind without the queue ever noticing (4009).
#[derive(Default)]
struct Progress {
    /// Messages handed to actix-ws.
    sent: Cell<u64>,
    /// Of those, the ones written to the socket.
    written: Cell<u64>,
    /// The pump stopped: nothing more will be written.
    ended: Cell<bool>,
    /// The writer waiting for `written` to reach `sent`.
    waiter: Cell<Option<Waker>>,
}

impl Progress {
    fn written_up_to(&self, sent: u64) {
        self.written.set(sent);
        if let Some(waiter) = self.waiter.take() {
            waiter.wake();
        }
    }

    fn end(&self) {
        self.ended.set(true);
        if let Some(waiter) = self.waiter.take() {
            waiter.wake();
        }
    }

    /// Waits until everything handed to actix-ws is written to the socket.
    async fn all_written(&self) -> Result<(), Closed> {
        poll_fn(|cx| {
            if self.written.get() >= self.sent.get() {
                Poll::Ready(Ok(()))
            } else if self.ended.get() {
                Poll::Ready(Err(Closed))
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// The server's half: actix-ws's `Session`.
pub struct Writer {
    session: Option<actix_ws::Session>,
    /// Text frames queued, not yet handed to the session.
    pending: VecDeque<ByteString>,
    progress: Rc<Progress>,
}

impl Writer {
    /// Writes a text frame.
    #[cfg(test)]
    pub async fn text(&mut self, text: impl Into<ByteString>) -> Result<(), Closed> {
        self.queue_text(text)?;
        self.flush().await
    }

    /// Queues a text frame: it goes out with the next flush, ping, pong or close, before
    /// anything queued after it.
    pub fn queue_text(&mut self, text: impl Into<ByteString>) -> Result<(), Closed> {
        if self.session.is_none() {
            return Err(Closed);
        }
        self.pending.push_back(text.into());
        Ok(())
    }

    /// Writes a ping.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.hand_over().await?;
        let session = self.session.as_mut().ok_or(Closed)?;
        session.ping(payload).await.map_err(|_| Closed)?;
        self.handed();
        self.progress.all_written().await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.hand_over().await?;
        let session = self.session.as_mut().ok_or(Closed)?;
        session.pong(payload).await.map_err(|_| Closed)?;
        self.handed();
        self.progress.all_written().await
    }

    /// Sends a close frame after whatever is still queued, and waits until it is written:
    /// actix-ws's body stream ends with it, and the pump then ends the TCP stream's sending
    /// side. Nothing can be sent after it.
    pub async fn close(&mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        if self.session.is_some() {
            self.hand_over().await?;
            let session = self.session.take().ok_or(Closed)?;
            session.close(reason).await.map_err(|_| Closed)?;
            self.handed();
        }
        self.progress.all_written().await
    }

    /// Writes what is queued: hands it to actix-ws, then waits until the pump has written it
    /// to the socket. Cancel-safe: a frame leaves the queue only once actix-ws took it.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        self.hand_over().await?;
        self.progress.all_written().await
    }

    /// Hands what is queued to actix-ws.
    async fn hand_over(&mut self) -> Result<(), Closed> {
        let Some(session) = self.session.as_mut() else {
            return if self.pending.is_empty() {
                Ok(())
            } else {
                Err(Closed)
            };
        };
        while let Some(front) = self.pending.front() {
            session.text(front.clone()).await.map_err(|_| Closed)?;
            self.pending.pop_front();
            self.progress.sent.set(self.progress.sent.get() + 1);
        }
        if self.pending.capacity() > 0 {
            self.pending = VecDeque::new();
        }
        Ok(())
    }

    fn handed(&self) {
        self.progress.sent.set(self.progress.sent.get() + 1);
    }
}

/// actix-ws's response body stream (the encoded frames the `Session` sent), written to the
/// socket.
pub struct Pump {
    body: BoxBody,
    io: OwnedWriteHalf,
    progress: Rc<Progress>,
}

impl Pump {
    /// Writes until the body ends (then ends the TCP stream's sending side and keeps the body,
    /// since dropping it ends the message stream too) or the socket fails (`None`: the body
    /// is dropped, so the session's sends and reads end).
    async fn run(self) -> Option<BoxBody> {
        let Self {
            mut body,
            mut io,
            progress,
        } = self;
        let kept = loop {
            let next = poll_fn(|cx| {
                // The body takes every message in actix-ws's channel when polled: when it has
                // nothing more, everything handed before is written.
                let sent = progress.sent.get();
                let next = Pin::new(&mut body).poll_next(cx);
                if next.is_pending() {
                    progress.written_up_to(sent);
                }
                next
            })
            .await;
            match next {
                Some(Ok(bytes)) => {
                    if io.write_all(&bytes).await.is_err() {
                        break None;
                    }
                }
                Some(Err(_)) => break None,
                None => {
                    progress.written_up_to(progress.sent.get());
                    let _ = io.shutdown().await;
                    break Some(body);
                }
            }
        };
        progress.end();
        kept
    }
}

/// Runs a session and its pump together; once the session ends, the pump has `grace` to
/// write what is left.
pub async fn serve(session: impl Future<Output = ()>, pump: Pump, grace: Duration) {
    let mut session = std::pin::pin!(session);
    let mut pump = std::pin::pin!(pump.run());
    tokio::select! {
        () = &mut session => {
            let _ = tokio::time::timeout(grace, pump).await;
        }
        kept = &mut pump => {
            session.await;
            drop(kept);
        }
    }
}

/// After the server's close frame: reads and drops what the client still sends (its close
/// frame) until it closes the connection, for at most `grace`. Closing a socket with unread
/// input makes the kernel reset the connection, which can destroy the close frame on its way.
pub async fn drain(reader: Reader, grace: Duration) {
    let Reader { stream, io, .. } = reader;
    drop(stream);
    let _ = tokio::time::timeout(grace, async {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            if io.readable().await.is_err() {
                return;
            }
            match io.try_read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use actix_codec::{Decoder, Encoder};
    use actix_http::header::{self, HeaderValue};
    use actix_http::ws::{Codec, Frame, Item, Message};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const MAX: usize = 1024;
    const GRACE: Duration = Duration::from_secs(5);

    /// An upgrade request's head, as a browser sends it.
    fn upgrade_head() -> RequestHead {
        let mut head = RequestHead::default();
        head.method = actix_http::Method::GET;
        for (name, value) in [
            (header::UPGRADE, "websocket"),
            (header::CONNECTION, "Upgrade"),
            (header::SEC_WEBSOCKET_VERSION, "13"),
            (header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="),
        ] {
            head.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        head
    }

    /// The server's halves and pump, and the client's raw socket.
    async fn connected(leftover: &[u8]) -> (Reader, Writer, Pump, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (reader, writer, pump) =
            split(server, BytesMut::from(leftover), MAX, &upgrade_head()).unwrap();
        (reader, writer, pump, client)
    }

    /// Frames as a browser sends them: masked.
    fn client_frames(messages: Vec<Message>) -> BytesMut {
        let mut codec = Codec::new().client_mode().max_size(usize::MAX);
        let mut out = BytesMut::new();
        for m in messages {
            codec.encode(m, &mut out).unwrap();
        }
        out
    }

    /// Everything the server wrote until it closed the connection, as frames.
    async fn server_frames(client: &mut TcpStream) -> Vec<Frame> {
        let mut raw = Vec::new();
        client.read_to_end(&mut raw).await.unwrap();
        let mut codec = Codec::new().client_mode().max_size(usize::MAX);
        let mut buf = BytesMut::from(&raw[..]);
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "a frame was cut");
        frames
    }

    fn continuation(item: Item) -> Message {
        Message::Continuation(item)
    }

    #[tokio::test]
    async fn messages_are_read_in_order() {
        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let frames = client_frames(vec![
            Message::Text("hello".into()),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Binary(Bytes::from_static(b"\x00\x01")),
        ]);
        client.write_all(&frames).await.unwrap();
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Incoming::Text("hello".into())
        );
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Incoming::Ping(Bytes::from_static(b"p"))
        );
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Incoming::Binary(Bytes::from_static(b"\x00\x01"))
        );
        let waited = tokio::time::timeout(Duration::from_millis(30), reader.recv()).await;
        assert!(waited.is_err(), "nothing more was sent");
        drop(client);
        assert!(reader.recv().await.is_none(), "the client closed");
    }

    #[tokio::test]
    async fn bytes_read_with_the_upgrade_request_come_first() {
        let leftover = client_frames(vec![Message::Text("early".into())]);
        let (mut reader, _writer, _pump, mut client) = connected(&leftover).await;
        client
            .write_all(&client_frames(vec![Message::Text("later".into())]))
            .await
            .unwrap();
        for expected in ["early", "later"] {
            assert_eq!(
                reader.recv().await.unwrap().unwrap(),
                Incoming::Text(expected.into())
            );
        }
    }

    #[tokio::test]
    async fn a_fragmented_message_is_put_together_even_across_reads() {
        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let frames = client_frames(vec![
            continuation(Item::FirstText(Bytes::from_static(b"he"))),
            Message::Ping(Bytes::new()),
            continuation(Item::Continue(Bytes::from_static(b"ll"))),
            continuation(Item::Last(Bytes::from_static(b"o"))),
        ]);
        // One byte at a time: every frame arrives in pieces.
        let writing = tokio::spawn(async move {
            for byte in frames.iter() {
                client.write_all(&[*byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Incoming::Ping(Bytes::new()),
            "a control frame may come between fragments"
        );
        assert_eq!(
            reader.recv().await.unwrap().unwrap(),
            Incoming::Text("hello".into())
        );
        writing.await.unwrap();
    }

    #[tokio::test]
    async fn a_frame_or_a_message_over_the_limit_is_too_big() {
        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let big = "x".repeat(MAX + 1);
        client
            .write_all(&client_frames(vec![Message::Text(big.into())]))
            .await
            .unwrap();
        assert!(matches!(reader.recv().await, Some(Err(ReadError::TooBig))));

        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let half = Bytes::from("y".repeat(MAX / 2 + 1));
        client
            .write_all(&client_frames(vec![
                continuation(Item::FirstText(half.clone())),
                continuation(Item::Last(half)),
            ]))
            .await
            .unwrap();
        assert!(matches!(reader.recv().await, Some(Err(ReadError::TooBig))));
    }

    #[tokio::test]
    async fn text_that_is_not_utf8_and_unmasked_frames_are_refused() {
        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        client
            .write_all(&client_frames(vec![
                continuation(Item::FirstText(Bytes::from_static(b"\xff"))),
                continuation(Item::Last(Bytes::from_static(b"\xfe"))),
            ]))
            .await
            .unwrap();
        assert!(matches!(reader.recv().await, Some(Err(ReadError::NotUtf8))));

        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let mut not_text = BytesMut::new();
        Codec::new()
            .client_mode()
            .encode(Message::Binary(Bytes::from_static(b"\xff")), &mut not_text)
            .unwrap();
        // The same frame as text: the opcode is the low nibble of the first byte.
        not_text[0] = (not_text[0] & !OPCODE) | 0x1;
        client.write_all(&not_text).await.unwrap();
        assert!(matches!(reader.recv().await, Some(Err(ReadError::NotUtf8))));

        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let mut unmasked = BytesMut::new();
        Codec::new()
            .encode(Message::Text("hi".into()), &mut unmasked)
            .unwrap();
        client.write_all(&unmasked).await.unwrap();
        assert!(matches!(
            reader.recv().await,
            Some(Err(ReadError::Protocol(_)))
        ));
    }

    /// A masked client frame written by hand: `first` is the FIN/RSV/opcode byte.
    fn raw_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![first, 0x80 | u8::try_from(payload.len()).unwrap()];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    #[tokio::test]
    async fn reserved_bits_and_fragmented_control_frames_break_the_protocol() {
        for (what, first) in [
            ("RSV1 on a text frame", 0x80 | 0x40 | 0x1),
            ("RSV2 on a ping", 0x80 | 0x20 | 0x9),
            ("RSV3 on a continuation", 0x10),
            ("a ping without FIN", 0x9),
            ("a close without FIN", 0x8),
        ] {
            let (mut reader, _writer, _pump, mut client) = connected(b"").await;
            client.write_all(&raw_frame(first, b"hi")).await.unwrap();
            let read = reader.recv().await;
            assert!(
                matches!(read, Some(Err(ReadError::Protocol(_)))),
                "{what}: {read:?}"
            );
        }
    }

    #[test]
    fn frame_starts_are_found_across_chunks_and_lengths() {
        // Masked frames with 7-bit, 16-bit and 64-bit lengths, then one with RSV1 set.
        let mut stream = client_frames(vec![
            Message::Text("a".into()),
            Message::Binary(Bytes::from(vec![7u8; 300])),
            Message::Binary(Bytes::from(vec![9u8; 70_000])),
        ])
        .to_vec();
        let bad_at = stream.len();
        stream.extend_from_slice(&raw_frame(0x80 | 0x40 | 0x1, b"x"));
        for chunk_size in [1, 2, 3, 7, 13, 4096, stream.len()] {
            let mut frames = Frames::default();
            let mut found = None;
            for (i, chunk) in stream.chunks(chunk_size).enumerate() {
                if let Some((at, _)) = frames.scan(chunk) {
                    found = Some(i * chunk_size + at);
                    break;
                }
            }
            assert_eq!(found, Some(bad_at), "chunks of {chunk_size}");
        }
    }

    #[tokio::test]
    async fn try_recv_takes_what_has_arrived_without_waiting_and_stops_at_its_limit() {
        let (mut reader, _writer, _pump, mut client) = connected(b"").await;
        let frames = client_frames(vec![
            Message::Text("one".into()),
            Message::Text("two".into()),
        ]);
        client.write_all(&frames).await.unwrap();
        // Both frames are in the kernel's receive queue once the reader can see any byte.
        reader.io.readable().await.unwrap();
        let mut limit = 1 << 20;
        let mut read = Vec::new();
        while let Some(message) = reader.try_recv(&mut limit) {
            read.push(message.unwrap());
        }
        assert_eq!(
            read,
            vec![Incoming::Text("one".into()), Incoming::Text("two".into())]
        );
        assert!(
            reader.try_recv(&mut limit).is_none(),
            "nothing more, no wait"
        );

        // A limit of one frame's bytes: the second one is not read.
        client.write_all(&frames).await.unwrap();
        reader.io.readable().await.unwrap();
        let mut limit = frames.len() / 2;
        assert_eq!(
            reader.try_recv(&mut limit).unwrap().unwrap(),
            Incoming::Text("one".into())
        );
        assert!(reader.try_recv(&mut limit).is_none(), "over the limit");
        assert_eq!(limit, 0);
    }

    #[tokio::test]
    async fn frames_are_written_in_order_and_close_ends_the_stream() {
        let (reader, mut writer, pump, mut client) = connected(b"").await;
        let reading = tokio::spawn(async move { server_frames(&mut client).await });
        let session = async move {
            writer.text("one").await.unwrap();
            writer.ping(b"").await.unwrap();
            assert_eq!(writer.pending.capacity(), 0, "sent: the queue is freed");
            writer
                .close(Some(CloseReason {
                    code: CloseCode::from(4001),
                    description: Some("bye".into()),
                }))
                .await
                .unwrap();
            assert_eq!(writer.text("late").await, Err(Closed));
            drain(reader, GRACE).await;
        };
        serve(session, pump, GRACE).await;
        let frames = reading.await.unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Text(Bytes::from_static(b"one")),
                Frame::Ping(Bytes::new()),
                Frame::Close(Some(CloseReason {
                    code: CloseCode::from(4001),
                    description: Some("bye".into()),
                })),
            ]
        );
    }

    #[tokio::test]
    async fn a_write_cancelled_half_way_is_finished_before_the_close() {
        let (_reader, mut writer, pump, mut client) = connected(b"").await;
        // Far more than actix-ws's channel and the socket buffers hold while the client
        // reads nothing.
        let big = ByteString::from("z".repeat(1 << 20));
        let session = async move {
            let mut sent = 0;
            // Until a write has to wait for the client: it is cancelled half way.
            while let Ok(written) =
                tokio::time::timeout(Duration::from_millis(50), writer.text(big.clone())).await
            {
                written.unwrap();
                sent += 1;
                assert!(sent < 1000, "the writer never had to wait");
            }
            let reading = tokio::spawn(async move { server_frames(&mut client).await });
            writer.close(None).await.unwrap();
            (sent, big, reading)
        };
        let mut session = std::pin::pin!(session);
        let mut pump = std::pin::pin!(pump.run());
        // The session and the pump together, as `serve` runs them; here the session's
        // result is needed.
        let (sent, big, reading) = tokio::select! {
            out = &mut session => {
                let _ = tokio::time::timeout(GRACE, pump).await;
                out
            }
            _ = &mut pump => session.await,
        };
        let frames = reading.await.unwrap();
        let big = big.into_bytes();
        let mut expected: Vec<Frame> = (0..=sent).map(|_| Frame::Text(big.clone())).collect();
        expected.push(Frame::Close(None));
        assert_eq!(
            frames, expected,
            "every text frame whole, the cancelled one too, then the close"
        );
    }

    #[tokio::test]
    async fn draining_ends_when_the_client_closes() {
        let (reader, mut writer, pump, mut client) = connected(b"").await;
        let started = std::time::Instant::now();
        let session = async move {
            writer.close(None).await.unwrap();
            client
                .write_all(&client_frames(vec![Message::Close(None)]))
                .await
                .unwrap();
            drop(client);
            drain(reader, GRACE).await;
        };
        serve(session, pump, GRACE).await;
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
