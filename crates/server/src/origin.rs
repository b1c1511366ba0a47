//! Which browser origins may call the API (CORS) and open WebSockets: the server's own
//! origin plus `http.allowed_origins`.
//!
//! An origin is a scheme, a host and a port (RFC 6454), and all three must match:
//! `https://chat.example.com` is not `http://chat.example.com`, nor `https://chat.example.com:8443`.
//! A missing port is the scheme's default (80 for http, 443 for https), so
//! `https://chat.example.com` and `https://chat.example.com:443` are one origin.
//!
//! The server's own origin is the one the request was sent to: the `Host` header, with the
//! scheme the client used. The server itself speaks plain HTTP, so that scheme is `http`,
//! unless a TLS-terminating proxy in front says otherwise in `X-Forwarded-Proto`, which is
//! believed only from the proxies the server trusts (`http.trust_forwarded_for` and
//! `http.trusted_proxies`, the same peers whose `X-Forwarded-For` counts): a client talking
//! to the server directly must not be able to pick it.

use crate::api::client_ip::ForwardedFor;
use actix_web::http::header::{HeaderMap, HOST};
use std::collections::HashSet;
use std::net::IpAddr;

/// An origin: scheme, host and port, normalised (lower case, default port filled in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    /// `None` only for a scheme without a known default port and none given.
    port: Option<u16>,
}

impl Origin {
    /// `scheme://host[:port]`, as browsers send it in `Origin` (a trailing slash and any
    /// case are accepted); `None` for anything else (`null`, no scheme, a path, a bad port).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_suffix('/').unwrap_or(text);
        let (scheme, authority) = text.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return None;
        }
        Self::at(&scheme.to_ascii_lowercase(), authority)
    }

    /// The origin of `scheme` and `authority` (`host[:port]`, as in a `Host` header).
    fn at(scheme: &str, authority: &str) -> Option<Self> {
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return None;
        }
        let (host, port) = split_port(authority)?;
        if host.is_empty() {
            return None;
        }
        let port = port.or(match scheme {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        });
        Some(Self {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `host` and the port, if any, of `host[:port]` (IPv6 hosts in brackets).
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let host = &authority[..inside.len() + 2];
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// A configured `http.allowed_origins` entry that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an origin: write scheme://host[:port], e.g. https://app.example.com")]
pub struct NotAnOrigin(pub String);

/// Checks the configured entries: `*`, or origins (`scheme://host[:port]`).
pub fn check_listed<S: AsRef<str>>(origins: &[S]) -> Result<(), NotAnOrigin> {
    for entry in origins {
        let entry = entry.as_ref().trim();
        if entry != "*" && !entry.is_empty() && Origin::parse(entry).is_none() {
            return Err(NotAnOrigin(entry.to_owned()));
        }
    }
    Ok(())
}

/// The allow-list of `Origin` header values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    any: bool,
    listed: HashSet<Origin>,
    /// Whose `X-Forwarded-Proto` to believe: the peers whose `X-Forwarded-For` counts.
    proxies: ForwardedFor,
}

impl AllowedOrigins {
    /// From the configured list (`*` allows every origin; entries that are not origins,
    /// which [`check_listed`] refuses at start-up, allow nothing); `proxies`: the peers
    /// whose `X-Forwarded-Proto` tells the scheme clients use.
    pub fn new<S: AsRef<str>>(origins: &[S], proxies: ForwardedFor) -> Self {
        let mut allowed = Self {
            proxies,
            ..Self::default()
        };
        for origin in origins {
            let origin = origin.as_ref().trim();
            if origin == "*" {
                allowed.any = true;
            } else if let Some(origin) = Origin::parse(origin) {
                allowed.listed.insert(origin);
            }
        }
        allowed
    }

    /// Whether a request with this `Origin` may proceed: same-origin (scheme, host and port
    /// those the request was sent to, see the module's doc) or listed. `peer`: the TCP peer
    /// the request came from (a trusted proxy's `X-Forwarded-Proto` counts, no one else's).
    pub fn allows(&self, origin: &str, request: &HeaderMap, peer: Option<IpAddr>) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        self.listed.contains(&origin) || self.own(request, peer).as_ref() == Some(&origin)
    }

    /// The origin a request was sent to, as the client saw it.
    fn own(&self, request: &HeaderMap, peer: Option<IpAddr>) -> Option<Origin> {
        let host = request.get(HOST)?.to_str().ok()?;
        let believed = peer.is_some_and(|ip| self.proxies.believes_peer(ip));
        let forwarded = believed.then(|| forwarded_proto(request)).flatten();
        Origin::at(forwarded.unwrap_or("http"), host.trim())
    }
}

