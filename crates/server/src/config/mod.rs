//! Layered configuration: built-in defaults < `config/default.toml` < `config/local.toml`
//! < `CHAT_SECTION__KEY` environment variables.
//!
//! Every key has a default, so the embedded mode runs with no file and no variable at all.
//! Secrets are [`Secret`]s: they print as `<redacted>`, so logging the settings is safe.
//! Timings are [`Duration`](std::time::Duration)s written with a unit (`"30s"`, `"500ms"`;
//! `realtime::settings::duration`), the `*_ms`/`*_secs` keys of earlier versions still read
//! (`legacy.rs`); counts that must not be zero are non-zero types, so a 0 is refused where it
//! is read. One module per section; `[realtime]` is the real-time engine's own
//! [`RealtimeSettings`], re-exported here.

mod attachments;
mod auth;
mod blobs;
mod http;
mod legacy;
mod limits;
mod log;
mod secret;
mod storage;
mod testing;

pub use attachments::AttachmentSettings;
pub use auth::AuthSettings;
pub use blobs::BlobSettings;
pub use http::HttpSettings;
pub use limits::LimitSettings;
pub use log::{LogFormat, LogSettings};
pub use realtime::settings::{nonzero, RealtimeSettings};
pub use secret::Secret;
pub use storage::{DataSettings, DatabaseSettings, RedisSettings};
pub use testing::TestingSettings;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use legacy::Legacy;
use realtime::settings::duration;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Environment variable naming the directory that holds `default.toml` and `local.toml`.
pub const CONFIG_DIR_ENV: &str = "CHAT_CONFIG_DIR";

/// Prefix of the environment variables that override the files.
pub const ENV_PREFIX: &str = "CHAT_";

/// The configuration could not be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file is malformed or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is well-typed but unusable.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The offending key, dotted (`database.url`).
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// All settings, one struct per section of `config/default.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `[http]`
    pub http: HttpSettings,
    /// `[data]`
    pub data: DataSettings,
    /// `[database]`
    pub database: DatabaseSettings,
    /// `[redis]`
    pub redis: RedisSettings,
    /// `[blobs]`
    pub blobs: BlobSettings,
    /// `[attachments]`
    pub attachments: AttachmentSettings,
    /// `[auth]`
    pub auth: AuthSettings,
    /// `[limits]`
    pub limits: LimitSettings,
    /// `[realtime]`
    pub realtime: RealtimeSettings,
    /// `[log]`
    pub log: LogSettings,
    /// `[testing]`: fault injection for the test suite only.
    pub testing: TestingSettings,
}

/// The store the settings select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// The embedded SQLite file at this path.
    Sqlite(PathBuf),
    /// PostgreSQL at this URL.
    Postgres(Secret),
}

