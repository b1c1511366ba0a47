//! Counters of the real-time layer, exposed on `GET /metrics` in the Prometheus text format.
//! Hand-written: a handful of atomics per node (no global recorder), so several servers in
//! one test process each report their own figures. Recording is a few relaxed atomic adds:
//! no lock, no allocation.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the commit batch size histogram.
const BATCH_BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// Upper bounds of the latency histograms, in microseconds (0.5 ms to 10 s; exposed in
/// seconds).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS_US`]: one counter per bucket (not
/// cumulative: an observation is one add there, the exposition sums them), one for what is
/// above the last bound, and the sum in microseconds.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    overflow: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation of `us` microseconds.
    pub fn observe_us(&self, us: u64) {
        let i = LATENCY_BUCKETS_US.partition_point(|bound| *bound < us);
        match self.buckets.get(i) {
            Some(bucket) => bucket.fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        self.observe_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// Observations so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .chain(std::iter::once(&self.overflow))
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }

    /// The `_bucket`, `_sum` and `_count` lines of the series `name{labels}` (`labels` without
    /// braces, may be empty). `+Inf` and `_count` are the sum of the buckets read, so they
    /// agree even while observations land.
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bucket, bound) in self.buckets.iter().zip(LATENCY_BUCKETS_US) {
            cumulative += bucket.load(Ordering::Relaxed);
            let le = bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}\n{name}_sum{braces} {sum}\n{name}_count{braces} {cumulative}"
        );
    }
}

/// The `# HELP` and `# TYPE` lines of a histogram, then each of its series.
fn histogram_family(out: &mut String, name: &str, help: &str, series: &[(&str, &Histogram)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (labels, histogram) in series {
        histogram.render(out, name, labels);
    }
}

/// How a send reached the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket `message` frame.
    Ws,
    /// `POST /api/v1/conversations/{id}/messages`.
    Rest,
}

/// Microseconds since the Unix epoch, now (wall clock: comparable across nodes only as far
/// as their clocks agree).
pub fn unix_micros_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

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
    messages_in_ws: AtomicU64,
    messages_in_rest: AtomicU64,
    e2e_latency: Histogram,
    fanout_latency: Histogram,
    send_ack_ws: Histogram,
    send_ack_rest: Histogram,
    storage_errors: AtomicU64,
    pubsub_errors: AtomicU64,
    /// Sessions closed for a client's protocol error, by close code (see [`PROTOCOL_CLOSES`]).
    protocol_errors: [AtomicU64; PROTOCOL_CLOSES.len()],
}

/// The close codes of clients' protocol errors: a frame breaking RFC 6455, text that is not
/// UTF-8, a frame over the size limit.
pub const PROTOCOL_CLOSES: [u16; 3] = [1002, 1007, 1009];

