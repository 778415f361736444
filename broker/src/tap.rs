//! Publishes of chosen topics, copied as the broker reads them off the
//! network, for the process that embeds it.
//!
//! The orchestrator hears every worker's heartbeat. As a subscriber, each
//! one cost the router a forward and the orchestrator a wake-up, more than
//! the broker's own work for the message (`./dev bench load`). The tap sits
//! in the codec that reads every client's packets (after the gate: a
//! refused publish is not copied), keeps a copy of each matching publish in
//! a buffer, and the owner takes the whole buffer when it likes: nobody is
//! woken per message. A copy shares the payload's bytes.
//!
//! A tapped publish is live by definition; retained messages stored before
//! the owner started are not in it (the owner starts the broker, so there
//! are none).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

/// One publish as a client sent it; both parts share the bytes the broker
/// read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tapped {
    topic: Bytes,
    pub payload: Bytes,
}

impl Tapped {
    pub fn topic(&self) -> &str {
        // Checked when it was copied.
        std::str::from_utf8(&self.topic).unwrap_or_default()
    }
}

/// Which topics to copy.
pub type Matcher = dyn Fn(&str) -> bool + Send + Sync;

/// The buffer between the broker's connections and the owner.
pub struct Tap {
    matches: Box<Matcher>,
    buffer: Mutex<Vec<Tapped>>,
    /// Copies kept at most; more are dropped (and counted) until the
    /// owner takes them.
    capacity: usize,
    dropped: AtomicU64,
    /// Set from the first copy dropped until the next take: one warning
    /// for each time the buffer fills.
    full: AtomicBool,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("capacity", &self.capacity)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// Copies publishes whose topic `matches`, up to `capacity` between
    /// two takes.
    pub fn new(capacity: usize, matches: impl Fn(&str) -> bool + Send + Sync + 'static) -> Tap {
        Tap {
            matches: Box::new(matches),
            buffer: Mutex::new(Vec::new()),
            capacity,
            dropped: AtomicU64::new(0),
            full: AtomicBool::new(false),
        }
    }

    /// Called by the codec for each publish it let through.
    pub(crate) fn offer(&self, topic: &Bytes, payload: &Bytes) {
        let Ok(name) = std::str::from_utf8(topic) else {
            return;
        };
        if !(self.matches)(name) {
            return;
        }
        let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
        if buffer.len() >= self.capacity {
            drop(buffer);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    capacity = self.capacity,
                    "the broker's tap is full: its owner is not taking what it copied; dropping copies"
                );
            }
            return;
        }
        buffer.push(Tapped {
            topic: topic.clone(),
            payload: payload.clone(),
        });
    }

    /// Everything copied since the last take, in the order it was read.
    pub fn take(&self) -> Vec<Tapped> {
        let taken = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()));
        self.full.store(false, Ordering::Relaxed);
        taken
    }

    /// Copies dropped since the start because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_matching_topics_in_order_and_drops_past_its_capacity() {
        let tap = Tap::new(3, |t| t.ends_with("/heartbeat"));
        let cases: [(&'static [u8], &str); 6] = [
            (b"t/workers/a/heartbeat", "a1"),
            (b"t/workers/a/status", "no"),
            (b"t/workers/b/heartbeat", "b1"),
            (b"\xff/heartbeat", "not UTF-8"),
            (b"t/workers/a/heartbeat", "a2"),
            (b"t/workers/c/heartbeat", "over capacity"),
        ];
        for (topic, payload) in cases {
            tap.offer(&Bytes::from_static(topic), &Bytes::from(payload));
        }
        let took: Vec<(String, String)> = tap
            .take()
            .into_iter()
            .map(|t| {
                let topic = t.topic().to_string();
                (topic, String::from_utf8_lossy(&t.payload).into_owned())
            })
            .collect();
        let want = [
            ("t/workers/a/heartbeat", "a1"),
            ("t/workers/b/heartbeat", "b1"),
            ("t/workers/a/heartbeat", "a2"),
        ]
        .map(|(t, p)| (t.to_string(), p.to_string()));
        assert_eq!(took, want);
        assert_eq!(tap.dropped(), 1);
        // Taken: room again.
        tap.offer(
            &Bytes::from_static(b"t/workers/c/heartbeat"),
            &Bytes::from("c1"),
        );
        assert_eq!(tap.take().len(), 1);
        assert!(tap.take().is_empty());
    }
}
