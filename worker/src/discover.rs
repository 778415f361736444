//! Finding the broker when `broker.url` is empty: browse `_mqtt._tcp` over
//! mDNS for as long as the worker runs and say which broker to use.
//!
//! - Only a broker whose TXT record carries our topic prefix is a candidate
//!   ([`candidates`]): a foreign one is never tried, not even probed.
//! - The broker in use is kept while it is advertised and answers (the
//!   connection is up, or a probe connects), so two live brokers of ours
//!   never make a worker flap ([`choose`]).
//! - It is left for the first candidate that answers when its advertisement
//!   goes or moves (the orchestrator came back elsewhere), when it stops
//!   answering, or when it refused our login: a broker that refused us is no
//!   candidate for [`REFUSAL_HOLD`] ([`Refusals`]).
//!
//! The choice is pure and tested by table; [`watch_brokers`] does the IO and
//! `common::mqtt::Redirect` moves the connection.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mdns_sd::{ScopedIp, ServiceDaemon, ServiceEvent};
use tokio::sync::{mpsc, watch};
use transcode_common::mqtt_url::{
    BrokerAddr, MDNS_SERVICE_TYPE as SERVICE_TYPE, MDNS_TXT_PREFIX as TXT_PREFIX,
};
use transcode_common::validate;

/// How long a broker that refused our login is no candidate.
pub const REFUSAL_HOLD: Duration = Duration::from_secs(60);
/// How often the choice is looked at again while the connection is down
/// or its broker is no longer advertised.
const RECHECK: Duration = Duration::from_secs(2);
/// How long a probe waits for a TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);
/// Brokers of ours remembered at once; more are ignored (a LAN flooding
/// `_mqtt._tcp` must not grow the worker without bound).
const MAX_OURS: usize = 64;
/// Foreign instances named in the log once each, at most.
const MAX_FOREIGN_NOTED: usize = 256;
/// The longest topic prefix read from a TXT record.
const MAX_PREFIX_LEN: usize = 128;

/// One advertised broker, as its mDNS record says.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The instance's full name, made printable and cut short: it names the
    /// broker in logs and orders the candidates.
    pub fullname: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// The topic prefix of its TXT record; `None` when absent or unreadable.
    pub prefix: Option<String>,
}

impl Service {
    /// Whether the broker says it carries our topics.
    pub fn is_ours(&self, our_prefix: &str) -> bool {
        self.prefix.as_deref() == Some(our_prefix)
    }

    /// Whether `addr` is one of the broker's addresses.
    fn serves(&self, addr: SocketAddr) -> bool {
        self.port == addr.port() && self.addresses.contains(&addr.ip())
    }
}

/// A TXT value of `prefix` as text; `None` when the key is missing, has no
/// value, is not UTF-8 or is too long to be a topic prefix.
pub fn txt_prefix(raw: Option<Option<&[u8]>>) -> Option<String> {
    let bytes = raw.flatten()?;
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.is_empty() && text.len() <= MAX_PREFIX_LEN).then(|| text.to_string())
}

/// A name from the network as it may appear in a log line: control
/// characters replaced, cut at 100 characters.
pub fn printable(raw: &str) -> String {
    let clean: String = raw
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    validate::truncate(&clean, 100)
}

