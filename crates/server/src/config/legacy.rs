//! The configuration keys of earlier versions, still read: timings were bare numbers in keys
//! named for their unit (`realtime.heartbeat_interval_ms = 30000`), they are now durations
//! with their unit in the value (`realtime.heartbeat_interval = "30s"`). [`Legacy`] wraps
//! each source (a file, the environment) and rewrites its old keys into new ones before the
//! sources are layered, so an old key in a later layer still beats a new key in an earlier
//! one, and within one source the new key wins.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// `(section, old key, new key, unit of the old key's number)`.
pub(super) const RENAMED: &[(&str, &str, &str, &str)] = &[
    ("database", "connect_timeout_ms", "connect_timeout", "ms"),
    ("database", "acquire_timeout_ms", "acquire_timeout", "ms"),
    ("database", "query_timeout_ms", "query_timeout", "ms"),
    (
        "realtime",
        "heartbeat_interval_ms",
        "heartbeat_interval",
        "ms",
    ),
    (
        "realtime",
        "slow_consumer_grace_ms",
        "slow_consumer_grace",
        "ms",
    ),
    ("realtime", "sync_hold_ms", "sync_hold", "ms"),
    ("realtime", "receipt_linger_ms", "receipt_linger", "ms"),
    ("realtime", "close_grace_ms", "close_grace", "ms"),
    ("realtime", "presence_grace_ms", "presence_grace", "ms"),
    (
        "realtime",
        "presence_lease_ttl_ms",
        "presence_lease_ttl",
        "ms",
    ),
    ("realtime", "typing_ttl_ms", "typing_ttl", "ms"),
    (
        "realtime",
        "typing_forward_throttle_ms",
        "typing_forward_throttle",
        "ms",
    ),
    ("auth", "access_ttl_secs", "access_ttl", "s"),
    ("auth", "refresh_ttl_secs", "refresh_ttl", "s"),
    ("auth", "iat_leeway_secs", "iat_leeway", "s"),
    ("auth", "hash_wait_timeout_ms", "hash_wait_timeout", "ms"),
];

/// A configuration source whose old keys read as their new ones.
pub(super) struct Legacy<P>(pub P);

impl<P: Provider> Provider for Legacy<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            rewrite(dict).map_err(figment::Error::from)?;
        }
        Ok(data)
    }
}

/// Rewrites the old keys of one source's settings; the error says which key is wrong.
fn rewrite(settings: &mut Dict) -> Result<(), String> {
    for (section, old, new, unit) in RENAMED {
        let Some(Value::Dict(_, keys)) = settings.get_mut(*section) else {
            continue;
        };
        let Some(value) = keys.remove(*old) else {
            continue;
        };
        let number = value
            .to_u128()
            .or_else(|| value.to_i128().and_then(|n| u128::try_from(n).ok()));
        let Some(number) = number else {
            let unit = if *unit == "ms" {
                "milliseconds"
            } else {
                "seconds"
            };
            return Err(format!(
                "{section}.{old}: expected a whole number of {unit}, found {value:?} (or use \
                 {section}.{new} with a unit, such as \"30s\")"
            ));
        };
        keys.entry((*new).to_owned())
            .or_insert_with(|| Value::from(format!("{number}{unit}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    fn read(toml: &str) -> Result<Dict, Box<figment::Error>> {
        let data = Legacy(Toml::string(toml)).data().map_err(Box::new)?;
        Ok(data.into_values().next().unwrap_or_default())
    }

    fn key<'a>(dict: &'a Dict, section: &str, key: &str) -> Option<&'a Value> {
        match dict.get(section)? {
            Value::Dict(_, keys) => keys.get(key),
            _ => None,
        }
    }

    #[test]
    fn an_old_key_reads_as_its_new_key_with_the_unit_it_was_named_for() {
        let dict = read("[realtime]\nheartbeat_interval_ms = 1500\n[auth]\naccess_ttl_secs = 60\n")
            .unwrap();
        let beat = key(&dict, "realtime", "heartbeat_interval").unwrap();
        assert_eq!(beat.as_str(), Some("1500ms"));
        assert!(key(&dict, "realtime", "heartbeat_interval_ms").is_none());
        assert_eq!(
            key(&dict, "auth", "access_ttl").unwrap().as_str(),
            Some("60s")
        );
    }

    #[test]
    fn within_one_source_the_new_key_wins() {
        let dict = read("[realtime]\nsync_hold_ms = 10\nsync_hold = \"2s\"\n").unwrap();
        assert_eq!(
            key(&dict, "realtime", "sync_hold").unwrap().as_str(),
            Some("2s")
        );
    }

    #[test]
    fn an_old_key_in_a_later_layer_beats_a_new_key_in_an_earlier_one() {
        #[derive(serde::Deserialize)]
        struct Realtime {
            typing_ttl: String,
        }
        #[derive(serde::Deserialize)]
        struct Root {
            realtime: Realtime,
        }
        let root: Root = Figment::new()
            .merge(Legacy(Toml::string("[realtime]\ntyping_ttl = \"5s\"\n")))
            .merge(Legacy(Toml::string("[realtime]\ntyping_ttl_ms = 700\n")))
            .extract()
            .unwrap();
        assert_eq!(root.realtime.typing_ttl, "700ms");
    }

    #[test]
    fn an_old_key_that_is_not_a_whole_number_is_refused_naming_it() {
        let err = read("[realtime]\nclose_grace_ms = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("realtime.close_grace_ms"), "{err}");
        assert!(err.contains("realtime.close_grace"), "{err}");
    }
}
