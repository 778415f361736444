//! The orchestrator's state machine: the worker registry and the jobs, fed
//! events (a submission, a worker's status, a heartbeat, the time) and
//! answering with the MQTT messages to publish. It writes every state change
//! to the store before it answers, so what was published is never ahead of
//! what survives a crash. It does no other IO, and is tested without any.
//!
//! A job's life: `queued` → `assigned` (to one worker, with an attempt
//! number) → `processing` → `completed` | `failed` | `cancelled`. A run whose
//! worker is lost, refuses, stalls or fails for a reason that is not the
//! input's goes back to `queued` and resumes at its last complete segment
//! on another worker, up to `max_attempts` failed runs. A worker that still
//! runs a job that moved on is told to stop it (fencing).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use transcode_common::topics::Topics;
use transcode_common::wire::{self, ErrorKind, Heartbeat, JobRequest, JobState, JobStatus};
use uuid::Uuid;

use crate::homeassistant::Discovery;
use crate::job::Job;
use crate::media::Media;
use crate::registry::{Registry, Transition, WorkerView};
use crate::scheduler::{self, Candidate};
use crate::segments::Segments;
use crate::store::Store;

/// A message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub heartbeat_timeout: Duration,
    pub max_attempts: u32,
    pub assign_timeout: Duration,
    /// A `processing` job with no status for this long is stuck (FFmpeg
    /// hangs on its input, say): it goes to another worker.
    pub stall_timeout: Duration,
    pub retention: Duration,
    /// Most jobs that may wait in the queue; more are refused.
    pub max_queued: usize,
    /// The longest heartbeat interval a worker's timeout counts.
    pub max_heartbeat_interval: Duration,
    /// An offline worker unheard of this long is forgotten.
    pub forget_after: Duration,
}