/// Whether a URL built from `ip` reaches a broker: not unspecified,
/// multicast or broadcast, and no IPv6 link-local address (it needs a scope
/// id a URL cannot carry).
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => {
            !(v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// An address worth trying, with the instance that advertises it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub addr: SocketAddr,
    pub instance: String,
}

/// The addresses worth trying, best first: only brokers that carry our
/// topic prefix, none that `held` says refused us lately, ordered by
/// instance name (a stable choice), IPv4 before IPv6 within one; no port 0,
/// no address that is not [`usable`], each address once.
pub fn candidates(
    services: &[Service],
    our_prefix: &str,
    held: impl Fn(SocketAddr) -> bool,
) -> Vec<Candidate> {
    let mut ours: Vec<&Service> = services
        .iter()
        .filter(|s| s.port > 0 && s.is_ours(our_prefix))
        .collect();
    ours.sort_by(|a, b| a.fullname.cmp(&b.fullname));
    let mut out: Vec<Candidate> = Vec::new();
    for s in ours {
        let mut ips: Vec<IpAddr> = s
            .addresses
            .iter()
            .copied()
            .filter(|ip| usable(*ip))
            .collect();
        ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
        for ip in ips {
            let addr = SocketAddr::new(ip, s.port);
            if !held(addr) && !out.iter().any(|c| c.addr == addr) {
                out.push(Candidate {
                    addr,
                    instance: s.fullname.clone(),
                });
            }
        }
    }
    out
}

/// The addresses to probe before [`choose`]: none while the broker in use
/// is a candidate and the connection to it is up (a live broker is not
/// knocked at), else every candidate.
pub fn to_probe(
    current: Option<SocketAddr>,
    connected: bool,
    candidates: &[SocketAddr],
) -> Vec<SocketAddr> {
    match current {
        Some(cur) if connected && candidates.contains(&cur) => Vec::new(),
        _ => candidates.to_vec(),
    }
}

/// The broker to use. The current one while it is a candidate (advertised,
/// ours, not refusing) and answers (`connected`, or it is in `answering`);
/// otherwise the first candidate that answers; otherwise still the current
/// one, whose connection keeps retrying (nothing better is known).
pub fn choose(
    current: Option<SocketAddr>,
    connected: bool,
    candidates: &[SocketAddr],
    answering: &HashSet<SocketAddr>,
) -> Option<SocketAddr> {
    if let Some(cur) = current {
        if candidates.contains(&cur) && (connected || answering.contains(&cur)) {
            return Some(cur);
        }
    }
    candidates
        .iter()
        .copied()
        .find(|a| answering.contains(a))
        .or(current)
}

/// Brokers that refused our login lately, each until its hold ends.
#[derive(Debug, Default)]
pub struct Refusals {
    until: HashMap<SocketAddr, Instant>,
}

impl Refusals {
    /// Holds `addr` back for [`REFUSAL_HOLD`] from `now` (again, if it
    /// refused before). True when it was not held already: a log line's
    /// worth.
    pub fn refuse(&mut self, addr: SocketAddr, now: Instant) -> bool {
        let fresh = !self.holds(addr, now);
        self.until.retain(|_, end| *end > now);
        self.until.insert(addr, now + REFUSAL_HOLD);
        fresh
    }

    /// Whether `addr` refused us less than [`REFUSAL_HOLD`] before `now`.
    pub fn holds(&self, addr: SocketAddr, now: Instant) -> bool {
        self.until.get(&addr).is_some_and(|end| *end > now)
    }

    /// `addr` accepted us: it is a candidate again.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.until.remove(&addr);
    }
}

/// What the connection tells the finder.
pub struct Links {
    /// Whether the MQTT session is up (the app sets it on every CONNACK
    /// and every loss).
    pub connected: watch::Receiver<bool>,
    /// Brokers that refused us at CONNECT (`mqtt::Redirect::refused`).
    pub refused: mpsc::UnboundedReceiver<BrokerAddr>,
}

/// The finder's picture of the LAN.
struct Finder {
    worker_id: String,
    prefix: String,
    /// Advertised brokers of ours, by instance name.
    ours: HashMap<String, Service>,
    /// Foreign instances already named in the log.
    foreign_noted: HashSet<String>,
    refusals: Refusals,
    /// The broker last published (the one the connection uses).
    current: Option<SocketAddr>,
    connected: bool,
}

