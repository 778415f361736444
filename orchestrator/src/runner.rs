//! Where the core's events run, and how what they decide leaves.
//!
//! An event may write the store (a commit is an fsync), so none runs on the
//! async runtime's threads: they queue for one thread of their own and run
//! there one at a time, each holding the core's lock for its work and at
//! most one commit. HTTP handlers that only read take the lock briefly.
//!
//! What an event decides to publish goes, in the order decided, to the
//! outbox, which the publisher empties: a task that seals orders to workers
//! and waits for room in the MQTT connection's queue rather than drop a message.
//! The core thread never waits for the broker (nor does anything that feeds
//! it wait on the core while the broker is slow: no cycle of full queues).
//! The outbox holds only what the core decided, and a retained state waiting
//! there is replaced by a newer one for the same topic.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::bus::Bus;
use crate::core::{Core, Publish};

/// Events waiting for the core thread.
const EVENT_QUEUE: usize = 1024;

type Event = Box<dyn FnOnce(&mut Core) -> Vec<Publish> + Send>;

/// Turns a message to publish into its final payload (sealing orders).
pub type Seal = Box<dyn Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync>;

/// Hands events to the core thread.
#[derive(Clone)]
pub struct Runner {
    events: mpsc::Sender<Event>,
    /// Counts the events handled: what watches the core (the dashboard's
    /// event stream) wakes when it moves.
    handled: watch::Receiver<u64>,
}

/// Messages decided and not yet handed to the MQTT connection.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<(u64, Publish)>,
    /// The newest waiting message of each retained topic: older ones are
    /// skipped.
    newest: HashMap<String, u64>,
    next: u64,
}

impl Outbox {
    fn push(&mut self, p: Publish) {
        self.next += 1;
        if p.retain {
            self.newest.insert(p.topic.clone(), self.next);
        }
        self.queue.push_back((self.next, p));
    }

    fn pop(&mut self) -> Option<Publish> {
        while let Some((seq, p)) = self.queue.pop_front() {
            if !p.retain {
                return Some(p);
            }
            if self.newest.get(&p.topic) == Some(&seq) {
                self.newest.remove(&p.topic);
                return Some(p);
            }
        }
        None
    }
}

impl Runner {
    /// Starts the core thread and the publisher.
    pub fn start(core: Arc<Mutex<Core>>, bus: Bus, seal: Seal) -> Runner {
        let (events, mut queue) = mpsc::channel::<Event>(EVENT_QUEUE);
        let (count, handled) = watch::channel(0u64);
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let ready = Arc::new(Notify::new());
        let (filled, filler) = (outbox.clone(), ready.clone());
        let spawned = std::thread::Builder::new()
            .name("core".into())
            .spawn(move || {
                while let Some(event) = queue.blocking_recv() {
                    let out = {
                        let mut core = core.lock().unwrap_or_else(|p| p.into_inner());
                        event(&mut core)
                    };
                    count.send_modify(|n| *n = n.wrapping_add(1));
                    if out.is_empty() {
                        continue;
                    }
                    let mut outbox = filled.lock().unwrap_or_else(|p| p.into_inner());
                    for p in out {
                        outbox.push(p);
                    }
                    filler.notify_one();
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the core's thread: {e}");
        }
        tokio::spawn(async move {
            loop {
                let next = outbox.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(p) = next else {
                    ready.notified().await;
                    continue;
                };
                let payload = seal(&p.topic, p.payload);
                if let Err(e) = bus.publish(&p.topic, p.retain, payload).await {
                    // Only when the client is gone (shutdown).
                    tracing::warn!(topic = %p.topic, error = %e, "not published: the MQTT connection stopped");
                    return;
                }
            }
        });
        Runner { events, handled }
    }

    /// Changes whenever an event was handled (and the core may have
    /// changed).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.handled.clone()
    }

    /// Queues an event; waits only for room in the queue.
    pub async fn send(&self, event: impl FnOnce(&mut Core) -> Vec<Publish> + Send + 'static) {
        if self.events.send(Box::new(event)).await.is_err() {
            tracing::warn!("an event was dropped: the core's thread stopped");
        }
    }

    /// Runs an event and returns its answer; `None` when the core's thread
    /// stopped.
    pub async fn ask<T: Send + 'static>(
        &self,
        event: impl FnOnce(&mut Core) -> (T, Vec<Publish>) + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.send(move |core| {
            let (answer, out) = event(core);
            let _ = tx.send(answer);
            out
        })
        .await;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, payload: &str, retain: bool) -> Publish {
        Publish {
            topic: topic.into(),
            payload: payload.into(),
            retain,
        }
    }

    #[test]
    fn the_outbox_keeps_order_and_only_the_newest_retained_state() {
        let mut o = Outbox::default();
        o.push(p("jobs/a/status", "queued", true));
        o.push(p("workers/w/jobs", "order 1", false));
        o.push(p("jobs/b/status", "queued", true));
        o.push(p("jobs/a/status", "assigned", true));
        o.push(p("workers/w/jobs", "order 2", false));
        let out: Vec<String> = std::iter::from_fn(|| o.pop())
            .map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)))
            .collect();
        assert_eq!(
            out,
            [
                "workers/w/jobs order 1",
                "jobs/b/status queued",
                "jobs/a/status assigned",
                "workers/w/jobs order 2"
            ]
        );
        assert!(o.newest.is_empty());
    }
}
