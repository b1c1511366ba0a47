//! The WebSocket upgrade, with the connection taken out of actix's HTTP/1 dispatcher.
//!
//! actix-http hands every request with `Upgrade: websocket` to this service together with
//! its connection, instead of routing it through the app. The service answers it (a refusal
//! is a plain HTTP response, after which the connection closes), writes the `101`, and serves
//! the session on the bare socket ([`super::socket`]). The dispatcher's buffers go with the
//! HTTP part: a session holds no HTTP state.

use super::session::{self, Opening};
use super::{endpoint, socket, Gate};
use crate::error::ApiError;
use crate::telemetry::log_served;
use actix_codec::Framed;
use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, Request, Response, StatusCode};
use actix_service::{fn_service, ServiceFactory};
use actix_web::ResponseError;
use bytes::BytesMut;
use futures_util::SinkExt;
use std::fmt;
use std::io;
use std::time::Instant;
use tokio::net::TcpStream;
use tracing::Instrument;

/// What actix-http hands over: the upgrade request and its connection.
pub type Upgraded = (Request, Framed<TcpStream, h1::Codec>);

/// The upgrade service of one worker.
pub fn service(
    gate: Gate,
) -> impl ServiceFactory<Upgraded, Config = (), Response = (), Error = UpgradeError, InitError = ()>
       + Clone {
    fn_service(move |(req, framed): Upgraded| answer(gate.clone(), req, framed))
}

/// Serves one upgrade. A connection that fails while the server answers it is the client's
/// doing (it went, or reset): logged like a client's protocol error, never returned, since
/// actix-http would log it at ERROR level and any client could fill the log with it.
async fn answer(
    gate: Gate,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), UpgradeError> {
    let realtime = gate.state.realtime.clone();
    if let Err(e) = serve(gate, req, framed).await {
        if realtime.client_errors.admit() {
            tracing::info!(error = %e, "a WebSocket upgrade's connection failed");
        }
    }
    Ok(())
}

/// The connection failed while the server answered the upgrade.
#[derive(Debug)]
pub struct UpgradeError(io::Error);

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebSocket upgrade failed: {}", self.0)
    }
}

impl From<UpgradeError> for Response<BoxBody> {
    fn from(_: UpgradeError) -> Self {
        Response::internal_server_error()
    }
}

async fn serve(
    gate: Gate,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), UpgradeError> {
    let span = tracing::info_span!("request", method = %req.method(), path = %req.path());
    let started = Instant::now();
    let answer = match endpoint(req.path()) {
        None => Err(ApiError::NotFound.error_response().into()),
        Some(scope) => gate.admit(req.head(), req.peer_addr()).and_then(|claims| {
            actix_http::ws::handshake(req.head())
                .map(|mut accepted| (claims, scope, accepted.finish().drop_body()))
                .map_err(Response::from)
        }),
    };
    let (claims, scope, accepted) = match answer {
        Ok(accepted) => accepted,
        Err(refused) => {
            let status = refused.status();
            let sent = refuse(&mut framed, refused).await;
            log_served(&span, status, started);
            return sent.map_err(UpgradeError);
        }
    };
    framed
        .send(Message::Item((accepted, BodySize::None)))
        .instrument(span.clone())
        .await
        .map_err(UpgradeError)?;
    log_served(&span, StatusCode::SWITCHING_PROTOCOLS, started);
    // The HTTP state ends here: the request and the dispatcher's 8 KiB buffers are dropped,
    // not kept for the session's life. Whatever the client sent after its request is in the
    // read buffer: a copy of it goes on.
    drop(req);
    let parts = framed.into_parts();
    let early = BytesMut::from(&parts.read_buf[..]);
    drop(parts.read_buf);
    drop(parts.write_buf);
    let max = gate.state.realtime.settings.max_frame_bytes.get();
    let (reader, writer) = socket::split(parts.io, early, max);
    let opening = Opening {
        claims,
        scope,
        state: gate.state,
        verifier: gate.verifier.get_ref().clone(),
    };
    // Boxed: the connection's task (sized for the HTTP dispatcher) does not grow by it.
    Box::pin(session::run(opening, writer, reader)).await;
    Ok(())
}

/// Answers a refused upgrade, then the connection closes.
async fn refuse(
    framed: &mut Framed<TcpStream, h1::Codec>,
    response: Response<BoxBody>,
) -> io::Result<()> {
    let (mut head, body) = response.into_parts();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = body.try_into_bytes().unwrap_or_default();
    let size = BodySize::Sized(body.len() as u64);
    framed.send(Message::Item((head, size))).await?;
    if !body.is_empty() {
        framed.send(Message::Chunk(Some(body))).await?;
    }
    framed.send(Message::Chunk(None)).await
}
