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

/// How often a node logs clients' protocol errors: at most `per_minute` lines a minute (at
/// INFO, never ERROR: any client can cause them, and a flood of them must not fill the log
/// or hide the server's own errors), then one line with how many were left out. The metrics
/// count every one.
#[derive(Debug)]
pub struct ClientErrorLog {
    per_minute: u32,
    window: std::sync::Mutex<LogWindow>,
}

#[derive(Debug)]
struct LogWindow {
    started: tokio::time::Instant,
    logged: u32,
    left_out: u64,
}

/// The interval [`ClientErrorLog`] counts its lines in.
const CLIENT_ERROR_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl ClientErrorLog {
    /// A log of at most `per_minute` lines a minute (0: none; the metrics still count).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            window: std::sync::Mutex::new(LogWindow {
                started: tokio::time::Instant::now(),
                logged: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether a line about one more client error may be written now. The first call of a
    /// new minute first logs how many the last one left out.
    pub fn admit(&self) -> bool {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = tokio::time::Instant::now();
        if now.duration_since(window.started) >= CLIENT_ERROR_WINDOW {
            if window.left_out > 0 {
                tracing::info!(
                    left_out = window.left_out,
                    "client protocol errors not logged in the last minute (see the metrics)"
                );
            }
            *window = LogWindow {
                started: now,
                logged: 0,
                left_out: 0,
            };
        }
        if window.logged < self.per_minute {
            window.logged += 1;
            true
        } else {
            window.left_out += 1;
            false
        }
    }

    /// Errors left out of the log in the current minute.
    pub fn left_out(&self) -> u64 {
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .left_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn client_errors_are_logged_at_most_n_a_minute_and_the_rest_counted() {
        let log = ClientErrorLog::new(3);
        let admitted = (0..10).filter(|_| log.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(log.left_out(), 7);
        tokio::time::advance(CLIENT_ERROR_WINDOW).await;
        assert!(log.admit(), "a new minute has a new budget");
        assert_eq!(log.left_out(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_of_zero_logs_nothing() {
        let log = ClientErrorLog::new(0);
        assert!(!log.admit());
        assert_eq!(log.left_out(), 1);
    }
}