#[cfg(test)]
impl CoreSettings {
    /// Settings for tests: short timeouts, a queue of 10,000, a minute of
    /// retention.
    pub fn for_tests() -> CoreSettings {
        CoreSettings {
            max_queued: 10_000,
            heartbeat_timeout: Duration::from_secs(10),
            max_attempts: 3,
            assign_timeout: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(60),
            max_heartbeat_interval: Duration::from_secs(3600),
            forget_after: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The moment an event happens, on both clocks the core needs.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub ms: u64,
}

impl Now {
    /// Now on both clocks. `ms` is the wall clock as it was when the
    /// process started, plus the monotonic time since: every deadline the
    /// core keeps in milliseconds (stalls, assignments, settling, retention)
    /// is immune to a step of the wall clock (a board without a real-time
    /// clock that syncs NTP after the orchestrator started), and the
    /// timestamps it writes still read as dates.
    pub fn current() -> Now {
        static START: std::sync::OnceLock<(Instant, u64)> = std::sync::OnceLock::new();
        let (started, wall) = *START.get_or_init(|| (Instant::now(), transcode_common::unix_ms()));
        let instant = Instant::now();
        let since = instant.saturating_duration_since(started).as_millis() as u64;
        Now {
            instant,
            ms: wall.saturating_add(since),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JobError {
    #[error("{0}")]
    Invalid(String),
    #[error("job {0} does not exist")]
    NotFound(Uuid),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Store(String),
    /// Too many jobs wait already: try again later.
    #[error("{0}")]
    Full(String),
    /// The store cannot be written now: nothing changed, try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// One worker as `GET /api/workers` shows it, with the jobs we gave it.
pub type WorkerListing = WorkerView;

/// How long a running job may go unlisted by its worker's heartbeats
/// before the run counts as lost.
const UNLISTED_GRACE_MS: u64 = 3_000;

/// Invalid MQTT submissions remembered (to clear their status later).
const MAX_REJECTED: usize = 10_000;

pub struct Core {
    /// Home Assistant discovery, when `homeassistant.enabled`.
    ha: Option<announce::Announcer>,
    metrics: Metrics,
    /// The retained counters for dashboards.
    board: announce::Board,
    registry: Registry,
    jobs: HashMap<Uuid, Job>,
    store: Store,
    topics: Topics,
    settings: CoreSettings,
    next_seq: u64,
    booted: Instant,
    /// Ids answered with a `failed` status without becoming jobs (invalid
    /// MQTT submissions), with when: their retained status is cleared later.
    rejected: VecDeque<(Uuid, u64)>,
    /// Every job's finished segments (see `segments`).
    segments: HashMap<Uuid, Segments>,
    /// Running jobs a live heartbeat of their worker did not list, with the
    /// worker and when: lost only if still so after `UNLISTED_GRACE_MS`
    /// (the heartbeat may have overtaken the run's final status, which
    /// travels on another topic).
    unlisted: HashMap<(Uuid, String), u64>,
    /// When each split job's summed-up status was last published.
    mesh_status_at: HashMap<Uuid, Instant>,
    /// When a player last fetched a job's playlist or a segment through us,
    /// and when its holders were last told to keep its output.
    viewed: HashMap<Uuid, (Instant, Option<Instant>)>,
    /// The media library whose files workers may read over HTTP.
    media: Option<Arc<Media>>,
    /// What the event being handled changed (see `txn`).
    pending: txn::Pending,
    /// Running jobs whose progress changed since the last tick.
    progress_dirty: HashSet<Uuid>,
    /// Why the store cannot be written, while it cannot: nothing is taken
    /// or dispatched.
    store_fault: Option<String>,
    /// The store came back: what was heard meanwhile must be heard again.
    resync: bool,
}

impl Core {
    /// Loads every stored job.
    pub fn open(
        store: Store,
        topics: Topics,
        settings: CoreSettings,
        ha: Option<Discovery>,
        now: Now,
    ) -> Result<Core, JobError> {
        let jobs: HashMap<Uuid, Job> = store
            .load()
            .map_err(|e| JobError::Store(e.to_string()))?
            .into_iter()
            .map(|j| (j.job_id, j))
            .collect();
        let next_seq = jobs.values().map(|j| j.seq).max().unwrap_or(0) + 1;
        let running = jobs.values().filter(|j| j.is_running()).count();
        let queued = jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .count();
        let mut segments = store
            .load_segments()
            .map_err(|e| JobError::Store(e.to_string()))?;
        segments.retain(|id, _| jobs.contains_key(id));
        tracing::info!(jobs = jobs.len(), running, queued, "job store loaded");
        Ok(Core {
            ha: ha.map(announce::Announcer::new),
            board: announce::Board::default(),
            metrics: Metrics::default(),
            registry: Registry::new(
                settings.heartbeat_timeout,
                settings.max_heartbeat_interval,
                settings.forget_after,
            ),
            jobs,
            store,
            topics,
            settings,
            next_seq,
            booted: now.instant,
            rejected: VecDeque::new(),
            segments,
            unlisted: HashMap::new(),
            mesh_status_at: HashMap::new(),
            viewed: HashMap::new(),
            media: None,
            pending: txn::Pending::default(),
            progress_dirty: HashSet::new(),
            store_fault: None,
            resync: false,
        })
    }

    fn status_publish(&self, job: &Job, now: Now) -> Publish {
        Publish {
            topic: self.topics.job_status(&job.job_id.to_string()),
            payload: wire::encode(&job.status(now.ms)),
            retain: true,
        }
    }

    /// Tells a worker to stop its copy of a job that moved on, silently. With
    /// `attempt`, only runs up to that attempt stop: a newer run of the same
    /// job on that worker is the one we want.
    fn fence(&self, worker_id: &str, job_id: Uuid, attempt: Option<u32>) -> Publish {
        tracing::warn!(worker_id, %job_id, ?attempt, "worker still runs a job that moved on; telling it to stop");
        self.stop_message(worker_id, job_id, attempt, true)
    }

    /// A message on a worker's cancel topic: stop the job (with `attempt`,
    /// that run). `fenced`: silently, as the job moved on.
    fn stop_message(
        &self,
        worker_id: &str,
        job_id: Uuid,
        attempt: Option<u32>,
        fenced: bool,
    ) -> Publish {
        let order = wire::CancelOrder {
            job_id,
            fenced,
            attempt,
        };
        Publish {
            topic: self.topics.worker_cancel(worker_id),
            payload: wire::encode(&order),
            retain: false,
        }
    }

    /// What the broker should hold after we (re)connect: the statuses we own.
    /// `processing` ones are the holding worker's to publish.
    ///
    /// While our own connection was down we heard from nobody: the workers'
    /// heartbeat clocks and the restart grace start over, so nobody is
    /// declared lost for our outage.
    pub fn on_connected(&mut self, now: Now) -> Vec<Publish> {
        self.booted = now.instant;
        self.registry.refresh(now.instant);
        let mut out = self.announce_all();
        out.extend(self.stats(true));
        let mut jobs: Vec<&Job> = self
            .jobs
            .values()
            // A split job's status is ours in every state.
            .filter(|j| j.state != JobState::Processing || j.is_mesh_mode)
            .collect();
        jobs.sort_by_key(|j| j.seq);
        out.extend(jobs.into_iter().map(|j| self.status_publish(j, now)));
        // Segment reports sent while we were away are lost: the workers
        // running jobs send their inventories again.
        out.extend(self.ask_inventories());
        out.extend(self.unacknowledged_assignments(None));
        out
    }
}

fn log_transition(worker_id: &str, transition: &Option<Transition>) {
    match transition {
        Some(Transition::Online) => tracing::info!(worker_id, "worker is online"),
        Some(Transition::Offline(why)) => tracing::warn!(worker_id, "worker is offline: {why}"),
        None => {}
    }
}

mod announce;
mod dispatch;
mod intake;
mod mesh;
mod metrics;
use metrics::Metrics;
mod orders;
mod sources;
mod status;
mod stream;
#[cfg(test)]
mod tests;
mod tick;
mod txn;
mod views;
mod workers;

pub use stream::{PlaylistAnswer, SegmentAnswer};