impl Finder {
    fn on_resolved(&mut self, service: Service) {
        let (worker_id, instance) = (&self.worker_id, &service.fullname);
        if !service.is_ours(&self.prefix) {
            let was_ours = self.ours.remove(instance).is_some();
            let first_time = self.foreign_noted.len() < MAX_FOREIGN_NOTED
                && self.foreign_noted.insert(instance.clone());
            if was_ours || first_time {
                tracing::info!(
                    %worker_id,
                    %instance,
                    txt_prefix = ?service.prefix,
                    "not using the MQTT broker {instance} advertised over mDNS: its TXT record does not carry prefix={}, so it is not this system's orchestrator; set broker.url to use it",
                    self.prefix
                );
            }
            return;
        }
        if !self.ours.contains_key(instance) && self.ours.len() >= MAX_OURS {
            tracing::warn!(%worker_id, %instance, "more than {MAX_OURS} MQTT brokers with prefix={} are advertised over mDNS; ignoring {instance}", self.prefix);
            return;
        }
        match self.current {
            Some(cur) if !self.ours.contains_key(instance) && !service.serves(cur) => {
                tracing::info!(%worker_id, %instance, port = service.port, "another broker of ours is advertised over mDNS ({instance}); staying on {cur} while it is advertised and answers")
            }
            _ => tracing::debug!(%worker_id, ?service, "mDNS: broker resolved"),
        }
        self.ours.insert(instance.clone(), service);
    }

    fn on_removed(&mut self, fullname: &str) {
        let instance = printable(fullname);
        let Some(gone) = self.ours.remove(&instance) else {
            return;
        };
        let worker_id = &self.worker_id;
        match self.current {
            Some(cur) if gone.serves(cur) => {
                tracing::info!(%worker_id, %instance, broker = %cur, "the MQTT broker in use ({instance}) is no longer advertised over mDNS; moving to another broker of ours as soon as one answers")
            }
            _ => tracing::info!(%worker_id, %instance, "mDNS: a broker of ours went away"),
        }
    }

    fn on_refused(&mut self, broker: &BrokerAddr, now: Instant) {
        let Ok(ip) = broker.host.parse::<IpAddr>() else {
            tracing::debug!(worker_id = %self.worker_id, %broker, "a refusal from a broker not found over mDNS");
            return;
        };
        let addr = SocketAddr::new(ip, broker.port);
        if !self.refusals.refuse(addr, now) {
            return;
        }
        let instance = self.ours.values().find(|s| s.serves(addr)).map_or_else(
            || "an instance no longer advertised".to_string(),
            |s| s.fullname.clone(),
        );
        let worker_id = &self.worker_id;
        tracing::warn!(
            %worker_id,
            broker = %addr,
            %instance,
            "the MQTT broker {addr} ({instance}) refused worker {worker_id}: check that broker.username and broker.password are the login the orchestrator made for it (`transcode-orchestrator add-worker {worker_id}`, then `transcode-worker join`), and that this broker is the orchestrator's; for the next {} s it is tried only while no other broker of ours answers",
            REFUSAL_HOLD.as_secs()
        );
    }

    /// The connection is up: its broker accepted us.
    fn on_connected(&mut self) {
        if let Some(cur) = self.current {
            self.refusals.forget(cur);
        }
    }

    /// Whether a fresh look can change anything: the connection is down or
    /// its broker is no longer a candidate.
    fn unsettled(&self) -> bool {
        !self.connected
            || !self
                .current
                .is_some_and(|cur| self.ours.values().any(|s| s.serves(cur)))
    }

    /// Looks again; the new broker when the choice changed.
    async fn decide(&mut self) -> Option<Candidate> {
        let now = Instant::now();
        let services: Vec<Service> = self.ours.values().cloned().collect();
        let list = candidates(&services, &self.prefix, |a| self.refusals.holds(a, now));
        let addrs: Vec<SocketAddr> = list.iter().map(|c| c.addr).collect();
        let answering = probe(&to_probe(self.current, self.connected, &addrs)).await;
        let choice = choose(self.current, self.connected, &addrs, &answering)?;
        if Some(choice) == self.current {
            return None;
        }
        let chosen = list.into_iter().find(|c| c.addr == choice)?;
        self.current = Some(choice);
        Some(chosen)
    }
}

