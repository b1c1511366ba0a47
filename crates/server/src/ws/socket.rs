//! A session's WebSocket after the upgrade: frames read from and written to the TCP socket
//! directly, with no buffer held while the connection is idle.
//!
//! The connection leaves actix's HTTP/1 dispatcher at the upgrade ([`super::upgrade`]), so
//! the dispatcher's two 8 KiB buffers and a per-connection outgoing channel are gone. An idle
//! connection holds the socket and two empty buffers: [`Reader`] waits for readiness with no
//! buffer and frees its buffer whenever every byte read has been decoded; [`Writer`] encodes
//! into a buffer that is freed once written.
//!
//! Both halves are cancel-safe: what a cancelled call had read or queued stays in the half and
//! the next call goes on from there, so frames are never cut (a close written after a
//! cancelled text frame follows the whole text frame).

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{Codec, Frame, Item, Message, ProtocolError};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use std::io;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

pub use actix_http::ws::{CloseCode, CloseReason};

/// What a read takes from the socket at a time.
const READ_CHUNK: usize = 4096;

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

impl From<io::Error> for Closed {
    fn from(_: io::Error) -> Self {
        Self
    }
}

/// Splits an upgraded connection; `read` holds what the client sent after its upgrade
/// request, already read from the socket.
pub fn split(io: TcpStream, read: BytesMut, max_message_bytes: usize) -> (Reader, Writer) {
    let (reader, writer) = io.into_split();
    let codec = Codec::new().max_size(max_message_bytes);
    (
        Reader {
            io: reader,
            buf: read,
            codec: codec.clone(),
            max: max_message_bytes,
            fragments: None,
        },
        Writer {
            io: writer,
            out: BytesMut::new(),
            codec,
            closed: false,
        },
    )
}

/// A fragmented message being put together.
struct Fragments {
    text: bool,
    data: BytesMut,
}

/// The client's half.
pub struct Reader {
    io: OwnedReadHalf,
    buf: BytesMut,
    codec: Codec,
    max: usize,
    fragments: Option<Fragments>,
}

impl Reader {
    /// The client's next message; `None` when it closed the TCP connection.
    ///
    /// Cancel-safe: bytes read stay in the reader.
    pub async fn recv(&mut self) -> Option<Result<Incoming, ReadError>> {
        loop {
            if let Some(message) = self.decode() {
                return Some(message);
            }
            match self.fill().await {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(ReadError::Io(e))),
            }
        }
    }

    /// The next message among the bytes already read, if a whole one is there.
    fn decode(&mut self) -> Option<Result<Incoming, ReadError>> {
        while let Some(first) = self.buf.first() {
            if let Err(e) = check_first_byte(*first) {
                return Some(Err(e));
            }
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if let Some(message) = self.assemble(frame) {
                        return Some(message);
                    }
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(ReadError::decoding(e))),
            }
        }
        None
    }

    /// The next message among the bytes that have already reached this node, without
    /// waiting for more: those read, then those in the kernel's receive queue, read now
    /// without blocking (at most `limit` bytes more in all, so a client that keeps
    /// sending cannot keep this going). `None` when no whole message is there.
    ///
    /// For a session that is closing (shutdown): what the client sent before the close
    /// was decided is answered; what comes later is not read.
    pub fn try_recv(&mut self, limit: &mut usize) -> Option<Result<Incoming, ReadError>> {
        loop {
            if let Some(message) = self.decode() {
                return Some(message);
            }
            if *limit == 0 {
                return None;
            }
            // A read by the kernel itself, not tokio's `try_read`: that one answers
            // `WouldBlock` without asking the kernel until the runtime has seen the socket's
            // readiness event, so bytes that have arrived could be taken for none.
            let mut chunk = [0u8; READ_CHUNK];
            let want = (*limit).min(READ_CHUNK);
            let socket = socket2::SockRef::from(self.io.as_ref());
            match io::Read::read(&mut &*socket, &mut chunk[..want]) {
                // The client closed, or the queue is empty: nothing more has arrived.
                Ok(0) => return None,
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    *limit = limit.saturating_sub(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(ReadError::Io(e))),
            }
        }
    }

    /// Waits for input and appends it to the buffer (no buffer is held while waiting); `0`
    /// when the client closed the connection. Cancel-safe.
    async fn fill(&mut self) -> io::Result<usize> {
        loop {
            if self.buf.is_empty() && self.buf.capacity() > 0 {
                // Everything read is decoded: an idle connection holds no buffer.
                self.buf = BytesMut::new();
            }
            self.io.readable().await?;
            self.buf.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                read => return read,
            }
        }
    }

    /// A message out of a frame, or `None` while a fragmented message is incomplete.
    fn assemble(&mut self, frame: Frame) -> Option<Result<Incoming, ReadError>> {
        let (first, bytes, last) = match frame {
            Frame::Text(bytes) => return Some(text(bytes)),
            Frame::Binary(bytes) => return Some(Ok(Incoming::Binary(bytes))),
            Frame::Ping(bytes) => return Some(Ok(Incoming::Ping(bytes))),
            Frame::Pong(bytes) => return Some(Ok(Incoming::Pong(bytes))),
            Frame::Close(reason) => return Some(Ok(Incoming::Close(reason))),
            Frame::Continuation(Item::FirstText(bytes)) => (Some(true), bytes, false),
            Frame::Continuation(Item::FirstBinary(bytes)) => (Some(false), bytes, false),
            Frame::Continuation(Item::Continue(bytes)) => (None, bytes, false),
            Frame::Continuation(Item::Last(bytes)) => (None, bytes, true),
        };
        // The codec refuses a continuation without a first frame, and a first frame while a
        // message is open, so the states below are the only ones that come.
        if let Some(text) = first {
            self.fragments = Some(Fragments {
                text,
                data: BytesMut::new(),
            });
        }
        let fragments = self.fragments.as_mut()?;
        if fragments.data.len() + bytes.len() > self.max {
            // The rest of the message, if the session goes on, finds no message open and
            // is dropped.
            self.fragments = None;
            return Some(Err(ReadError::TooBig));
        }
        fragments.data.extend_from_slice(&bytes);
        if !last {
            return None;
        }
        let done = self.fragments.take()?;
        let data = done.data.freeze();
        Some(if done.text {
            text(data)
        } else {
            Ok(Incoming::Binary(data))
        })
    }
}

