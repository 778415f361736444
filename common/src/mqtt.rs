//! One MQTT connection that keeps itself alive.
//!
//! rumqttc reconnects on the next `poll()` after an error, at once and
//! forever, and neither re-subscribes nor re-publishes (NOTES.md). [`connect`]
//! drives the event loop on its own task, waits with a growing, jittered
//! delay between attempts, and reports every (re)connection so the owner can
//! subscribe again and re-publish its retained state.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, Publish,
};
use tokio::sync::{mpsc, watch};

use crate::mqtt_url::BrokerAddr;

/// What happened on the connection.
#[derive(Debug)]
pub enum SessionEvent {
    /// A CONNACK arrived. Without `session_present` the broker forgot our
    /// subscriptions: subscribe again.
    Connected { session_present: bool },
    /// A message on one of our subscriptions.
    Message(Publish),
    /// The connection broke; a reconnect follows after a delay.
    Lost(String),
    /// Our own DISCONNECT went out; the driver has stopped.
    Closed,
}

/// The least first wait before a reconnection attempt.
const FIRST_WAIT: Duration = Duration::from_millis(200);
/// Every wait is shorter: a broker that is back is found within it.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Delays between reconnection attempts, never ending: a step doubling from
/// [`FIRST_WAIT`] up to half of [`LONGEST_WAIT`], plus backon's jitter, a
/// random part of up to the step again, so a fleet does not reconnect in
/// lockstep. Starting over is building a new series.
fn reconnect_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(FIRST_WAIT)
        .with_max_delay(LONGEST_WAIT / 2)
        .with_jitter()
        .without_max_times()
        .build()
}

/// What a client trusts on an `mqtts://` connection: the broker's
/// certificate must chain to one of these CAs and name the host we dialled.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// The CAs of `ca_file` (PEM), or this machine's roots when it is
    /// `None`.
    pub fn load(ca_file: Option<&Path>) -> Result<Tls, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
                let certs = rustls_pemfile::certs(&mut &text[..])
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        format!("{} is not a PEM certificate file: {e}", path.display())
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "{} holds no usable CA certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)",
                        path.display()
                    ));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for e in &found.errors {
                    tracing::debug!(error = %e, "a system CA certificate could not be read");
                }
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(
                        "mqtts:// needs CA certificates and this machine has none: set it to the broker's CA file"
                            .into(),
                    );
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS cannot be set up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls(Arc::new(config)))
    }
}

/// The TLS an address wants: none for `mqtt://`, for `mqtts://` the CAs of
/// `ca_file` (the `broker.ca_file` setting; empty: this machine's roots).
pub fn tls_for(addr: &BrokerAddr, ca_file: &Path) -> Result<Option<Tls>, String> {
    if !addr.tls {
        return Ok(None);
    }
    let file = (!ca_file.as_os_str().is_empty()).then_some(ca_file);
    Tls::load(file).map(Some)
}

/// The largest packet MQTT can frame (its remaining length's limit).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// Events waiting for the connection's owner.
const EVENT_QUEUE: usize = 1024;

/// Options shared by every client of ours. An `mqtts://` address connects
/// with `tls` (which the caller loads when the address wants it; without
/// it, the connection fails with a sentence naming `broker.ca_file`).
pub fn options(
    client_id: &str,
    addr: &BrokerAddr,
    keepalive: Duration,
    credentials: Option<(&str, &str)>,
    tls: Option<&Tls>,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, addr.host.clone(), addr.port);
    if addr.tls {
        let config = match tls {
            Some(Tls(config)) => rumqttc::TlsConfiguration::Rustls(config.clone()),
            None => {
                tracing::error!(broker = %addr, "no CA certificates for an mqtts:// broker; set broker.ca_file");
                // No CA at all: every handshake fails, nothing goes out in
                // the clear.
                rumqttc::TlsConfiguration::Simple {
                    ca: Vec::new(),
                    alpn: None,
                    client_auth: None,
                }
            }
        };
        opts.set_transport(rumqttc::Transport::tls_with_config(config));
    }
    opts.set_keep_alive(keepalive.max(Duration::from_secs(1)));
    // Incoming packets of any size MQTT allows are read (and then refused
    // by the decoder's own, smaller limit): one that rumqttc refused would
    // drop the connection, and a retained one would arrive again after
    // every reconnection, forever. A broker that takes such a message
    // costs us that much memory once, not a loop.
    opts.set_max_packet_size(MQTT_MAX_PACKET, 256 * 1024);
    if let Some((user, pass)) = credentials {
        opts.set_credentials(user, pass);
    }
    opts
}

/// Where to reconnect when the broker moves (found again over mDNS): the
/// connection moves to each new address as soon as it is published, up or
/// not, the way it reconnects after an error: unacknowledged packets wait
/// for the session, and the old socket closes without a DISCONNECT (so the
/// old broker publishes our last will).
pub struct Redirect {
    pub addresses: watch::Receiver<Option<BrokerAddr>>,
    /// Builds the options for an address (same id, will, credentials).
    pub options: Box<dyn Fn(&BrokerAddr) -> MqttOptions + Send>,
    /// Hears of every broker that turned us away at CONNECT (see
    /// [`is_refusal`]), so that whoever publishes `addresses` can name
    /// another.
    pub refused: mpsc::UnboundedSender<BrokerAddr>,
}

