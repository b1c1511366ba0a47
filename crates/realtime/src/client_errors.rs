//! [`ClientErrorLog`]: the sampled log of clients' protocol errors (1002, 1007, 1009, refused
//! origins, upgrades cut short), which a node's sessions and upgrades share.

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
    pub(crate) fn new(per_minute: u32) -> Self {
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
    #[cfg(test)]
    pub(crate) fn left_out(&self) -> u64 {
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