fn text(bytes: Bytes) -> Result<Incoming, ReadError> {
    ByteString::try_from(bytes)
        .map(Incoming::Text)
        .map_err(|_| ReadError::NotUtf8)
}

/// The server's half.
pub struct Writer {
    io: OwnedWriteHalf,
    /// Encoded frames not yet written (empty, with no allocation, when everything is out).
    out: BytesMut,
    codec: Codec,
    closed: bool,
}

impl Writer {
    /// Writes a text frame.
    #[cfg(test)]
    pub async fn text(&mut self, text: impl Into<ByteString>) -> Result<(), Closed> {
        self.queue(Message::Text(text.into()))?;
        self.flush().await
    }

    /// Queues a text frame without writing it: it goes out with the next write, flush or
    /// close, before anything queued after it.
    pub fn queue_text(&mut self, text: impl Into<ByteString>) -> Result<(), Closed> {
        self.queue(Message::Text(text.into()))
    }

    /// Writes a ping.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.queue(Message::Ping(Bytes::copy_from_slice(payload)))?;
        self.flush().await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> Result<(), Closed> {
        self.queue(Message::Pong(Bytes::copy_from_slice(payload)))?;
        self.flush().await
    }

    /// Writes a close frame after whatever is still queued, then ends the TCP stream's
    /// sending side. Nothing can be written after it.
    pub async fn close(&mut self, reason: Option<CloseReason>) -> Result<(), Closed> {
        if !self.closed {
            self.queue(Message::Close(reason))?;
            self.closed = true;
        }
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    fn queue(&mut self, message: Message) -> Result<(), Closed> {
        if self.closed {
            return Err(Closed);
        }
        self.codec
            .encode(message, &mut self.out)
            .map_err(|_| Closed)
    }

    /// Writes what is queued. Cancel-safe: the unwritten rest stays queued.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        while !self.out.is_empty() {
            let written = self.io.write(&self.out).await?;
            if written == 0 {
                return Err(Closed);
            }
            self.out.advance(written);
        }
        // Everything is out: an idle connection holds no buffer.
        self.out = BytesMut::new();
        Ok(())
    }
}

