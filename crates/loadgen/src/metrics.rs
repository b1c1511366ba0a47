//! The server's Prometheus `/metrics`, read before and after a run: every series as a
//! number, what each counter moved by, and the server's latency histograms over the run
//! (count, and p50/p99 as the upper bound of the bucket that holds them).

use serde::Serialize;
use std::collections::BTreeMap;

/// Every sample of a Prometheus text exposition, keyed by `name{labels}`.
pub type Samples = BTreeMap<String, f64>;

/// Parses the Prometheus text format (comments and malformed lines are skipped).
pub fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Labels may hold spaces inside quotes: the key ends at the closing brace.
        let (key, rest) = match line.find('{') {
            Some(open) => match line[open..].find('}') {
                Some(close) => line.split_at(open + close + 1),
                None => continue,
            },
            None => match line.split_once(char::is_whitespace) {
                Some(split) => split,
                None => continue,
            },
        };
        let Some(value) = rest.split_whitespace().next() else {
            continue;
        };
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.insert(key.trim().to_owned(), value);
    }
    out
}

/// What each series of `after` moved by since `before` (series new in `after` count from 0).
pub fn delta(before: &Samples, after: &Samples) -> Samples {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// The series worth a line in the table: only those that moved, without histogram buckets,
/// nor the `_sum` and `_count` of the latency histograms (each has its own line, see
/// [`latencies`]).
pub fn headline(delta: &Samples) -> Vec<(&str, f64)> {
    delta
        .iter()
        .filter(|(k, v)| {
            let name = k.split('{').next().unwrap_or_default();
            let summarised = ["_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix).is_some_and(is_latency_histogram));
            !k.contains("_bucket") && !summarised && **v != 0.0 && v.is_finite()
        })
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
}

/// Whether `name` is one of the server's latency histograms (`chat_*_latency_seconds`).
fn is_latency_histogram(name: &str) -> bool {
    name.starts_with("chat_") && name.ends_with("_latency_seconds")
}

/// A server-side latency histogram over the run, from its bucket deltas.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerLatency {
    /// Observations during the run.
    pub count: u64,
    /// Upper bound, s, of the bucket holding the median; `None` when above the last bound
    /// (or no observations).
    pub p50_le_s: Option<f64>,
    /// Same for the 99th percentile.
    pub p99_le_s: Option<f64>,
}

/// The `chat_*_latency_seconds` histograms of a delta, keyed by name and labels other than
/// `le` (`chat_send_ack_latency_seconds{transport="ws"}`).
pub fn latencies(delta: &Samples) -> BTreeMap<String, ServerLatency> {
    let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (key, value) in delta {
        let Some((name, labels)) = key.split_once('{') else {
            continue;
        };
        let Some(base) = name.strip_suffix("_bucket") else {
            continue;
        };
        if !is_latency_histogram(base) {
            continue;
        }
        let labels = labels.strip_suffix('}').unwrap_or(labels);
        let (mut le, mut rest) = (None, Vec::new());
        for label in labels.split(',').filter(|l| !l.is_empty()) {
            match label.strip_prefix("le=") {
                Some(bound) => le = Some(bound.trim_matches('"')),
                None => rest.push(label),
            }
        }
        let bound = match le {
            Some("+Inf") => f64::INFINITY,
            Some(bound) => match bound.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            },
            None => continue,
        };
        let series = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}{{{}}}", rest.join(","))
        };
        buckets.entry(series).or_default().push((bound, *value));
    }
    buckets
        .into_iter()
        .map(|(series, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let summary = ServerLatency {
                count: buckets.last().map_or(0.0, |b| b.1).max(0.0) as u64,
                p50_le_s: quantile_bound(&buckets, 0.50),
                p99_le_s: quantile_bound(&buckets, 0.99),
            };
            (series, summary)
        })
        .collect()
}

