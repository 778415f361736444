//! The live registry of workers, free of IO: it is fed MQTT payloads and the
//! current time, and says who came online or went offline.
//!
//! A worker is online while its availability is not `offline` and its last
//! heartbeat is younger than the timeout (the configured
//! `scheduler.heartbeat_timeout_s`, or three of the worker's own intervals
//! when that is longer, so a slow heartbeat never flaps).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use transcode_common::topics::{OFFLINE, ONLINE};
use transcode_common::wire::{self, Heartbeat};

/// One worker as `GET /api/workers` shows it: a wire type, so that
/// `transcodectl` reads what is written here.
pub use transcode_common::wire::WorkerView;

/// More distinct workers than this are refused: a flood of invented ids must
/// not grow the orchestrator's memory without bound.
pub const MAX_WORKERS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    Online,
    Offline,
}

#[derive(Debug, Clone)]
struct Entry {
    heartbeat: Option<Heartbeat>,
    availability: Option<Availability>,
    /// When the last heartbeat arrived (our clock, not the worker's).
    heartbeat_at: Option<Instant>,
    /// Whether a heartbeat came live (not replayed from the broker's store).
    heard_live: bool,
    /// Unix ms of the last message from the worker, for people.
    last_seen_ms: Option<u64>,
    /// When the last message from the worker arrived (our clock).
    heard_at: Instant,
    /// What we last reported, to detect transitions.
    online: bool,
}

/// A worker's change that is worth a log line (and, later, a requeue).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Online,
    Offline(String),
}

#[derive(Debug)]
pub struct Registry {
    workers: BTreeMap<String, Entry>,
    timeouts: Timeouts,
    /// An offline worker unheard of this long is forgotten.
    forget_after: Duration,
}

impl Registry {
    pub fn new(timeout: Duration, max_interval: Duration, forget_after: Duration) -> Registry {
        Registry {
            workers: BTreeMap::new(),
            timeouts: Timeouts {
                timeout,
                max_interval,
            },
            forget_after,
        }
    }

