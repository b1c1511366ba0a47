//! Figures of the real-time layer, exposed on `GET /metrics` in the Prometheus text format.
//! Each node has its own `prometheus-client` [`Registry`] (no global recorder), so several
//! servers in one test process each report their own figures. Recording is a relaxed atomic
//! add on a counter or gauge, or one short lock (a mutex) for a histogram observation: no
//! allocation (docs/benchmarks.md, "What a histogram observation costs").

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the commit batch size histogram.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Upper bounds of the latency histograms, in microseconds (0.5 ms to 10 s; exposed in
/// seconds).
pub(crate) const LATENCY_BUCKETS_US: [u64; 14] = [
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000, 10_000_000,
];

/// A latency histogram with the [`LATENCY_BUCKETS_US`] bounds, in seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_US.map(|us| us as f64 / 1e6))
}

/// Records one latency of `us` microseconds (whole microseconds, so a bound is hit exactly).
fn observe_us(histogram: &Histogram, us: u64) {
    histogram.observe(us as f64 / 1e6);
}

/// Records one latency, truncated to whole microseconds like [`observe_us`].
fn observe(histogram: &Histogram, elapsed: Duration) {
    observe_us(
        histogram,
        u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    );
}

/// A family keyed by one label whose values are all known at start: each series is created
/// up front (so it is exposed at 0) and recorded through its own handle, never looked up.
type OneLabel<V, M> = Family<[(&'static str, V); 1], M, fn() -> M>;

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

/// The close codes of clients' protocol errors: a frame breaking RFC 6455, text that is not
/// UTF-8, a frame over the size limit.
pub(crate) const PROTOCOL_CLOSES: [u16; 3] = [1002, 1007, 1009];

/// Instantaneous figures read when `/metrics` is served.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Sends waiting for the group-commit batcher.
    pub(crate) commit_queue_depth: usize,
    /// Watermark updates waiting for the next receipt flush.
    pub(crate) receipt_queue_depth: usize,
    /// Frames waiting in the outbound queues of the node's sessions, summed.
    pub(crate) outbound_queue_depth: usize,
    /// Frames waiting in the fullest session's outbound queue.
    pub(crate) outbound_queue_depth_max: usize,
}

/// The node's real-time figures: its registry and a handle on every series in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commit_transactions: Counter,
    messages_committed: Counter,
    messages_replayed: Counter,
    commit_failures: Counter,
    sessions_opened: Counter,
    messages_out: Counter,
    frames_out: Counter,
    events_received: Counter,
    slow_consumers: Counter,
    gap_fetches: Counter,
    receipt_flushes: Counter,
    receipt_updates: Counter,
    storage_errors: Counter,
    pubsub_errors: Counter,
    messages_in_ws: Counter,
    messages_in_rest: Counter,
    /// Sessions closed for a client's protocol error, by close code (see [`PROTOCOL_CLOSES`]).
    protocol_errors: [Counter; PROTOCOL_CLOSES.len()],
    sessions: Gauge,
    commit_queue_depth: Gauge,
    receipt_queue_depth: Gauge,
    outbound_queue_depth: Gauge,
    outbound_queue_depth_max: Gauge,
    batch_max: Gauge<u64, AtomicU64>,
    batch_size: Histogram,
    e2e_latency: Histogram,
    fanout_latency: Histogram,
    send_ack_ws: Histogram,
    send_ack_rest: Histogram,
}

