//! `ClientIp`: the address a request came from, for per-IP limits.

use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::{web, FromRequest, HttpRequest};
use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Whose `X-Forwarded-For` to believe (`http.trust_forwarded_for`, `http.trusted_proxies`),
/// as app data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedFor {
    /// `true` only behind a reverse proxy that appends the peer it saw to the header.
    pub trusted: bool,
    /// The proxies whose header is believed; empty: every peer's (only where nothing but
    /// the proxy can reach the node).
    pub proxies: Arc<[IpRange]>,
}

impl ForwardedFor {
    /// Whether the TCP peer `ip` is a proxy whose header is believed.
    pub(crate) fn believes_peer(&self, ip: IpAddr) -> bool {
        self.trusted && (self.proxies.is_empty() || self.is_listed(ip))
    }

    /// Whether `ip` is one of the listed proxies (so, in `X-Forwarded-For`, a hop of a
    /// chain of them rather than the client).
    fn is_listed(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|r| r.contains(ip))
    }
}

/// One entry of `http.trusted_proxies`: an address (`10.0.0.5`) or a CIDR range
/// (`10.0.0.0/24`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `ADDR` or `ADDR/PREFIX`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` lies in the range. An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`,
    /// as a dual-stack listener reports IPv4 peers) counts as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The client's IP: the TCP peer or, when the peer is a trusted proxy, the `X-Forwarded-For`
/// entry that proxy appended (read from the right, past further trusted proxies: entries to
/// the left of the first untrusted one were written by the client and prove nothing).
/// `None` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequest for ClientIp {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let resolved = match req.app_data::<web::Data<ForwardedFor>>() {
            Some(forwarded_for) => Self::resolve(req.headers(), req.peer_addr(), forwarded_for),
            None => Self::resolve(req.headers(), req.peer_addr(), &ForwardedFor::default()),
        };
        ready(Ok(resolved))
    }
}

impl ClientIp {
    /// The client's IP from a request's headers and TCP peer.
    pub fn resolve(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        forwarded_for: &ForwardedFor,
    ) -> Self {
        let Some(mut client) = peer.map(|addr| addr.ip()) else {
            return Self(None);
        };
        if !forwarded_for.believes_peer(client) {
            return Self(Some(client));
        }
        let Some(header) = headers.get("x-forwarded-for").and_then(|h| h.to_str().ok()) else {
            return Self(Some(client));
        };
        // Each listed proxy vouches for the entry to its left (with no list, only the peer
        // does: the last entry is the client); an unreadable entry ends the walk at the
        // last address a trusted hop vouched for.
        for entry in header.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client = ip;
            if !forwarded_for.is_listed(ip) {
                break;
            }
        }
        Self(Some(client))
    }
}

fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use actix_web::test::TestRequest;

    async fn client_ip(trusted: bool, forwarded: Option<&str>) -> Option<IpAddr> {
        let forwarded_for = ForwardedFor {
            trusted,
            proxies: Arc::new([]),
        };
        client_ip_behind(forwarded_for, "10.0.0.1:5000", forwarded).await
    }

    async fn client_ip_behind(
        forwarded_for: ForwardedFor,
        peer: &str,
        forwarded: Option<&str>,
    ) -> Option<IpAddr> {
        let mut req = TestRequest::default()
            .peer_addr(peer.parse().unwrap())
            .app_data(web::Data::new(forwarded_for));
        if let Some(value) = forwarded {
            req = req.insert_header(("x-forwarded-for", value));
        }
        let (req, mut payload) = req.to_http_parts();
        ClientIp::from_request(&req, &mut payload).await.unwrap().0
    }

    #[actix_web::test]
    async fn the_peer_address_is_used_unless_a_proxy_is_trusted() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(false, Some("203.0.113.9")).await, Some(peer));
        assert_eq!(client_ip(true, None).await, Some(peer));
        assert_eq!(client_ip(true, Some("garbage")).await, Some(peer));
    }

    #[actix_web::test]
    async fn behind_a_trusted_proxy_the_entry_it_appended_is_used() {
        let ip = client_ip(true, Some("1.2.3.4, 203.0.113.9")).await;
        assert_eq!(
            ip,
            Some("203.0.113.9".parse().unwrap()),
            "not the client-written 1.2.3.4"
        );
        let v6 = client_ip(true, Some("[2001:db8::1]:4711")).await;
        assert_eq!(v6, Some("2001:db8::1".parse().unwrap()));
    }

    fn only(proxies: &[&str]) -> ForwardedFor {
        ForwardedFor {
            trusted: true,
            proxies: proxies.iter().map(|p| IpRange::parse(p).unwrap()).collect(),
        }
    }

    #[actix_web::test]
    async fn with_trusted_proxies_listed_the_header_of_any_other_peer_is_ignored() {
        let behind = only(&["10.0.0.1"]);
        let from_proxy = client_ip_behind(behind.clone(), "10.0.0.1:5000", Some("203.0.113.9"));
        assert_eq!(from_proxy.await, Some("203.0.113.9".parse().unwrap()));
        let direct = client_ip_behind(behind, "198.51.100.7:5000", Some("203.0.113.9"));
        assert_eq!(
            direct.await,
            Some("198.51.100.7".parse().unwrap()),
            "a client that reaches the node directly cannot pick its IP"
        );
    }

    #[actix_web::test]
    async fn a_chain_of_trusted_proxies_is_walked_back_to_the_first_untrusted_address() {
        let chain = only(&["10.0.0.0/8"]);
        let ip = client_ip_behind(
            chain.clone(),
            "10.0.0.1:5000",
            Some("1.2.3.4, 203.0.113.9, 10.9.9.9"),
        );
        assert_eq!(ip.await, Some("203.0.113.9".parse().unwrap()));
        let garbage = client_ip_behind(chain, "10.0.0.1:5000", Some("203.0.113.9, junk, 10.9.9.9"));
        assert_eq!(
            garbage.await,
            Some("10.9.9.9".parse().unwrap()),
            "past an unreadable entry nothing is vouched for"
        );
    }

    #[test]
    fn ranges_parse_addresses_and_cidr_prefixes_and_refuse_the_rest() {
        let net = IpRange::parse("192.168.0.0/16").unwrap();
        assert!(net.contains("192.168.44.1".parse().unwrap()));
        assert!(!net.contains("192.169.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:192.168.1.1".parse().unwrap()),
            "v4-mapped"
        );
        let one = IpRange::parse(" 127.0.0.1 ").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(IpRange::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "fd00::/129", "example.com", "10.0.0.0/x"] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
