//! Where a webhook may be sent. By default only `https` URLs whose host
//! resolves to public addresses: the resolver below hands the HTTP client
//! only those, so the address checked is the one connected to, and a name
//! that resolves to the service's own network is refused.
//! `--webhooks-allow-private` admits `http`, loopback and private
//! addresses, for tests and on-premises receivers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// A URL a webhook may not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    /// Not a URL.
    #[error("`{0}` is not a URL")]
    Unparsable(String),
    /// Not `https` (or `http` where private addresses are allowed).
    #[error("a webhook URL must use https, got `{0}`")]
    Scheme(String),
    /// User name or password in the URL.
    #[error("a webhook URL must not carry credentials")]
    Credentials,
    /// A loopback, private, link-local or otherwise non-public address.
    #[error(
        "`{0}` is not a public address (start the service with --webhooks-allow-private to allow it)"
    )]
    Private(String),
}

/// Checks `text` as a webhook URL: its scheme, and its host when that is
/// an address (a name is checked when it is resolved, at each delivery).
pub fn check_url(text: &str, allow_private: bool) -> Result<Url, BadUrl> {
    let url = Url::parse(text).map_err(|_| BadUrl::Unparsable(text.to_owned()))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        other => return Err(BadUrl::Scheme(other.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BadUrl::Credentials);
    }
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
        Some(Host::Domain(_)) => None,
        None => return Err(BadUrl::Unparsable(text.to_owned())),
    };
    if let Some(ip) = ip
        && !allow_private
        && !is_public(ip)
    {
        return Err(BadUrl::Private(ip.to_string()));
    }
    Ok(url)
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// shared (CGNAT), link-local, unspecified, broadcast, multicast,
/// documentation, benchmarking or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    // IPv4-compatible (::a.b.c.d) and 6to4 (2002:a.b.c.d::) carry an IPv4
    // address: judged by it.
    if first == 0x2002 {
        let [_, hi, lo, ..] = ip.segments();
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if let Some(v4) = ip.to_ipv4() {
        return !ip.is_unspecified() && !ip.is_loopback() && is_public_v4(v4);
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first == 0x2001 && second == 0x0000) // Teredo
        || (first == 0x2001 && second == 0x0002) // benchmarking
        || first == 0x0064 // NAT64
        || first == 0x0100) // discard
}

/// The resolver the delivery client uses: the system's, keeping only the
/// addresses a webhook may reach.
#[derive(Debug, Clone, Copy)]
pub struct Resolver {
    /// Keep loopback and private addresses too.
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("`{host}` resolves to no address").into()
                } else {
                    format!(
                        "`{host}` resolves only to addresses that are not public (start the service with --webhooks-allow-private to allow them)"
                    )
                    .into()
                };
                return Err(err);
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_to_public_addresses_by_default() {
        assert!(check_url("https://hooks.example.com/q", false).is_ok());
        assert!(check_url("https://93.184.216.34/q", false).is_ok());
        assert!(check_url("https://[2606:4700::1111]/q", false).is_ok());
        assert!(check_url("https://[2002:5db8:d822::1]/q", false).is_ok());
        for (url, why) in [
            ("http://hooks.example.com/q", "https"),
            ("ftp://hooks.example.com/q", "https"),
            ("https://127.0.0.1/q", "public"),
            ("https://localhost:8443/q", "public"),
            ("https://10.1.2.3/q", "public"),
            ("https://172.16.0.1/q", "public"),
            ("https://192.168.1.1/q", "public"),
            ("https://169.254.169.254/latest/meta-data", "public"),
            ("https://100.64.0.1/q", "public"),
            ("https://0.0.0.0/q", "public"),
            ("https://[::1]/q", "public"),
            ("https://[fd00::1]/q", "public"),
            ("https://[fe80::1]/q", "public"),
            ("https://[::ffff:127.0.0.1]/q", "public"),
            ("https://[::127.0.0.1]/q", "public"),
            ("https://[2002:c0a8:101::1]/q", "public"),
            ("https://[fec0::1]/q", "public"),
            ("https://[2001::1]/q", "public"),
            ("https://user:pw@hooks.example.com/q", "credentials"),
            ("not a url", "not a URL"),
        ] {
            let err = check_url(url, false).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn the_flag_admits_http_loopback_and_private_addresses() {
        for url in [
            "http://127.0.0.1:9000/q",
            "https://10.1.2.3/q",
            "http://localhost/q",
        ] {
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(check_url("ftp://127.0.0.1/q", true).is_err());
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_public_addresses() {
        use reqwest::dns::Resolve;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let refused = Resolver {
            allow_private: false,
        }
        .resolve(name("localhost"))
        .await;
        let Err(err) = refused else {
            panic!("localhost resolved to a public address")
        };
        assert!(err.to_string().contains("not public"), "{err}");
        let allowed = Resolver {
            allow_private: true,
        }
        .resolve(name("localhost"))
        .await
        .unwrap();
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }
}
