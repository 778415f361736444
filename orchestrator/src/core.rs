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

use transcode_common::metrics::{Exposition, Histogram};
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

/// What `/metrics` counts since this process started.
struct Metrics {
    /// Seconds from entering the queue to being assigned.
    dispatch_latency: Histogram,
    /// Seconds from the first `processing` to `completed`.
    job_duration: Histogram,
    submitted: u64,
    requeues: u64,
    finished: HashMap<JobState, u64>,
}

/// How long a running job may go unlisted by its worker's heartbeats
/// before the run counts as lost.
const UNLISTED_GRACE_MS: u64 = 3_000;

/// Invalid MQTT submissions remembered (to clear their status later).
const MAX_REJECTED: usize = 10_000;

const LATENCY_BOUNDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const DURATION_BOUNDS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

pub struct Core {
    /// Home Assistant discovery, when `homeassistant.enabled`.
    ha: Option<Discovery>,
    /// Workers whose discovery config was published.
    announced: HashSet<String>,
    metrics: Metrics,
    /// The counters last published on the stats topic.
    last_stats: Option<wire::OrchestratorStats>,
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
            ha,
            announced: HashSet::new(),
            last_stats: None,
            metrics: Metrics {
                dispatch_latency: Histogram::new(LATENCY_BOUNDS),
                job_duration: Histogram::new(DURATION_BOUNDS),
                submitted: 0,
                requeues: 0,
                finished: HashMap::new(),
            },
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