/// The addresses among `addrs` that accept a TCP connection, probed at once.
async fn probe(addrs: &[SocketAddr]) -> HashSet<SocketAddr> {
    let mut probes = tokio::task::JoinSet::new();
    for &addr in addrs {
        probes.spawn(async move {
            let connect = tokio::net::TcpStream::connect(addr);
            matches!(
                tokio::time::timeout(PROBE_TIMEOUT, connect).await,
                Ok(Ok(_))
            )
            .then_some(addr)
        });
    }
    let mut answering = HashSet::new();
    while let Some(done) = probes.join_next().await {
        if let Ok(Some(addr)) = done {
            answering.insert(addr);
        }
    }
    answering
}

/// A resolved record as a [`Service`], every field checked.
fn service_of(info: &mdns_sd::ResolvedService) -> Service {
    Service {
        fullname: printable(&info.fullname),
        addresses: info
            .get_addresses()
            .iter()
            .map(ScopedIp::to_ip_addr)
            .collect(),
        port: info.get_port(),
        prefix: txt_prefix(info.get_property_val(TXT_PREFIX)),
    }
}

/// Browses until the process ends, publishing into `found` the broker to
/// use whenever the choice changes.
pub async fn watch_brokers(
    worker_id: String,
    our_prefix: String,
    found: watch::Sender<Option<BrokerAddr>>,
    mut links: Links,
) {
    let daemon = match ServiceDaemon::new() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(%worker_id, "cannot start mDNS to find the broker ({e}); set broker.url");
            return;
        }
    };
    let events = match daemon.browse(SERVICE_TYPE) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%worker_id, "cannot browse for _mqtt._tcp ({e}); set broker.url");
            return;
        }
    };
    let mut finder = Finder {
        worker_id: worker_id.clone(),
        prefix: our_prefix,
        ours: HashMap::new(),
        foreign_noted: HashSet::new(),
        refusals: Refusals::default(),
        current: None,
        connected: false,
    };
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reminder = tokio::time::interval(Duration::from_secs(10));
    recheck.tick().await;
    reminder.tick().await;
    loop {
        tokio::select! {
            event = events.recv_async() => match event {
                Ok(ServiceEvent::ServiceResolved(info)) => finder.on_resolved(service_of(&info)),
                Ok(ServiceEvent::ServiceRemoved(_, fullname)) => finder.on_removed(&fullname),
                Ok(_) => continue,
                Err(_) => {
                    tracing::error!(%worker_id, "mDNS browsing stopped; the worker stays on its current broker; set broker.url");
                    return;
                }
            },
            changed = links.connected.changed() => {
                if changed.is_err() {
                    return;
                }
                finder.connected = *links.connected.borrow_and_update();
                if finder.connected {
                    finder.on_connected();
                    continue;
                }
            }
            Some(broker) = links.refused.recv() => finder.on_refused(&broker, Instant::now()),
            _ = recheck.tick() => {
                if !finder.unsettled() {
                    continue;
                }
            }
            _ = reminder.tick() => {
                if finder.current.is_none() {
                    tracing::info!(%worker_id, "still looking for an MQTT broker with prefix={} over mDNS (_mqtt._tcp); set broker.url to skip this", finder.prefix);
                }
                continue;
            }
        }
        let previous = finder.current;
        let Some(chosen) = finder.decide().await else {
            continue;
        };
        tracing::info!(%worker_id, broker = %chosen.addr, instance = %chosen.instance, ?previous, "found the MQTT broker over mDNS");
        let addr = BrokerAddr {
            host: chosen.addr.ip().to_string(),
            port: chosen.addr.port(),
            tls: false,
        };
        if found.send(Some(addr)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
