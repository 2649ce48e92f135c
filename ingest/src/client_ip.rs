//! The visitor's address behind load balancers. A forwarding header (`X-Forwarded-For`
//! or RFC 7239 `Forwarded`) is believed only when the connection comes from a trusted
//! proxy, and then only as far as trusted proxies wrote it: its hops are read right to
//! left, past every trusted address, and the first untrusted one is the client. The
//! leftmost entry is whatever the client sent, so it is never taken on its own word.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    header: HeaderName,
    rfc7239: bool,
}

impl ClientIp {
    /// Believes `header` (x-forwarded-for, or forwarded) from the `trusted` networks.
    pub fn new(trusted: Vec<IpNet>, header: HeaderName) -> Self {
        let rfc7239 = header == axum::http::header::FORWARDED;
        Self {
            trusted,
            header,
            rfc7239,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the connection's `peer`.
    pub fn resolve(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut nearest = peer;
        // Every instance of the header, in order, then each one's hops.
        let values: Vec<&str> = headers
            .get_all(&self.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
            let Some(ip) = self.parse_hop(hop) else {
                // A hop we cannot read: nothing to its left can be believed.
                return nearest;
            };
            if !self.trusts(ip) {
                return ip;
            }
            nearest = ip;
        }
        nearest
    }

    fn parse_hop(&self, hop: &str) -> Option<IpAddr> {
        if self.rfc7239 {
            forwarded_for(hop)
        } else {
            hop.trim().parse().ok()
        }
    }
}

/// The address in one `Forwarded` element's `for=` (quoted, bracketed, with a port, or
/// not); `None` for `unknown`, obfuscated names, or no `for`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value.trim_matches('"');
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    match value.split_once(':') {
        Some((v4, _port)) => v4.parse().ok(),
        None => value.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn behind(trusted: &[&str], header: &str) -> ClientIp {
        ClientIp::new(
            trusted.iter().map(|n| n.parse().unwrap()).collect(),
            HeaderName::from_bytes(header.as_bytes()).unwrap(),
        )
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let lb = behind(&["10.0.0.0/8"], "x-forwarded-for");
        // The client claims 1.2.3.4; the load balancer saw 203.0.113.9.
        let h = headers("x-forwarded-for", &["1.2.3.4, 203.0.113.9, 10.0.0.7"]);
        assert_eq!(lb.resolve(&h, ip("10.0.0.2")), ip("203.0.113.9"));
        // Several header lines read as one list.
        let h = headers("x-forwarded-for", &["1.2.3.4", "203.0.113.9"]);
        assert_eq!(lb.resolve(&h, ip("10.0.0.2")), ip("203.0.113.9"));
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let lb = behind(&["10.0.0.0/8"], "x-forwarded-for");
        let h = headers("x-forwarded-for", &["1.2.3.4"]);
        assert_eq!(lb.resolve(&h, ip("198.51.100.1")), ip("198.51.100.1"));
        let nobody = behind(&[], "x-forwarded-for");
        assert_eq!(nobody.resolve(&h, ip("10.0.0.2")), ip("10.0.0.2"));
    }

    #[test]
    fn garbage_stops_the_walk_at_the_last_trusted_hop() {
        let lb = behind(&["10.0.0.0/8"], "x-forwarded-for");
        let h = headers("x-forwarded-for", &["1.2.3.4, not-an-ip, 10.0.0.9"]);
        assert_eq!(lb.resolve(&h, ip("10.0.0.2")), ip("10.0.0.9"));
        let none = headers("x-forwarded-for", &[]);
        assert_eq!(lb.resolve(&none, ip("10.0.0.2")), ip("10.0.0.2"));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let lb = behind(&["127.0.0.1/32"], "x-forwarded-for");
        let h = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(lb.resolve(&h, ip("::ffff:127.0.0.1")), ip("198.51.100.7"));
    }

    #[test]
    fn forwarded_elements_are_read_as_rfc_7239_writes_them() {
        let lb = behind(&["10.0.0.0/8", "2001:db8:cafe::/48"], "forwarded");
        let h = headers(
            "forwarded",
            &[r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#],
        );
        assert_eq!(lb.resolve(&h, ip("10.0.0.2")), ip("192.0.2.60"));
        let h = headers("forwarded", &["for=198.51.100.17:8080"]);
        assert_eq!(lb.resolve(&h, ip("10.0.0.2")), ip("198.51.100.17"));
        let h = headers("forwarded", &["for=unknown, for=10.1.1.1"]);
        assert_eq!(lb.resolve(&h, ip("10.0.0.2")), ip("10.1.1.1"));
    }
}