    /// Counts a job that just reached a final state.
    fn count_final(&mut self, job: &Job) {
        *self.metrics.finished.entry(job.state).or_default() += 1;
        if job.state == JobState::Completed {
            if let (Some(start), Some(end)) = (job.started_at, job.finished_at) {
                self.metrics
                    .job_duration
                    .observe(end.saturating_sub(start) as f64 / 1000.0);
            }
        }
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

    // ----- Home Assistant -------------------------------------------------

    /// The topic Home Assistant announces its start on, when enabled.
    pub fn ha_status_topic(&self) -> Option<String> {
        self.ha.as_ref().map(Discovery::ha_status_topic)
    }

    /// Home Assistant (re)started: it wants every config and state again.
    pub fn on_ha_status(&mut self, payload: &[u8]) -> Vec<Publish> {
        if payload != crate::homeassistant::HA_ONLINE.as_bytes() {
            return Vec::new();
        }
        tracing::info!("Home Assistant is online; publishing discovery again");
        let mut out = self.announce_all();
        out.extend(self.stats(true));
        out
    }

    fn config_publish((topic, payload): (String, Vec<u8>)) -> Publish {
        Publish {
            topic,
            payload,
            retain: true,
        }
    }

    /// The orchestrator's config and every known worker's.
    fn announce_all(&mut self) -> Vec<Publish> {
        let Some(ha) = &self.ha else {
            return Vec::new();
        };
        let mut out = vec![Self::config_publish(ha.orchestrator_config())];
        let workers: Vec<(String, Option<Heartbeat>)> = self
            .registry
            .snapshot()
            .into_iter()
            .map(|w| (w.worker_id, w.heartbeat))
            .collect();
        for (id, hb) in workers {
            out.push(Self::config_publish(ha.worker_config(&id, hb.as_ref())));
            self.announced.insert(id);
        }
        out
    }

    /// A worker's config the first time we see it; its removal when it is
    /// forgotten.
    fn announce(&mut self, worker_id: &str) -> Vec<Publish> {
        let Some(ha) = &self.ha else {
            return Vec::new();
        };
        match self.registry.is_online(worker_id) {
            Some(_) if !self.announced.contains(worker_id) => {
                let hb = self.registry.heartbeat(worker_id);
                let config = Self::config_publish(ha.worker_config(worker_id, hb));
                self.announced.insert(worker_id.to_string());
                vec![config]
            }
            None if self.announced.remove(worker_id) => {
                vec![Self::config_publish(ha.remove_worker(worker_id))]
            }
            _ => Vec::new(),
        }
    }

    // ----- intake -------------------------------------------------------

    /// A new job from HTTP or MQTT. Re-submitting the same request with the
    /// same id answers the existing job.
    pub fn submit(&mut self, req: JobRequest, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        self.atomically(|core| core.take_submission(req, now))
    }

    fn take_submission(
        &mut self,
        req: JobRequest,
        now: Now,
    ) -> Result<(Job, Vec<Publish>), JobError> {
        req.validate().map_err(JobError::Invalid)?;
        let job_id = req.job_id.unwrap_or_else(Uuid::new_v4);
        if let Some(existing) = self.jobs.get(&job_id) {
            if existing.same_request(&req) {
                return Ok((existing.clone(), Vec::new()));
            }
            return Err(JobError::Conflict(format!(
                "job {job_id} already exists ({}) with other settings; leave job_id out to get a new one",
                existing.state.as_str()
            )));
        }
        let queued = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .count();
        if queued >= self.settings.max_queued {
            return Err(JobError::Full(format!(
                "the queue is full: {queued} jobs wait already (scheduler.max_queued_jobs); submit again when some have started"
            )));
        }
        self.check_source(&req.source_path)?;
        self.refuse_while_faulty()?;
        self.rejected.retain(|(id, _)| *id != job_id);
        let job = Job::from_request(&req, job_id, self.next_seq, now.ms);
        self.next_seq += 1;
        self.metrics.submitted += 1;
        self.save(job.clone());
        tracing::info!(%job_id, source = %job.source_path, "job queued");
        let mut out = vec![self.status_publish(&job, now)];
        out.extend(self.dispatch(now));
        let job = self.jobs.get(&job_id).cloned().unwrap_or(job);
        Ok((job, out))
    }

    /// An unusable submission on MQTT that carried a job id: answered with a
    /// `failed` status, cleared after the retention time. `later`: nothing
    /// was wrong with it (the store could not be written), so it names no
    /// kind of error and the same request may be sent again.
    pub fn reject(&mut self, job_id: Uuid, error: String, later: bool, now: Now) -> Vec<Publish> {
        if self.jobs.contains_key(&job_id) {
            return Vec::new();
        }
        let mut status = JobStatus::new(job_id, JobState::Failed);
        status.error = Some(error);
        status.error_kind = (!later).then_some(ErrorKind::Input);
        status.timestamp = Some(now.ms);
        self.rejected.retain(|(id, _)| *id != job_id);
        self.rejected.push_back((job_id, now.ms));
        while self.rejected.len() > MAX_REJECTED {
            self.rejected.pop_front();
        }
        vec![Publish {
            topic: self.topics.job_status(&job_id.to_string()),
            payload: wire::encode(&status),
            retain: true,
        }]
    }

    /// Cancels a job wherever it is.
    pub fn cancel(&mut self, job_id: Uuid, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        self.atomically(|core| core.take_cancel(job_id, now))
    }

    fn take_cancel(&mut self, job_id: Uuid, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        let mut job = self
            .jobs
            .get(&job_id)
            .cloned()
            .ok_or(JobError::NotFound(job_id))?;
        if job.state.is_final() {
            return Err(JobError::Conflict(format!(
                "job {job_id} is already {}",
                job.state.as_str()
            )));
        }
        let mut out = Vec::new();
        for c in job.chunks.iter_mut().filter(|c| c.is_active()) {
            if c.is_running() {
                out.push(self.stop_message(&c.worker_id, job_id, Some(c.attempt), false));
            }
            c.state = JobState::Cancelled;
            c.settling_since = None;
            c.fps = 0.0;
            c.speed = None;
        }
        if job.is_running() && !job.is_mesh_mode {
            if let Some(w) = &job.worker_id {
                out.push(self.stop_message(w, job_id, None, false));
            }
        }
        job.state = JobState::Cancelled;
        job.speed = None;
        job.eta_s = None;
        job.fps = 0.0;
        job.settling_since = None;
        job.finished_at = Some(now.ms);
        job.updated_at = now.ms;
        tracing::info!(%job_id, "job cancelled");
        self.count_final(&job);
        self.save(job.clone());
        out.push(self.status_publish(&job, now));
        out.extend(self.delete_outputs(job_id));
        out.extend(self.dispatch(now));
        Ok((job, out))
    }

    /// A finished job submitted again as a new job (the dashboard's
    /// "run again"): the old one stays in the history as it ended.
    pub fn run_again(&mut self, job_id: Uuid, now: Now) -> Result<(Job, Vec<Publish>), JobError> {
        let old = self.jobs.get(&job_id).ok_or(JobError::NotFound(job_id))?;
        if !old.state.is_final() {
            return Err(JobError::Conflict(format!(
                "job {job_id} is still {}; cancel it first or wait for it to end",
                old.state.as_str()
            )));
        }
        let request = old.request();
        let (job, out) = self.submit(request, now)?;
        tracing::info!(job_id = %job.job_id, from = %job_id, "job submitted again");
        Ok((job, out))
    }

    // ----- what workers say ----------------------------------------------

    /// A message on `.../jobs/{job_id}/status`.
    pub fn on_status(&mut self, topic_job_id: &str, payload: &[u8], now: Now) -> Vec<Publish> {
        self.atomically(|core| core.take_status(topic_job_id, payload, now))
    }

    fn take_status(&mut self, topic_job_id: &str, payload: &[u8], now: Now) -> Vec<Publish> {
        if payload.is_empty() {
            return Vec::new(); // a cleared topic
        }
        let Ok(job_id) = Uuid::parse_str(topic_job_id) else {
            tracing::debug!(topic_job_id, "status on a topic that names no job id");
            return Vec::new();
        };
        let status: JobStatus = match wire::decode(payload)
            .map_err(|e| e.to_string())
            .and_then(|s: JobStatus| s.validate().map(|_| s))
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%job_id, "job status ignored: {e}");
                return Vec::new();
            }
        };
        if status.job_id != job_id {
            tracing::warn!(%job_id, "job status ignored: it names job {}", status.job_id);
            return Vec::new();
        }
        // Our own statuses come back to us: only workers publish these states.
        let Some(worker) = status.worker_id.clone() else {
            return Vec::new();
        };
        if !matches!(
            status.state,
            JobState::Processing | JobState::Completed | JobState::Failed | JobState::Cancelled
        ) {
            return Vec::new();
        }
        let Some(mut job) = self.jobs.get(&job_id).cloned() else {
            return Vec::new();
        };
        if job.is_mesh_mode {
            tracing::warn!(%job_id, worker_id = %worker, "job status refused: job {job_id} is split into chunks, whose workers report on .../jobs/{job_id}/chunks/<attempt>");
            return Vec::new();
        }
        let current = job.is_running()
            && job.worker_id.as_deref() == Some(worker.as_str())
            && status.attempt == Some(job.attempt);
        if !current {
            if job.worker_id.as_deref() == Some(worker.as_str())
                && status.attempt == Some(job.attempt)
            {
                // The holder says again what it said (a retained status read
                // again, its final statuses sent again after a reconnection).
                tracing::debug!(%job_id, worker_id = %worker, "job status {} already taken", status.state.as_str());
            } else {
                tracing::info!(
                    %job_id,
                    worker_id = %worker,
                    "job status {} ignored: job {job_id} is {} on {} (attempt {}), not worker {worker}'s attempt {}",
                    status.state.as_str(),
                    job.state.as_str(),
                    job.worker_id.as_deref().unwrap_or("no worker"),
                    job.attempt,
                    status.attempt.map_or("none".to_string(), |a| a.to_string()),
                );
            }
            let mut out = Vec::new();
            if status.state == JobState::Processing {
                out.push(self.fence(&worker, job_id, status.attempt));
            }
            // Put the truth back on the retained topic.
            if job.state != JobState::Processing && status.state != job.state {
                out.push(self.status_publish(&job, now));
            }
            return out;
        }
        job.updated_at = now.ms;
        let mut out = Vec::new();
        match status.state {
            JobState::Processing => {
                let became = job.state != JobState::Processing;
                let resume_moved =
                    status.segments_done.is_some() && status.segments_done != job.segments_done;
                job.state = JobState::Processing;
                job.started_at.get_or_insert(now.ms);
                if job.processing_since.is_none() {
                    job.processing_since = status.timestamp.or(Some(now.ms));
                }
                job.progress = status.progress.clamp(0.0, 100.0);
                job.fps = status.fps;
                job.speed = status.speed;
                job.eta_s = status.eta_s;
                if status.stream_url.is_some() {
                    job.stream_url = status.stream_url.clone();
                }
                if let Some(served) = status.served_segment.filter(|s| *s < wire::MAX_SEGMENTS) {
                    job.served = Some(job.served.map_or(served, |s| s.max(served)));
                }
                if let Some(total) = job.total_segments.filter(|t| *t > 0) {
                    // A run that fills holes: progress is the share of the
                    // job's segments that exist.
                    job.progress = job.progress.max(self.share_done(&job, total));
                }
                if let (Some(n), Some(t)) = (status.segments_done, status.resume_time) {
                    job.segments_done = Some(n);
                    job.resume_time = Some(t);
                }
                if became {
                    tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, "job processing");
                }
                if became || resume_moved {
                    self.save(job);
                } else {
                    self.touch(job);
                }
            }
            JobState::Completed => {
                if status.stream_url.is_some() {
                    job.stream_url = status.stream_url.clone();
                }
                tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, "run completed");
                if job.run_to.is_none() {
                    // This run went to the end of the source.
                    let end = status
                        .segments_done
                        .filter(|n| *n >= job.run_from && *n < wire::MAX_SEGMENTS)
                        .unwrap_or(job.run_next);
                    if end > 0 {
                        job.total_segments = Some(end);
                    }
                }
                // The source ends where this run was to start.
                let at_the_end = job.run_to.is_none()
                    && job.run_from > 0
                    && status.segments_done == Some(job.run_from);
                if !at_the_end
                    && job.run_next == job.run_from
                    && status.segments_done <= Some(job.run_from)
                {
                    // Nothing came of it: a failed run, or this would loop.
                    let reason = format!(
                        "worker {worker} finished a run of job {job_id} without writing segment {}",
                        job.run_from
                    );
                    out.extend(self.requeue(job, reason, true, now));
                } else {
                    job.settling_since = Some(now.ms);
                    out.extend(self.settle(job, now));
                }
                out.extend(self.dispatch(now));
            }
            JobState::Cancelled => {
                job.state = JobState::Cancelled;
                job.speed = None;
                job.eta_s = None;
                job.finished_at = Some(now.ms);
                tracing::info!(%job_id, worker_id = %worker, "job cancelled on the worker");
                self.count_final(&job);
                self.save(job);
                out.extend(self.dispatch(now));
            }
            JobState::Failed => {
                let error = status.error.clone().unwrap_or_else(|| {
                    format!("worker {worker} reported a failure without a reason")
                });
                match status.error_kind {
                    Some(ErrorKind::Input) => {
                        job.state = JobState::Failed;
                        job.error = Some(error.clone());
                        job.error_kind = Some(ErrorKind::Input);
                        job.speed = None;
                        job.eta_s = None;
                        job.finished_at = Some(now.ms);
                        tracing::warn!(%job_id, worker_id = %worker, "job failed (input, no retry): {error}");
                        self.count_final(&job);
                        self.save(job.clone());
                        out.push(self.status_publish(&job, now));
                    }
                    Some(ErrorKind::Busy) => {
                        job.refused_by = Some(worker.clone());
                        out.extend(self.requeue(job, error, false, now));
                    }
                    // Handed back by a worker that was stopped: no failure.
                    Some(ErrorKind::Shutdown) => out.extend(self.requeue(job, error, false, now)),
                    _ => out.extend(self.requeue(job, error, true, now)),
                }
                out.extend(self.dispatch(now));
            }
            JobState::Queued | JobState::Assigned => {}
        }
        out
    }

    /// How many runs the worker's last heartbeat lists.
    fn runs_listed(&self, worker_id: &str) -> usize {
        self.registry
            .heartbeat(worker_id)
            .map_or(0, |hb| hb.active_jobs.len())
    }

    /// A message on `.../workers/{id}/heartbeat`.
    pub fn on_heartbeat(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        retained: bool,
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        self.atomically(|core| core.take_heartbeat(worker_id, payload, retained, now))
    }

    fn take_heartbeat(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        retained: bool,
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        let held_before = self.runs_listed(worker_id);
        let transition =
            self.registry
                .on_heartbeat(worker_id, payload, retained, now.instant, now.ms)?;
        log_transition(worker_id, &transition);
        let mut out = self.announce(worker_id);
        if !retained {
            // A refusing worker may have a free slot again, and so may one
            // that let a run go (a cancelled run stopping counts until then).
            let mut retry = self.runs_listed(worker_id) < held_before;
            for job in self.jobs.values_mut() {
                if job.refused_by.as_deref() == Some(worker_id) {
                    job.refused_by = None;
                    retry = true;
                }
            }
            if retry {
                out.extend(self.dispatch(now));
            }
            if let Some(hb) = self.registry.heartbeat(worker_id).cloned() {
                out.extend(self.reconcile(&hb, now));
            }
        }
        if transition == Some(Transition::Online) {
            out.extend(self.unacknowledged_assignments(Some(worker_id)));
            out.extend(self.dispatch(now));
        }
        Ok(out)
    }

    /// A message on `.../workers/{id}/availability`.
    pub fn on_availability(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        self.atomically(|core| core.take_availability(worker_id, payload, now))
    }

    fn take_availability(
        &mut self,
        worker_id: &str,
        payload: &[u8],
        now: Now,
    ) -> Result<Vec<Publish>, String> {
        let transition = self
            .registry
            .on_availability(worker_id, payload, now.instant, now.ms)?;
        log_transition(worker_id, &transition);
        Ok(match transition {
            Some(Transition::Offline(_)) => self.tick(now),
            Some(Transition::Online) => {
                let mut out = self.unacknowledged_assignments(Some(worker_id));
                out.extend(self.dispatch(now));
                out
            }
            None => Vec::new(),
        })
    }

    /// Compares what a live heartbeat says the worker runs with what we
    /// gave it: fences copies of jobs that moved on, requeues jobs it no
    /// longer runs (it restarted).
    fn reconcile(&mut self, hb: &Heartbeat, now: Now) -> Vec<Publish> {
        let worker_id = hb.worker_id.as_str();
        let mut out = Vec::new();
        for job_id in &hb.active_jobs {
            if let Some(job) = self.jobs.get(job_id) {
                if job.is_mesh_mode {
                    if job
                        .chunks
                        .iter()
                        .any(|c| c.is_running() && c.worker_id == worker_id)
                    {
                        continue;
                    }
                    // Only the chunks it had: a newer one on its way stays.
                    let stale = job
                        .chunks
                        .iter()
                        .filter(|c| c.worker_id == worker_id)
                        .map(|c| c.attempt)
                        .max();
                    out.push(self.fence(worker_id, *job_id, stale.or(Some(job.attempt))));
                    continue;
                }
                let ours = job.is_running() && job.worker_id.as_deref() == Some(worker_id);
                if !ours {
                    out.push(self.fence(worker_id, *job_id, None));
                }
            }
        }
        let listed: HashSet<&Uuid> = hb.active_jobs.iter().collect();
        self.unlisted
            .retain(|(id, w), _| w != worker_id || !listed.contains(id));
        // A heartbeat made well after a run started must list it.
        let late = |since: Option<u64>| match (hb.timestamp, since) {
            (Some(hb_ts), Some(since)) => hb_ts > since.saturating_add(2_000),
            _ => false,
        };
        // A run the worker says it ended: its final status is on its way
        // (on another topic, and maybe behind this heartbeat).
        let ended = |job_id: Uuid, attempt: u32| {
            hb.finished_runs
                .iter()
                .any(|r| r.job_id == job_id && r.attempt == attempt)
        };
        let unlisted: Vec<Uuid> = self
            .jobs
            .values()
            .filter(|j| !listed.contains(&j.job_id))
            .filter(|j| {
                if j.is_mesh_mode {
                    return j.chunks.iter().any(|c| {
                        c.state == JobState::Processing
                            && c.worker_id == worker_id
                            && late(c.processing_since)
                            && !ended(j.job_id, c.attempt)
                    });
                }
                j.state == JobState::Processing
                    // A run that said it completed is no longer listed.
                    && j.settling_since.is_none()
                    && j.worker_id.as_deref() == Some(worker_id)
                    && late(j.processing_since)
                    && !ended(j.job_id, j.attempt)
            })
            .map(|j| j.job_id)
            .collect();
        for job_id in unlisted {
            self.unlisted
                .entry((job_id, worker_id.to_string()))
                .or_insert(now.ms);
        }
        out.extend(self.requeue_unlisted(now));
        if !out.is_empty() {
            out.extend(self.dispatch(now));
        }
        out
    }

    /// Runs still unlisted by their worker after the grace: it no longer
    /// runs them (it restarted).
    fn requeue_unlisted(&mut self, now: Now) -> Vec<Publish> {
        let jobs = &self.jobs;
        self.unlisted.retain(|(id, w), _| {
            jobs.get(id).is_some_and(|j| {
                if j.is_mesh_mode {
                    return j
                        .chunks
                        .iter()
                        .any(|c| c.state == JobState::Processing && c.worker_id == *w);
                }
                j.state == JobState::Processing
                    && j.settling_since.is_none()
                    && j.worker_id.as_deref() == Some(w.as_str())
            })
        });
        let due: Vec<(Uuid, String)> = self
            .unlisted
            .iter()
            .filter(|(_, since)| now.ms >= since.saturating_add(UNLISTED_GRACE_MS))
            .map(|(key, _)| key.clone())
            .collect();
        let mut out = Vec::new();
        for (job_id, worker_id) in due {
            self.unlisted.remove(&(job_id, worker_id.clone()));
            let Some(job) = self.jobs.get(&job_id).cloned() else {
                continue;
            };
            let reason = format!("worker {worker_id} no longer runs the job (did it restart?)");
            if job.is_mesh_mode {
                let attempts: Vec<u32> = job
                    .chunks
                    .iter()
                    .filter(|c| c.state == JobState::Processing && c.worker_id == worker_id)
                    .map(|c| c.attempt)
                    .collect();
                for attempt in attempts {
                    if let Some(job) = self.jobs.get(&job_id).cloned() {
                        out.extend(self.lose_chunk(job, attempt, reason.clone(), true, now));
                    }
                }
            } else {
                out.extend(self.requeue(job, reason, true, now));
            }
        }
        out
    }

    // ----- time -----------------------------------------------------------

    /// Worker timeouts, lost and stalled runs, dispatch, pruning.
    pub fn tick(&mut self, now: Now) -> Vec<Publish> {
        self.try_store();
        self.atomically(|core| core.take_tick(now))
    }

    fn take_tick(&mut self, now: Now) -> Vec<Publish> {
        self.stage_progress();
        let mut out = Vec::new();
        for (worker_id, transition) in self.registry.sweep(now.instant) {
            log_transition(&worker_id, &Some(transition));
        }
        for worker_id in self.registry.forget(now.instant, now.ms) {
            out.extend(self.forget_worker(&worker_id));
        }
        let up_for = now.instant.saturating_duration_since(self.booted);
        let boot_grace_over = up_for >= self.settings.heartbeat_timeout;
        let stall_ms = self.settings.stall_timeout.as_millis() as u64;
        let stall_watch = up_for >= self.settings.stall_timeout;
        let assign_ms = self.settings.assign_timeout.as_millis() as u64;
        // (job, why, the worker to fence and the attempt it holds, whether
        // the run counts as failed)
        type Lost = (Job, String, Option<(String, u32)>, bool);
        let mut lost: Vec<Lost> = Vec::new();
        for job in self
            .jobs
            .values()
            .filter(|j| j.is_running() && !j.is_mesh_mode)
        {
            let Some(worker) = job.worker_id.clone() else {
                lost.push((job.clone(), "the job had no worker".into(), None, false));
                continue;
            };
            // A run that never started is no failure of the job's.
            let started = job.state == JobState::Processing;
            match self.registry.is_online(&worker) {
                Some(false) => lost.push((
                    job.clone(),
                    format!("worker {worker} was lost"),
                    None,
                    started,
                )),
                None if boot_grace_over => lost.push((
                    job.clone(),
                    format!("worker {worker} did not come back after the orchestrator restarted"),
                    None,
                    started,
                )),
                _ if started && stall_watch && now.ms > job.updated_at.saturating_add(stall_ms) => {
                    lost.push((
                        job.clone(),
                        format!(
                            "worker {worker} sent no progress for {} s (stalled)",
                            self.settings.stall_timeout.as_secs()
                        ),
                        Some((worker, job.attempt)),
                        true,
                    ))
                }
                _ if job.state == JobState::Assigned
                    && job.assigned_at.is_some_and(|t| now.ms > t + assign_ms) =>
                {
                    lost.push((
                        job.clone(),
                        format!(
                            "worker {worker} did not start the job within {} s",
                            self.settings.assign_timeout.as_secs()
                        ),
                        Some((worker, job.attempt)),
                        true,
                    ))
                }
                _ => {}
            }
        }
        for (job, reason, fence, counts) in lost {
            if let Some((w, attempt)) = fence {
                out.push(self.fence(&w, job.job_id, Some(attempt)));
            }
            out.extend(self.requeue(job, reason, counts, now));
        }
        let settling: Vec<Job> = self
            .jobs
            .values()
            .filter(|j| j.settling_since.is_some() && !j.state.is_final())
            .cloned()
            .collect();
        for job in settling {
            out.extend(self.settle(job, now));
        }
        out.extend(self.mesh_tick(now, boot_grace_over, stall_watch));
        out.extend(self.requeue_unlisted(now));
        out.extend(self.repair_watched(now, boot_grace_over));
        out.extend(self.dispatch(now));
        out.extend(self.prune(now));
        out.extend(self.keep_watched_outputs(now));
        out.extend(self.stats(false));
        out
    }

    /// A worker offline for `registry.forget_after_s`: its retained topics
    /// are cleared and Home Assistant is told to remove its device.
    fn forget_worker(&mut self, worker_id: &str) -> Vec<Publish> {
        tracing::info!(
            worker_id,
            "worker {worker_id} forgotten: offline for longer than registry.forget_after_s"
        );
        self.announced.remove(worker_id);
        let clear = |topic: String| Publish {
            topic,
            payload: Vec::new(),
            retain: true,
        };
        let mut out = vec![
            clear(self.topics.worker_heartbeat(worker_id)),
            clear(self.topics.worker_availability(worker_id)),
            clear(self.topics.worker_job(worker_id)),
        ];
        if let Some(ha) = &self.ha {
            out.push(Self::config_publish(ha.remove_worker(worker_id)));
        }
        out
    }

    /// The retained counters for dashboards, when they changed (or always).
    fn stats(&mut self, always: bool) -> Option<Publish> {
        let count = |f: &dyn Fn(&Job) -> bool| self.jobs.values().filter(|j| f(j)).count();
        let stats = wire::OrchestratorStats {
            queued_jobs: count(&|j| j.state == JobState::Queued),
            running_jobs: count(&|j| j.is_running()),
            workers_online: self.registry.online_count(),
        };
        if !always && self.last_stats == Some(stats) {
            return None;
        }
        self.last_stats = Some(stats);
        Some(Publish {
            topic: self.topics.orchestrator_stats(),
            payload: wire::encode(&stats),
            retain: true,
        })
    }

    /// Back to the queue (ahead of newer jobs: it keeps its place), or
    /// failed for good once `max_attempts` runs failed.
    fn requeue(&mut self, mut job: Job, reason: String, counts: bool, now: Now) -> Vec<Publish> {
        if counts {
            job.failures += 1;
        }
        job.leave_run(now.ms);
        if job.failures >= self.settings.max_attempts {
            job.state = JobState::Failed;
            job.error = Some(format!(
                "gave up after {} failed runs; the last: {reason}",
                job.failures
            ));
            job.error_kind = Some(ErrorKind::Worker);
            job.finished_at = Some(now.ms);
            tracing::warn!(job_id = %job.job_id, "job failed for good: {reason}");
            self.count_final(&job);
        } else {
            self.metrics.requeues += 1;
            job.queued_at = now.ms;
            job.state = JobState::Queued;
            job.error = Some(format!("requeued: {reason}"));
            job.error_kind = None;
            job.stream_url = None;
            tracing::warn!(job_id = %job.job_id, priority = job.priority(), "job requeued: {reason}");
        }
        self.save(job.clone());
        vec![self.status_publish(&job, now)]
    }

    /// Sends queued jobs, oldest first, to the best workers with a free
    /// slot; stops at the first job nobody can take (first in, first out).
    /// A split job takes every free worker it can give a chunk, in its turn,
    /// while it runs too.
    fn dispatch(&mut self, now: Now) -> Vec<Publish> {
        if self.store_fault.is_some() {
            // Nothing is given out that could not be written down.
            return Vec::new();
        }
        let mut queued: Vec<(u64, Uuid)> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued || (j.is_mesh_mode && !j.state.is_final()))
            .map(|j| (j.seq, j.job_id))
            .collect();
        queued.sort();
        let mut out = Vec::new();
        'jobs: for (_, job_id) in queued {
            loop {
                let candidates = self.candidates();
                let Some(mut job) = self.jobs.get(&job_id).cloned() else {
                    continue 'jobs;
                };
                // A worker that refused the job is not asked again until
                // its next heartbeat.
                let refused = job.refused_by.as_deref();
                let willing: Vec<Candidate> = candidates
                    .iter()
                    .filter(|c| Some(c.heartbeat.worker_id.as_str()) != refused)
                    .cloned()
                    .collect();
                if job.is_mesh_mode {
                    let can_take = |c: &&Candidate| {
                        c.online && self.may_take_chunk(&job, &c.heartbeat.worker_id)
                    };
                    let able = candidates.iter().filter(can_take).count();
                    let takers: Vec<Candidate> = willing.iter().filter(can_take).cloned().collect();
                    let Some(worker) = scheduler::pick(&takers).map(str::to_string) else {
                        if job.state == JobState::Queued {
                            break 'jobs;
                        }
                        continue 'jobs;
                    };
                    // Workers that could share the job: those that run a
                    // chunk of it and those free to take one.
                    let sharing = able + job.chunks.iter().filter(|c| c.is_running()).count();
                    match self.assign_chunk(job_id, &worker, sharing, now) {
                        Some(published) => out.extend(published),
                        None => {
                            if job.chunks.iter().all(|c| !c.is_active()) {
                                // Nothing left to run and nothing running.
                                out.extend(self.settle_chunks(job, now));
                            }
                            continue 'jobs;
                        }
                    }
                    continue;
                }
                // A requeued job goes to another worker than the one that lost,
                // refused or failed it, unless nobody else can take it.
                let avoid = job.workers.last().map(String::as_str);
                let others: Vec<Candidate> = willing
                    .iter()
                    .filter(|c| Some(c.heartbeat.worker_id.as_str()) != avoid)
                    .cloned()
                    .collect();
                let chosen = scheduler::pick(&others).or_else(|| scheduler::pick(&willing));
                let Some(worker) = chosen.map(str::to_string) else {
                    break 'jobs;
                };
                let Some((from, count)) = self.plan(&job) else {
                    // Every segment is there: nothing left to run.
                    job.settling_since = Some(now.ms);
                    out.extend(self.settle(job, now));
                    continue 'jobs;
                };
                job.run_from = from;
                job.run_to = count.map(|c| from + c);
                job.run_next = from;
                job.settling_since = None;
                job.attempt += 1;
                job.state = JobState::Assigned;
                job.worker_id = Some(worker.clone());
                job.assigned_at = Some(now.ms);
                job.updated_at = now.ms;
                job.progress = job.progress.min(100.0);
                job.workers.push(worker.clone());
                self.metrics
                    .dispatch_latency
                    .observe(now.ms.saturating_sub(job.queued_at) as f64 / 1000.0);
                let mut assignment = job.assignment();
                self.attach_source(&mut assignment);
                tracing::info!(%job_id, worker_id = %worker, attempt = job.attempt, first_segment = job.run_from, end_segment = ?job.run_to, "job assigned");
                self.save(job.clone());
                out.push(Publish {
                    topic: self.topics.worker_jobs(&worker),
                    payload: wire::encode(&assignment),
                    retain: false,
                });
                out.push(self.status_publish(&job, now));
                continue 'jobs;
            }
        }
        out
    }

    /// Every worker with a heartbeat, with how many jobs it holds: those we
    /// gave it and those it says it runs (jobs sent by hand count too: a
    /// busy worker refuses).
    fn candidates(&self) -> Vec<Candidate<'_>> {
        let mut held: HashMap<&str, HashSet<Uuid>> = HashMap::new();
        for j in self.jobs.values() {
            if j.is_mesh_mode {
                for c in j.chunks.iter().filter(|c| c.is_running()) {
                    held.entry(c.worker_id.as_str())
                        .or_default()
                        .insert(j.job_id);
                }
            } else if j.is_running() {
                if let Some(w) = j.worker_id.as_deref() {
                    held.entry(w).or_default().insert(j.job_id);
                }
            }
        }
        self.registry
            .with_heartbeats()
            .map(|(hb, online)| {
                let mut ids = held.get(hb.worker_id.as_str()).cloned().unwrap_or_default();
                // Our own jobs count where we gave them: a run that just
                // ended is still in the heartbeat made before its end.
                ids.extend(
                    hb.active_jobs
                        .iter()
                        .filter(|id| !self.jobs.contains_key(id))
                        .copied(),
                );
                Candidate {
                    heartbeat: hb,
                    online,
                    assigned: ids.len() as u32,
                }
            })
            .collect()
    }

    /// Forgets finished jobs past the retention time and clears their
    /// retained status.
    fn prune(&mut self, now: Now) -> Vec<Publish> {
        let keep_ms = self.settings.retention.as_millis() as u64;
        let old: Vec<Uuid> = self
            .jobs
            .values()
            .filter(|j| j.state.is_final() && j.finished_at.is_some_and(|t| now.ms >= t + keep_ms))
            .map(|j| j.job_id)
            .collect();
        let mut out = Vec::new();
        for job_id in old {
            out.extend(self.delete_outputs(job_id));
            if let Some(job) = self.remove_job(job_id).filter(|j| j.is_mesh_mode) {
                // Every attempt of a split job was a chunk with its topic.
                for attempt in 1..=job.attempt {
                    out.push(Publish {
                        topic: self
                            .topics
                            .chunk_status(&job_id.to_string(), &attempt.to_string()),
                        payload: Vec::new(),
                        retain: true,
                    });
                }
            }
            self.viewed.remove(&job_id);
            self.mesh_status_at.remove(&job_id);
            tracing::info!(%job_id, "finished job pruned after state.retention_s");
            out.push(self.clear(job_id));
        }
        while let Some((job_id, at)) = self.rejected.front().copied() {
            if now.ms < at + keep_ms {
                break;
            }
            self.rejected.pop_front();
            out.push(self.clear(job_id));
        }
        out
    }

    fn clear(&self, job_id: Uuid) -> Publish {
        Publish {
            topic: self.topics.job_status(&job_id.to_string()),
            payload: Vec::new(),
            retain: true,
        }
    }

    // ----- views ----------------------------------------------------------

    pub fn job(&self, job_id: Uuid) -> Option<Job> {
        self.jobs.get(&job_id).cloned()
    }

    /// Every job, in submission order.
    pub fn jobs(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.jobs.values().cloned().collect();
        jobs.sort_by_key(|j| j.seq);
        jobs
    }

    /// Every known worker, with the jobs we gave it.
    pub fn workers(&self) -> Vec<WorkerListing> {
        let mut workers = self.registry.snapshot();
        for w in &mut workers {
            let mut ours: Vec<String> = self
                .jobs
                .values()
                .filter(|j| self.runs_on(j, &w.worker_id))
                .map(|j| j.job_id.to_string())
                .collect();
            for j in &w.jobs {
                if !ours.contains(j) {
                    ours.push(j.clone());
                }
            }
            w.jobs = ours;
        }
        workers
    }

    /// Whether a run of the job (a chunk of a split job) holds the worker.
    /// Cancels every job that runs on `worker` (Home Assistant's cancel
    /// button asks for it on the worker's stop topic).
    pub fn cancel_on(&mut self, worker: &str, now: Now) -> Vec<Publish> {
        self.atomically(|core| core.take_cancel_on(worker, now))
    }

    fn take_cancel_on(&mut self, worker: &str, now: Now) -> Vec<Publish> {
        let ids: Vec<Uuid> = self
            .jobs
            .values()
            .filter(|j| self.runs_on(j, worker))
            .map(|j| j.job_id)
            .collect();
        if ids.is_empty() {
            tracing::info!(worker_id = %worker, "stop request: the worker runs no job of ours");
        }
        let mut out = Vec::new();
        for id in ids {
            match self.cancel(id, now) {
                Ok((_, more)) => out.extend(more),
                Err(e) => tracing::warn!(job_id = %id, worker_id = %worker, "stop request: {e}"),
            }
        }
        out
    }

    fn runs_on(&self, job: &Job, worker_id: &str) -> bool {
        if job.is_mesh_mode {
            return job
                .chunks
                .iter()
                .any(|c| c.is_running() && c.worker_id == worker_id);
        }
        job.is_running() && job.worker_id.as_deref() == Some(worker_id)
    }

    pub fn online_count(&self) -> usize {
        self.registry.online_count()
    }

    /// Jobs per state now.
    pub fn job_counts(&self) -> Vec<(JobState, usize)> {
        [
            JobState::Queued,
            JobState::Assigned,
            JobState::Processing,
            JobState::Completed,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .map(|s| (s, self.jobs.values().filter(|j| j.state == s).count()))
        .collect()
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn metrics_text(&self) -> String {
        let counts = self.job_counts();
        let labels: Vec<[(&str, &str); 1]> = counts
            .iter()
            .map(|(s, _)| [("state", s.as_str())])
            .collect();
        let jobs: Vec<(&[(&str, &str)], f64)> = labels
            .iter()
            .zip(&counts)
            .map(|(l, (_, n))| (&l[..], *n as f64))
            .collect();
        let finals = [JobState::Completed, JobState::Failed, JobState::Cancelled];
        let final_labels: Vec<[(&str, &str); 1]> =
            finals.iter().map(|s| [("state", s.as_str())]).collect();
        let finished: Vec<(&[(&str, &str)], f64)> = final_labels
            .iter()
            .zip(finals)
            .map(|(l, s)| {
                (
                    &l[..],
                    self.metrics.finished.get(&s).copied().unwrap_or(0) as f64,
                )
            })
            .collect();
        let known = self.registry.snapshot().len();
        let mut e = Exposition::new();
        e.gauge(
            "transcode_workers_online",
            "Workers online now.",
            &[(&[], self.online_count() as f64)],
        )
        .gauge(
            "transcode_workers_known",
            "Workers known, online or not.",
            &[(&[], known as f64)],
        )
        .gauge("transcode_jobs", "Jobs in the store, by state.", &jobs)
        .counter(
            "transcode_jobs_submitted_total",
            "Jobs accepted since the orchestrator started.",
            &[(&[], self.metrics.submitted as f64)],
        )
        .counter(
            "transcode_jobs_finished_total",
            "Jobs that reached a final state since the orchestrator started.",
            &finished,
        )
        .counter(
            "transcode_job_requeues_total",
            "Runs sent back to the queue (worker lost, refused, stalled or failed).",
            &[(&[], self.metrics.requeues as f64)],
        )
        .histogram(
            "transcode_dispatch_latency_seconds",
            "Time from entering the queue to being assigned to a worker.",
            &self.metrics.dispatch_latency,
        )
        .histogram(
            "transcode_job_duration_seconds",
            "Time from the first processing status to completed.",
            &self.metrics.job_duration,
        );
        e.finish()
    }
}

fn log_transition(worker_id: &str, transition: &Option<Transition>) {
    match transition {
        Some(Transition::Online) => tracing::info!(worker_id, "worker is online"),
        Some(Transition::Offline(why)) => tracing::warn!(worker_id, "worker is offline: {why}"),
        None => {}
    }
}

mod mesh;
mod orders;
mod sources;
mod stream;
#[cfg(test)]
mod tests;
mod txn;

pub use stream::{PlaylistAnswer, SegmentAnswer};