/// Registers `metric` as `name` and hands back a handle on it. The registry appends `_total`
/// to a counter's name and a full stop to the help text, so neither is written here.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    /// A fresh registry with every series of the node at zero, in the order `/metrics`
    /// lists them.
    fn default() -> Self {
        let r = &mut Registry::default();
        let counter = |r: &mut Registry, name: &str, help: &str| {
            registered(r, name, help, Counter::default())
        };
        let gauge =
            |r: &mut Registry, name: &str, help: &str| registered(r, name, help, Gauge::default());
        let commit_transactions = counter(
            r,
            "chat_commit_transactions",
            "Message append transactions committed by the group-commit batcher",
        );
        let messages_committed = counter(r, "chat_messages_committed", "New messages committed");
        let messages_replayed = counter(
            r,
            "chat_messages_replayed",
            "Sends answered with the original message (retried temp_id)",
        );
        let commit_failures = counter(
            r,
            "chat_commit_failures",
            "Commits that failed (every send of the batch answered unavailable)",
        );
        let sessions_opened = counter(
            r,
            "chat_sessions_opened",
            "WebSocket sessions opened on this node",
        );
        let messages_out = counter(
            r,
            "chat_messages_out",
            "message frames written to WebSocket clients",
        );
        let frames_out = counter(
            r,
            "chat_frames_out",
            "Frames of any type written to WebSocket clients",
        );
        let events_received = counter(
            r,
            "chat_pubsub_events_received",
            "Events received from pub/sub by this node",
        );
        let slow_consumers = counter(
            r,
            "chat_slow_consumers_closed",
            "Sessions closed with 4009 because their outbound queue overflowed",
        );
        let gap_fetches = counter(
            r,
            "chat_gap_fetches",
            "Gaps in a session's message order fetched from storage",
        );
        let receipt_flushes = counter(
            r,
            "chat_receipt_flushes",
            "Receipt watermark flushes (one advance_watermarks call each)",
        );
        let receipt_updates = counter(
            r,
            "chat_receipt_updates",
            "Watermark updates written by receipt flushes",
        );
        let storage_errors = counter(
            r,
            "chat_storage_errors",
            "Storage operations that failed: commits, receipt flushes, session snapshots and fetches, REST requests answered 503 unavailable",
        );
        let pubsub_errors = counter(
            r,
            "chat_pubsub_errors",
            "Publishes, subscribes and unsubscribes on pub/sub (Redis in scale-out mode) that failed",
        );
        let messages_in: OneLabel<&'static str, Counter> = registered(
            r,
            "chat_messages_in",
            "Sends received and handed to the send path, by transport",
            Family::new_with_constructor(Counter::default),
        );
        let protocol_errors: OneLabel<u16, Counter> = registered(
            r,
            "chat_ws_protocol_errors",
            "WebSocket sessions closed for the client's protocol error, by close code (1002 protocol, 1007 not UTF-8, 1009 too big)",
            Family::new_with_constructor(Counter::default),
        );
        let sessions = gauge(r, "chat_sessions", "Live WebSocket sessions on this node");
        let commit_queue_depth = gauge(
            r,
            "chat_commit_queue_depth",
            "Sends waiting for the batcher",
        );
        let receipt_queue_depth = gauge(
            r,
            "chat_receipt_queue_depth",
            "Watermark updates waiting for a flush",
        );
        let outbound_queue_depth = gauge(
            r,
            "chat_outbound_queue_depth",
            "Frames waiting in the outbound queues of this node's sessions, summed",
        );
        let outbound_queue_depth_max = gauge(
            r,
            "chat_outbound_queue_depth_max",
            "Frames waiting in the fullest session's outbound queue",
        );
        let batch_max = registered(
            r,
            "chat_commit_batch_size_max",
            "Largest commit batch so far",
            Gauge::<u64, AtomicU64>::default(),
        );
        let batch_size = registered(
            r,
            "chat_commit_batch_size",
            "Messages per commit transaction",
            Histogram::new(BATCH_BUCKETS),
        );
        let e2e_latency = registered(
            r,
            "chat_e2e_latency_seconds",
            "From a send reaching a node (the message's created_at) to its message frame written to a recipient's socket, per live recipient frame (not sync or gap replays). Across nodes it compares their wall clocks",
            latency_histogram(),
        );
        let fanout_latency = registered(
            r,
            "chat_fanout_latency_seconds",
            "From a committed message's publication to its message frame written to a recipient's socket, per live recipient frame. Across nodes it compares their wall clocks",
            latency_histogram(),
        );
        let send_ack: OneLabel<&'static str, Histogram> = registered(
            r,
            "chat_send_ack_latency_seconds",
            "From a send received to its answer: the message_sent frame written (ws) or the REST response ready (rest)",
            Family::new_with_constructor(latency_histogram),
        );
        Self {
            registry: std::mem::take(r),
            commit_transactions,
            messages_committed,
            messages_replayed,
            commit_failures,
            sessions_opened,
            messages_out,
            frames_out,
            events_received,
            slow_consumers,
            gap_fetches,
            receipt_flushes,
            receipt_updates,
            storage_errors,
            pubsub_errors,
            messages_in_ws: messages_in.get_or_create_owned(&[("transport", "ws")]),
            messages_in_rest: messages_in.get_or_create_owned(&[("transport", "rest")]),
            protocol_errors: PROTOCOL_CLOSES
                .map(|code| protocol_errors.get_or_create_owned(&[("code", code)])),
            sessions,
            commit_queue_depth,
            receipt_queue_depth,
            outbound_queue_depth,
            outbound_queue_depth_max,
            batch_max,
            batch_size,
            e2e_latency,
            fanout_latency,
            send_ack_ws: send_ack.get_or_create_owned(&[("transport", "ws")]),
            send_ack_rest: send_ack.get_or_create_owned(&[("transport", "rest")]),
        }
    }
}