/// Instantaneous figures read when `/metrics` is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Sends waiting for the group-commit batcher.
    pub commit_queue_depth: usize,
    /// Watermark updates waiting for the next receipt flush.
    pub receipt_queue_depth: usize,
    /// Frames waiting in the outbound queues of the node's sessions, summed.
    pub outbound_queue_depth: usize,
    /// Frames waiting in the fullest session's outbound queue.
    pub outbound_queue_depth_max: usize,
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

    /// A commit failed (storage down): every send of the batch was refused. Counts as a
    /// storage error too.
    pub fn record_commit_failure(&self) {
        self.commit_failures.fetch_add(1, Ordering::Relaxed);
        self.storage_error();
    }

    /// A send was received and handed to the send path.
    pub fn message_in(&self, transport: Transport) {
        match transport {
            Transport::Ws => &self.messages_in_ws,
            Transport::Rest => &self.messages_in_rest,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// A send was answered (`message_sent` written, or the REST response ready) `elapsed`
    /// after it was received.
    pub fn send_acked(&self, transport: Transport, elapsed: Duration) {
        match transport {
            Transport::Ws => &self.send_ack_ws,
            Transport::Rest => &self.send_ack_rest,
        }
        .observe(elapsed);
    }

    /// A live `message` frame was written to a recipient's socket at `now` (Unix µs). `sent`:
    /// when the send reached the server (the message's `created_at`); `committed`: when the
    /// committed message was published. Both in Unix µs, from the envelope header; a
    /// negative difference (clocks of two nodes) counts as 0.
    pub fn live_message_written(&self, now: i64, sent: Option<i64>, committed: Option<i64>) {
        let since = |t: i64| u64::try_from(now.saturating_sub(t)).unwrap_or(0);
        if let Some(sent) = sent {
            self.e2e_latency.observe_us(since(sent));
        }
        if let Some(committed) = committed {
            self.fanout_latency.observe_us(since(committed));
        }
    }

    /// A storage operation failed (commit, receipt flush, a session's snapshot or fetch, a
    /// REST request answered `unavailable`).
    pub fn storage_error(&self) {
        self.storage_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A publish, subscribe or unsubscribe on the pub/sub port failed.
    pub fn pubsub_error(&self) {
        self.pubsub_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A session was closed with `code` (one of [`PROTOCOL_CLOSES`]) for the client's
    /// protocol error.
    pub fn protocol_error(&self, code: u16) {
        if let Some(i) = PROTOCOL_CLOSES.iter().position(|c| *c == code) {
            self.protocol_errors[i].fetch_add(1, Ordering::Relaxed);
        }
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
        counter(
            "chat_storage_errors_total",
            "Storage operations that failed: commits, receipt flushes, session snapshots and fetches, REST requests answered 503 unavailable.",
            get(&self.storage_errors),
        );
        counter(
            "chat_pubsub_errors_total",
            "Publishes, subscribes and unsubscribes on pub/sub (Redis in scale-out mode) that failed.",
            get(&self.pubsub_errors),
        );
        let _ = writeln!(
            out,
            "# HELP chat_messages_in_total Sends received and handed to the send path, by transport.\n# TYPE chat_messages_in_total counter\nchat_messages_in_total{{transport=\"ws\"}} {}\nchat_messages_in_total{{transport=\"rest\"}} {}",
            get(&self.messages_in_ws),
            get(&self.messages_in_rest)
        );
        let _ = writeln!(
            out,
            "# HELP chat_ws_protocol_errors_total WebSocket sessions closed for the client's protocol error, by close code (1002 protocol, 1007 not UTF-8, 1009 too big).\n# TYPE chat_ws_protocol_errors_total counter"
        );
        for (count, code) in self.protocol_errors.iter().zip(PROTOCOL_CLOSES) {
            let _ = writeln!(
                out,
                "chat_ws_protocol_errors_total{{code=\"{code}\"}} {}",
                get(count)
            );
        }
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
            "# HELP chat_outbound_queue_depth Frames waiting in the outbound queues of this node's sessions, summed.\n# TYPE chat_outbound_queue_depth gauge\nchat_outbound_queue_depth {}",
            gauges.outbound_queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP chat_outbound_queue_depth_max Frames waiting in the fullest session's outbound queue.\n# TYPE chat_outbound_queue_depth_max gauge\nchat_outbound_queue_depth_max {}",
            gauges.outbound_queue_depth_max
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
        histogram_family(
            &mut out,
            "chat_e2e_latency_seconds",
            "From a send reaching a node (the message's created_at) to its message frame written to a recipient's socket, per live recipient frame (not sync or gap replays). Across nodes it compares their wall clocks.",
            &[("", &self.e2e_latency)],
        );
        histogram_family(
            &mut out,
            "chat_fanout_latency_seconds",
            "From a committed message's publication to its message frame written to a recipient's socket, per live recipient frame. Across nodes it compares their wall clocks.",
            &[("", &self.fanout_latency)],
        );
        histogram_family(
            &mut out,
            "chat_send_ack_latency_seconds",
            "From a send received to its answer: the message_sent frame written (ws) or the REST response ready (rest).",
            &[
                ("transport=\"ws\"", &self.send_ack_ws),
                ("transport=\"rest\"", &self.send_ack_rest),
            ],
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
            ..Gauges::default()
        });
        assert_eq!(value(&text, "chat_messages_out_total"), 1.0);
        assert_eq!(value(&text, "chat_frames_out_total"), 2.0);
        assert_eq!(value(&text, "chat_commit_queue_depth"), 5.0);
    }

    #[test]
    fn a_latency_lands_in_the_first_bucket_whose_bound_holds_it() {
        let h = Histogram::default();
        // On a bound: that bucket (`le` is inclusive); just above: the next one.
        h.observe_us(500);
        h.observe_us(501);
        h.observe(Duration::from_millis(7));
        // Above the last bound: only +Inf.
        h.observe(Duration::from_secs(11));
        let mut text = String::new();
        h.render(&mut text, "x_seconds", "");
        assert_eq!(value(&text, "x_seconds_bucket{le=\"0.0005\"}"), 1.0);
        assert_eq!(value(&text, "x_seconds_bucket{le=\"0.001\"}"), 2.0);
        assert_eq!(value(&text, "x_seconds_bucket{le=\"0.005\"}"), 2.0);
        assert_eq!(value(&text, "x_seconds_bucket{le=\"0.01\"}"), 3.0);
        assert_eq!(value(&text, "x_seconds_bucket{le=\"10\"}"), 3.0);
        assert_eq!(value(&text, "x_seconds_bucket{le=\"+Inf\"}"), 4.0);
        assert_eq!(value(&text, "x_seconds_count"), 4.0);
        assert!(
            (value(&text, "x_seconds_sum") - 11.008001).abs() < 1e-9,
            "{text}"
        );
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn the_buckets_are_cumulative_and_every_bound_is_listed_in_seconds() {
        let h = Histogram::default();
        for us in LATENCY_BUCKETS_US {
            h.observe_us(us);
        }
        let mut text = String::new();
        h.render(&mut text, "x_seconds", "transport=\"ws\"");
        let les: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(
            les,
            [
                "0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5",
                "1", "2", "5", "10", "+Inf"
            ]
        );
        let counts: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("_bucket{transport=\"ws\",le="))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        let expected: Vec<f64> = (1..=14).chain([14]).map(f64::from).collect();
        assert_eq!(counts, expected);
        assert_eq!(value(&text, "x_seconds_count{transport=\"ws\"}"), 14.0);
        assert_eq!(value(&text, "x_seconds_sum{transport=\"ws\"}"), 18.8885);
    }

    #[test]
    fn live_frames_feed_both_latency_histograms_and_clock_skew_counts_as_zero() {
        let metrics = Metrics::default();
        let now = 1_000_000_000;
        metrics.live_message_written(now, Some(now - 3_000), Some(now - 800));
        // The sender's node clock is ahead: 0, not a huge unsigned value.
        metrics.live_message_written(now, Some(now + 5_000), None);
        let text = metrics.render(Gauges::default());
        assert_eq!(value(&text, "chat_e2e_latency_seconds_count"), 2.0);
        assert_eq!(
            value(&text, "chat_e2e_latency_seconds_bucket{le=\"0.0005\"}"),
            1.0
        );
        assert_eq!(
            value(&text, "chat_e2e_latency_seconds_bucket{le=\"0.005\"}"),
            2.0
        );
        assert_eq!(value(&text, "chat_e2e_latency_seconds_sum"), 0.003);
        assert_eq!(value(&text, "chat_fanout_latency_seconds_count"), 1.0);
        assert_eq!(
            value(&text, "chat_fanout_latency_seconds_bucket{le=\"0.001\"}"),
            1.0
        );
        assert!(text.contains("# TYPE chat_fanout_latency_seconds histogram"));
    }

    #[test]
    fn sends_are_counted_by_transport_and_their_acks_timed_apart() {
        let metrics = Metrics::default();
        metrics.message_in(Transport::Ws);
        metrics.message_in(Transport::Ws);
        metrics.message_in(Transport::Rest);
        metrics.send_acked(Transport::Ws, Duration::from_millis(3));
        let text = metrics.render(Gauges::default());
        assert_eq!(
            value(&text, "chat_messages_in_total{transport=\"ws\"}"),
            2.0
        );
        assert_eq!(
            value(&text, "chat_messages_in_total{transport=\"rest\"}"),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "chat_send_ack_latency_seconds_count{transport=\"ws\"}"
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                "chat_send_ack_latency_seconds_count{transport=\"rest\"}"
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "chat_send_ack_latency_seconds_bucket{transport=\"ws\",le=\"0.002\"}"
            ),
            0.0
        );
        assert_eq!(
            value(
                &text,
                "chat_send_ack_latency_seconds_bucket{transport=\"ws\",le=\"0.005\"}"
            ),
            1.0
        );
        assert_eq!(
            text.matches("# TYPE chat_send_ack_latency_seconds histogram")
                .count(),
            1
        );
    }

    #[test]
    fn errors_and_outbound_queues_are_exposed() {
        let metrics = Metrics::default();
        metrics.record_commit_failure();
        metrics.storage_error();
        metrics.pubsub_error();
        let text = metrics.render(Gauges {
            outbound_queue_depth: 12,
            outbound_queue_depth_max: 9,
            ..Gauges::default()
        });
        assert_eq!(value(&text, "chat_commit_failures_total"), 1.0);
        assert_eq!(value(&text, "chat_storage_errors_total"), 2.0);
        assert_eq!(value(&text, "chat_pubsub_errors_total"), 1.0);
        assert_eq!(value(&text, "chat_outbound_queue_depth"), 12.0);
        assert_eq!(value(&text, "chat_outbound_queue_depth_max"), 9.0);
        assert!(text.contains("# TYPE chat_storage_errors_total counter"));
        assert!(text.contains("# TYPE chat_outbound_queue_depth gauge"));
    }
}
