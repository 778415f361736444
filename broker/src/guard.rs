//! The gate between the network and rumqttd's router: who may publish (or
//! leave as a last will) what, and subscribe to what.
//!
//! rumqttd has no access rules, but it reads every client's packets through
//! a [`Protocol`] chosen when its server is built. [`Guarded`] is rumqttd's
//! own MQTT 3.1.1 codec with a [`Policy`] in front of it: it remembers the
//! login of its connection's CONNECT, and then asks the policy about each
//! PUBLISH and SUBSCRIBE. A refused publish is not dropped (the sender's
//! QoS 1 acknowledgement still comes from the router, so a confused client
//! does not stall): it goes to the refusal topic instead, as a
//! [`wire::Refusal`] naming the client, the topic and the reason, and is
//! logged. A refused subscription becomes one that matches nothing, a refused
//! last will is dropped. A connection whose login no longer holds (revoked,
//! or given a new password) is closed at its next packet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error, Packet, Protocol};
use transcode_common::{unix_ms, validate, wire};

use crate::tap::Tap;

/// A logged-in connection as the gate knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    /// `None` for an anonymous client (only where the broker allows them).
    pub username: Option<String>,
    password: Option<String>,
}

impl Client {
    pub fn new(client_id: &str, login: Option<(&str, &str)>) -> Client {
        Client {
            client_id: client_id.to_string(),
            username: login.map(|(u, _)| u.to_string()),
            password: login.map(|(_, p)| p.to_string()),
        }
    }

    /// The password it logged in with (to check that it still holds).
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Decides what a logged-in client may do. `Err` carries the reason, as a
/// sentence for the log and the refusal note.
pub trait Policy: Send + Sync {
    /// May `who` publish `payload` on `topic` (or leave it as its will)?
    fn publish(&self, who: &Client, topic: &str, payload: &[u8]) -> Result<(), String>;
    /// May `who` subscribe to `filter`?
    fn subscribe(&self, who: &Client, filter: &str) -> Result<(), String>;
    /// Does `who`'s login still hold? Asked at most once a second per
    /// connection; `Err` closes the connection.
    fn still_valid(&self, who: &Client) -> Result<(), String>;
}

/// How often a connection's login is looked at again.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// What every guarded connection shares.
pub struct Gate {
    policy: Arc<dyn Policy>,
    /// Where refused publishes go, as a refusal note.
    refused_topic: String,
    /// Publishes, wills and subscriptions refused so far.
    refused: AtomicU64,
}

impl Gate {
    pub fn new(policy: Arc<dyn Policy>, refused_topic: String) -> Arc<Gate> {
        Arc::new(Gate {
            policy,
            refused_topic,
            refused: AtomicU64::new(0),
        })
    }

    /// Publishes, wills and subscriptions refused since the start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A filter that matches nothing anyone can publish: the refusal topic
    /// is one level, this is two.
    fn nothing(&self) -> String {
        format!("{}/-", self.refused_topic)
    }

    fn refuse(&self, who: &Client, what: &str, topic: &str, reason: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            client_id = ?validate::truncate(&who.client_id, 60),
            topic = ?validate::truncate(topic, 120),
            "the broker refused a {what} from client {:?}: {reason}",
            validate::truncate(&who.client_id, 60)
        );
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("refused_topic", &self.refused_topic)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

/// rumqttd's MQTT 3.1.1 codec behind a [`Gate`], and in front of a
/// [`Tap`] that copies what passed; one copy per connection.
#[derive(Clone)]
pub struct Guarded {
    gate: Option<Arc<Gate>>,
    tap: Option<Arc<Tap>>,
    /// Set by the connection's CONNECT.
    who: Option<Client>,
    /// When its login was last found to hold.
    checked: Option<Instant>,
    /// A CONNECT was read. rumqttd reads a new connection's first packet
    /// through us before it checks that it is a CONNECT and its login, and
    /// reads nothing more from a connection it refused: what comes after a
    /// CONNECT comes from a client it took.
    connected: bool,
}

impl Guarded {
    pub fn new(gate: Arc<Gate>) -> Guarded {
        Guarded::with(Some(gate), None)
    }

    /// Either part may be missing: without a gate every packet passes.
    pub fn with(gate: Option<Arc<Gate>>, tap: Option<Arc<Tap>>) -> Guarded {
        Guarded {
            gate,
            tap,
            who: None,
            checked: None,
            connected: false,
        }
    }

