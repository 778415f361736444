//! Finding the broker when `broker.url` is empty: browse `_mqtt._tcp` over
//! mDNS for as long as the worker runs, keep the best broker that accepts
//! connections, and say when it changes (the orchestrator restarted on
//! another port or machine).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};
use tokio::sync::{watch, Notify};
use transcode_common::mqtt_url::{
    BrokerAddr, MDNS_SERVICE_TYPE as SERVICE_TYPE, MDNS_TXT_PREFIX as TXT_PREFIX,
};

/// One advertised broker.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub fullname: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// The topic prefix in its TXT record, when it is one of ours.
    pub prefix: Option<String>,
}

/// Candidate addresses, best first: brokers that carry our topic prefix
/// before foreign ones, IPv4 before IPv6, then by name so the choice is
/// stable.
pub fn candidates(services: &[Service], our_prefix: &str) -> Vec<(SocketAddr, String)> {
    let mut ordered: Vec<&Service> = services.iter().filter(|s| s.port > 0).collect();
    ordered.sort_by(|a, b| {
        let ours = |s: &Service| s.prefix.as_deref() != Some(our_prefix);
        ours(a)
            .cmp(&ours(b))
            .then_with(|| a.fullname.cmp(&b.fullname))
    });
    let mut out = Vec::new();
    for s in ordered {
        let mut addrs = s.addresses.clone();
        addrs.sort_by_key(|a| (a.is_ipv6(), *a));
        for ip in addrs {
            if let IpAddr::V6(v6) = ip {
                // Link-local addresses need a scope id a URL cannot carry.
                if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                    continue;
                }
            }
            out.push((SocketAddr::new(ip, s.port), s.fullname.clone()));
        }
    }
    out
}

async fn reachable(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(700),
            tokio::net::TcpStream::connect(addr)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Browses until the process ends, sending the best reachable broker into
/// `found` whenever it changes. `rescan` asks for a new look (the current
/// broker stopped answering).
pub async fn watch_brokers(
    our_prefix: String,
    found: watch::Sender<Option<BrokerAddr>>,
    rescan: Arc<Notify>,
) {
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot start mDNS to find the broker ({e}); set broker.url");
            return;
        }
    };
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot browse for _mqtt._tcp ({e}); set broker.url");
            return;
        }
    };
    let mut services: HashMap<String, Service> = HashMap::new();
    let mut current: Option<SocketAddr> = None;
    let mut reminder = tokio::time::interval(Duration::from_secs(10));
    reminder.tick().await;
    loop {
        tokio::select! {
            event = events.recv_async() => match event {
                Ok(ServiceEvent::ServiceResolved(info)) => {
                    let service = Service {
                        fullname: info.fullname.clone(),
                        addresses: info.get_addresses().iter().map(|a| a.to_ip_addr()).collect(),
                        port: info.get_port(),
                        prefix: info.get_property_val_str(TXT_PREFIX).map(str::to_string),
                    };
                    tracing::debug!(?service, "mDNS: broker resolved");
                    if service.prefix.as_deref() != Some(our_prefix.as_str())
                        && !services.contains_key(&service.fullname)
                    {
                        tracing::info!(
                            instance = %service.fullname,
                            "ignoring an MQTT broker that does not carry prefix={our_prefix} in its mDNS TXT record; set broker.url to use it"
                        );
                    }
                    services.insert(service.fullname.clone(), service);
                }
                Ok(ServiceEvent::ServiceRemoved(_, fullname)) => {
                    tracing::info!(%fullname, "mDNS: a broker went away");
                    services.remove(&fullname);
                }
                Ok(_) => continue,
                Err(_) => {
                    tracing::error!("mDNS browsing stopped; set broker.url");
                    return;
                }
            },
            _ = rescan.notified() => {}
            _ = reminder.tick() => {
                if current.is_none() {
                    tracing::info!("still looking for an MQTT broker over mDNS (_mqtt._tcp); set broker.url to skip this");
                }
                continue;
            }
        }
        let list: Vec<Service> = services.values().cloned().collect();
        for (addr, name) in candidates(&list, &our_prefix) {
            if reachable(addr).await {
                if current != Some(addr) {
                    tracing::info!(broker = %addr, instance = %name, "found the MQTT broker over mDNS");
                    current = Some(addr);
                    let _ = found.send(Some(BrokerAddr {
                        host: addr.ip().to_string(),
                        port: addr.port(),
                        tls: false,
                    }));
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, addrs: &[&str], port: u16, prefix: Option<&str>) -> Service {
        Service {
            fullname: name.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            port,
            prefix: prefix.map(str::to_string),
        }
    }

    #[test]
    fn only_ours_ipv4_first_no_link_local() {
        let services = vec![
            svc("house-mosquitto", &["10.0.0.9"], 1883, None),
            svc(
                "transcode-orchestrator on udoo",
                &["fe80::1", "2001:db8::2", "10.0.0.2"],
                1884,
                Some("transcode"),
            ),
            svc("other-system", &["10.0.0.3"], 1885, Some("zigbee2mqtt")),
            svc("broken", &["10.0.0.4"], 0, Some("transcode")),
        ];
        let got: Vec<String> = candidates(&services, "transcode")
            .iter()
            .map(|(a, _)| a.to_string())
            .collect();
        assert_eq!(
            got,
            vec![
                "10.0.0.2:1884",
                "[2001:db8::2]:1884",
                "10.0.0.9:1883",
                "10.0.0.3:1885"
            ]
        );
        assert!(candidates(&[], "transcode").is_empty());
    }
}
