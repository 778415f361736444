//! A TCP relay on loopback between a client and a server, to put a network
//! fault between two real programs: it can slow the server's answers down
//! and cut the link (stop listening, drop every connection) for a while.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct Shared {
    target: u16,
    /// Bytes per second from the server to the client, per connection.
    rate: u64,
    /// Not listening, by request.
    down: AtomicBool,
    /// The listener is closed (the accept loop saw `down`).
    closed: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every live relay, to drop them on a cut.
    streams: Mutex<Vec<TcpStream>>,
    accepted: AtomicUsize,
}

/// The relay; stops (and drops its connections) on drop.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Relays a free loopback port to `127.0.0.1:target`, sending the
    /// server's bytes at `rate` bytes per second per connection.
    pub fn start(target: u16, rate: u64) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            target,
            rate: rate.max(1),
            down: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            streams: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, port, &s));
        Proxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Cuts the link for `outage`: stops listening (connections are
    /// refused), drops every open connection, then listens again on the
    /// same port. Returns how many connections it dropped.
    pub fn cut(&self, outage: Duration) -> usize {
        self.shared.down.store(true, Ordering::SeqCst);
        crate::wait_until(
            Duration::from_secs(10),
            "the relay to stop listening",
            || self.shared.closed.load(Ordering::SeqCst).then_some(()),
        );
        let dropped = {
            let mut streams = self
                .shared
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for s in streams.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
            let n = streams.len() / 2;
            streams.clear();
            n
        };
        std::thread::sleep(outage);
        self.shared.down.store(false, Ordering::SeqCst);
        crate::wait_until(Duration::from_secs(10), "the relay to listen again", || {
            (!self.shared.closed.load(Ordering::SeqCst)).then_some(())
        });
        dropped
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in self
            .shared
            .streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(first: TcpListener, port: u16, s: &Arc<Shared>) {
    let mut listener = Some(first);
    while !s.stop.load(Ordering::SeqCst) {
        if s.down.load(Ordering::SeqCst) {
            if listener.take().is_some() {
                s.closed.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    s.closed.store(false, Ordering::SeqCst);
                    listener.insert(l)
                }
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                s.accepted.fetch_add(1, Ordering::SeqCst);
                relay(client, s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Copies both ways on two threads; the server's side at the rate.
fn relay(client: TcpStream, s: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", s.target)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    if let (Ok(c3), Ok(s3)) = (client.try_clone(), server.try_clone()) {
        let mut streams = s.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.push(c3);
        streams.push(s3);
    }
    let rate = s.rate;
    std::thread::spawn(move || copy(client, server, None));
    std::thread::spawn(move || copy(s2, c2, Some(rate)));
}

fn copy(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                if let Some(rate) = rate {
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