impl Settings {
    /// Reads the settings from the directory named by `CHAT_CONFIG_DIR` (default `./config`)
    /// and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let dir = std::env::var_os(CONFIG_DIR_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir)
    }

    /// Reads the settings from `dir` (a missing directory or file is fine) and the environment.
    pub fn load_from(dir: &Path) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        for name in ["default.toml", "local.toml"] {
            let file = dir.join(name);
            // `file_exact` so no parent directory is searched; absent files are skipped.
            if file.is_file() {
                figment = figment.merge(Legacy(Toml::file_exact(file)));
            }
        }
        figment = figment.merge(Legacy(
            Env::prefixed(ENV_PREFIX)
                .ignore(&["config_dir"])
                .split("__"),
        ));
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Settings for tests: a free port on localhost, data under `data_dir`, cheap password
    /// hashing, a fixed JWT secret and login limits no test trips over.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let mut settings = Self::default();
        settings.http.addr = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.data.dir = data_dir.into();
        settings.auth.jwt_secret = Some(Secret::new("test-secret-test-secret-test-secret!"));
        settings.auth.argon2_memory_kib = 64;
        settings.auth.argon2_iterations = 1;
        let plenty = nonzero::u32(10_000);
        settings.auth.login_attempts_per_minute = plenty;
        settings.auth.login_burst = plenty;
        settings.auth.registrations_per_minute = plenty;
        settings.auth.registration_burst = plenty;
        settings.realtime.messages_per_second = plenty;
        settings.realtime.message_burst = plenty;
        settings.realtime.changes_per_second = plenty;
        settings.realtime.change_burst = plenty;
        settings.realtime.upgrades_per_second = plenty;
        settings.realtime.upgrade_burst = plenty;
        settings.log.level = "warn".to_owned();
        settings
    }

    /// The store selected by `database.url`.
    pub fn database_target(&self) -> Result<DatabaseTarget, ConfigError> {
        let Some(url) = &self.database.url else {
            return Ok(DatabaseTarget::Sqlite(self.data.dir.join("chat.db")));
        };
        let raw = url.expose().trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            return Ok(DatabaseTarget::Postgres(Secret::new(raw)));
        }
        let path = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"));
        match path {
            Some(path) if !path.is_empty() => Ok(DatabaseTarget::Sqlite(PathBuf::from(path))),
            // The URL is not echoed: it may hold a password.
            _ => Err(ConfigError::Invalid {
                key: "database.url",
                reason: "must start with sqlite:, postgres:// or postgresql://".to_owned(),
            }),
        }
    }

    /// Refuses values that would only fail later, deep inside start-up.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        for proxy in &self.http.trusted_proxies {
            if let Err(reason) = crate::api::client_ip::IpRange::parse(proxy) {
                return invalid("http.trusted_proxies", &reason);
            }
        }
        if let Err(e) = crate::origin::check_listed(&self.http.allowed_origins) {
            return invalid("http.allowed_origins", &e.to_string());
        }
        // Counts are non-zero types; these timings must not be zero either.
        let rt = &self.realtime;
        for (key, value) in [
            ("database.connect_timeout", self.database.connect_timeout),
            ("database.acquire_timeout", self.database.acquire_timeout),
            ("database.query_timeout", self.database.query_timeout),
            ("auth.access_ttl", self.auth.access_ttl),
            ("realtime.heartbeat_interval", rt.heartbeat_interval),
            ("realtime.presence_lease_ttl", rt.presence_lease_ttl),
            ("realtime.typing_ttl", rt.typing_ttl),
        ] {
            if value.is_zero() {
                return invalid(key, "must be longer than 0s");
            }
        }
        if let Err(reason) = self.blobs.check_url() {
            return invalid("blobs.url", &reason);
        }
        if let Err((key, reason)) = self.attachments.check() {
            return invalid(key, &reason);
        }
        self.database_target().map(|_| ())
    }
}