/// Every packet leaves at once: with Nagle's algorithm an assignment or a
/// status written right after another small packet waited for the
/// broker's delayed acknowledgement (40 ms on Linux).
pub fn send_at_once(eventloop: &mut EventLoop) {
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
}

/// Creates the client and starts driving its event loop.
pub fn connect(
    opts: MqttOptions,
    broker: String,
    redirect: Option<Redirect>,
) -> (AsyncClient, mpsc::Receiver<SessionEvent>) {
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    send_at_once(&mut eventloop);
    // Bounded: an owner that cannot keep up slows the event loop down (and
    // the broker behind it) instead of piling messages up in memory.
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(drive(eventloop, tx, broker, redirect));
    (client, rx)
}

async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::Sender<SessionEvent>,
    mut broker: String,
    mut redirect: Option<Redirect>,
) {
    let mut delays = reconnect_delays();
    let mut failures: u32 = 0;
    // The delays start over only after a connection that lasted: a broker
    // that accepts and drops us at once (two clients with one id) must not
    // make us reconnect several times a second.
    let mut connected_since: Option<std::time::Instant> = None;
    loop {
        let here = eventloop.mqtt_options.broker_address();
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            addr = moved(&mut redirect, &here) => {
                if connected_since.take().is_some()
                    && tx
                        .send(SessionEvent::Lost(format!("moving to {addr}")))
                        .await
                        .is_err()
                {
                    return;
                }
                switch(&mut eventloop, &redirect, &addr, &mut broker);
                failures = 0;
                delays = reconnect_delays();
                continue;
            }
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if failures > 0 {
                    tracing::info!(%broker, "connected to the MQTT broker again");
                } else {
                    tracing::info!(%broker, "connected to the MQTT broker");
                }
                failures = 0;
                connected_since = Some(std::time::Instant::now());
                let present = ack.session_present;
                if tx
                    .send(SessionEvent::Connected {
                        session_present: present,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send(SessionEvent::Message(p)).await.is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tx.send(SessionEvent::Closed).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                let mut reason = describe(&e);
                let lasted = connected_since.take().map(|t| t.elapsed());
                match lasted {
                    Some(lasted) if lasted >= Duration::from_secs(5) => delays = reconnect_delays(),
                    Some(_) => reason.push_str(
                        "; the broker dropped us right after accepting: does another client use the same id (two workers with one worker_id)?",
                    ),
                    None => {}
                }
                if let (None, Some(r)) = (lasted, &redirect) {
                    if is_refusal(&e) {
                        let _ = r.refused.send(BrokerAddr {
                            host: here.0.clone(),
                            port: here.1,
                            tls: !matches!(
                                eventloop.mqtt_options.transport(),
                                rumqttc::Transport::Tcp
                            ),
                        });
                    }
                }
                if failures == 1 {
                    tracing::warn!(%broker, error = %reason, "MQTT connection lost; reconnecting");
                    if tx.send(SessionEvent::Lost(reason)).await.is_err() {
                        return;
                    }
                } else if failures % 15 == 0 {
                    tracing::warn!(%broker, error = %reason, attempts = failures, "still cannot reach the MQTT broker");
                } else {
                    tracing::debug!(%broker, error = %reason, "MQTT reconnect failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delays.next().unwrap_or(LONGEST_WAIT)) => {}
                    addr = moved(&mut redirect, &here) => {
                        switch(&mut eventloop, &redirect, &addr, &mut broker);
                        failures = 0;
                        delays = reconnect_delays();
                    }
                }
            }
        }
    }
}

/// The next address the redirect publishes that is not `here`; never
/// without a redirect, or once its sender is gone.
async fn moved(redirect: &mut Option<Redirect>, here: &(String, u16)) -> BrokerAddr {
    if let Some(r) = redirect.as_mut() {
        while r.addresses.changed().await.is_ok() {
            let next = r.addresses.borrow_and_update().clone();
            if let Some(addr) = next.filter(|a| (&a.host, a.port) != (&here.0, here.1)) {
                return addr;
            }
        }
    }
    std::future::pending().await
}

/// Points the event loop at `addr`, dropping the current connection as an
/// error would; the next `poll()` connects there with the same identity.
fn switch(
    eventloop: &mut EventLoop,
    redirect: &Option<Redirect>,
    addr: &BrokerAddr,
    broker: &mut String,
) {
    let Some(r) = redirect else {
        return;
    };
    let client_id = eventloop.mqtt_options.client_id();
    tracing::info!(from = %broker, to = %addr, %client_id, "switching to the broker found over mDNS");
    eventloop.clean();
    eventloop.mqtt_options = (r.options)(addr);
    *broker = addr.to_string();
}

/// Whether an error before any CONNACK of its attempt means the broker
/// turned us away (a refusing CONNACK, another packet instead of one, or the
/// connection closed instead of one, which is how rumqttd refuses a login)
/// rather than that nothing answered.
pub fn is_refusal(e: &ConnectionError) -> bool {
    use rumqttc::StateError;
    let closed = |io: &std::io::Error| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        )
    };
    match e {
        ConnectionError::ConnectionRefused(_)
        | ConnectionError::NotConnAck(_)
        | ConnectionError::MqttState(StateError::ConnectionAborted) => true,
        ConnectionError::Io(io)
        | ConnectionError::MqttState(StateError::Io(io))
        | ConnectionError::MqttState(StateError::Deserialization(rumqttc::Error::Io(io))) => {
            closed(io)
        }
        _ => false,
    }
}

