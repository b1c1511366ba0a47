//! Structured logs with `tracing`: human-readable or JSON lines, and one line per request
//! that names its path but never its query string (WebSocket URLs carry `?token=`).

use crate::config::{LogFormat, LogSettings};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use std::time::Instant;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// The global subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up logging: {0}")]
pub struct TelemetryError(String);

/// Installs the global subscriber: `log.level` as the filter (`RUST_LOG` wins when set),
/// `log.format` as the output. Call once, before anything logs.
pub fn init(settings: &LogSettings) -> Result<(), TelemetryError> {
    let (filter, text) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, std::env::var("RUST_LOG").unwrap_or_default()),
        Err(_) => (
            EnvFilter::try_new(&settings.level)
                .map_err(|e| TelemetryError(format!("log.level {:?}: {e}", settings.level)))?,
            settings.level.clone(),
        ),
    };
    let filter = quiet_client_http_errors(filter, &text);
    // Colours only for a terminal: escape codes in a file or a pipe are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let installed = match settings.format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    installed.map_err(|e| TelemetryError(e.to_string()))
}

/// The target under which actix-http logs, at ERROR, requests it could not parse (any
/// client can send those, and fill the log with them: the client got its 400) and
/// connections that failed under it; the server's own failures are logged elsewhere.
const CLIENT_HTTP_ERRORS: &str = "actix_http::h1::dispatcher";

/// Turns [`CLIENT_HTTP_ERRORS`] off, unless the filter names actix-http itself.
fn quiet_client_http_errors(filter: EnvFilter, text: &str) -> EnvFilter {
    if text.contains("actix_http") {
        return filter;
    }
    match format!("{CLIENT_HTTP_ERRORS}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Middleware: a span per request (method and path), and a line when it completes with its
/// status and duration.
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.path(),
    );
    let started = Instant::now();
    let response = next.call(req).instrument(span.clone()).await?;
    log_served(&span, response.status(), started);
    Ok(response)
}

/// The access log line of a request answered with `status`, in the request's `span`: also
/// written by the WebSocket upgrade, which does not go through [`log_request`].
pub fn log_served(span: &tracing::Span, status: actix_web::http::StatusCode, started: Instant) {
    // Microsecond precision is plenty; more digits only make the line longer.
    let elapsed_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let failed = status.is_server_error();
    let status = status.as_u16();
    span.in_scope(|| {
        if failed {
            tracing::warn!(status, elapsed_ms, "request failed");
        } else {
            tracing::info!(status, elapsed_ms, "request served");
        }
    });
}
