//! Durations in the configuration: a number with a unit (`"30s"`, `"500ms"`, `"2m"`,
//! `"1h 30m"`, `"30d"`), read with `humantime`. A bare number is refused, since nothing
//! would say its unit; the old `*_ms` and `*_secs` keys, which took bare numbers, are
//! still read (the server's `config/legacy.rs`). Every section of the configuration reads
//! its durations with [`deserialize`], the server's as well as `[realtime]`.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// `#[serde(deserialize_with = "duration::deserialize")]`
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;
    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration with a unit, such as \"30s\", \"500ms\" or \"1h\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v.trim()).map_err(|e| {
                E::custom(format!(
                    "{v:?} is not a duration ({e}); write a number with a unit, such as \
                     \"30s\", \"500ms\" or \"1h\""
                ))
            })
        }
    }
    d.deserialize_any(DurationVisitor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "deserialize")]
        d: Duration,
    }

    fn parse(json: &str) -> Result<Duration, String> {
        serde_json::from_str::<Holder>(json)
            .map(|h| h.d)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_are_read_with_their_unit() {
        assert_eq!(parse(r#"{"d":"30s"}"#), Ok(Duration::from_secs(30)));
        assert_eq!(parse(r#"{"d":"500ms"}"#), Ok(Duration::from_millis(500)));
        assert_eq!(parse(r#"{"d":" 2m "}"#), Ok(Duration::from_secs(120)));
        assert_eq!(parse(r#"{"d":"1h 30m"}"#), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse(r#"{"d":"30days"}"#),
            Ok(Duration::from_secs(2_592_000))
        );
        assert_eq!(parse(r#"{"d":"0s"}"#), Ok(Duration::ZERO));
    }

    #[test]
    fn a_number_without_a_unit_or_a_word_is_refused_with_an_example() {
        for bad in [r#"{"d":30}"#, r#"{"d":"30"}"#, r#"{"d":"soon"}"#] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("\"30s\""), "{bad}: {err}");
        }
    }
}
