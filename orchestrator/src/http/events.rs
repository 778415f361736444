//! `GET /api/events`: the dashboard's live view, as Server-Sent Events.
//!
//! A connection first gets `snapshot` (`{"jobs": [...], "workers": [...]}`,
//! as `/api/jobs` and `/api/workers` show them), then, whenever the core
//! handled an event and at most every [`EVERY`], only what changed: `job`
//! (one job, whole), `job_removed` (`{"job_id"}`), `worker`, `worker_removed`
//! (`{"worker_id"}`). A comment every 10 s keeps idle connections (and the
//! proxies between) open. The token is asked for like for any `/api/` path;
//! a browser sends it with `fetch` (EventSource cannot send headers).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use warp::sse::Event;

use crate::core::Core;

/// The most often a connection is sent what changed.
pub const EVERY: Duration = Duration::from_millis(250);
/// Connections at once; more get a `503`.
pub const MAX_CONNECTIONS: usize = 32;

/// Counts the open streams, and ends them all when the orchestrator stops
/// (an open dashboard must not hold the HTTP server's graceful shutdown).
pub struct Streams {
    open: AtomicUsize,
    closing: watch::Sender<bool>,
}

impl Default for Streams {
    fn default() -> Self {
        Streams {
            open: AtomicUsize::new(0),
            closing: watch::channel(false).0,
        }
    }
}

/// Held by one open stream.
pub struct Slot(Arc<Streams>);

impl Streams {
    /// A slot, unless [`MAX_CONNECTIONS`] are open.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        let taken = self.open.fetch_add(1, Ordering::AcqRel);
        if taken >= MAX_CONNECTIONS {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.clone()))
    }

    /// Ends every open stream (and every later one at once).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one connection has been sent: each item's JSON, by id.
#[derive(Default)]
struct Sent {
    jobs: HashMap<String, String>,
    workers: HashMap<String, String>,
}

/// Items as (id, JSON).
type Keyed = Vec<(String, String)>;

/// An item's id and its JSON.
fn keyed<T: Serialize>(items: &[T], id: impl Fn(&T) -> String) -> Keyed {
    items
        .iter()
        .map(|i| {
            (
                id(i),
                serde_json::to_string(i).unwrap_or_else(|_| "null".into()),
            )
        })
        .collect()
}

/// The events that bring a connection from what it was sent to `now`, in
/// order: changed or new items, then removed ones.
fn diff(
    sent: &mut HashMap<String, String>,
    now: Vec<(String, String)>,
    kind: &str,
    id_field: &str,
) -> Vec<Event> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::with_capacity(now.len());
    for (id, json) in now {
        if sent.get(&id) != Some(&json) {
            out.push(Event::default().event(kind).data(json.clone()));
        }
        seen.insert(id, json);
    }
    for id in sent.keys().filter(|id| !seen.contains_key(*id)) {
        let gone = serde_json::json!({ id_field: id }).to_string();
        out.push(Event::default().event(format!("{kind}_removed")).data(gone));
    }
    *sent = seen;
    out
}

struct Connection {
    core: Arc<Mutex<Core>>,
    changes: watch::Receiver<u64>,
    sent: Sent,
    queued: std::collections::VecDeque<Event>,
    first: bool,
    last: Option<Instant>,
    closing: watch::Receiver<bool>,
    _slot: Slot,
}

impl Connection {
    /// The views as they are now, keyed.
    fn views(&self) -> (Keyed, Keyed) {
        let core = self.core.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = keyed(&core.jobs(), |j| j.job_id.to_string());
        let workers = keyed(&core.workers(), |w| w.worker_id.clone());
        (jobs, workers)
    }

    /// The next event; `None` once the orchestrator stops.
    async fn next(&mut self) -> Option<Event> {
        let mut closing = self.closing.clone();
        tokio::select! {
            event = self.next_event() => event,
            _ = closing.wait_for(|c| *c) => None,
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Some(e);
            }
            if self.first {
                self.first = false;
                let (jobs, workers) = self.views();
                let data = format!(
                    "{{\"jobs\":[{}],\"workers\":[{}]}}",
                    jobs.iter()
                        .map(|(_, j)| j.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    workers
                        .iter()
                        .map(|(_, w)| w.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                );
                self.sent.jobs = jobs.into_iter().collect();
                self.sent.workers = workers.into_iter().collect();
                self.last = Some(Instant::now());
                return Some(Event::default().event("snapshot").data(data));
            }
            // The core handled something: at most every EVERY, what changed.
            self.changes.changed().await.ok()?;
            if let Some(last) = self.last {
                tokio::time::sleep_until(last + EVERY).await;
            }
            self.changes.borrow_and_update();
            self.last = Some(Instant::now());
            let (jobs, workers) = self.views();
            self.queued
                .extend(diff(&mut self.sent.jobs, jobs, "job", "job_id"));
            self.queued
                .extend(diff(&mut self.sent.workers, workers, "worker", "worker_id"));
        }
    }
}

/// The stream of one connection.
pub fn stream(
    core: Arc<Mutex<Core>>,
    changes: watch::Receiver<u64>,
    slot: Slot,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let connection = Connection {
        core,
        changes,
        sent: Sent::default(),
        queued: Default::default(),
        first: true,
        last: None,
        closing: slot.0.closing.subscribe(),
        _slot: slot,
    };
    stream::unfold(connection, |mut c| async move {
        let event = c.next().await?;
        Some((Ok(event), c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn only_what_changed_is_sent_and_what_went_is_named() {
        let mut sent = HashMap::new();
        let first = diff(&mut sent, items(&[("a", "1"), ("b", "2")]), "job", "job_id");
        assert_eq!(first.len(), 2);
        let same = diff(&mut sent, items(&[("a", "1"), ("b", "2")]), "job", "job_id");
        assert!(same.is_empty());
        let changed = diff(
            &mut sent,
            items(&[("a", "1"), ("b", "3"), ("c", "4")]),
            "job",
            "job_id",
        );
        assert_eq!(changed.len(), 2, "b changed, c is new");
        let gone = diff(&mut sent, items(&[("c", "4")]), "job", "job_id");
        assert_eq!(gone.len(), 2, "a and b removed");
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn streams_are_capped() {
        let streams = Arc::new(Streams::default());
        let held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .filter_map(|_| streams.take())
            .collect();
        assert_eq!(held.len(), MAX_CONNECTIONS);
        assert!(streams.take().is_none());
        drop(held);
        assert!(streams.take().is_some());
    }

    #[tokio::test]
    async fn closing_ends_every_stream() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = crate::store::Store::open(dir.path()).expect("store");
        let topics = transcode_common::topics::Topics::new("transcode").expect("topics");
        let settings = crate::core::CoreSettings::for_tests();
        let now = crate::core::Now::current();
        let core = crate::core::Core::open(store, topics, settings, None, now).expect("core");
        let core = Arc::new(Mutex::new(core));
        let (_tx, changes) = watch::channel(0);
        let streams = Arc::new(Streams::default());
        let slot = streams.take().expect("a slot");
        let mut s = Box::pin(stream(core, changes, slot));
        assert!(s.next().await.is_some(), "the snapshot");
        streams.close();
        let end = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
        assert!(
            matches!(end, Ok(None)),
            "the stream ends when the orchestrator stops"
        );
    }
}
