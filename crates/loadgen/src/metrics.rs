//! The server's Prometheus `/metrics`, read before and after a run: every series as a
//! number, and what each counter moved by.

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

/// The series worth a line in the table: no histogram buckets, and only those that moved.
pub fn headline(delta: &Samples) -> Vec<(&str, f64)> {
    delta
        .iter()
        .filter(|(k, v)| !k.contains("_bucket") && **v != 0.0 && v.is_finite())
        .map(|(k, v)| (k.as_str(), *v))
        .collect()
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
}
