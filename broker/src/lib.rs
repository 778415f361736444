//! The embedded MQTT broker: rumqttd, configured from our own settings.
//!
//! rumqttd's `Broker::start()` blocks forever, has no shutdown and only logs a
//! failed bind (see NOTES.md). So [`start`] checks the port itself first,
//! runs the broker on its own thread (the process exit is its shutdown), and
//! returns only once the listener accepts connections.
//!
//! [`guard`] is the gate in front of its router: with a [`guard::Policy`],
//! every client's publishes, last will and subscriptions are checked against
//! its login (rumqttd itself has no access rules).
//!
//! [`tap`] copies chosen publishes (the workers' heartbeats) for the
//! embedding process as they arrive; [`local`] is that process's own
//! client, in memory.
//!
//! [`mdns`] advertises it on the LAN as `_mqtt._tcp`.
//!
//! The broker keeps its state in memory only; the orchestrator's job store is
//! the truth, and workers re-publish their retained topics after reconnecting.

pub mod guard;
pub mod local;
pub mod mdns;
mod nodelay;
pub mod tap;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::protocol::v4::V4;
use rumqttd::{Config, ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};

/// Decides whether a connection may log in: (client id, username,
/// password). A connection without a login is refused when one is set.
#[derive(Clone)]
pub struct Authenticator(pub Arc<LoginCheck>);

/// (client id, username, password) -> may log in.
pub type LoginCheck = dyn Fn(&str, &str, &str) -> bool + Send + Sync;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator")
    }
}

/// What the orchestrator decides about its broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Address the MQTT 3.1.1 listener binds.
    pub listen: SocketAddr,
    /// When set, every client must log in with these credentials.
    pub credentials: Option<(String, String)>,
    /// When set, it decides every login (and `credentials` is not used).
    pub authenticator: Option<Authenticator>,
    /// How many clients may be connected at once.
    pub max_connections: usize,
    /// Largest publish the broker accepts, in bytes. Larger ones close the
    /// publisher's connection.
    pub max_payload_bytes: usize,
    /// When set, what each login may publish and subscribe to.
    pub gate: Option<Arc<guard::Gate>>,
    /// When set, copies of the publishes it matches, for this process.
    pub tap: Option<Arc<tap::Tap>>,
}

impl BrokerSettings {
    /// Defaults sized for a household: hundreds of workers, small payloads.
    pub fn new(listen: SocketAddr) -> BrokerSettings {
        BrokerSettings {
            listen,
            credentials: None,
            authenticator: None,
            max_connections: 1024,
            max_payload_bytes: 2 * 1024 * 1024,
            gate: None,
            tap: None,
        }
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen for MQTT on {addr}: {reason}. Is another broker (mosquitto?) already running there? Stop it, pick another broker.listen, or set broker.embedded = false and broker.url to use it")]
    PortUnavailable { addr: SocketAddr, reason: String },
    #[error("the embedded broker did not start listening on {0} within 10 s")]
    NotReady(SocketAddr),
    #[error("the embedded broker could not start: {0}")]
    Start(String),
}

/// A running embedded broker. Dropping it does not stop the broker: rumqttd
/// cannot be stopped, so it lives as long as the process.
pub struct RunningBroker {
    /// Where clients of other processes on this machine connect (loopback
    /// when the listener binds every interface).
    pub connect_addr: SocketAddr,
    links: local::LinkMaker,
}

impl std::fmt::Debug for RunningBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningBroker")
            .field("connect_addr", &self.connect_addr)
            .finish_non_exhaustive()
    }
}

impl RunningBroker {
    /// A client of this process, linked to the router in memory (see
    /// [`local`]); `name` starts its client id.
    pub fn local_client(
        &self,
        name: &str,
    ) -> Result<(local::LocalClient, local::LocalEvents), local::LocalError> {
        local::connect(&self.links, name)
    }
}

/// The size of one segment of a filter's log in the broker's memory.
pub const SEGMENT_BYTES: usize = 256 * 1024;
/// Segments a filter's log keeps (the one being written included): about
/// 1 MiB, each segment overrun by at most one message.
pub const SEGMENTS_PER_TOPIC: usize = 4;

/// Builds the rumqttd configuration from our settings.
pub fn rumqttd_config(settings: &BrokerSettings) -> Config {
    let mut connections = ConnectionSettings {
        // Time a new socket has to send CONNECT.
        connection_timeout_ms: 5_000,
        max_payload_size: settings.max_payload_bytes,
        // Also the cap on retained messages sent to a new QoS 1
        // subscription; we subscribe to wildcards at QoS 0 (NOTES.md).
        max_inflight_count: 100,
        auth: settings
            .credentials
            .as_ref()
            .map(|(user, pass)| HashMap::from([(user.clone(), pass.clone())])),
        external_auth: None,
        // Without it, a publish to a topic nobody subscribes to yet (a
        // worker's heartbeat before the orchestrator is up) disconnects
        // the publisher.
        dynamic_filters: true,
    };
    if let Some(Authenticator(check)) = settings.authenticator.clone() {
        connections.set_auth_handler(move |client_id, username, password| {
            std::future::ready(check(&client_id, &username, &password))
        });
    }
    let server = ServerSettings {
        name: "mqtt-v4".to_string(),
        listen: settings.listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            // 0 would refuse everyone.
            max_connections: settings.max_connections.max(1),
            max_outgoing_packet_count: 200,
            // rumqttd keeps a log per filter (every topic published to, with
            // dynamic filters, and every subscription's filter), retention by
            // size: with 8 MB x 4 segments a worker beating every second kept
            // a day of heartbeats (and the read buffers they share) in memory.
            // Now about 1 MiB a filter: the size is checked before each
            // append, so a segment holds at least one message, and a message
            // larger than a segment still goes in. What it bounds is how far a
            // subscriber may fall behind on one filter, at least 3 segments
            // (768 KiB, 2,600 messages of 300 bytes) before it loses the
            // oldest: rumqttd moves its cursor on and logs a jump. For a
            // worker offline with its session kept that is 768 KiB of orders;
            // the assignment timeout gives an unanswered one to another.
            // Mosquitto's default queue is 1,000 messages per client.
            max_segment_size: SEGMENT_BYTES,
            max_segment_count: SEGMENTS_PER_TOPIC,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    }
}

