//! A load of many workers on a broker, for the benchmarks: raw MQTT 3.1.1
//! clients, as cheap as a client can be (one task, one socket, packets
//! written by hand), so the figures are the broker's and the
//! orchestrator's, not a client library's.
//!
//! Each client connects with a retained last will (`offline` on its
//! availability), says `online`, and publishes a retained QoS 1 heartbeat
//! (the payload a real worker sends) every interval, the clients spread
//! evenly over it. What the broker sends back (acknowledgements) is read and
//! dropped. [`subscriber`] is the one extra watcher (`transcode/#`, as
//! `mosquitto_sub` would).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use transcode_common::wire::{Heartbeat, Os, WorkerStatus};

/// The remaining-length field of an MQTT packet.
fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend(body);
    out
}

/// CONNECT, clean session, with a retained QoS 1 will, and a login when
/// given.
pub fn connect(client_id: &str, will: (&str, &[u8]), login: Option<(&str, &str)>) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.push(4); // 3.1.1
    let mut flags = 0x02 | 0x04 | 0x08 | 0x20; // clean, will, will QoS 1, will retain
    if login.is_some() {
        flags |= 0x80 | 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&30u16.to_be_bytes()); // keep alive
    string(client_id.as_bytes(), &mut body);
    string(will.0.as_bytes(), &mut body);
    string(will.1, &mut body);
    if let Some((user, password)) = login {
        string(user.as_bytes(), &mut body);
        string(password.as_bytes(), &mut body);
    }
    packet(0x10, body)
}

/// PUBLISH at QoS 1 (`id` its packet id), retained when `retain`.
pub fn publish(topic: &str, payload: &[u8], id: u16, retain: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 4);
    string(topic.as_bytes(), &mut body);
    body.extend_from_slice(&id.max(1).to_be_bytes());
    body.extend_from_slice(payload);
    packet(0x32 | u8::from(retain), body)
}

/// SUBSCRIBE to one filter at QoS 0.
pub fn subscribe(filter: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&1u16.to_be_bytes());
    string(filter.as_bytes(), &mut body);
    body.push(0);
    packet(0x82, body)
}

/// A heartbeat as a worker sends it.
pub fn heartbeat(id: &str, interval_s: u64) -> Vec<u8> {
    transcode_common::wire::encode(&Heartbeat {
        worker_id: id.to_string(),
        ip_address: "127.0.0.1".into(),
        port: 9,
        os: Os::Linux,
        hw_accel: vec![],
        status: WorkerStatus::Idle,
        cpu_usage: 3.0,
        hostname: Some(id.to_string()),
        version: Some("0.1.0".into()),
        cpu_cores: Some(8),
        memory_total_mb: Some(16_000),
        memory_available_mb: Some(12_000),
        max_jobs: Some(1),
        active_jobs: vec![],
        encoders: vec!["libx264".into()],
        weight: None,
        interval_s: Some(interval_s),
        timestamp: Some(transcode_common::unix_ms()),
        finished_runs: Vec::new(),
    })
}

/// How the load went so far.
#[derive(Default)]
pub struct Counters {
    /// Clients whose CONNECT was accepted.
    pub connected: AtomicUsize,
    /// Heartbeats written.
    pub sent: AtomicUsize,
    /// Clients that lost their connection (or never had one).
    pub failed: AtomicUsize,
}

/// Reads the CONNACK: whether the broker took us.
async fn accepted(stream: &mut TcpStream) -> bool {
    let mut ack = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut ack)).await,
        Ok(Ok(_))
    ) && ack[0] == 0x20
        && ack[3] == 0
}

/// One worker: connects to `port` on loopback, then heartbeats every
/// `interval`, first after `offset`, until the task is dropped.
pub async fn worker(
    id: String,
    port: u16,
    interval: Duration,
    offset: Duration,
    login: Option<(String, String)>,
    counters: Arc<Counters>,
) {
    let topics = transcode_common::topics::Topics::new("transcode").expect("the prefix");
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = stream.set_nodelay(true);
    let availability = topics.worker_availability(&id);
    let hello = connect(
        &format!("worker-{id}"),
        (&availability, b"offline"),
        login.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
    );
    if stream.write_all(&hello).await.is_err() || !accepted(&mut stream).await {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let (mut read, mut write) = stream.into_split();
    // Acknowledgements and anything else: read and dropped.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while matches!(read.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let heartbeat_topic = topics.worker_heartbeat(&id);
    let mut packet_id: u16 = 1;
    let online = publish(&availability, b"online", packet_id, true);
    if write.write_all(&online).await.is_err() {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        packet_id = packet_id.wrapping_add(1).max(1);
        let hb = publish(
            &heartbeat_topic,
            &heartbeat(&id, interval.as_secs().max(1)),
            packet_id,
            true,
        );
        if write.write_all(&hb).await.is_err() || drain.is_finished() {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// The one watcher: subscribes to `transcode/#` and reads everything.
/// Counts the bytes it read.
pub async fn subscriber(port: u16, login: Option<(String, String)>, bytes: Arc<AtomicUsize>) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return;
    };
    let hello = connect(
        "load-watcher",
        ("transcode/load-watcher", b"gone"),
        login.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
    );
    if stream.write_all(&hello).await.is_err() || !accepted(&mut stream).await {
        return;
    }
    if stream.write_all(&subscribe("transcode/#")).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => {
                bytes.fetch_add(n, Ordering::Relaxed);
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_are_mqtts_varint() {
        for (n, want) in [
            (0usize, vec![0x00u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            remaining_length(n, &mut out);
            assert_eq!(out, want, "{n}");
        }
    }

    #[test]
    fn packets_decode_with_rumqttcs_codec() {
        use rumqttc::mqttbytes::v4::Packet;
        let read = Packet::read;
        let mut bytes = bytes::BytesMut::from(&publish("a/b", b"hello", 7, true)[..]);
        match read(&mut bytes, 1 << 20) {
            Ok(Packet::Publish(p)) => {
                assert_eq!(p.topic, "a/b");
                assert_eq!(&p.payload[..], b"hello");
                assert_eq!(p.pkid, 7);
                assert!(p.retain);
            }
            other => panic!("{other:?}"),
        }
        let mut bytes =
            bytes::BytesMut::from(&connect("worker-x", ("t/w", b"offline"), Some(("u", "p")))[..]);
        match read(&mut bytes, 1 << 20) {
            Ok(Packet::Connect(c)) => {
                assert_eq!(c.client_id, "worker-x");
                assert!(c.clean_session);
                assert!(c
                    .last_will
                    .is_some_and(|w| w.retain && &w.message[..] == b"offline"));
                assert!(c
                    .login
                    .is_some_and(|l| l.username == "u" && l.password == "p"));
            }
            other => panic!("{other:?}"),
        }
        let mut bytes = bytes::BytesMut::from(&subscribe("transcode/#")[..]);
        assert!(matches!(
            read(&mut bytes, 1 << 20),
            Ok(Packet::Subscribe(s)) if s.filters[0].path == "transcode/#"
        ));
    }
}