/// Accepts `["a", "b"]` from a file and `a,b` from an environment variable.
fn list_or_comma_separated<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(list) => list,
        ListOrString::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    // `Jail::expect_with` closures must return figment's (large) error type.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

    use super::*;
    use figment::Jail;
    use std::time::Duration;

    fn load_in(jail: &Jail) -> Settings {
        Settings::load_from(&jail.directory().join("config")).expect("settings load")
    }

    #[test]
    fn with_no_file_and_no_variable_every_key_has_its_default() {
        Jail::expect_with(|jail| {
            let s = load_in(jail);
            assert_eq!(s.http.addr, "127.0.0.1:8080".parse().unwrap());
            assert_eq!(s.http.max_body_bytes, 65_536);
            assert!(s.http.allowed_origins.is_empty());
            assert_eq!(s.data.dir, PathBuf::from("./data"));
            assert_eq!(s.database.pool_size.get(), 8);
            assert_eq!(s.auth.issuer, "chat-server");
            assert_eq!(s.auth.audience, "chat");
            assert_eq!(s.auth.access_ttl, Duration::from_secs(900));
            assert_eq!(s.auth.refresh_ttl, Duration::from_secs(2_592_000));
            assert_eq!(s.auth.argon2_memory_kib, 19_456);
            assert_eq!(s.auth.login_attempts_per_minute.get(), 10);
            assert_eq!(s.auth.iat_leeway, Duration::from_secs(30));
            assert_eq!(s.auth.registrations_per_minute.get(), 5);
            assert_eq!(s.auth.registration_burst.get(), 10);
            assert_eq!(s.auth.hash_concurrency, 0);
            assert_eq!(s.auth.hash_wait_timeout, Duration::from_secs(5));
            assert_eq!(s.limits.max_content_chars, 4_000);
            assert_eq!(s.redis.key_prefix, "chat:");
            assert_eq!(s.realtime.heartbeat_interval, Duration::from_secs(30));
            assert_eq!(s.realtime.max_frame_bytes.get(), 65_536);
            assert_eq!(s.realtime.messages_per_second.get(), 10);
            assert_eq!(s.realtime.message_burst.get(), 20);
            assert_eq!(s.realtime.max_sessions_per_user.get(), 10);
            assert_eq!(s.log.format, LogFormat::Pretty);
            assert_eq!(
                s.database_target().unwrap(),
                DatabaseTarget::Sqlite(PathBuf::from("./data/chat.db"))
            );
            Ok(())
        });
    }

    #[test]
    fn blobs_come_from_the_environment_and_a_bad_url_is_refused() {
        Jail::expect_with(|jail| {
            let s = load_in(jail);
            assert_eq!(s.blobs.url, None, "local under data.dir by default");
            assert!(!s.blobs.allow_http);
            jail.set_env("CHAT_BLOBS__URL", "s3://attachments");
            jail.set_env("CHAT_BLOBS__ENDPOINT", "http://127.0.0.1:9000");
            jail.set_env("CHAT_BLOBS__REGION", "eu-west-1");
            jail.set_env("CHAT_BLOBS__ACCESS_KEY_ID", "key");
            jail.set_env("CHAT_BLOBS__SECRET_ACCESS_KEY", "secret");
            jail.set_env("CHAT_BLOBS__ALLOW_HTTP", "true");
            let s = load_in(jail);
            assert_eq!(s.blobs.url.as_deref(), Some("s3://attachments"));
            assert_eq!(s.blobs.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
            assert_eq!(s.blobs.region.as_deref(), Some("eu-west-1"));
            assert_eq!(s.blobs.access_key_id.as_deref(), Some("key"));
            let secret = s.blobs.secret_access_key.as_ref().map(Secret::expose);
            assert_eq!(secret, Some("secret"));
            assert!(s.blobs.allow_http);
            for bad in ["s3://", "s3://a/b", "ftp://x"] {
                jail.set_env("CHAT_BLOBS__URL", bad);
                let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
                assert!(err.to_string().contains("blobs.url"), "{bad}: {err}");
            }
            Ok(())
        });
    }

    #[test]
    fn the_shipped_default_toml_states_the_built_in_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
        let shipped: Settings = Figment::new()
            .merge(Toml::file_exact(file))
            .extract()
            .unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{:?}", Settings::default()));
    }

    #[test]
    fn env_overrides_local_toml_which_overrides_default_toml_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[http]\naddr = \"0.0.0.0:1000\"\nmax_body_bytes = 1000\n\
                 [limits]\nmax_page_size = 10\nmax_content_chars = 10\n",
            )?;
            jail.create_file(
                "config/local.toml",
                "[http]\nmax_body_bytes = 2000\n[limits]\nmax_page_size = 20\n",
            )?;
            jail.set_env("CHAT_LIMITS__MAX_PAGE_SIZE", "30");
            let s = load_in(jail);
            assert_eq!(
                s.http.addr,
                "0.0.0.0:1000".parse().unwrap(),
                "from default.toml"
            );
            assert_eq!(s.http.max_body_bytes, 2000, "local.toml beats default.toml");
            assert_eq!(s.limits.max_page_size.get(), 30, "env beats both files");
            assert_eq!(
                s.limits.max_content_chars, 10,
                "untouched keys keep the file value"
            );
            assert_eq!(
                s.limits.max_group_members, 1000,
                "absent keys keep the default"
            );
            Ok(())
        });
    }

    #[test]
    fn allowed_origins_come_from_a_list_or_a_comma_separated_variable() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[http]\nallowed_origins = [\"https://a.example\"]\n",
            )?;
            assert_eq!(load_in(jail).http.allowed_origins, ["https://a.example"]);
            jail.set_env(
                "CHAT_HTTP__ALLOWED_ORIGINS",
                "https://b.example, http://localhost:3000",
            );
            assert_eq!(
                load_in(jail).http.allowed_origins,
                ["https://b.example", "http://localhost:3000"]
            );
            Ok(())
        });
    }

    #[test]
    fn attachment_types_come_from_a_comma_separated_variable_and_unknown_ones_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "CHAT_ATTACHMENTS__ALLOWED_TYPES",
                "image/png, application/pdf",
            );
            jail.set_env("CHAT_ATTACHMENTS__EXPIRE_AFTER", "2h");
            let a = load_in(jail).attachments;
            assert_eq!(a.allowed_types, ["image/png", "application/pdf"]);
            assert_eq!(a.expire_after, Duration::from_secs(7200));
            let service = a.service();
            assert_eq!(service.limits.allowed_mime_types, a.allowed_types);
            assert_eq!(service.limits.max_bytes, 50 * 1024 * 1024);
            jail.set_env("CHAT_ATTACHMENTS__ALLOWED_TYPES", "image/png,image/svg+xml");
            let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
            assert!(
                err.to_string().contains("attachments.allowed_types"),
                "{err}"
            );
            jail.set_env("CHAT_ATTACHMENTS__ALLOWED_TYPES", "image/png");
            jail.set_env("CHAT_ATTACHMENTS__URL_TTL", "0s");
            let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
            assert!(err.to_string().contains("attachments.url_ttl"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn trusted_proxies_come_from_a_comma_separated_variable_and_bad_ones_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("CHAT_HTTP__TRUST_FORWARDED_FOR", "true");
            jail.set_env(
                "CHAT_HTTP__TRUSTED_PROXIES",
                "127.0.0.1, 10.0.0.0/8,fd00::/8",
            );
            let http = load_in(jail).http;
            assert!(http.trust_forwarded_for);
            assert_eq!(
                http.trusted_proxies,
                ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]
            );
            assert_eq!(http.trusted_proxy_ranges().len(), 3);
            jail.set_env("CHAT_HTTP__TRUSTED_PROXIES", "10.0.0.0/8,nginx");
            let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
            assert!(
                err.to_string().contains("http.trusted_proxies")
                    && err.to_string().contains("nginx"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn an_allowed_origin_that_is_not_an_origin_is_refused_at_load() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "CHAT_HTTP__ALLOWED_ORIGINS",
                "https://a.example, app.example.com",
            );
            let err = Settings::load_from(&jail.directory().join("config")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("http.allowed_origins"), "{text}");
            assert!(text.contains("app.example.com"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "CHAT_AUTH__JWT_SECRET",
                "super-secret-signing-key-0123456789",
            );
            jail.set_env("CHAT_DATABASE__URL", "postgres://chat:hunter2@db/chat");
            jail.set_env("CHAT_REDIS__URL", "redis://:hunter3@cache");
            jail.set_env("CHAT_BLOBS__SECRET_ACCESS_KEY", "hunter4");
            let s = load_in(jail);
            let printed = format!("{s:?} {s:#?}");
            for secret in ["super-secret", "hunter2", "hunter3", "hunter4"] {
                assert!(!printed.contains(secret), "{secret} leaked: {printed}");
            }
            assert!(printed.contains("<redacted>"));
            let jwt = s.auth.jwt_secret.as_ref().unwrap();
            assert_eq!(jwt.expose(), "super-secret-signing-key-0123456789");
            assert_eq!(jwt.to_string(), "<redacted>");
            Ok(())
        });
    }

    #[test]
    fn an_all_digit_secret_from_the_environment_is_kept_as_text() {
        Jail::expect_with(|jail| {
            jail.set_env("CHAT_AUTH__JWT_SECRET", "12345678901234567890123456789012");
            let s = load_in(jail);
            assert_eq!(
                s.auth.jwt_secret.unwrap().expose(),
                "12345678901234567890123456789012"
            );
            Ok(())
        });
    }

    #[test]
    fn the_database_url_selects_the_store() {
        let mut s = Settings::default();
        for (url, expected) in [
            (
                "sqlite:///tmp/x.db",
                DatabaseTarget::Sqlite("/tmp/x.db".into()),
            ),
            ("sqlite:rel/x.db", DatabaseTarget::Sqlite("rel/x.db".into())),
            (
                "postgres://u:p@h/db",
                DatabaseTarget::Postgres(Secret::new("postgres://u:p@h/db")),
            ),
            (
                "postgresql://h/db",
                DatabaseTarget::Postgres(Secret::new("postgresql://h/db")),
            ),
        ] {
            s.database.url = Some(Secret::new(url));
            assert_eq!(s.database_target().unwrap(), expected, "{url}");
        }
        s.database.url = Some(Secret::new("mysql://u:pw@h/db"));
        let err = s.database_target().unwrap_err().to_string();
        assert!(err.contains("database.url") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn timings_are_durations_with_a_unit_and_the_old_millisecond_keys_still_read() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(
                "config/default.toml",
                "[realtime]\nheartbeat_interval = \"45s\"\ntyping_ttl_ms = 700\n\
                 [auth]\naccess_ttl_secs = 60\n[database]\nquery_timeout = \"1m\"\n",
            )?;
            jail.set_env("CHAT_REALTIME__SYNC_HOLD", "250ms");
            jail.set_env("CHAT_REALTIME__PRESENCE_LEASE_TTL_MS", "1500");
            let s = load_in(jail);
            assert_eq!(s.realtime.heartbeat_interval, Duration::from_secs(45));
            assert_eq!(s.realtime.typing_ttl, Duration::from_millis(700));
            assert_eq!(s.auth.access_ttl, Duration::from_secs(60));
            assert_eq!(s.database.query_timeout, Duration::from_secs(60));
            assert_eq!(s.realtime.sync_hold, Duration::from_millis(250));
            assert_eq!(s.realtime.presence_lease_ttl, Duration::from_millis(1500));
            // An old key in the environment beats the new one in a file.
            jail.set_env("CHAT_REALTIME__HEARTBEAT_INTERVAL_MS", "2000");
            assert_eq!(
                load_in(jail).realtime.heartbeat_interval,
                Duration::from_secs(2)
            );
            Ok(())
        });
    }

    #[test]
    fn a_duration_without_a_unit_or_a_zero_count_is_refused_naming_the_key() {
        Jail::expect_with(|jail| {
            let dir = jail.directory().join("config");
            jail.set_env("CHAT_REALTIME__HEARTBEAT_INTERVAL", "30");
            let err = Settings::load_from(&dir).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains("heartbeat_interval") && err.contains("30s"),
                "{err}"
            );
            jail.set_env("CHAT_REALTIME__HEARTBEAT_INTERVAL", "0s");
            let err = Settings::load_from(&dir).unwrap_err().to_string();
            assert!(err.contains("realtime.heartbeat_interval"), "{err}");
            jail.set_env("CHAT_REALTIME__HEARTBEAT_INTERVAL", "30s");
            jail.set_env("CHAT_REALTIME__COMMIT_MAX_BATCH", "0");
            let err = Settings::load_from(&dir).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains("commit_max_batch") && err.contains("nonzero"),
                "{err}"
            );
            jail.set_env("CHAT_REALTIME__COMMIT_MAX_BATCH", "16");
            jail.set_env("CHAT_DATABASE__POOL_SIZE", "0");
            let err = Settings::load_from(&dir).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("pool_size"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_malformed_file_is_an_error_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file("config/default.toml", "[http]\nmax_body_bytes = \"lots\"\n")?;
            let err = Settings::load_from(&jail.directory().join("config"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("max_body_bytes"), "{err}");
            Ok(())
        });
    }
}
