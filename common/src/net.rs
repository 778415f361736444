//! The address other machines reach this one at (a worker's stream URLs,
//! the orchestrator's source URLs).

use std::net::IpAddr;

/// Interface name prefixes of container and VM bridges, which a player on
/// the LAN cannot reach.
const VIRTUAL_PREFIXES: [&str; 8] = [
    "docker", "br-", "veth", "virbr", "cni", "flannel", "podman", "vmnet",
];

/// Picks the LAN address from a list of (interface name, address): a private
/// IPv4 address first, then any other non-loopback IPv4, then a global IPv6,
/// then loopback.
pub fn pick_lan_address(interfaces: &[(String, IpAddr)]) -> IpAddr {
    let usable = |(name, ip): &&(String, IpAddr)| {
        !ip.is_loopback()
            && !ip.is_unspecified()
            && !VIRTUAL_PREFIXES.iter().any(|p| name.starts_with(p))
    };
    let v4 = |private: bool| {
        interfaces
            .iter()
            .filter(usable)
            .find_map(|(_, ip)| match ip {
                IpAddr::V4(v4) if v4.is_private() == private && !v4.is_link_local() => Some(*ip),
                _ => None,
            })
    };
    v4(true)
        .or_else(|| v4(false))
        .or_else(|| {
            interfaces
                .iter()
                .filter(usable)
                .find_map(|(_, ip)| match ip {
                    // Not link-local (fe80::/10): those need a scope id in URLs.
                    IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) != 0xfe80 => Some(*ip),
                    _ => None,
                })
        })
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// This machine's LAN address.
pub fn lan_address() -> IpAddr {
    let interfaces: Vec<(String, IpAddr)> = if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| (i.name.clone(), i.ip())).collect())
        .unwrap_or_default();
    pick_lan_address(&interfaces)
}

/// How a host goes into a URL (IPv6 in brackets).
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, &str)]) -> Vec<(String, IpAddr)> {
        items
            .iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn lan_address_preference() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("lo", "127.0.0.1"), ("eth0", "192.168.1.50")],
                "192.168.1.50",
            ),
            (
                &[("docker0", "172.17.0.1"), ("eth0", "10.0.0.5")],
                "10.0.0.5",
            ),
            (
                &[("eth0", "203.0.113.7"), ("wlan0", "192.168.1.9")],
                "192.168.1.9",
            ),
            (&[("eth0", "203.0.113.7")], "203.0.113.7"),
            (
                &[
                    ("eth0", "169.254.3.3"),
                    ("eth1", "fe80::1"),
                    ("eth2", "2001:db8::5"),
                ],
                "2001:db8::5",
            ),
            (&[("lo", "127.0.0.1")], "127.0.0.1"),
            (&[], "127.0.0.1"),
        ];
        for (items, want) in cases {
            assert_eq!(
                pick_lan_address(&list(items)).to_string(),
                *want,
                "{items:?}"
            );
        }
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(url_host("nas.local"), "nas.local");
        assert_eq!(url_host("2001:db8::5"), "[2001:db8::5]");
    }
}
