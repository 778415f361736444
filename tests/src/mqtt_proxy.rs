//! A TCP proxy between one MQTT client and the broker that holds back some
//! of the client's PUBLISH packets for a while and lets everything else
//! through at once: messages on one topic overtaken by those on another,
//! as a busy broker or network may deliver them.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which publishes are held back, and for how long.
#[derive(Clone)]
pub struct Hold {
    /// Held when the topic contains this...
    pub topic: String,
    /// ...and the payload this.
    pub payload: String,
    pub delay: Duration,
}

/// A running proxy; it stops when the process ends (threads on loopback).
pub struct Reorder {
    pub port: u16,
    held: Arc<AtomicUsize>,
}

impl Reorder {
    /// Listens on a free loopback port and forwards to the broker.
    pub fn start(broker_port: u16, hold: Hold) -> Reorder {
        let port = crate::free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy listens");
        let held = Arc::new(AtomicUsize::new(0));
        let counter = held.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (hold, counter) = (hold.clone(), counter.clone());
                std::thread::spawn(move || relay(client, broker, hold, counter));
            }
        });
        Reorder { port, held }
    }

    /// Publishes held back so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

fn relay(mut client: TcpStream, broker: TcpStream, hold: Hold, held: Arc<AtomicUsize>) {
    let (Ok(mut from_broker), Ok(mut to_client)) = (broker.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_broker, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    let to_broker = Arc::new(Mutex::new(broker));
    while let Some(packet) = read_packet(&mut client) {
        if is_held(&packet, &hold) {
            held.fetch_add(1, Ordering::Relaxed);
            let (to_broker, delay) = (to_broker.clone(), hold.delay);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                if let Ok(mut b) = to_broker.lock() {
                    let _ = b.write_all(&packet);
                }
            });
        } else if let Ok(mut b) = to_broker.lock() {
            if b.write_all(&packet).is_err() {
                break;
            }
        }
    }
    let closed = to_broker.lock().map(|b| b.shutdown(Shutdown::Both));
    drop(closed);
}

/// One whole MQTT packet: fixed header, remaining length, body.
fn read_packet(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut packet = vec![0u8; 1];
    s.read_exact(&mut packet).ok()?;
    let (mut length, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).ok()?;
        packet.push(b[0]);
        length |= usize::from(b[0] & 0x7f) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let start = packet.len();
    packet.resize(start + length, 0);
    s.read_exact(&mut packet[start..]).ok()?;
    Some(packet)
}

/// A PUBLISH whose topic and payload contain what `hold` names.
fn is_held(packet: &[u8], hold: &Hold) -> bool {
    if packet.first().map(|b| b >> 4) != Some(3) {
        return false;
    }
    // After the remaining length: topic length, topic, [packet id], payload.
    let mut i = 1;
    while packet.get(i).is_some_and(|b| b & 0x80 != 0) {
        i += 1;
    }
    i += 1;
    let Some(len) = packet
        .get(i..i + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    else {
        return false;
    };
    let topic = String::from_utf8_lossy(packet.get(i + 2..i + 2 + len).unwrap_or_default());
    let qos = (packet[0] >> 1) & 3;
    let body = i + 2 + len + if qos > 0 { 2 } else { 0 };
    let payload = String::from_utf8_lossy(packet.get(body..).unwrap_or_default());
    topic.contains(&hold.topic) && payload.contains(&hold.payload)
}