/// The upper bound of the first bucket whose cumulative count reaches the `q` quantile;
/// `buckets` are `(le, cumulative count)` sorted by `le`, the last one `+Inf`. `None` when
/// there are no observations or the quantile is above the last finite bound.
pub fn quantile_bound(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total < 1.0 {
        return None;
    }
    let rank = (q * total).ceil().max(1.0);
    buckets
        .iter()
        .find(|(_, cumulative)| *cumulative >= rank)
        .map(|(bound, _)| *bound)
        .filter(|bound| bound.is_finite())
}

/// `2 ms`, `0.5 ms`, `1 s`.
pub fn human_seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{} ms", (s * 1e6).round() / 1e3)
    } else {
        format!("{s} s")
    }
}

/// One line of the table: `p50 <= 2 ms, p99 <= 10 ms (n=120)`.
pub fn latency_line(l: &ServerLatency) -> String {
    if l.count == 0 {
        return "no samples".into();
    }
    let bound = |b: Option<f64>| match b {
        Some(b) => format!("<= {}", human_seconds(b)),
        None => "> the last bucket".into(),
    };
    format!(
        "p50 {}, p99 {} (n={})",
        bound(l.p50_le_s),
        bound(l.p99_le_s),
        l.count
    )
}

/// `server e2e latency`, `server send ack latency (ws)` for a [`latencies`] key.
pub fn latency_label(series: &str) -> String {
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, Some(labels.trim_end_matches('}'))),
        None => (series, None),
    };
    let short = name
        .strip_prefix("chat_")
        .and_then(|n| n.strip_suffix("_latency_seconds"))
        .unwrap_or(name)
        .replace('_', " ");
    match labels {
        Some(labels) => {
            let values: Vec<&str> = labels
                .split(',')
                .map(|l| l.split_once('=').map_or(l, |(_, v)| v).trim_matches('"'))
                .collect();
            format!("server {short} latency ({})", values.join(", "))
        }
        None => format!("server {short} latency"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TEXT: &str = r#"# HELP chat_ws_sessions Live sessions.
# TYPE chat_ws_sessions gauge
chat_ws_sessions 12
chat_messages_in_total{transport="ws"} 340
chat_fanout_seconds_bucket{le="0.001"} 3
chat_fanout_seconds_bucket{le="+Inf"} 5
chat_odd{label="a b}c"} 1.5 1700000000000
broken_line
chat_nan NaN
"#;

    #[test]
    fn samples_are_read_with_their_labels() {
        let s = parse(TEXT);
        assert_eq!(s["chat_ws_sessions"], 12.0);
        assert_eq!(s["chat_messages_in_total{transport=\"ws\"}"], 340.0);
        assert_eq!(s["chat_fanout_seconds_bucket{le=\"+Inf\"}"], 5.0);
        assert!(s.contains_key("chat_nan"));
        assert!(!s.contains_key("broken_line"));
    }

    #[test]
    fn deltas_count_new_series_from_zero_and_the_headline_skips_buckets() {
        let before = parse("a_total 10\nb 5\nc_bucket{le=\"1\"} 1\n");
        let after = parse("a_total 25\nb 5\nc_bucket{le=\"1\"} 4\nd_total 2\n");
        let d = delta(&before, &after);
        assert_eq!(d["a_total"], 15.0);
        assert_eq!(d["d_total"], 2.0);
        assert_eq!(headline(&d), vec![("a_total", 15.0), ("d_total", 2.0)]);
    }

    fn buckets(pairs: &[(f64, f64)]) -> Vec<(f64, f64)> {
        pairs.to_vec()
    }

    #[test]
    fn a_quantile_is_the_upper_bound_of_the_bucket_that_holds_it() {
        // 100 observations: 40 <= 1 ms, 55 in (1, 2] ms, 4 in (2, 5] ms, 1 above 10 s.
        let b = buckets(&[
            (0.001, 40.0),
            (0.002, 95.0),
            (0.005, 99.0),
            (10.0, 99.0),
            (f64::INFINITY, 100.0),
        ]);
        assert_eq!(quantile_bound(&b, 0.40), Some(0.001));
        assert_eq!(quantile_bound(&b, 0.41), Some(0.002));
        assert_eq!(quantile_bound(&b, 0.50), Some(0.002));
        assert_eq!(quantile_bound(&b, 0.99), Some(0.005));
        assert_eq!(quantile_bound(&b, 1.0), None, "in +Inf");
        // One observation: every quantile is its bucket.
        let one = buckets(&[(0.001, 0.0), (0.002, 1.0), (f64::INFINITY, 1.0)]);
        assert_eq!(quantile_bound(&one, 0.01), Some(0.002));
        assert_eq!(quantile_bound(&one, 0.99), Some(0.002));
        let none = buckets(&[(0.001, 0.0), (f64::INFINITY, 0.0)]);
        assert_eq!(quantile_bound(&none, 0.5), None);
    }

    #[test]
    fn latency_histograms_are_summarised_from_bucket_deltas_per_label_set() {
        let before = parse(
            r#"chat_e2e_latency_seconds_bucket{le="0.001"} 100
chat_e2e_latency_seconds_bucket{le="0.002"} 100
chat_e2e_latency_seconds_bucket{le="0.005"} 100
chat_e2e_latency_seconds_bucket{le="+Inf"} 100
chat_e2e_latency_seconds_sum 0.05
chat_e2e_latency_seconds_count 100
"#,
        );
        // During the run: 10 at <= 2 ms, 90 at <= 5 ms (the 100 before are all <= 1 ms).
        let after = parse(
            r#"chat_e2e_latency_seconds_bucket{le="0.001"} 100
chat_e2e_latency_seconds_bucket{le="0.002"} 110
chat_e2e_latency_seconds_bucket{le="0.005"} 200
chat_e2e_latency_seconds_bucket{le="+Inf"} 200
chat_e2e_latency_seconds_sum 0.5
chat_e2e_latency_seconds_count 200
chat_send_ack_latency_seconds_bucket{transport="ws",le="0.0005"} 3
chat_send_ack_latency_seconds_bucket{transport="ws",le="+Inf"} 4
chat_send_ack_latency_seconds_count{transport="ws"} 4
chat_send_ack_latency_seconds_bucket{transport="rest",le="0.0005"} 0
chat_send_ack_latency_seconds_bucket{transport="rest",le="+Inf"} 0
chat_commit_batch_size_bucket{le="1"} 5
chat_commit_batch_size_count 5
"#,
        );
        let d = delta(&before, &after);
        let l = latencies(&d);
        assert_eq!(
            l.keys().collect::<Vec<_>>(),
            [
                "chat_e2e_latency_seconds",
                "chat_send_ack_latency_seconds{transport=\"rest\"}",
                "chat_send_ack_latency_seconds{transport=\"ws\"}",
            ]
        );
        let e2e = l["chat_e2e_latency_seconds"];
        assert_eq!(e2e.count, 100);
        assert_eq!(
            e2e.p50_le_s,
            Some(0.005),
            "the run's own median, not the total's"
        );
        assert_eq!(e2e.p99_le_s, Some(0.005));
        let ws = l["chat_send_ack_latency_seconds{transport=\"ws\"}"];
        assert_eq!(
            (ws.count, ws.p50_le_s, ws.p99_le_s),
            (4, Some(0.0005), None)
        );
        assert_eq!(
            l["chat_send_ack_latency_seconds{transport=\"rest\"}"].count,
            0
        );
        assert_eq!(latency_line(&e2e), "p50 <= 5 ms, p99 <= 5 ms (n=100)");
        assert_eq!(
            latency_line(&ws),
            "p50 <= 0.5 ms, p99 > the last bucket (n=4)"
        );
        assert_eq!(
            latency_label("chat_send_ack_latency_seconds{transport=\"ws\"}"),
            "server send ack latency (ws)"
        );
        assert_eq!(
            latency_label("chat_e2e_latency_seconds"),
            "server e2e latency"
        );
        // The moved series list keeps the batch histogram's count, not the latency ones.
        let moved: Vec<&str> = headline(&d).into_iter().map(|(k, _)| k).collect();
        assert_eq!(moved, ["chat_commit_batch_size_count"]);
    }
}
