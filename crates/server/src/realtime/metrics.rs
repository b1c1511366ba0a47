//! Counters of the real-time layer, exposed on `GET /metrics` in the Prometheus text format.
//! Hand-written: a handful of atomics per node (no global recorder), so several servers in
//! one test process each report their own figures.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds of the commit batch size histogram.
const BATCH_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// The node's real-time figures.
#[derive(Debug, Default)]
pub struct Metrics {
    commit_transactions: AtomicU64,
    messages_committed: AtomicU64,
    messages_replayed: AtomicU64,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len()],
    batch_sum: AtomicU64,
    batch_max: AtomicU64,
    commit_failures: AtomicU64,
    sessions: AtomicI64,
    sessions_opened: AtomicU64,
    messages_out: AtomicU64,
    frames_out: AtomicU64,
    events_received: AtomicU64,
    slow_consumers: AtomicU64,
    gap_fetches: AtomicU64,
    receipt_flushes: AtomicU64,
    receipt_updates: AtomicU64,
}

/// Instantaneous figures read when `/metrics` is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Sends waiting for the group-commit batcher.
    pub commit_queue_depth: usize,
    /// Watermark updates waiting for the next receipt flush.
    pub receipt_queue_depth: usize,
}

impl Metrics {
    /// One transaction committed `batch` messages (`created` new, the rest replays or refusals).
    pub fn record_commit(&self, batch: usize, created: usize, replayed: usize) {
        self.commit_transactions.fetch_add(1, Ordering::Relaxed);
        self.messages_committed
            .fetch_add(created as u64, Ordering::Relaxed);
        self.messages_replayed
            .fetch_add(replayed as u64, Ordering::Relaxed);
        let batch = batch as u64;
        for (bucket, bound) in self.batch_buckets.iter().zip(BATCH_BUCKETS) {
            if batch <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.batch_sum.fetch_add(batch, Ordering::Relaxed);
        self.batch_max.fetch_max(batch, Ordering::Relaxed);
    }

    /// A commit failed (storage down): every send of the batch was refused.
    pub fn record_commit_failure(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A session opened (`+1`) or closed (`-1`).
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
        self.sessions_opened.fetch_add(1, Ordering::Relaxed);
    }

    /// A session closed.
    pub fn session_closed(&self) {
        self.sessions.fetch_sub(1, Ordering::Relaxed);
    }

    /// Live sessions on this node.
    pub fn sessions(&self) -> i64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// A frame was written to a socket; `message` when it was a `message` frame.
    pub fn frame_out(&self, message: bool) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        if message {
            self.messages_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An event arrived from pub/sub.
    pub fn event_received(&self) {
        self.events_received.fetch_add(1, Ordering::Relaxed);
    }

    /// A session was closed because its outbound queue overflowed.
    pub fn slow_consumer(&self) {
        self.slow_consumers.fetch_add(1, Ordering::Relaxed);
    }

    /// A session fetched a gap from storage.
    pub fn gap_fetch(&self) {
        self.gap_fetches.fetch_add(1, Ordering::Relaxed);
    }

    /// One receipt flush wrote `updates` watermark updates.
    pub fn receipt_flush(&self, updates: usize) {
        self.receipt_flushes.fetch_add(1, Ordering::Relaxed);
        self.receipt_updates
            .fetch_add(updates as u64, Ordering::Relaxed);
    }

    /// Transactions committed so far.
    pub fn commit_transactions(&self) -> u64 {
        self.commit_transactions.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self, gauges: Gauges) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "chat_commit_transactions_total",
            "Message append transactions committed by the group-commit batcher.",
            get(&self.commit_transactions),
        );
        counter(
            "chat_messages_committed_total",
            "New messages committed.",
            get(&self.messages_committed),
        );
        counter(
            "chat_messages_replayed_total",
            "Sends answered with the original message (retried temp_id).",
            get(&self.messages_replayed),
        );
        counter(
            "chat_commit_failures_total",
            "Commits that failed (every send of the batch answered unavailable).",
            get(&self.commit_failures),
        );
        counter(
            "chat_sessions_opened_total",
            "WebSocket sessions opened on this node.",
            get(&self.sessions_opened),
        );
        counter(
            "chat_messages_out_total",
            "message frames written to WebSocket clients.",
            get(&self.messages_out),
        );
        counter(
            "chat_frames_out_total",
            "Frames of any type written to WebSocket clients.",
            get(&self.frames_out),
        );
        counter(
            "chat_pubsub_events_received_total",
            "Events received from pub/sub by this node.",
            get(&self.events_received),
        );
        counter(
            "chat_slow_consumers_closed_total",
            "Sessions closed with 4009 because their outbound queue overflowed.",
            get(&self.slow_consumers),
        );
        counter(
            "chat_gap_fetches_total",
            "Gaps in a session's message order fetched from storage.",
            get(&self.gap_fetches),
        );
        counter(
            "chat_receipt_flushes_total",
            "Receipt watermark flushes (one advance_watermarks call each).",
            get(&self.receipt_flushes),
        );
        counter(
            "chat_receipt_updates_total",
            "Watermark updates written by receipt flushes.",
            get(&self.receipt_updates),
        );
        let _ = writeln!(
            out,
            "# HELP chat_sessions Live WebSocket sessions on this node.\n# TYPE chat_sessions gauge\nchat_sessions {}",
            self.sessions()
        );
        let _ = writeln!(
            out,
            "# HELP chat_commit_queue_depth Sends waiting for the batcher.\n# TYPE chat_commit_queue_depth gauge\nchat_commit_queue_depth {}",
            gauges.commit_queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP chat_receipt_queue_depth Watermark updates waiting for a flush.\n# TYPE chat_receipt_queue_depth gauge\nchat_receipt_queue_depth {}",
            gauges.receipt_queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP chat_commit_batch_size_max Largest commit batch so far.\n# TYPE chat_commit_batch_size_max gauge\nchat_commit_batch_size_max {}",
            get(&self.batch_max)
        );
        let _ = writeln!(
            out,
            "# HELP chat_commit_batch_size Messages per commit transaction.\n# TYPE chat_commit_batch_size histogram"
        );
        for (bucket, bound) in self.batch_buckets.iter().zip(BATCH_BUCKETS) {
            let _ = writeln!(
                out,
                "chat_commit_batch_size_bucket{{le=\"{bound}\"}} {}",
                get(bucket)
            );
        }
        let count = get(&self.commit_transactions);
        let _ = writeln!(
            out,
            "chat_commit_batch_size_bucket{{le=\"+Inf\"}} {count}\nchat_commit_batch_size_sum {}\nchat_commit_batch_size_count {count}",
            get(&self.batch_sum)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn commits_count_transactions_messages_and_batch_sizes() {
        let metrics = Metrics::default();
        metrics.record_commit(3, 2, 1);
        metrics.record_commit(1, 1, 0);
        let text = metrics.render(Gauges::default());
        assert_eq!(value(&text, "chat_commit_transactions_total"), 2.0);
        assert_eq!(value(&text, "chat_messages_committed_total"), 3.0);
        assert_eq!(value(&text, "chat_commit_batch_size_sum"), 4.0);
        assert_eq!(value(&text, "chat_commit_batch_size_bucket{le=\"1\"}"), 1.0);
        assert_eq!(value(&text, "chat_commit_batch_size_bucket{le=\"2\"}"), 1.0);
        assert_eq!(value(&text, "chat_commit_batch_size_bucket{le=\"4\"}"), 2.0);
        assert_eq!(value(&text, "chat_commit_batch_size_max"), 3.0);
    }

    #[test]
    fn the_session_gauge_goes_up_and_down() {
        let metrics = Metrics::default();
        metrics.session_opened();
        metrics.session_opened();
        metrics.session_closed();
        let text = metrics.render(Gauges::default());
        assert_eq!(value(&text, "chat_sessions"), 1.0);
        assert_eq!(value(&text, "chat_sessions_opened_total"), 2.0);
    }

    #[test]
    fn message_frames_are_counted_apart_from_other_frames() {
        let metrics = Metrics::default();
        metrics.frame_out(true);
        metrics.frame_out(false);
        let text = metrics.render(Gauges {
            commit_queue_depth: 5,
            receipt_queue_depth: 0,
        });
        assert_eq!(value(&text, "chat_messages_out_total"), 1.0);
        assert_eq!(value(&text, "chat_frames_out_total"), 2.0);
        assert_eq!(value(&text, "chat_commit_queue_depth"), 5.0);
    }
}