    /// Offline workers unheard of for `registry.forget_after_s` (by our
    /// clock, or by the time in a replayed heartbeat of theirs): they leave
    /// the registry, and their ids are returned so their retained topics
    /// can be cleared.
    pub fn forget(&mut self, now: Instant, now_ms: u64) -> Vec<String> {
        let after = self.forget_after;
        let after_ms = after.as_millis() as u64;
        let gone: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, e)| !e.online)
            .filter(|(_, e)| {
                now.saturating_duration_since(e.heard_at) >= after
                    || e.heartbeat
                        .as_ref()
                        .and_then(|h| h.timestamp)
                        .is_some_and(|t| t.saturating_add(after_ms) <= now_ms)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.workers.remove(id);
        }
        gone
    }

    fn entry(&mut self, worker_id: &str, now: Instant) -> Result<&mut Entry, String> {
        if !self.workers.contains_key(worker_id) && self.workers.len() >= MAX_WORKERS {
            return Err(format!(
                "worker {worker_id} ignored: already tracking {MAX_WORKERS} workers"
            ));
        }
        Ok(self
            .workers
            .entry(worker_id.to_string())
            .or_insert_with(|| Entry {
                heartbeat: None,
                availability: None,
                heartbeat_at: None,
                heard_live: false,
                last_seen_ms: None,
                heard_at: now,
                online: false,
            }))
    }

    /// A message on `.../workers/{worker_id}/heartbeat`. `retained` is true
    /// for a stored copy replayed by the broker (no proof of life on its own).
    pub fn on_heartbeat(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        retained: bool,
        now: Instant,
        now_ms: u64,
    ) -> Result<Option<Transition>, String> {
        transcode_common::validate::worker_id(worker_id)
            .map_err(|e| format!("heartbeat on a topic with a bad worker id: {e}"))?;
        if payload.is_empty() {
            // An empty retained publish clears the topic: an operator (or we)
            // removed this worker for good.
            self.workers.remove(worker_id);
            return Ok(None);
        }
        let hb: Heartbeat = wire::decode(payload)
            .map_err(|e| format!("heartbeat from worker {worker_id} ignored: {e}"))?;
        hb.validate()
            .map_err(|e| format!("heartbeat from worker {worker_id} ignored: {e}"))?;
        if hb.worker_id != worker_id {
            return Err(format!(
                "heartbeat on worker {worker_id}'s topic ignored: it says it is worker {:?}",
                hb.worker_id
            ));
        }
        let entry = self.entry(worker_id, now)?;
        entry.heartbeat = Some(hb);
        entry.heartbeat_at = Some(now);
        entry.heard_at = now;
        entry.last_seen_ms = Some(now_ms);
        if !retained {
            // A live heartbeat proves the worker is there, whatever an older
            // last will said.
            entry.availability = Some(Availability::Online);
            entry.heard_live = true;
        }
        Ok(self.update(worker_id, now))
    }

    /// A message on `.../workers/{worker_id}/availability`.
    pub fn on_availability(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        now: Instant,
        now_ms: u64,
    ) -> Result<Option<Transition>, String> {
        transcode_common::validate::worker_id(worker_id)
            .map_err(|e| format!("availability on a topic with a bad worker id: {e}"))?;
        let availability = match payload {
            // A cleared topic says nothing of a worker we do not know (one
            // we just forgot, say).
            b"" if !self.workers.contains_key(worker_id) => return Ok(None),
            b"" => None,
            p if p == ONLINE.as_bytes() => Some(Availability::Online),
            p if p == OFFLINE.as_bytes() => Some(Availability::Offline),
            other => {
                return Err(format!(
                "availability of worker {worker_id} ignored: {:?} is neither online nor offline",
                transcode_common::validate::truncate(&String::from_utf8_lossy(other), 40)
            ))
            }
        };
        let entry = self.entry(worker_id, now)?;
        entry.availability = availability;
        entry.heard_at = now;
        entry.last_seen_ms = Some(now_ms);
        Ok(self.update(worker_id, now))
    }

    /// Recomputes every worker; returns those that timed out. Runs every
    /// tick over every worker: one pass, no lookups, no copies of ids but
    /// the changed ones'.
    pub fn sweep(&mut self, now: Instant) -> Vec<(String, Transition)> {
        let timeouts = self.timeouts;
        self.workers
            .iter_mut()
            .filter_map(|(id, entry)| transition(entry, now, timeouts).map(|t| (id.clone(), t)))
            .collect()
    }

    fn update(&mut self, worker_id: &str, now: Instant) -> Option<Transition> {
        transition(self.workers.get_mut(worker_id)?, now, self.timeouts)
    }

    pub fn snapshot(&self) -> Vec<WorkerView> {
        self.workers
            .iter()
            .map(|(id, e)| WorkerView {
                worker_id: id.clone(),
                online: e.online,
                last_seen: e.last_seen_ms,
                heartbeat: e.heartbeat.clone(),
                jobs: e
                    .heartbeat
                    .as_ref()
                    .map(|h| h.active_jobs.iter().map(|j| j.to_string()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// `Some(online)` for a worker we know, `None` for one never seen.
    pub fn is_online(&self, worker_id: &str) -> Option<bool> {
        self.workers.get(worker_id).map(|e| e.online)
    }

    pub fn heartbeat(&self, worker_id: &str) -> Option<&Heartbeat> {
        self.workers.get(worker_id)?.heartbeat.as_ref()
    }

    /// Restarts every worker's heartbeat clock, after a time in which we
    /// could not have heard from anyone (our own connection was down).
    pub fn refresh(&mut self, now: Instant) {
        for e in self.workers.values_mut() {
            if e.heartbeat_at.is_some() {
                e.heartbeat_at = Some(now);
            }
        }
    }

    /// Every worker with a heartbeat: (heartbeat, online).
    pub fn with_heartbeats(&self) -> impl Iterator<Item = (&Heartbeat, bool)> {
        self.workers
            .values()
            .filter_map(|e| e.heartbeat.as_ref().map(|h| (h, e.online)))
    }

    pub fn online_count(&self) -> usize {
        self.workers.values().filter(|e| e.online).count()
    }
}

/// How long a worker may be silent before it counts as offline.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// The configured timeout.
    timeout: Duration,
    /// The longest heartbeat interval a worker's own timeout counts.
    max_interval: Duration,
}

impl Timeouts {
    /// Three of the worker's own heartbeat intervals (an interval counts up
    /// to `registry.max_heartbeat_interval_s`), at least the configured
    /// timeout: whatever interval a heartbeat claims, a silent worker goes
    /// offline within that bound.
    fn of(self, entry: &Entry) -> Duration {
        let own = entry
            .heartbeat
            .as_ref()
            .and_then(|h| h.interval_s)
            .map(|s| {
                Duration::from_secs(s)
                    .min(self.max_interval)
                    .saturating_mul(3)
            })
            .unwrap_or_default();
        self.timeout.max(own)
    }
}

/// Whether a worker counts as online now.
fn alive(entry: &Entry, now: Instant, timeout: Duration) -> bool {
    // A replayed heartbeat alone proves nothing: a dead worker's stays in
    // the broker's store. It counts once availability says online.
    let evidence = entry.heard_live || entry.availability == Some(Availability::Online);
    evidence
        && entry.availability != Some(Availability::Offline)
        && entry
            .heartbeat_at
            .is_some_and(|at| now.saturating_duration_since(at) <= timeout)
}

/// The worker's change since we last looked, noted in its entry.
fn transition(entry: &mut Entry, now: Instant, timeouts: Timeouts) -> Option<Transition> {
    let online = alive(entry, now, timeouts.of(entry));
    if online == entry.online {
        return None;
    }
    let reason = if entry.availability == Some(Availability::Offline) {
        "its availability is offline (it shut down or its connection dropped)".to_string()
    } else {
        format!(
            "no heartbeat for {} s",
            entry
                .heartbeat_at
                .map(|at| now.saturating_duration_since(at).as_secs())
                .unwrap_or_default()
        )
    };
    entry.online = online;
    Some(if online {
        Transition::Online
    } else {
        Transition::Offline(reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, interval: u64) -> Vec<u8> {
        format!(
            r#"{{"worker_id":"{id}","ip_address":"10.0.0.2","port":8080,"os":"linux","hw_accel":[],"status":"idle","cpu_usage":3,"interval_s":{interval}}}"#
        )
        .into_bytes()
    }

    enum Step {
        Heartbeat(&'static str, bool),
        Avail(&'static [u8]),
        Wait(u64),
    }

    #[test]
    fn transitions() {
        use Step::*;
        // Timeout 10 s; the worker's own interval is 2 s (3 x 2 < 10).
        let cases: Vec<(&str, Vec<Step>, bool)> = vec![
            ("live heartbeat", vec![Heartbeat("w", false)], true),
            (
                "online then heartbeat",
                vec![Avail(b"online"), Heartbeat("w", false)],
                true,
            ),
            ("availability alone", vec![Avail(b"online")], false),
            (
                "last will",
                vec![Heartbeat("w", false), Avail(b"offline")],
                false,
            ),
            ("timeout", vec![Heartbeat("w", false), Wait(11)], false),
            ("within timeout", vec![Heartbeat("w", false), Wait(9)], true),
            (
                "back after will",
                vec![
                    Heartbeat("w", false),
                    Avail(b"offline"),
                    Avail(b"online"),
                    Heartbeat("w", false),
                ],
                true,
            ),
            (
                "retained heartbeat of a dead worker",
                vec![Avail(b"offline"), Heartbeat("w", true)],
                false,
            ),
            (
                "retained heartbeat, unknown availability",
                vec![Heartbeat("w", true)],
                false,
            ),
            (
                "retained heartbeat, then online",
                vec![Heartbeat("w", true), Avail(b"online")],
                true,
            ),
            (
                "live heartbeat beats an old will",
                vec![Avail(b"offline"), Heartbeat("w", false)],
                true,
            ),
            (
                "heartbeat cleared",
                vec![Heartbeat("w", false), Heartbeat("", false)],
                false,
            ),
        ];
        for (name, steps, want_online) in cases {
            let mut r = Registry::new(
                Duration::from_secs(10),
                Duration::from_secs(3600),
                Duration::from_secs(7 * 24 * 3600),
            );
            let mut now = Instant::now();
            for step in steps {
                match step {
                    Heartbeat(id, retained) => {
                        let payload = if id.is_empty() { vec![] } else { hb(id, 2) };
                        r.on_heartbeat("w", &payload, retained, now, 1).unwrap();
                    }
                    Avail(p) => {
                        r.on_availability("w", p, now, 1).unwrap();
                    }
                    Wait(s) => {
                        now += Duration::from_secs(s);
                        r.sweep(now);
                    }
                }
            }
            let online = r.snapshot().iter().any(|w| w.worker_id == "w" && w.online);
            assert_eq!(online, want_online, "{name}");
        }
    }

    #[test]
    fn slow_heartbeats_get_three_intervals() {
        let mut r = Registry::new(
            Duration::from_secs(10),
            Duration::from_secs(3600),
            Duration::from_secs(7 * 24 * 3600),
        );
        let now = Instant::now();
        r.on_heartbeat("w", &hb("w", 60), false, now, 1).unwrap();
        assert!(r.sweep(now + Duration::from_secs(170)).is_empty());
        let gone = r.sweep(now + Duration::from_secs(181));
        assert_eq!(gone.len(), 1);
        assert!(matches!(&gone[0].1, Transition::Offline(why) if why.contains("no heartbeat")));
    }

    #[test]
    fn a_heartbeat_interval_counts_only_up_to_the_bound() {
        let mut r = Registry::new(
            Duration::from_secs(10),
            Duration::from_secs(20),
            Duration::from_secs(3600),
        );
        let now = Instant::now();
        r.on_heartbeat("w", &hb("w", 1_000_000_000_000), false, now, 1)
            .unwrap();
        assert!(r.sweep(now + Duration::from_secs(59)).is_empty());
        assert_eq!(r.sweep(now + Duration::from_secs(61)).len(), 1);
    }

    #[test]
    fn offline_workers_are_forgotten_after_a_while() {
        let week = Duration::from_secs(7 * 24 * 3600);
        let mut r = Registry::new(Duration::from_secs(10), Duration::from_secs(3600), week);
        let now = Instant::now();
        let now_ms = 1_800_000_000_000u64;
        r.on_heartbeat("live", &hb("live", 2), false, now, now_ms)
            .unwrap();
        r.on_heartbeat("dead", &hb("dead", 2), false, now, now_ms)
            .unwrap();
        r.on_availability("dead", b"offline", now, now_ms).unwrap();
        // A replayed heartbeat made two weeks ago, of a worker offline since.
        let old = format!(
            r#"{{"worker_id":"old","ip_address":"10.0.0.3","port":8080,"os":"linux","hw_accel":[],"status":"idle","cpu_usage":3,"timestamp":{}}}"#,
            now_ms - 2 * week.as_millis() as u64
        );
        r.on_heartbeat("old", old.as_bytes(), true, now, now_ms)
            .unwrap();
        assert_eq!(r.forget(now, now_ms), ["old"]);
        let later = now + week;
        // Heard of within the week: the live one is online and stays.
        r.on_heartbeat("live", &hb("live", 2), false, later, now_ms)
            .unwrap();
        r.sweep(later);
        assert_eq!(r.forget(later, now_ms), ["dead"]);
        assert_eq!(r.snapshot().len(), 1);
    }

    #[test]
    fn bad_messages_are_refused_and_change_nothing() {
        let now = Instant::now();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("w", b"not json".to_vec(), "worker w"),
            ("w", vec![0xff, 0xfe], "UTF-8"),
            ("w", vec![b'{'; 1024 * 1024], "bytes"),
            ("w", hb("other", 2), "says it is worker"),
            ("w", br#"{"worker_id":"w","ip_address":"x","port":"80","os":"linux","hw_accel":[],"status":"idle","cpu_usage":1}"#.to_vec(), "port"),
            ("w", br#"{"worker_id":"w","ip_address":"x","port":80,"os":"linux","hw_accel":[],"status":"idle","cpu_usage":500}"#.to_vec(), "cpu_usage"),
            ("w+", hb("w+", 2), "bad worker id"),
        ];
        for (topic_id, payload, needle) in cases {
            let mut r = Registry::new(
                Duration::from_secs(10),
                Duration::from_secs(3600),
                Duration::from_secs(7 * 24 * 3600),
            );
            r.on_heartbeat("w", &hb("w", 2), false, now, 1).unwrap();
            let before = r.snapshot();
            let err = r
                .on_heartbeat(topic_id, &payload, false, now, 2)
                .expect_err(needle);
            assert!(err.contains(needle), "{err}");
            assert_eq!(r.snapshot(), before, "{needle}");
        }
        let mut r = Registry::new(
            Duration::from_secs(10),
            Duration::from_secs(3600),
            Duration::from_secs(7 * 24 * 3600),
        );
        assert!(r.on_availability("w", b"maybe", now, 1).is_err());
        assert!(r.snapshot().is_empty());
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut r = Registry::new(
            Duration::from_secs(10),
            Duration::from_secs(3600),
            Duration::from_secs(7 * 24 * 3600),
        );
        let now = Instant::now();
        assert_eq!(
            r.on_heartbeat("w", &hb("w", 2), false, now, 1),
            Ok(Some(Transition::Online))
        );
        assert_eq!(r.on_heartbeat("w", &hb("w", 2), false, now, 1), Ok(None));
        assert!(matches!(
            r.on_availability("w", b"offline", now, 1),
            Ok(Some(Transition::Offline(_)))
        ));
        assert_eq!(r.online_count(), 0);
    }
}