/// After the server's close frame: reads and drops what the client still sends (its close
/// frame) until it closes the connection, for at most `grace`. Closing a socket with unread
/// input makes the kernel reset the connection, which can destroy the close frame on its way.
pub async fn drain(mut reader: Reader, grace: Duration) {
    let _ = tokio::time::timeout(grace, async {
        loop {
            reader.buf.clear();
            if !matches!(reader.fill().await, Ok(read) if read > 0) {
                return;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const MAX: usize = 1024;

    /// A server half pair and the client's raw socket.
    async fn connected(leftover: &[u8]) -> (Reader, Writer, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (reader, writer) = split(server, BytesMut::from(leftover), MAX);
        (reader, writer, client)
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
    async fn messages_are_read_and_an_idle_reader_holds_no_buffer() {
        let (mut reader, _writer, mut client) = connected(b"").await;
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
        assert_eq!(reader.buf.capacity(), 0, "idle: the read buffer is freed");
        drop(client);
        assert!(reader.recv().await.is_none(), "the client closed");
    }

    #[tokio::test]
    async fn bytes_read_with_the_upgrade_request_come_first() {
        let leftover = client_frames(vec![Message::Text("early".into())]);
        let (mut reader, _writer, mut client) = connected(&leftover).await;
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
        let (mut reader, _writer, mut client) = connected(b"").await;
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
        let (mut reader, _writer, mut client) = connected(b"").await;
        let big = "x".repeat(MAX + 1);
        client
            .write_all(&client_frames(vec![Message::Text(big.into())]))
            .await
            .unwrap();
        assert!(matches!(reader.recv().await, Some(Err(ReadError::TooBig))));

        let (mut reader, _writer, mut client) = connected(b"").await;
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
        let (mut reader, _writer, mut client) = connected(b"").await;
        client
            .write_all(&client_frames(vec![
                continuation(Item::FirstText(Bytes::from_static(b"\xff"))),
                continuation(Item::Last(Bytes::from_static(b"\xfe"))),
            ]))
            .await
            .unwrap();
        assert!(matches!(reader.recv().await, Some(Err(ReadError::NotUtf8))));

        let (mut reader, _writer, mut client) = connected(b"").await;
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
            let (mut reader, _writer, mut client) = connected(b"").await;
            client.write_all(&raw_frame(first, b"hi")).await.unwrap();
            let read = reader.recv().await;
            assert!(
                matches!(read, Some(Err(ReadError::Protocol(_)))),
                "{what}: {read:?}"
            );
        }
    }

    #[tokio::test]
    async fn try_recv_takes_what_has_arrived_without_waiting_and_stops_at_its_limit() {
        let (mut reader, _writer, mut client) = connected(b"").await;
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
        let (_reader, mut writer, mut client) = connected(b"").await;
        writer.text("one").await.unwrap();
        writer.ping(b"").await.unwrap();
        assert_eq!(writer.out.capacity(), 0, "written: the buffer is freed");
        writer
            .close(Some(CloseReason {
                code: CloseCode::from(4001),
                description: Some("bye".into()),
            }))
            .await
            .unwrap();
        assert_eq!(writer.text("late").await, Err(Closed));
        let frames = server_frames(&mut client).await;
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
        let (_reader, mut writer, mut client) = connected(b"").await;
        // Far more than the socket buffers hold while the client reads nothing.
        let big = "z".repeat(32 << 20);
        let cancelled =
            tokio::time::timeout(Duration::from_millis(50), writer.text(big.clone())).await;
        assert!(cancelled.is_err(), "the write had to wait for the client");
        let reading = tokio::spawn(async move { server_frames(&mut client).await });
        writer.close(None).await.unwrap();
        let frames = reading.await.unwrap();
        assert_eq!(
            frames,
            vec![Frame::Text(Bytes::from(big)), Frame::Close(None)],
            "the whole text frame, then the close"
        );
    }

    #[tokio::test]
    async fn draining_ends_when_the_client_closes() {
        let (reader, mut writer, mut client) = connected(b"").await;
        writer.close(None).await.unwrap();
        client
            .write_all(&client_frames(vec![Message::Close(None)]))
            .await
            .unwrap();
        drop(client);
        let started = std::time::Instant::now();
        drain(reader, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