    /// Applies the policy to one packet the client sent.
    fn screen(&mut self, packet: &mut Packet) -> Result<(), Error> {
        let Some(gate) = self.gate.as_deref() else {
            return Ok(());
        };
        if let Packet::Connect(connect, _, will, _, login) = packet {
            let who = Client::new(
                &connect.client_id,
                login
                    .as_ref()
                    .map(|l| (l.username.as_str(), l.password.as_str())),
            );
            if let Some(w) = will.as_ref() {
                let topic = String::from_utf8_lossy(&w.topic);
                if let Err(why) = gate.policy.publish(&who, &topic, &w.message) {
                    gate.refuse(&who, "last will", &topic, &why);
                    *will = None;
                }
            }
            self.who = Some(who);
            self.checked = Some(Instant::now());
            return Ok(());
        }
        // rumqttd takes nothing before a CONNECT.
        let Some(who) = &self.who else {
            return Ok(());
        };
        if self.checked.is_none_or(|t| t.elapsed() >= RECHECK_EVERY) {
            if let Err(why) = gate.policy.still_valid(who) {
                tracing::warn!(
                    client_id = ?validate::truncate(&who.client_id, 60),
                    "closing the connection of client {:?}: {why}",
                    validate::truncate(&who.client_id, 60)
                );
                return Err(Error::InvalidProtocol);
            }
            self.checked = Some(Instant::now());
        }
        match packet {
            Packet::Publish(publish, _) => {
                let verdict = match std::str::from_utf8(&publish.topic) {
                    Ok(topic) => gate.policy.publish(who, topic, &publish.payload),
                    Err(_) => Err("its topic is not UTF-8".to_string()),
                };
                if let Err(why) = verdict {
                    let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                    gate.refuse(who, "publish", &topic, &why);
                    let note = wire::Refusal {
                        client_id: who.client_id.clone(),
                        topic,
                        reason: why,
                        bytes: publish.payload.len(),
                        timestamp: unix_ms(),
                    };
                    publish.topic = Bytes::from(gate.refused_topic.clone());
                    publish.payload = Bytes::from(wire::encode(&note));
                    publish.retain = false;
                }
            }
            Packet::Subscribe(subscribe, _) => {
                for filter in &mut subscribe.filters {
                    if let Err(why) = gate.policy.subscribe(who, &filter.path) {
                        gate.refuse(who, "subscription", &filter.path, &why);
                        filter.path = gate.nothing();
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Gives what the router may keep of a packet (a publish's topic and
/// payload, a last will) bytes of their own.
///
/// rumqttd's codec slices them out of the connection's read buffer (10 KiB),
/// and whatever the router keeps (a retained heartbeat, a last will, a
/// subscriber's log) keeps that whole buffer alive: the connection then
/// reads into a new one. Under 1,000 workers the bare broker's memory climbs
/// for a minute that way (57 MB 15 s in, 71 MB from 60 s on, `./dev bench
/// load`); ours levels off within 15 s. With a copy (one allocation for both
/// parts) the read buffer is the connection's only one, reused from its
/// start once it is read.
fn own_bytes(packet: &mut Packet) {
    fn copied(a: &mut Bytes, b: &mut Bytes) {
        let mut both = BytesMut::with_capacity(a.len() + b.len());
        both.extend_from_slice(a);
        both.extend_from_slice(b);
        let mut both = both.freeze();
        *a = both.split_to(a.len());
        *b = both;
    }
    match packet {
        Packet::Publish(publish, _) => copied(&mut publish.topic, &mut publish.payload),
        Packet::Connect(_, _, Some(will), _, _) => copied(&mut will.topic, &mut will.message),
        _ => {}
    }
}

/// The read buffer rumqttd gives each connection.
const READ_BUFFER: usize = 10 * 1024;
/// A read buffer grown past this (by a large publish) is given back once
/// it is empty.
const READ_BUFFER_KEPT: usize = 64 * 1024;

/// Once a connection's read buffer is empty, the next read starts at its
/// front again.
///
/// rumqttd reads on behind the last packet until the buffer's end, and only
/// then starts over: every page of it is touched, 10 KiB resident for each
/// connection whose client sends a few hundred bytes a second. Read from the
/// front each time, a worker's connection touches only the first page. A
/// buffer grown by one large publish goes back to the usual size.
fn rewind(stream: &mut BytesMut) {
    if !stream.is_empty() {
        return;
    }
    // Reclaims the bytes read before the start (nothing else holds them
    // after `own_bytes`); false when it is at the front already.
    let _ = stream.try_reclaim(stream.capacity() + 1);
    if stream.capacity() > READ_BUFFER_KEPT {
        *stream = BytesMut::with_capacity(READ_BUFFER);
    }
}

impl Protocol for Guarded {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, Error> {
        let mut packet = V4.read_mut(stream, max_size)?;
        own_bytes(&mut packet);
        rewind(stream);
        self.screen(&mut packet)?;
        match (&self.tap, &packet) {
            (_, Packet::Connect(..)) => self.connected = true,
            // Never a publish sent before the CONNECT (rumqttd drops that
            // connection, but only after reading it here).
            (Some(tap), Packet::Publish(publish, _)) if self.connected => {
                tap.offer(&publish.topic, &publish.payload);
            }
            _ => {}
        }
        Ok(packet)
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, Error> {
        V4.write(packet, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttd::protocol::{Connect, LastWill, Login, Publish, QoS};

    /// Client `good` may publish and subscribe under `ok/`; `gone` is revoked.
    struct Rules;

    impl Policy for Rules {
        fn publish(&self, _who: &Client, topic: &str, _payload: &[u8]) -> Result<(), String> {
            topic
                .starts_with("ok/")
                .then_some(())
                .ok_or_else(|| format!("{topic} is not under ok/"))
        }
        fn subscribe(&self, who: &Client, filter: &str) -> Result<(), String> {
            self.publish(who, filter, b"")
        }
        fn still_valid(&self, who: &Client) -> Result<(), String> {
            (who.username.as_deref() != Some("gone"))
                .then_some(())
                .ok_or_else(|| "revoked".to_string())
        }
    }

    fn guarded() -> (Arc<Gate>, Guarded) {
        let gate = Gate::new(Arc::new(Rules), "x/refused".into());
        (gate.clone(), Guarded::new(gate))
    }

    fn connect(user: &str, will_topic: Option<&str>) -> Packet {
        Packet::Connect(
            Connect {
                keep_alive: 10,
                client_id: user.into(),
                clean_session: false,
            },
            None,
            will_topic.map(|t| LastWill {
                topic: Bytes::from(t.to_string()),
                message: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
            }),
            None,
            Some(Login {
                username: user.into(),
                password: "pw".into(),
            }),
        )
    }

    fn publish(topic: &str, retain: bool) -> Packet {
        Packet::Publish(
            Publish::new(topic.to_string(), "hello".into(), retain),
            None,
        )
    }

    /// Encodes packets the way a client sends them and reads them back
    /// through the gate.
    fn through(g: &mut Guarded, packets: Vec<Packet>) -> Vec<Result<Packet, Error>> {
        let mut bytes = BytesMut::new();
        for p in packets {
            V4.write(p, &mut bytes).unwrap();
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            out.push(g.read_mut(&mut bytes, 1 << 20));
        }
        out
    }

    #[test]
    fn the_tap_copies_only_what_passed_after_a_connect() {
        let tap = Arc::new(Tap::new(10, |t: &str| {
            t.starts_with("ok/") || t.starts_with("no/")
        }));
        let taken = |g: &mut Guarded, packets: Vec<Packet>| {
            let _ = through(g, packets);
            tap.take()
                .iter()
                .map(|t| t.topic().to_string())
                .collect::<Vec<_>>()
        };
        // Without a gate (anonymous clients), and with one.
        let (gate, _) = guarded();
        for gate in [None, Some(gate)] {
            let mut g = Guarded::with(gate.clone(), Some(tap.clone()));
            assert!(
                taken(&mut g, vec![publish("ok/early", false)]).is_empty(),
                "a publish before CONNECT is not copied"
            );
            let mut g = Guarded::with(gate.clone(), Some(tap.clone()));
            let got = taken(
                &mut g,
                vec![
                    connect("good", None),
                    publish("ok/a", false),
                    publish("no/b", false),
                ],
            );
            let want: &[&str] = if gate.is_some() {
                // The refused one became a refusal note on another topic.
                &["ok/a"]
            } else {
                &["ok/a", "no/b"]
            };
            assert_eq!(got, want);
        }
    }

    #[test]
    fn allowed_publishes_pass_and_refused_ones_become_a_refusal_note() {
        let (gate, mut g) = guarded();
        let out = through(
            &mut g,
            vec![
                connect("good", None),
                publish("ok/a", true),
                publish("no/b", true),
            ],
        );
        assert!(matches!(out[0], Ok(Packet::Connect(..))));
        match &out[1] {
            Ok(Packet::Publish(p, _)) => {
                assert_eq!(&p.topic[..], b"ok/a");
                assert!(p.retain);
            }
            other => panic!("{other:?}"),
        }
        match &out[2] {
            Ok(Packet::Publish(p, _)) => {
                assert_eq!(&p.topic[..], b"x/refused");
                assert!(!p.retain, "a refusal note is never retained");
                let note: wire::Refusal = serde_json::from_slice(&p.payload).unwrap();
                assert_eq!(note.client_id, "good");
                assert_eq!(note.topic, "no/b");
                assert_eq!(note.bytes, 5);
                assert!(note.reason.contains("not under ok/"), "{}", note.reason);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(gate.refused(), 1);
    }

    #[test]
    fn a_refused_will_is_dropped_and_an_allowed_one_kept() {
        let (gate, mut g) = guarded();
        let out = through(&mut g, vec![connect("good", Some("no/will"))]);
        assert!(matches!(&out[0], Ok(Packet::Connect(_, _, None, _, _))));
        let (_, mut g) = guarded();
        let out = through(&mut g, vec![connect("good", Some("ok/will"))]);
        assert!(matches!(&out[0], Ok(Packet::Connect(_, _, Some(_), _, _))));
        assert_eq!(gate.refused(), 1);
    }

    #[test]
    fn refused_filters_match_nothing() {
        let (_, mut g) = guarded();
        let mut sub = rumqttd::protocol::Subscribe {
            pkid: 1,
            filters: Vec::new(),
        };
        for path in ["ok/#", "#", "other/+"] {
            sub.filters.push(rumqttd::protocol::Filter {
                path: path.into(),
                qos: QoS::AtMostOnce,
                nolocal: false,
                preserve_retain: false,
                retain_forward_rule: rumqttd::protocol::RetainForwardRule::OnEverySubscribe,
            });
        }
        let out = through(
            &mut g,
            vec![connect("good", None), Packet::Subscribe(sub, None)],
        );
        match &out[1] {
            Ok(Packet::Subscribe(s, _)) => {
                let paths: Vec<&str> = s.filters.iter().map(|f| f.path.as_str()).collect();
                assert_eq!(paths, ["ok/#", "x/refused/-", "x/refused/-"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_revoked_login_is_closed_at_its_next_packet() {
        let (_, mut g) = guarded();
        // Looked at again once a second: pretend a second went by.
        let out = through(&mut g, vec![connect("gone", None)]);
        assert!(out[0].is_ok());
        g.checked = Some(Instant::now() - RECHECK_EVERY);
        let out = through(&mut g, vec![publish("ok/a", false)]);
        assert!(out[0].is_err(), "{:?}", out[0]);
    }

    #[test]
    fn what_the_router_keeps_does_not_hold_the_read_buffer() {
        let mut g = Guarded::with(None, None);
        let mut bytes = BytesMut::with_capacity(READ_BUFFER);
        for p in [connect("w", Some("w/status")), publish("w/heartbeat", true)] {
            V4.write(p, &mut bytes).unwrap();
        }
        let buffer = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.capacity();
        let outside = |b: &Bytes| !buffer.contains(&(b.as_ptr() as usize));
        let kept = [
            g.read_mut(&mut bytes, 1 << 20),
            g.read_mut(&mut bytes, 1 << 20),
        ];
        match &kept {
            [Ok(Packet::Connect(_, _, Some(will), _, _)), Ok(Packet::Publish(publish, _))] => {
                assert_eq!(&will.topic[..], b"w/status");
                assert_eq!(&will.message[..], b"offline");
                assert_eq!(&publish.topic[..], b"w/heartbeat");
                assert_eq!(&publish.payload[..], b"hello");
                assert!(outside(&will.topic) && outside(&will.message));
                assert!(outside(&publish.topic) && outside(&publish.payload));
            }
            other => panic!("{other:?}"),
        }
        // Nothing else holds the buffer, and the next read starts at its
        // front.
        assert!(bytes.is_empty());
        assert_eq!(bytes.as_ptr() as usize, buffer.start);
        assert_eq!(bytes.capacity(), READ_BUFFER);
    }

    #[test]
    fn a_read_buffer_starts_over_only_once_it_is_empty() {
        let mut g = Guarded::with(None, None);
        let mut bytes = BytesMut::with_capacity(READ_BUFFER);
        let start = bytes.as_ptr() as usize;
        for p in [
            connect("w", None),
            publish("w/a", false),
            publish("w/b", false),
        ] {
            V4.write(p, &mut bytes).unwrap();
        }
        // A packet and a half: the half stays where it is.
        bytes.truncate(bytes.len() - 3);
        assert!(g.read_mut(&mut bytes, 1 << 20).is_ok());
        assert!(g.read_mut(&mut bytes, 1 << 20).is_ok());
        assert!(matches!(
            g.read_mut(&mut bytes, 1 << 20),
            Err(Error::InsufficientBytes(_))
        ));
        assert_ne!(bytes.as_ptr() as usize, start);
        assert!(!bytes.is_empty());

        // A buffer grown by a large publish goes back to the usual size.
        let mut big = BytesMut::with_capacity(4 * READ_BUFFER_KEPT);
        let payload = Bytes::from(vec![7u8; 3 * READ_BUFFER_KEPT]);
        let large = Packet::Publish(
            Publish::new(Bytes::from_static(b"w/big"), payload, false),
            None,
        );
        V4.write(large, &mut big).unwrap();
        match g.read_mut(&mut big, 1 << 20) {
            Ok(Packet::Publish(p, _)) => assert_eq!(p.payload.len(), 3 * READ_BUFFER_KEPT),
            other => panic!("{other:?}"),
        }
        assert!(big.is_empty());
        assert_eq!(big.capacity(), READ_BUFFER);
    }
}