impl Metrics {
    /// One transaction committed `batch` messages (`created` new, the rest replays or refusals).
    pub(crate) fn record_commit(&self, batch: usize, created: usize, replayed: usize) {
        self.commit_transactions.inc();
        self.messages_committed.inc_by(created as u64);
        self.messages_replayed.inc_by(replayed as u64);
        self.batch_size.observe(batch as f64);
        self.batch_max
            .inner()
            .fetch_max(batch as u64, Ordering::Relaxed);
    }

    /// A commit failed (storage down): every send of the batch was refused. Counts as a
    /// storage error too.
    pub(crate) fn record_commit_failure(&self) {
        self.commit_failures.inc();
        self.storage_error();
    }

    /// A send was received and handed to the send path.
    pub fn message_in(&self, transport: Transport) {
        match transport {
            Transport::Ws => &self.messages_in_ws,
            Transport::Rest => &self.messages_in_rest,
        }
        .inc();
    }

    /// A send was answered (`message_sent` written, or the REST response ready) `elapsed`
    /// after it was received.
    pub fn send_acked(&self, transport: Transport, elapsed: Duration) {
        let histogram = match transport {
            Transport::Ws => &self.send_ack_ws,
            Transport::Rest => &self.send_ack_rest,
        };
        observe(histogram, elapsed);
    }

    /// A live `message` frame was written to a recipient's socket at `now` (Unix µs). `sent`:
    /// when the send reached the server (the message's `created_at`); `committed`: when the
    /// committed message was published. Both in Unix µs, from the envelope header; a
    /// negative difference (clocks of two nodes) counts as 0.
    pub fn live_message_written(&self, now: i64, sent: Option<i64>, committed: Option<i64>) {
        let since = |t: i64| u64::try_from(now.saturating_sub(t)).unwrap_or(0);
        if let Some(sent) = sent {
            observe_us(&self.e2e_latency, since(sent));
        }
        if let Some(committed) = committed {
            observe_us(&self.fanout_latency, since(committed));
        }
    }

    /// A storage operation failed (commit, receipt flush, a session's snapshot or fetch, a
    /// REST request answered `unavailable`).
    pub fn storage_error(&self) {
        self.storage_errors.inc();
    }

    /// A publish, subscribe or unsubscribe on the pub/sub port failed.
    pub fn pubsub_error(&self) {
        self.pubsub_errors.inc();
    }

    /// A session was closed with `code` (one of [`PROTOCOL_CLOSES`]) for the client's
    /// protocol error.
    pub fn protocol_error(&self, code: u16) {
        if let Some(i) = PROTOCOL_CLOSES.iter().position(|c| *c == code) {
            self.protocol_errors[i].inc();
        }
    }

    /// A session opened.
    pub fn session_opened(&self) {
        self.sessions.inc();
        self.sessions_opened.inc();
    }

    /// A session closed.
    pub fn session_closed(&self) {
        self.sessions.dec();
    }

    /// A frame was written to a socket; `message` when it was a `message` frame.
    pub fn frame_out(&self, message: bool) {
        self.frames_out.inc();
        if message {
            self.messages_out.inc();
        }
    }

    /// An event arrived from pub/sub.
    pub(crate) fn event_received(&self) {
        self.events_received.inc();
    }

