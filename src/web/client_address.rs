//! The client's address: the socket's peer, or, only when that peer is one of the
//! `[http] trusted_proxies`, the rightmost address of the proxy's header that is not
//! itself a trusted proxy. And how much of it the request log shows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_web::http::header::{FORWARDED, HeaderMap, X_FORWARDED_FOR};
use actix_web::{HttpRequest, web};

use crate::config::{ClientAddressHeader, ClientAddressLogging, HttpConfig};
use crate::state::AppState;

/// The address of the client that sent `request`, as the per-address limits count it.
pub fn client_address(request: &HttpRequest) -> Option<IpAddr> {
    let peer = request.peer_addr()?.ip().to_canonical();
    match request.app_data::<web::Data<AppState>>() {
        Some(state) => Some(resolve(&state.config.http, peer, request.headers())),
        None => Some(peer),
    }
}

/// The client address as the request log shows it (`[http] log_client_address`).
pub fn client_address_for_log(request: &HttpRequest) -> Option<String> {
    let mode = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.config.http.log_client_address)
        .unwrap_or_default();
    client_address(request).and_then(|address| loggable(address, mode))
}

/// `full`: as is; `truncated`: its /24 (IPv4) or /48 (IPv6) network; `none`: nothing.
pub fn loggable(address: IpAddr, mode: ClientAddressLogging) -> Option<String> {
    match mode {
        ClientAddressLogging::Full => Some(address.to_string()),
        ClientAddressLogging::None => None,
        ClientAddressLogging::Truncated => Some(match address {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                format!("{}/24", Ipv4Addr::new(a, b, c, 0))
            }
            IpAddr::V6(v6) => {
                let segments = v6.segments();
                let network = Ipv6Addr::new(segments[0], segments[1], segments[2], 0, 0, 0, 0, 0);
                format!("{network}/48")
            }
        }),
    }
}

/// The peer itself unless it is a trusted proxy; then the hops its header lists, read
/// from the right, up to the first one that is not a trusted proxy. A hop that cannot
/// be read stops the walk at the last trusted one (a proxy's own garbage must not let
/// a client choose its address).
fn resolve(config: &HttpConfig, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |address: &IpAddr| {
        config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(address))
    };
    if !trusted(&peer) {
        return peer;
    }
    let hops = match config.client_address_header {
        ClientAddressHeader::XForwardedFor => x_forwarded_for(headers),
        ClientAddressHeader::Forwarded => forwarded(headers),
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(hop) = hop else {
            return client;
        };
        client = hop;
        if !trusted(&hop) {
            return hop;
        }
    }
    client
}

/// Every hop of every `X-Forwarded-For` line, left to right.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(X_FORWARDED_FOR)
        .flat_map(|value| {
            value
                .to_str()
                .map(|text| text.split(',').map(parse_node).collect::<Vec<_>>())
                .unwrap_or_else(|_| vec![None])
        })
        .collect()
}

/// The `for=` node of every element of every `Forwarded` line (RFC 7239), left to right.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(FORWARDED)
        .flat_map(|value| {
            let Ok(text) = value.to_str() else {
                return vec![None];
            };
            text.split(',')
                .map(|element| {
                    element.split(';').find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| value.trim())
                    })
                })
                .map(|node| node.and_then(parse_node))
                .collect()
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, quoted or not;
/// `unknown` and obfuscated names are `None`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    let address = if let Some(rest) = text.strip_prefix('[') {
        rest.split(']').next()?.parse::<IpAddr>().ok()?
    } else if let Ok(address) = text.parse::<IpAddr>() {
        address
    } else {
        text.parse::<SocketAddr>().ok()?.ip()
    };
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn config(header: ClientAddressHeader) -> HttpConfig {
        HttpConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            client_address_header: header,
            log_client_address: ClientAddressLogging::Truncated,
        }
    }

    fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let spoofed = headers(X_FORWARDED_FOR, &["198.51.100.7"]);
        let peer = ip("203.0.113.9");
        let resolved = resolve(&config(ClientAddressHeader::XForwardedFor), peer, &spoofed);
        assert_eq!(resolved, peer);
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let xff = config(ClientAddressHeader::XForwardedFor);
        // The client wrote the first address itself; the proxies appended the others.
        let chain = headers(X_FORWARDED_FOR, &["1.2.3.4, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(resolve(&xff, ip("10.0.0.1"), &chain), ip("198.51.100.7"));
        let all_trusted = headers(X_FORWARDED_FOR, &["10.9.9.9, 10.1.1.1"]);
        assert_eq!(resolve(&xff, ip("10.0.0.1"), &all_trusted), ip("10.9.9.9"));
        let garbage = headers(X_FORWARDED_FOR, &["198.51.100.7, nonsense"]);
        assert_eq!(resolve(&xff, ip("10.0.0.1"), &garbage), ip("10.0.0.1"));
        assert_eq!(
            resolve(&xff, ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );

        let rfc7239 = config(ClientAddressHeader::Forwarded);
        let chain = headers(
            FORWARDED,
            &[
                "for=1.2.3.4, for=\"[2001:db8:cafe::17]:4711\";proto=https",
                "for=10.2.2.2;by=10.0.0.1",
            ],
        );
        assert_eq!(
            resolve(&rfc7239, ip("::1"), &chain),
            ip("2001:db8:cafe::17")
        );
        // The other header is not read.
        let other = headers(X_FORWARDED_FOR, &["198.51.100.7"]);
        assert_eq!(resolve(&rfc7239, ip("::1"), &other), ip("::1"));
    }

    #[test]
    fn logs_keep_what_the_operator_chose() {
        let v4 = ip("198.51.100.7");
        let v6 = ip("2001:db8:cafe:1:2:3:4:5");
        assert_eq!(
            loggable(v4, ClientAddressLogging::Truncated).unwrap(),
            "198.51.100.0/24"
        );
        assert_eq!(
            loggable(v6, ClientAddressLogging::Truncated).unwrap(),
            "2001:db8:cafe::/48"
        );
        assert_eq!(
            loggable(v4, ClientAddressLogging::Full).unwrap(),
            "198.51.100.7"
        );
        assert_eq!(loggable(v6, ClientAddressLogging::None), None);
    }
}
