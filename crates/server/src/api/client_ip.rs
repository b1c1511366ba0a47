//! `ClientIp`: the address a request came from, for per-IP limits.

use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::{web, FromRequest, HttpRequest};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};

/// Whether to believe `X-Forwarded-For` (`http.trust_forwarded_for`), as app data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardedFor {
    /// `true` only behind a reverse proxy that appends the peer it saw to the header.
    pub trusted: bool,
}

/// The client's IP: the TCP peer, or behind a trusted proxy the last `X-Forwarded-For`
/// entry (the one that proxy appended: entries to its left were written by the client
/// and prove nothing). `None` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequest for ClientIp {
    type Error = Infallible;
    type Future = Ready<Result<Self, Infallible>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let forwarded_for = req
            .app_data::<web::Data<ForwardedFor>>()
            .map_or_else(ForwardedFor::default, |f| *f.get_ref());
        ready(Ok(Self::resolve(
            req.headers(),
            req.peer_addr(),
            forwarded_for,
        )))
    }
}

impl ClientIp {
    /// The client's IP from a request's headers and TCP peer.
    pub fn resolve(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        forwarded_for: ForwardedFor,
    ) -> Self {
        let forwarded = forwarded_for
            .trusted
            .then(|| last_forwarded_for(headers))
            .flatten();
        Self(forwarded.or_else(|| peer.map(|addr| addr.ip())))
    }
}

fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let header = headers.get("x-forwarded-for")?.to_str().ok()?;
    let last = header.rsplit(',').next()?.trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use actix_web::test::TestRequest;

    async fn client_ip(trusted: bool, forwarded: Option<&str>) -> Option<IpAddr> {
        let mut req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .app_data(web::Data::new(ForwardedFor { trusted }));
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
}