    /// A session was closed because its outbound queue overflowed.
    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers.inc();
    }

    /// A session fetched a gap from storage.
    pub fn gap_fetch(&self) {
        self.gap_fetches.inc();
    }

    /// One receipt flush wrote `updates` watermark updates.
    pub(crate) fn receipt_flush(&self, updates: usize) {
        self.receipt_flushes.inc();
        self.receipt_updates.inc_by(updates as u64);
    }

    /// Transactions committed so far.
    #[cfg(test)]
    pub(crate) fn commit_transactions(&self) -> u64 {
        self.commit_transactions.get()
    }

    /// The Prometheus text exposition of the node's registry, with `gauges` as the queue
    /// depths.
    pub fn render(&self, gauges: Gauges) -> String {
        let depth = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.commit_queue_depth
            .set(depth(gauges.commit_queue_depth));
        self.receipt_queue_depth
            .set(depth(gauges.receipt_queue_depth));
        self.outbound_queue_depth
            .set(depth(gauges.outbound_queue_depth));
        self.outbound_queue_depth_max
            .set(depth(gauges.outbound_queue_depth_max));
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail, and the registry holds no collector that could.
        if let Err(e) = prometheus_text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
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

    /// The exposition of a registry holding only `metric`, as `name`.
    fn alone(name: &str, metric: impl Metric) -> String {
        let mut registry = Registry::default();
        registry.register(name, "A latency", metric);
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry).unwrap();
        text
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
        let h = latency_histogram();
        // On a bound: that bucket (`le` is inclusive); just above: the next one.
        observe_us(&h, 500);
        observe_us(&h, 501);
        observe(&h, Duration::from_millis(7));
        // Above the last bound: only +Inf.
        observe(&h, Duration::from_secs(11));
        let text = alone("x_seconds", h.clone());
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
        let family: OneLabel<&'static str, Histogram> =
            Family::new_with_constructor(latency_histogram);
        let h = family.get_or_create_owned(&[("transport", "ws")]);
        for us in LATENCY_BUCKETS_US {
            observe_us(&h, us);
        }
        let text = alone("x_seconds", family);
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

    /// Every series `/metrics` exposed before the registry (name, type, help), in its order.
    const SERIES: [(&str, &str, &str); 26] = [
        ("chat_commit_transactions_total", "counter", "Message append transactions committed by the group-commit batcher."),
        ("chat_messages_committed_total", "counter", "New messages committed."),
        ("chat_messages_replayed_total", "counter", "Sends answered with the original message (retried temp_id)."),
        ("chat_commit_failures_total", "counter", "Commits that failed (every send of the batch answered unavailable)."),
        ("chat_sessions_opened_total", "counter", "WebSocket sessions opened on this node."),
        ("chat_messages_out_total", "counter", "message frames written to WebSocket clients."),
        ("chat_frames_out_total", "counter", "Frames of any type written to WebSocket clients."),
        ("chat_pubsub_events_received_total", "counter", "Events received from pub/sub by this node."),
        ("chat_slow_consumers_closed_total", "counter", "Sessions closed with 4009 because their outbound queue overflowed."),
        ("chat_gap_fetches_total", "counter", "Gaps in a session's message order fetched from storage."),
        ("chat_receipt_flushes_total", "counter", "Receipt watermark flushes (one advance_watermarks call each)."),
        ("chat_receipt_updates_total", "counter", "Watermark updates written by receipt flushes."),
        ("chat_storage_errors_total", "counter", "Storage operations that failed: commits, receipt flushes, session snapshots and fetches, REST requests answered 503 unavailable."),
        ("chat_pubsub_errors_total", "counter", "Publishes, subscribes and unsubscribes on pub/sub (Redis in scale-out mode) that failed."),
        ("chat_messages_in_total", "counter", "Sends received and handed to the send path, by transport."),
        ("chat_ws_protocol_errors_total", "counter", "WebSocket sessions closed for the client's protocol error, by close code (1002 protocol, 1007 not UTF-8, 1009 too big)."),
        ("chat_sessions", "gauge", "Live WebSocket sessions on this node."),
        ("chat_commit_queue_depth", "gauge", "Sends waiting for the batcher."),
        ("chat_receipt_queue_depth", "gauge", "Watermark updates waiting for a flush."),
        ("chat_outbound_queue_depth", "gauge", "Frames waiting in the outbound queues of this node's sessions, summed."),
        ("chat_outbound_queue_depth_max", "gauge", "Frames waiting in the fullest session's outbound queue."),
        ("chat_commit_batch_size_max", "gauge", "Largest commit batch so far."),
        ("chat_commit_batch_size", "histogram", "Messages per commit transaction."),
        ("chat_e2e_latency_seconds", "histogram", "From a send reaching a node (the message's created_at) to its message frame written to a recipient's socket, per live recipient frame (not sync or gap replays). Across nodes it compares their wall clocks."),
        ("chat_fanout_latency_seconds", "histogram", "From a committed message's publication to its message frame written to a recipient's socket, per live recipient frame. Across nodes it compares their wall clocks."),
        ("chat_send_ack_latency_seconds", "histogram", "From a send received to its answer: the message_sent frame written (ws) or the REST response ready (rest)."),
    ];

    #[test]
    fn every_series_keeps_its_name_type_and_help() {
        let text = Metrics::default().render(Gauges::default());
        let descriptors: Vec<&str> = text.lines().filter(|l| l.starts_with('#')).collect();
        let expected: Vec<String> = SERIES
            .iter()
            .flat_map(|(name, kind, help)| {
                [
                    format!("# HELP {name} {help}"),
                    format!("# TYPE {name} {kind}"),
                ]
            })
            .collect();
        assert_eq!(descriptors, expected);
        for (name, kind, _) in SERIES {
            let sample = if kind == "histogram" {
                format!("{name}_count")
            } else {
                name.to_owned()
            };
            assert!(
                text.lines()
                    .any(|l| l.split([' ', '{']).next() == Some(sample.as_str())),
                "no {sample} sample in\n{text}"
            );
        }
        assert!(!text.contains("_total_total"), "{text}");
    }
}
