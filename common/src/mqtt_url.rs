//! Broker addresses as people write them: `mqtt://host:port`, `tcp://host`,
//! or just `host:port`; `mqtts://host` (or `ssl://`) for TLS.

/// The DNS-SD type under which brokers are advertised over mDNS.
pub const MDNS_SERVICE_TYPE: &str = "_mqtt._tcp.local.";
/// The TXT key of our advertisement that carries the topic prefix, so a
/// worker can tell its orchestrator's broker from another one on the LAN.
pub const MDNS_TXT_PREFIX: &str = "prefix";

/// A broker address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: the connection is TLS, the broker's certificate checked
    /// against `broker.ca_file` or this machine's roots.
    pub tls: bool,
}

/// The usual port of MQTT over TLS.
pub const TLS_PORT: u16 = 8883;

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Parses a broker URL; the port defaults to 1883, or 8883 with TLS.
pub fn parse(url: &str) -> Result<BrokerAddr, String> {
    let url = url.trim();
    let (rest, tls) = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => (rest, false),
        Some(("mqtts" | "ssl", rest)) => (rest, true),
        Some((scheme, _)) => {
            return Err(format!(
                "broker URL {url:?} uses {scheme}://; use mqtt:// (or tcp://), or mqtts:// for TLS"
            ))
        }
        None => (url, false),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(format!("broker URL {url:?} names no host"));
    }
    if rest.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "broker URL {url:?} must be mqtt://host:port; put credentials in broker.username and broker.password"
        ));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("broker URL {url:?} has an unclosed '['"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("broker URL {url:?} is not host:port")),
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("broker URL {url:?} names no host"));
    }
    let port = match port {
        None if tls => TLS_PORT,
        None => 1883,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("broker URL {url:?} has an invalid port {p:?}")),
        },
    };
    Ok(BrokerAddr { host, port, tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        // URL -> (host, port, TLS)
        type Want<'a> = Option<(&'a str, u16, bool)>;
        let cases: &[(&str, Want)] = &[
            ("mqtt://udoo:1883", Some(("udoo", 1883, false))),
            ("mqtt://udoo", Some(("udoo", 1883, false))),
            ("tcp://10.0.0.2:1884/", Some(("10.0.0.2", 1884, false))),
            ("127.0.0.1:2000", Some(("127.0.0.1", 2000, false))),
            ("mqtt://[::1]:1999", Some(("::1", 1999, false))),
            ("[::1]", Some(("::1", 1883, false))),
            ("mqtts://udoo", Some(("udoo", 8883, true))),
            ("ssl://udoo:9883", Some(("udoo", 9883, true))),
            ("mqtts://[::1]:1999", Some(("::1", 1999, true))),
            ("", None),
            ("mqtt://", None),
            ("mqtts://", None),
            ("http://udoo", None),
            ("wss://udoo", None),
            ("mqtt://udoo:0", None),
            ("mqtt://udoo:99999", None),
            ("mqtt://udoo:abc", None),
            ("mqtt://user:pw@udoo", None),
            ("mqtt://:1883", None),
            ("mqtt://[::1", None),
        ];
        for (url, want) in cases {
            let got = parse(url);
            assert_eq!(
                got.as_ref().ok().map(|a| (a.host.as_str(), a.port, a.tls)),
                *want,
                "{url:?}: {got:?}"
            );
            // Written back as it was meant.
            if let Ok(a) = &got {
                assert_eq!(parse(&a.to_string()).as_ref(), Ok(a), "{a}");
            }
        }
    }
}