/// The scheme the trusted proxy says the client used: the last `X-Forwarded-Proto` entry
/// (the one the nearest proxy wrote), `http` or `https`.
fn forwarded_proto(request: &HeaderMap) -> Option<&'static str> {
    let header = request.get("x-forwarded-proto")?.to_str().ok()?;
    let last = header.rsplit(',').next()?.trim();
    if last.eq_ignore_ascii_case("https") {
        Some("https")
    } else if last.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn request(host: Option<&str>, proto: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(proto) = proto {
            headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_str(proto).unwrap(),
            );
        }
        headers
    }

    /// The TCP peer of the tests' requests.
    const PEER: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 5)));

    fn direct() -> ForwardedFor {
        ForwardedFor::default()
    }

    fn behind_proxy(proxies: &[&str]) -> ForwardedFor {
        ForwardedFor {
            trusted: true,
            proxies: proxies
                .iter()
                .map(|p| crate::api::client_ip::IpRange::parse(p).unwrap())
                .collect(),
        }
    }

    fn to(host: &str) -> HeaderMap {
        request(Some(host), None)
    }

    #[test]
    fn same_origin_requests_are_allowed_without_configuration() {
        let allowed = AllowedOrigins::new::<&str>(&[], direct());
        assert!(allowed.allows("http://localhost:8080", &to("localhost:8080"), PEER));
        assert!(allowed.allows("http://Chat.Example.com/", &to("chat.example.com"), PEER));
        assert!(allowed.allows("http://[::1]:8080", &to("[::1]:8080"), PEER));
        assert!(!allowed.allows("https://evil.example", &to("chat.example.com"), PEER));
        assert!(!allowed.allows("http://localhost:8081", &to("localhost:8080"), PEER));
        assert!(!allowed.allows("null", &to("localhost:8080"), PEER));
        assert!(!allowed.allows("http://localhost:8080", &request(None, None), PEER));
    }

    #[test]
    fn the_scheme_counts_a_plain_http_server_is_not_its_https_namesake() {
        let allowed = AllowedOrigins::new::<&str>(&[], direct());
        assert!(!allowed.allows("https://127.0.0.1:8080", &to("127.0.0.1:8080"), PEER));
        assert!(!allowed.allows("https://chat.example.com", &to("chat.example.com"), PEER));
        assert!(!allowed.allows("ws://127.0.0.1:8080", &to("127.0.0.1:8080"), PEER));
    }

    #[test]
    fn default_ports_are_implicit_on_both_sides() {
        let allowed = AllowedOrigins::new::<&str>(&[], direct());
        assert!(allowed.allows("http://chat.example.com", &to("chat.example.com:80"), PEER));
        assert!(allowed.allows("http://chat.example.com:80", &to("chat.example.com"), PEER));
        assert!(!allowed.allows(
            "http://chat.example.com:8080",
            &to("chat.example.com"),
            PEER
        ));
    }

    #[test]
    fn behind_a_trusted_tls_proxy_the_forwarded_scheme_is_the_servers() {
        let behind = AllowedOrigins::new::<&str>(&[], behind_proxy(&[]));
        let via_tls = request(Some("chat.example.com"), Some("https"));
        assert!(behind.allows("https://chat.example.com", &via_tls, PEER));
        assert!(behind.allows("https://chat.example.com:443", &via_tls, PEER));
        assert!(!behind.allows("http://chat.example.com", &via_tls, PEER));
        // The last entry is the nearest proxy's.
        let chain = request(Some("chat.example.com"), Some("http, https"));
        assert!(behind.allows("https://chat.example.com", &chain, PEER));
        // No header: plain http, as the server itself speaks.
        assert!(behind.allows("http://chat.example.com", &to("chat.example.com"), PEER));
        // Untrusted: a client cannot pick the scheme.
        let direct = AllowedOrigins::new::<&str>(&[], direct());
        assert!(!direct.allows("https://chat.example.com", &via_tls, PEER));
        assert!(direct.allows("http://chat.example.com", &via_tls, PEER));
    }

    #[test]
    fn only_the_listed_proxies_say_which_scheme_the_client_used() {
        let behind = AllowedOrigins::new::<&str>(&[], behind_proxy(&["10.0.0.0/24"]));
        let via_tls = request(Some("chat.example.com"), Some("https"));
        assert!(behind.allows("https://chat.example.com", &via_tls, PEER));
        // A peer that is not a listed proxy (a client reaching the node directly) cannot
        // pick the scheme, nor can a request whose peer is unknown.
        let stranger = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)));
        assert!(!behind.allows("https://chat.example.com", &via_tls, stranger));
        assert!(behind.allows("http://chat.example.com", &via_tls, stranger));
        assert!(!behind.allows("https://chat.example.com", &via_tls, None));
    }

    #[test]
    fn listed_origins_match_by_scheme_host_and_port_however_they_are_spelled() {
        let allowed = AllowedOrigins::new(
            &["https://App.example.com/", " http://localhost:3000 "],
            direct(),
        );
        let elsewhere = to("api.example.com");
        assert!(allowed.allows("https://app.example.com", &elsewhere, PEER));
        assert!(allowed.allows("https://app.example.com:443", &elsewhere, PEER));
        assert!(allowed.allows("http://localhost:3000", &request(None, None), PEER));
        assert!(!allowed.allows("http://app.example.com", &elsewhere, PEER));
        assert!(!allowed.allows("https://app.example.com:8443", &elsewhere, PEER));
        assert!(!allowed.allows("https://localhost:3000", &elsewhere, PEER));
        assert!(!allowed.allows("https://app.example.com.evil", &elsewhere, PEER));
    }

    #[test]
    fn a_star_allows_every_origin() {
        let any = AllowedOrigins::new(&["*"], direct());
        assert!(any.allows("https://anything.example", &request(None, None), PEER));
    }

    #[test]
    fn configured_entries_must_be_origins() {
        assert!(check_listed(&["*", "https://a.example", "http://[::1]:3000", " "]).is_ok());
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://",
            "https://a.example:port",
            "https://a.example:99999",
            "null",
        ] {
            let err = check_listed(&[bad]).unwrap_err();
            assert_eq!(err, NotAnOrigin(bad.to_owned()), "{bad}");
        }
    }
}