/// Starts the broker and waits until it accepts connections.
pub fn start(settings: &BrokerSettings) -> Result<RunningBroker, BrokerError> {
    // rumqttd only logs a failed bind, so find out ourselves. std sets
    // SO_REUSEADDR like tokio does, so a port in TIME_WAIT after a crash
    // does not count as taken.
    TcpListener::bind(settings.listen)
        .map(drop)
        .map_err(|e| BrokerError::PortUnavailable {
            addr: settings.listen,
            reason: e.to_string(),
        })?;

    // What `rumqttd::Broker::start` does for one MQTT 3.1.1 listener, with
    // our codec in front of the router when there is a gate or a tap.
    let config = rumqttd_config(settings);
    let server = config
        .v4
        .as_ref()
        .and_then(|v4| v4.values().next().cloned())
        .ok_or_else(|| BrokerError::Start("no listener configured".into()))?;
    let router_tx = Router::new(config.id, config.router.clone()).spawn();
    let links: local::LinkMaker = {
        let router_tx = router_tx.clone();
        Arc::new(move |client_id: &str| {
            local::build(rumqttd::local::LinkBuilder::new(
                client_id,
                router_tx.clone(),
            ))
        })
    };
    let gate = settings.gate.clone();
    let tap = settings.tap.clone();
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the embedded MQTT broker has no runtime");
                    return;
                }
            };
            let result = runtime.block_on(async move {
                match (gate, tap) {
                    (None, None) => {
                        Server::new(server, router_tx, V4)
                            .start(LinkType::Remote)
                            .await
                    }
                    (gate, tap) => {
                        Server::new(server, router_tx, guard::Guarded::with(gate, tap))
                            .start(LinkType::Remote)
                            .await
                    }
                }
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(|e| BrokerError::Start(e.to_string()))?;

    let connect_addr = loopback_for(settings.listen);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect_timeout(&connect_addr, Duration::from_millis(200)).is_ok() {
            if !nodelay::on_listener(settings.listen) && cfg!(target_os = "linux") {
                tracing::warn!(listen = %settings.listen, "could not turn Nagle's algorithm off for the broker's connections; small packets may wait 40 ms");
            }
            tracing::info!(listen = %settings.listen, "embedded MQTT broker is accepting connections");
            return Ok(RunningBroker {
                connect_addr,
                links,
            });
        }
        if Instant::now() > deadline {
            return Err(BrokerError::NotReady(settings.listen));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address a local client uses to reach a listener: the listener's own
/// address, or loopback when it binds every interface.
pub fn loopback_for(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into()),
            SocketAddr::V6(_) => addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into()),
        }
    }
    addr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_a_usable_router_and_listener() {
        let mut s = BrokerSettings::new("127.0.0.1:1999".parse().unwrap());
        s.credentials = Some(("worker".into(), "secret".into()));
        let c = rumqttd_config(&s);
        assert!(c.router.max_connections > 0);
        // rumqttd refuses less than 1 KiB, and a segment holds at least
        // one message whatever its size.
        assert!(c.router.max_segment_size >= 1024);
        assert!(c.router.max_segment_count >= 1);
        let v4 = c.v4.unwrap();
        let server = v4.values().next().unwrap();
        assert_eq!(server.listen, s.listen);
        assert!(server.connections.dynamic_filters);
        assert_eq!(
            server
                .connections
                .auth
                .as_ref()
                .unwrap()
                .get("worker")
                .map(String::as_str),
            Some("secret")
        );
    }

    #[test]
    fn loopback_replaces_unspecified() {
        let cases = [
            ("0.0.0.0:1883", "127.0.0.1:1883"),
            ("[::]:1883", "[::1]:1883"),
            ("10.0.0.2:1883", "10.0.0.2:1883"),
        ];
        for (listen, want) in cases {
            assert_eq!(loopback_for(listen.parse().unwrap()).to_string(), want);
        }
    }

    #[test]
    fn a_taken_port_is_refused_with_a_sentence() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = BrokerSettings::new(taken.local_addr().unwrap());
        // Without SO_REUSEPORT a second bind of a listening port fails.
        let err = start(&settings).expect_err("port is taken");
        let text = err.to_string();
        assert!(text.contains("cannot listen for MQTT"), "{text}");
        assert!(text.contains(&settings.listen.to_string()), "{text}");
    }
}
