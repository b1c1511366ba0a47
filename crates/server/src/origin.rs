//! Which browser origins may call the API (CORS) and open WebSockets: the server's own
//! origin plus `http.allowed_origins`.

use std::collections::HashSet;

/// The allow-list of `Origin` header values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    listed: HashSet<String>,
}

impl AllowedOrigins {
    /// From the configured list; `*` allows every origin.
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Self {
        let mut allowed = Self::default();
        for origin in origins {
            let origin = normalise(origin.as_ref());
            if origin == "*" {
                allowed.any = true;
            } else if !origin.is_empty() {
                allowed.listed.insert(origin);
            }
        }
        allowed
    }

    /// Whether a request with this `Origin`, sent to this `Host`, may proceed: same-origin
    /// (the origin's host and port are the `Host` header's) or listed.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalise(origin);
        if self.any || self.listed.contains(&origin) {
            return true;
        }
        let authority = origin.split_once("://").map(|(_, rest)| rest);
        match (authority, host) {
            (Some(authority), Some(host)) => authority == normalise(host),
            _ => false,
        }
    }
}

/// Origins compare case-insensitively and without a trailing slash.
fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_requests_are_allowed_without_configuration() {
        let allowed = AllowedOrigins::new::<&str>(&[]);
        assert!(allowed.allows("http://localhost:8080", Some("localhost:8080")));
        assert!(allowed.allows("https://Chat.Example.com", Some("chat.example.com")));
        assert!(!allowed.allows("https://evil.example", Some("chat.example.com")));
        assert!(!allowed.allows("http://localhost:8081", Some("localhost:8080")));
        assert!(!allowed.allows("null", Some("localhost:8080")));
    }

    #[test]
    fn listed_origins_are_allowed_however_they_are_spelled() {
        let allowed = AllowedOrigins::new(&["https://App.example.com/", " http://localhost:3000 "]);
        assert!(allowed.allows("https://app.example.com", Some("api.example.com")));
        assert!(allowed.allows("http://localhost:3000", None));
        assert!(!allowed.allows("https://app.example.com.evil", None));
    }

    #[test]
    fn a_star_allows_every_origin() {
        assert!(AllowedOrigins::new(&["*"]).allows("https://anything.example", None));
    }
}