/// A connection error as a sentence a person can act on.
pub fn describe(e: &ConnectionError) -> String {
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => "the broker refused our login; check broker.username and broker.password".into(),
        ConnectionError::ConnectionRefused(code) => {
            format!("the broker refused the connection ({code:?})")
        }
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing accepts connections there; is the broker (or the orchestrator) running, and is the address right?".into()
        }
        ConnectionError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            format!("the broker closed the connection ({io}); a refused login looks like this on some brokers: check broker.username and broker.password")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_sentences() {
        let cases: Vec<(ConnectionError, &str)> = vec![
            (
                ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized),
                "broker.password",
            ),
            (
                ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword),
                "broker.username",
            ),
            (
                ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
                "is the broker",
            ),
            (
                ConnectionError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionAborted)),
                "refused login",
            ),
        ];
        for (e, needle) in cases {
            assert!(describe(&e).contains(needle), "{e:?}: {}", describe(&e));
        }
    }

    #[test]
    fn refusals_are_told_from_silence() {
        use rumqttc::StateError;
        let io = |k: std::io::ErrorKind| std::io::Error::from(k);
        let cases: Vec<(ConnectionError, bool)> = vec![
            (
                ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized),
                true,
            ),
            (
                ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword),
                true,
            ),
            (
                ConnectionError::ConnectionRefused(ConnectReturnCode::BadClientId),
                true,
            ),
            // rumqttd closes the socket on a failed login.
            (
                ConnectionError::MqttState(StateError::ConnectionAborted),
                true,
            ),
            (
                ConnectionError::MqttState(StateError::Io(io(std::io::ErrorKind::ConnectionReset))),
                true,
            ),
            (
                ConnectionError::MqttState(StateError::Deserialization(rumqttc::Error::Io(io(
                    std::io::ErrorKind::ConnectionReset,
                )))),
                true,
            ),
            (
                ConnectionError::Io(io(std::io::ErrorKind::ConnectionAborted)),
                true,
            ),
            (ConnectionError::NotConnAck(Packet::PingResp), true),
            // Nothing there, or no answer at all: not a refusal.
            (
                ConnectionError::Io(io(std::io::ErrorKind::ConnectionRefused)),
                false,
            ),
            (ConnectionError::Io(io(std::io::ErrorKind::TimedOut)), false),
            (
                ConnectionError::Io(io(std::io::ErrorKind::HostUnreachable)),
                false,
            ),
            (ConnectionError::NetworkTimeout, false),
            (ConnectionError::FlushTimeout, false),
            (ConnectionError::MqttState(StateError::AwaitPingResp), false),
        ];
        for (e, want) in cases {
            assert_eq!(is_refusal(&e), want, "{e:?}");
        }
    }

    #[test]
    fn reconnect_delays_grow_to_a_bound_and_start_over() {
        // (attempt, the least and the most its delay may be, in ms): each is
        // its step of the doubling plus up to as much again of jitter.
        let table: [(usize, u64, u64); 8] = [
            (0, 200, 400),
            (1, 400, 800),
            (2, 800, 1600),
            (3, 1000, 2000),
            (4, 1000, 2000),
            (5, 1000, 2000),
            (20, 1000, 2000),
            (500, 1000, 2000),
        ];
        // Many runs, since the jitter is random.
        for _ in 0..200 {
            let delays: Vec<Duration> = reconnect_delays().take(501).collect();
            assert_eq!(delays.len(), 501, "the delays never end");
            for (attempt, least, most) in table {
                let d = delays[attempt];
                assert!(
                    d >= Duration::from_millis(least) && d < Duration::from_millis(most),
                    "attempt {attempt}: {d:?} is not in [{least}, {most}) ms"
                );
                assert!(d < LONGEST_WAIT, "attempt {attempt}: {d:?}");
            }
            // Starting over (a connection that lasted) is a new series.
            let again = reconnect_delays().next();
            assert!(
                again.is_some_and(|d| d >= FIRST_WAIT && d < FIRST_WAIT * 2),
                "{again:?}"
            );
        }
    }
}
